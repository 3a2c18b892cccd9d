"""OAuthService: read the request and its metadata, call identity, convert the result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.message import Message

from orchestrator.identity.v1 import oauth_pb2 as pb
from orchestrator.identity.v1 import oauth_service_pb2_grpc as pb_grpc
from server.identity.authorization_server.discovery import server_metadata
from server.identity.authorization_server.operations import OAuthCall
from server.identity.components import Identity
from server.interceptors.base import invocation_values


class OAuthService(pb_grpc.OAuthServiceServicer):
    def __init__(self, identity: Identity) -> None:
        self._identity = identity

    async def Token(
        self, request: pb.TokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.TokenResponse:
        issued = await self._identity.authorization.token(oauth_call(request, context))
        response = pb.TokenResponse(
            access_token=issued.access_token,
            token_type=issued.token_type,
            expires_in=issued.expires_in,
        )
        if issued.scope is not None:
            response.scope = issued.scope
        return response

    async def Introspect(
        self, request: pb.IntrospectRequest, context: grpc.aio.ServicerContext
    ) -> pb.IntrospectResponse:
        payload = await self._identity.authorization.introspect(oauth_call(request, context))
        return introspection(payload)

    async def Revoke(
        self, request: pb.RevokeRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeResponse:
        await self._identity.authorization.revoke(oauth_call(request, context))
        return pb.RevokeResponse()

    async def GetJwks(
        self, request: pb.GetJwksRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetJwksResponse:
        response = pb.GetJwksResponse()
        for key in await self._identity.keys.jwks():
            response.keys.add().update(key)
        return response

    async def GetAuthorizationServerMetadata(
        self,
        request: pb.GetAuthorizationServerMetadataRequest,
        context: grpc.aio.ServicerContext,
    ) -> pb.GetAuthorizationServerMetadataResponse:
        return pb.GetAuthorizationServerMetadataResponse(**server_metadata(self._identity.urls))


def _first(context: grpc.aio.ServicerContext, key: str) -> str | None:
    values = invocation_values(context, key)
    return values[0] if values else None


def oauth_call(request: Message, context: grpc.aio.ServicerContext) -> OAuthCall:
    """Form fields by RFC name (the proto names), client credentials and DPoP from metadata."""
    form = {field.name: value for field, value in request.ListFields() if isinstance(value, str)}
    return OAuthCall(
        form={name: value for name, value in form.items() if value},
        authorization=_first(context, "authorization"),
        dpop_proofs=tuple(invocation_values(context, "dpop")),
        forwarded_proto=_first(context, "x-forwarded-proto"),
        forwarded_host=_first(context, "x-forwarded-host"),
    )


_STRINGS = ("scope", "client_id", "token_type", "sub", "aud", "iss", "jti", "tenant")
_TIMES = ("exp", "iat")
_LISTS = ("tenants", "permissions")
_CONTROLS = ("quota_reason", "quota_ticket", "backfill_reason", "backfill_ticket")


def introspection(payload: Mapping[str, Any]) -> pb.IntrospectResponse:
    response = pb.IntrospectResponse(active=bool(payload.get("active")))
    if not response.active:
        return response  # exactly {"active": false} (RFC 7662 §2.2)
    for name in (*_STRINGS, *_CONTROLS):
        if isinstance(payload.get(name), str):
            setattr(response, name, payload[name])
    for name in _TIMES:
        if isinstance(payload.get(name), int):
            setattr(response, name, payload[name])
    for name in _LISTS:
        if isinstance(payload.get(name), list):
            target = getattr(response, name)
            target.SetInParent()
            target.extend(payload[name])
    cnf = payload.get("cnf")
    if isinstance(cnf, dict) and isinstance(cnf.get("jkt"), str):
        response.cnf.jkt = cnf["jkt"]
    return response
