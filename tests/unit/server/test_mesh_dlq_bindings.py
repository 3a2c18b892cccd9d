"""The mesh API's dead-letter paths and cross-service jobs as bound and documented
(issue 13 points 3 and 5): additional bindings of the JobEngine methods, without a
legacy twin at the root paths; the OpenAPI operations with their policy; the legacy
prefix synthesis leaving look-alike prefixes alone."""

from __future__ import annotations

from typing import Any

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool

from gateway.bindings import bindings_for
from gateway.openapi import build_document
from gateway.v1 import http_pb2 as gateway_http_pb2
from orchestrator.jobengine.v1 import deadletter_service_pb2
from server.app import SERVICES
from server.http_surface import openapi_config

DEAD_LETTERS = deadletter_service_pb2.DESCRIPTOR.services_by_name["DeadLetterService"]


def test_stats_and_pending_replay_are_also_bound_at_the_mesh_root_paths() -> None:
    found = [
        (b.method.name, b.index, b.http_method, b.template.source, b.deprecated_successor)
        for b in bindings_for([DEAD_LETTERS])
        if b.method.name in ("GetDeadLetterStats", "ReplayPendingDeadLetterEntries")
    ]
    legacy = ("/orchestrator", "/jobengine")
    assert found == [
        ("GetDeadLetterStats", 0, "GET", "/jobengine/deadletter/stats", None),
        ("GetDeadLetterStats", 1, "GET", "/infrastructure/dlq/stats", None),
        ("GetDeadLetterStats", 2, "GET", "/orchestrator/deadletter/stats", legacy),
        ("ReplayPendingDeadLetterEntries", 0, "POST", "/jobengine/deadletter/replay/pending", None),
        ("ReplayPendingDeadLetterEntries", 1, "POST", "/infrastructure/dlq/retry", None),
        (
            "ReplayPendingDeadLetterEntries",
            2,
            "POST",
            "/orchestrator/deadletter/replay/pending",
            legacy,
        ),
    ]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(bindings_for(SERVICES), title="t", version="v1", config=openapi_config())


def _operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][path][method]
    return operation


def _headers(operation: dict[str, Any]) -> list[str]:
    return [p["name"] for p in operation["parameters"] if p["in"] == "header"]


def test_the_mesh_dead_letter_operations_are_documented_with_their_policy(
    document: dict[str, Any],
) -> None:
    stats = _operation(document, "/infrastructure/dlq/stats", "get")
    retry = _operation(document, "/infrastructure/dlq/retry", "post")
    assert stats["operationId"] == "DeadLetterService_GetDeadLetterStats_1"
    assert retry["operationId"] == "DeadLetterService_ReplayPendingDeadLetterEntries_1"
    assert "deprecated" not in stats and "deprecated" not in retry
    assert stats["security"] == [{"oauth2": ["orch:operate"]}, {"dpop": ["orch:operate"]}]
    assert retry["security"] == [{"oauth2": ["orch:backfill"]}, {"dpop": ["orch:backfill"]}]
    assert "X-Stella-Operator-Reason" in _headers(retry)
    assert "X-Stella-Operator-Reason" not in _headers(stats)
    canonical = _operation(document, "/jobengine/deadletter/stats", "get")
    assert stats["responses"]["200"] == canonical["responses"]["200"]  # one answer
    assert not [p for p in document["paths"] if p.startswith("/orchestrator/infrastructure")]


@pytest.mark.parametrize("path", ["/jobs/recalc-quality", "/jobs/notify-consolidation"])
def test_the_cross_service_jobs_are_documented_as_accepted_enqueues(
    document: dict[str, Any], path: str
) -> None:
    operation = _operation(document, path, "post")
    assert {"200", "202"} <= set(operation["responses"])  # 202 new, 200 an idempotent repeat
    assert operation["security"] == [{"oauth2": ["orch:operate"]}, {"dpop": ["orch:operate"]}]
    assert {"X-Stella-Tenant", "X-Stella-Operator-Reason"} <= set(_headers(operation))


def _service(*paths: str) -> Any:
    """`t.v1.Svc` with one GET method per path, deprecated prefix /v0 -> /v1."""
    file = descriptor_pb2.FileDescriptorProto(name="t/v1/s.proto", package="t.v1", syntax="proto3")
    file.message_type.add(name="Req")
    service = file.service.add(name="Svc")
    defaults = service.options.Extensions[gateway_http_pb2.http_defaults]
    defaults.deprecated_prefixes.add(prefix="/v0", successor="/v1")
    for index, path in enumerate(paths):
        method = service.method.add(
            name=f"M{index}", input_type=".t.v1.Req", output_type=".t.v1.Req"
        )
        method.options.Extensions[annotations_pb2.http].CopyFrom(http_pb2.HttpRule(get=path))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName("t.v1.Svc")


def test_only_paths_under_the_successor_get_a_legacy_twin() -> None:
    service = _service("/v1", "/v1/items", "/v1x/items", "/v10/items", "/items/v1", "/")
    found = sorted((b.template.source, b.deprecated_successor) for b in bindings_for([service]))
    assert found == [
        ("/", None),
        ("/items/v1", None),
        ("/v0", ("/v0", "/v1")),
        ("/v0/items", ("/v0", "/v1")),
        ("/v1", None),
        ("/v1/items", None),
        ("/v10/items", None),
        ("/v1x/items", None),
    ]
