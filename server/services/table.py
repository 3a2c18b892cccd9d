"""Every service this server serves, one entry each: the table `server/app.py` loops over.

An entry is the service's descriptor, a factory building its servicer from the
process's components, and the generated `add_*Servicer_to_server`. From this one
table come the gRPC server's handlers, the in-process gateway's handlers, the HTTP
bindings and OpenAPI (`gateway.bindings.bindings_for(SERVICES)`), the policies the
interceptor chain is built from, health and reflection, and the generated security
and audit tests (`tests/integration/security`). Adding a service is adding one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from orchestrator.identity.v1 import oauth_service_pb2, oauth_service_pb2_grpc
from orchestrator.jobengine.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    backfills_service_pb2,
    backfills_service_pb2_grpc,
    deadletter_service_pb2,
    deadletter_service_pb2_grpc,
    jobs_service_pb2,
    jobs_service_pb2_grpc,
    pack_runs_service_pb2,
    pack_runs_service_pb2_grpc,
    quotas_service_pb2,
    quotas_service_pb2_grpc,
    sources_service_pb2,
    sources_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from orchestrator.mesh.v1 import (
    cross_service_jobs_service_pb2,
    cross_service_jobs_service_pb2_grpc,
    events_service_pb2,
    events_service_pb2_grpc,
    ops_service_pb2,
    ops_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
    sagas_service_pb2,
    sagas_service_pb2_grpc,
    tracing_service_pb2,
    tracing_service_pb2_grpc,
    upstream_proxy_service_pb2,
    upstream_proxy_service_pb2_grpc,
    workflows_service_pb2,
    workflows_service_pb2_grpc,
)
from orchestrator.orchestra.v1 import (
    definitions_service_pb2,
    definitions_service_pb2_grpc,
    orchestra_service_pb2,
    orchestra_service_pb2_grpc,
)
from server.config import Settings
from server.domain.jobs import JobLimits
from server.domain.orchestra.definitions import ModelCache
from server.domain.pagination import PageTokens
from server.domain.units import Store
from server.identity.components import Clocks, Identity
from server.mesh.runtime import Mesh
from server.observability.operations import Operations
from server.observability.tracing import TraceRuntime
from server.services.audit import AuditService
from server.services.backfills import BackfillsService
from server.services.cross_service_jobs import CrossServiceJobsService
from server.services.deadletter import DeadLetterService
from server.services.events import EventsService
from server.services.jobs import JobsService
from server.services.oauth import OAuthService
from server.services.ops import OpsService
from server.services.orchestra import OrchestraService, limits_of, orchestra_store
from server.services.orchestra_admin import DefinitionsService
from server.services.pack_runs import PackRunsService
from server.services.quotas import QuotasService, policy_of
from server.services.registry import RegistryService
from server.services.sagas import SagasService
from server.services.sources import SourcesService
from server.services.tracing import TracingService
from server.services.upstream_proxy import UpstreamProxyService
from server.services.workers import WorkerService
from server.services.workflows import build_workflows_service
from server.storage.event_publisher import EventPublication
from server.storage.repositories.deadletter import dead_letter_store
from server.upstreams import Upstreams


@dataclass(frozen=True, slots=True)
class Components:
    """What servicers are built from, once per process."""

    store: Store
    tokens: PageTokens
    identity: Identity
    settings: Settings  # the process's configuration (policy maxima, size caps, ...)
    clocks: Clocks  # the process's time (tests move it); `wall` is seconds since the epoch
    # Who events are published to: watchers, the Redis stream (storage/event_publisher.py)
    events: EventPublication | None = None
    # The service registry's peers, fetcher and store (server/mesh/runtime.py)
    mesh: Mesh | None = None
    # What the operations API reports: readiness, dependencies, config, metrics
    operations: Operations | None = None
    # The spans this server recorded (server/observability/tracing.py); None: tracing off
    tracing: TraceRuntime | None = None
    # The services this server calls (server/upstreams/, issue 13): their HTTP clients
    upstreams: Upstreams | None = None


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """One served service. `add_to_server(servicer, target)` is the generated function;
    `target` is a `grpc.aio.Server` or anything with its registration methods."""

    descriptor: ServiceDescriptor
    servicer: Callable[[Components], object]
    add_to_server: Callable[[Any, Any], None]


SERVICE_TABLE: tuple[ServiceEntry, ...] = (
    ServiceEntry(
        sources_service_pb2.DESCRIPTOR.services_by_name["SourcesService"],
        lambda c: SourcesService(c.store, c.tokens, c.settings.job_payload_max_bytes),  # schedules
        sources_service_pb2_grpc.add_SourcesServiceServicer_to_server,
    ),
    ServiceEntry(
        audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"],
        lambda c: AuditService(c.store, c.tokens),
        audit_service_pb2_grpc.add_AuditServiceServicer_to_server,
    ),
    ServiceEntry(
        quotas_service_pb2.DESCRIPTOR.services_by_name["QuotasService"],
        lambda c: QuotasService(c.store, c.tokens, policy_of(c.settings), c.clocks.wall),
        quotas_service_pb2_grpc.add_QuotasServiceServicer_to_server,
    ),
    # issue 10 block: backfills
    ServiceEntry(
        backfills_service_pb2.DESCRIPTOR.services_by_name["BackfillsService"],
        lambda c: BackfillsService.of(c.store, c.tokens, c.settings, c.clocks),
        backfills_service_pb2_grpc.add_BackfillsServiceServicer_to_server,
    ),
    ServiceEntry(
        jobs_service_pb2.DESCRIPTOR.services_by_name["JobsService"],
        lambda c: JobsService(
            c.store,
            c.tokens,
            JobLimits(payload_max_bytes=c.settings.job_payload_max_bytes),
            c.clocks,
        ),
        jobs_service_pb2_grpc.add_JobsServiceServicer_to_server,
    ),
    ServiceEntry(
        deadletter_service_pb2.DESCRIPTOR.services_by_name["DeadLetterService"],
        lambda c: DeadLetterService(
            dead_letter_store(c.store),
            c.tokens,
            c.clocks,
            c.settings.deadletter_replay_pending_max,
        ),
        deadletter_service_pb2_grpc.add_DeadLetterServiceServicer_to_server,
    ),
    ServiceEntry(
        pack_runs_service_pb2.DESCRIPTOR.services_by_name["PackRunsService"],
        lambda c: PackRunsService(
            c.store,
            c.tokens,
            JobLimits(payload_max_bytes=c.settings.job_payload_max_bytes),
            c.clocks,
        ),
        pack_runs_service_pb2_grpc.add_PackRunsServiceServicer_to_server,
    ),
    ServiceEntry(
        worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"],
        lambda c: WorkerService(c.store, c.settings.job_payload_max_bytes),
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server,
    ),
    ServiceEntry(
        events_service_pb2.DESCRIPTOR.services_by_name["EventsService"],
        lambda c: _events_service(c),
        events_service_pb2_grpc.add_EventsServiceServicer_to_server,
    ),
    ServiceEntry(
        ops_service_pb2.DESCRIPTOR.services_by_name["OpsService"],
        lambda c: OpsService(_operations(c)),
        ops_service_pb2_grpc.add_OpsServiceServicer_to_server,
    ),
    ServiceEntry(
        registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"],
        lambda c: RegistryService(c.tokens, _mesh(c), c.clocks.wall),
        registry_service_pb2_grpc.add_RegistryServiceServicer_to_server,
    ),
    ServiceEntry(
        orchestra_service_pb2.DESCRIPTOR.services_by_name["OrchestraService"],  # issue 11
        lambda c: OrchestraService(
            orchestra_store(c.store), ModelCache(), limits_of(c.settings), c.clocks.wall
        ),
        orchestra_service_pb2_grpc.add_OrchestraServiceServicer_to_server,
    ),
    ServiceEntry(
        definitions_service_pb2.DESCRIPTOR.services_by_name["DefinitionsService"],
        lambda c: DefinitionsService(orchestra_store(c.store), c.tokens, c.clocks.wall),
        definitions_service_pb2_grpc.add_DefinitionsServiceServicer_to_server,
    ),
    ServiceEntry(  # issue 13: GET /infrastructure/saga/stats, /infrastructure/saga/{sagaId}
        sagas_service_pb2.DESCRIPTOR.services_by_name["SagasService"],
        lambda c: SagasService(orchestra_store(c.store)),
        sagas_service_pb2_grpc.add_SagasServiceServicer_to_server,
    ),
    ServiceEntry(  # issue 13: POST /ingest, GET /workflows, POST /workflows/run, history
        workflows_service_pb2.DESCRIPTOR.services_by_name["WorkflowsService"],
        lambda c: build_workflows_service(c.store, c.tokens, c.settings, c.clocks.wall),
        workflows_service_pb2_grpc.add_WorkflowsServiceServicer_to_server,
    ),
    ServiceEntry(  # issue 13: POST /jobs/recalc-quality, /jobs/notify-consolidation
        cross_service_jobs_service_pb2.DESCRIPTOR.services_by_name["CrossServiceJobsService"],
        lambda c: CrossServiceJobsService(
            c.store, JobLimits(payload_max_bytes=c.settings.job_payload_max_bytes), c.clocks
        ),
        cross_service_jobs_service_pb2_grpc.add_CrossServiceJobsServiceServicer_to_server,
    ),
    ServiceEntry(  # issue 13: the doc store, reporting and analyzer proxies
        upstream_proxy_service_pb2.DESCRIPTOR.services_by_name["UpstreamProxyService"],
        lambda c: _upstream_proxy(c),
        upstream_proxy_service_pb2_grpc.add_UpstreamProxyServiceServicer_to_server,
    ),
    ServiceEntry(  # issue 13: GET /infrastructure/tracing/stats, /trace/{id}, /service/{name}
        tracing_service_pb2.DESCRIPTOR.services_by_name["TracingService"],
        lambda c: TracingService(c.tracing),
        tracing_service_pb2_grpc.add_TracingServiceServicer_to_server,
    ),
    ServiceEntry(
        oauth_service_pb2.DESCRIPTOR.services_by_name["OAuthService"],
        lambda c: OAuthService(c.identity),
        oauth_service_pb2_grpc.add_OAuthServiceServicer_to_server,
    ),
)


def _upstream_proxy(c: Components) -> UpstreamProxyService:
    if c.upstreams is None:
        raise RuntimeError("UpstreamProxyService needs Components.upstreams (server/app.py)")
    return UpstreamProxyService(c.upstreams, c.store)


def _events_service(c: Components) -> EventsService:
    if c.events is None:
        raise RuntimeError("EventsService needs Components.events (server/app.py starts it)")
    heartbeat = c.settings.events_watch_heartbeat_seconds
    return EventsService(c.store, c.events.feed, c.events, c.tokens, c.clocks, heartbeat)


def _operations(components: Components) -> Operations:
    if components.operations is None:
        raise RuntimeError("OpsService needs Components.operations (server/app.py builds it)")
    return components.operations


def _mesh(components: Components) -> Mesh:
    if components.mesh is None:
        raise RuntimeError("the registry service needs Components.mesh (server/mesh/runtime.py)")
    return components.mesh


SERVICES: tuple[ServiceDescriptor, ...] = tuple(entry.descriptor for entry in SERVICE_TABLE)


def register_all(components: Components, *targets: Any) -> None:
    """Build each servicer once and register it with every target (the gRPC server and
    the in-process gateway's registry serve the same instances)."""
    for entry in SERVICE_TABLE:
        servicer = entry.servicer(components)
        for target in targets:
            entry.add_to_server(servicer, target)
