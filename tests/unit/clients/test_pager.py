"""clients.base.Pager on its own: the one case a real server cannot produce."""

from __future__ import annotations

import pytest

from clients.base import Pager
from orchestrator.jobengine.v1 import source_pb2
from orchestrator.jobengine.v1 import sources_service_pb2 as pb


async def test_a_page_that_repeats_its_token_stops_the_walk() -> None:
    asked: list[str] = []

    async def fetch(request: pb.ListSourcesRequest) -> pb.ListSourcesResponse:
        asked.append(request.continuation_token)
        return pb.ListSourcesResponse(
            items=[source_pb2.Source(name="only")], continuation_token="same"
        )

    pager = Pager(fetch, pb.ListSourcesRequest(limit=1), lambda page: list(page.items))
    seen: list[str] = []
    with pytest.raises(RuntimeError, match="returned the continuation token it was sent"):
        async for source in pager:
            seen.append(source.name)
    assert asked == ["", "same"]
    assert seen == ["only", "only"]


async def test_the_callers_request_is_not_changed() -> None:
    async def fetch(request: pb.ListSourcesRequest) -> pb.ListSourcesResponse:
        if request.continuation_token:
            return pb.ListSourcesResponse()
        return pb.ListSourcesResponse(continuation_token="next")

    request = pb.ListSourcesRequest(limit=5)
    pages = [page async for page in Pager(fetch, request, lambda page: list(page.items)).pages()]
    assert len(pages) == 2
    assert request == pb.ListSourcesRequest(limit=5)
