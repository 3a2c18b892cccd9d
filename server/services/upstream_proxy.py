"""UpstreamProxyService: read the request, call `server/upstreams/proxy.py`, convert.
Policy (scopes, tenant, the docstore save's reason header) and HTTP behaviour (502
for UNKNOWN, no-store) come from the proto options, not from here.

JSON crosses as google.protobuf.Struct/Value, whose numbers are doubles: integral
numbers go to the upstream as JSON integers (3, not 3.0), up to 2^53."""

from __future__ import annotations

import math
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from orchestrator.mesh.v1 import upstream_proxy_service_pb2 as pb
from orchestrator.mesh.v1 import upstream_proxy_service_pb2_grpc as pb_grpc
from server.domain.context import current_call
from server.domain.units import Store
from server.services import convert
from server.upstreams import Upstreams, proxy

_EXACT = 2**53


def plain(value: Any) -> Any:
    """A decoded Struct/Value with integral doubles back as ints, recursively."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value) if abs(value) <= _EXACT else value
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def value_of(answer: Any) -> struct_pb2.Value:
    message = struct_pb2.Value()
    json_format.ParseDict(answer, message)
    return message


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else float(remaining)


class UpstreamProxyService(pb_grpc.UpstreamProxyServiceServicer):
    def __init__(self, upstreams: Upstreams, store: Store) -> None:
        self._upstreams = upstreams
        self._store = store

    async def SaveDocument(
        self, request: pb.SaveDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.SaveDocumentResponse:
        document = plain(convert.free_json(request.document, field="document"))
        saved = await proxy.save_document(
            self._upstreams,
            self._store,
            current_call(),
            document,
            deadline_s=_deadline(context),
        )
        return pb.SaveDocumentResponse(result=value_of(saved.answer))

    async def RequestReport(
        self, request: pb.RequestReportRequest, context: grpc.aio.ServicerContext
    ) -> pb.RequestReportResponse:
        answer = await proxy.request_report(
            self._upstreams,
            current_call(),
            kind=request.kind,
            report_format=request.format,
            payload=plain(convert.free_json(request.payload, field="payload")),
            deadline_s=_deadline(context),
        )
        return pb.RequestReportResponse(result=value_of(answer))

    async def SuggestSummarization(
        self, request: pb.SuggestSummarizationRequest, context: grpc.aio.ServicerContext
    ) -> pb.SuggestSummarizationResponse:
        done = await proxy.suggest_summarization(
            self._upstreams,
            current_call(),
            content=request.content,
            keywords=list(request.keywords),
            keyword_document=request.keyword_document,
            override_policy=request.override_policy,
            deadline_s=_deadline(context),
        )
        return pb.SuggestSummarizationResponse(
            suggestion=value_of(done.suggestion),
            result=value_of(done.result),
            policy_override=done.policy_override,
            providers_used=value_of(done.providers),
        )

    async def RunDemo(
        self, request: pb.RunDemoRequest, context: grpc.aio.ServicerContext
    ) -> pb.RunDemoResponse:
        bundle = await proxy.run_demo(
            self._upstreams,
            current_call(),
            demo_format=request.format,
            log_limit=request.log_limit,
            deadline_s=_deadline(context),
        )
        return pb.RunDemoResponse(
            summary=pb.DemoSummary(total=bundle.total, by_severity=bundle.by_severity),
            log_analysis=pb.LogAnalysis(
                overview=pb.LogOverview(count=bundle.log_count, by_level=bundle.by_level),
                sample=[
                    pb.LogLine(service=line.service, level=line.level, message=line.message)
                    for line in bundle.sample
                ],
            ),
        )
