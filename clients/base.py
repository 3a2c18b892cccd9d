"""What every API client shares: the caller's headers, one call over a transport,
a pager over continuation tokens, and errors as `clients.errors.ApiError`.

A client for a service is a `ServiceClient` subclass naming its `ServiceDescriptor`
and offering one typed method per RPC that builds the request and calls `call`;
list methods also return a `Pager`. The transport (gRPC, REST or in-process, see
`clients/transports/`) decides how the call travels and maps its failures to
`ApiError`, so a caller's code is the same over all three (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from clients.auth import ClientCredentials
from clients.transports.base import Transport

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)
ItemT = TypeVar("ItemT")

# The request field that asks for a page and the response field that names the
# next one (DESIGN.md §4.1 "Lists"; AIP-158 with this API's field names).
CONTINUATION_FIELD = "continuation_token"


@dataclass
class CallerHeaders:
    """The headers every call of one caller carries (DESIGN.md §4.1): HTTP names,
    sent as lower-case gRPC metadata over gRPC and in-process."""

    tenant: str | None = None
    access_token: str | None = None  # sent as `Authorization: Bearer`
    project: str | None = None
    operator_reason: str | None = None
    operator_ticket: str | None = None
    trace_id: str | None = None

    def as_dict(self) -> dict[str, str]:
        pairs = {
            "Authorization": f"Bearer {self.access_token}" if self.access_token else None,
            "X-Stella-Tenant": self.tenant,
            "X-Stella-Project": self.project,
            "X-Stella-Operator-Reason": self.operator_reason,
            "X-Stella-Operator-Ticket": self.operator_ticket,
            "X-Stella-Trace-Id": self.trace_id,
        }
        return {k: v for k, v in pairs.items() if v is not None}


class Pager(Generic[RequestT, ResponseT, ItemT]):
    """Every item of a keyset listing, page after page, as an async iterator.

    `fetch` sends one request; the pager copies `request`, and while a response
    carries a non-empty `continuation_token` asks again with that token, yielding
    `items(page)` of each page in order. `async for item in pager` walks the items,
    `pager.pages()` the responses. Each walk starts from `request` again. A page
    that hands back the token it was asked with would loop forever: that raises
    RuntimeError instead.
    """

    def __init__(
        self,
        fetch: Callable[[RequestT], Awaitable[ResponseT]],
        request: RequestT,
        items: Callable[[ResponseT], Iterable[ItemT]],
    ) -> None:
        self._fetch = fetch
        self._request = request
        self._items = items

    async def pages(self) -> AsyncIterator[ResponseT]:
        request = type(self._request)()
        request.CopyFrom(self._request)
        while True:
            page = await self._fetch(request)
            yield page
            token: str = getattr(page, CONTINUATION_FIELD)
            if not token:
                return
            if token == getattr(request, CONTINUATION_FIELD):
                raise RuntimeError("the server returned the continuation token it was sent")
            setattr(request, CONTINUATION_FIELD, token)

    async def __aiter__(self) -> AsyncIterator[ItemT]:
        async for page in self.pages():
            for item in self._items(page):
                yield item


class ServiceClient:
    """The client of one service: headers and credentials, then `call` per RPC."""

    service: ClassVar[ServiceDescriptor]

    def __init__(
        self,
        transport: Transport,
        headers: CallerHeaders | None = None,
        *,
        credentials: ClientCredentials | None = None,
    ) -> None:
        """`credentials` fetch and refresh the token; `headers.access_token` is for a
        token obtained elsewhere. With neither, calls are anonymous (and refused)."""
        self.transport = transport
        self.headers = headers or CallerHeaders()
        self.credentials = credentials

    async def call(
        self, method: str, request: Message, response_type: type[ResponseT]
    ) -> ResponseT:
        """Call `method` (its proto name, e.g. "GetSource") of this client's service.

        Raises `ApiError` with the gRPC code name, message and `google.rpc.Status`
        details (plus the HTTP status over REST); a `ClientCredentials` token request
        that fails raises `ApiError` too.
        """
        descriptor = self.service.methods_by_name[method]
        headers = self.headers.as_dict()
        if self.credentials is not None:
            headers["Authorization"] = await self.credentials.authorization()
        return await self.transport.call(descriptor, request, response_type, headers=headers)
