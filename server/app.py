"""The server process: grpc.aio services, interceptors, and the in-process gateway.

`Application` owns the pieces and their order: open the database, migrate, build
the services, then serve gRPC and HTTP from one event loop. `stop()` drains: the
gRPC server refuses new calls and lets in-flight ones finish within the grace
period, and uvicorn finishes its open requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources

import grpc
import uvicorn
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from redis.asyncio import Redis

from gateway.app import Gateway
from gateway.bindings import bindings_for
from gateway.inprocess import HandlerRegistry, InProcessUpstream
from gateway.openapi_schema import comments_from_files
from server.config import Settings, value_sources
from server.domain import tracing as domain_tracing
from server.domain.health import LoopState, Readiness, not_ready
from server.domain.leasing import Reaper
from server.domain.orchestra.definitions import ModelCache
from server.domain.orchestra.runner import OrchestraRunner
from server.domain.pack_runs import PackRunEngine
from server.domain.pagination import PageTokens
from server.http_surface import gateway_config
from server.identity.components import Clocks, Identity
from server.identity.urls import is_wildcard, served_url
from server.interceptors.audit import OperatorAudit
from server.interceptors.authentication import Authentication
from server.interceptors.chain import InterceptorChain, Stage
from server.interceptors.errors import ErrorMapping
from server.interceptors.metrics import CallMetrics
from server.interceptors.tenancy import Tenancy
from server.interceptors.tracing import Tracing
from server.mesh.runtime import Mesh
from server.observability import log_shipping, metrics
from server.observability.domain_gauges import DomainGauge, DomainGauges
from server.observability.grpc_health import HealthReporter
from server.observability.http_metrics import HttpMetrics
from server.observability.operations import Operations
from server.observability.product_gauges import register_product_gauges
from server.observability.tracing import TraceRuntime
from server.policy import MethodPolicy, policies_for
from server.services.orchestra import limits_of, orchestra_store
from server.services.table import SERVICES, Components, register_all
from server.shipped_definitions import install_shipped_definitions
from server.storage.db import Database, connection_lost
from server.storage.event_publisher import EventHub, EventPublication, RedisOutbox, outbox_redis
from server.storage.pruning import JobPruner
from server.storage.repositories import job_gauges
from server.storage.repositories.events import SqlEventFeed
from server.storage.repositories.secrets import get_or_create_secret
from server.storage.scheduler_loop import SchedulerLoop
from server.storage.store import SqlStore
from server.storage.wakeups import Wakeups
from server.upstreams import Upstreams
from server.upstreams.notify_delivery import NotifyDelivery

log = logging.getLogger("orchestrator.server")

__all__ = ["SERVICES", "Application"]  # SERVICES: the descriptors of server/services/table.py

# gRPC refuses metadata over 8 KiB (soft: a random share of calls) and 16 KiB (hard)
# with a bare RESOURCE_EXHAUSTED. Our own limits (8 KiB tokens, named 400s with a
# challenge) must decide instead, as they do over REST, so the transport's are raised.
GRPC_SERVER_OPTIONS = (
    ("grpc.max_metadata_size", 64 * 1024),
    ("grpc.absolute_max_metadata_size", 64 * 1024),
)


class GenericHandlersOnly:
    """A grpc.aio server as the target of generated `add_*Servicer_to_server`
    functions that keeps the generic handlers and drops the "registered method"
    handlers, which serve the very same methods.

    Why: grpc.aio (1.6x to at least 1.85) keeps one pending request-call task per
    registered method and, for every incoming call, `asyncio.wait`s on all of them
    (FIRST_COMPLETED), which adds and then removes a done-callback on each: the cost
    of every RPC grows with the number of methods served. With ~90 methods a wait
    took 32 µs against 7 µs on one future (so ~25 µs of server CPU per call; cProfile
    of 3,000 EnqueueJob calls counted 92 futures per wait). Generic handlers are one
    pending request and a dictionary lookup per service; callers see no difference
    (an unknown method is UNIMPLEMENTED either way)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server
        self._services: set[str] = set()  # the services a generic handler was added for

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        for handler in handlers:
            name = getattr(handler, "service_name", None)  # grpc.ServiceRpcHandler's
            if callable(name):
                self._services.add(str(name()))
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        """Nothing when a generic handler for `service_name` came first (what
        grpcio-tools generates: it serves these methods); otherwise one is made of
        them here, so a service registered by its methods alone is still served."""
        if service_name not in self._services:
            generic = grpc.method_handlers_generic_handler(service_name, dict(method_handlers))
            self.add_generic_rpc_handlers((generic,))


@dataclass
class Application:
    settings: Settings  # once started, `public_url` is the effective one (derived if unset)
    clocks: Clocks = field(default_factory=Clocks)  # identity's time; tests move it forward
    db: Database = field(init=False)
    identity: Identity = field(init=False)  # identity.verifier checks access tokens
    grpc_server: grpc.aio.Server = field(init=False)
    gateway: Gateway = field(init=False)
    store: SqlStore = field(init=False)  # the storage the services use (engines, tests)
    grpc_port: int = 0
    http_port: int = 0
    _http: uvicorn.Server | None = None
    _http_task: asyncio.Task[None] | None = None
    _pruner: JobPruner | None = None
    _wakeups: Wakeups | None = None
    _reaper: Reaper | None = None
    pack_runs: PackRunEngine | None = None  # advances pack runs whose jobs ended (issue 10)
    orchestra: OrchestraRunner | None = None  # due timers, ended service-task jobs (issue 11)
    _events: EventPublication | None = None
    scheduler: SchedulerLoop | None = None  # fires scheduler sources' ticks (issue 10)
    mesh: Mesh | None = None  # the registry's peers, fetcher and store
    upstreams: Upstreams | None = None  # the services this server calls (issue 13)
    notify: NotifyDelivery | None = None  # delivers notify.consolidation jobs (issue 13)
    # Background loops /ready and gRPC health wait for; loops register at start.
    readiness: Readiness = field(default_factory=Readiness)
    gauges: DomainGauges = field(default_factory=DomainGauges)  # /metrics domain gauges
    operations: Operations = field(init=False)
    health: HealthReporter = field(init=False)  # grpc.health.v1 following readiness
    readiness_interval_s: float = 2.0  # how often gRPC health re-evaluates readiness
    log_shipper: log_shipping.LogShipper | None = None  # LOG_COLLECTOR_URL set (issue 13)
    tracing: TraceRuntime | None = None  # None: ORCHESTRATOR_TRACING_ENABLED is false
    _untraced: domain_tracing.Installed | None = None  # tracing off: what to give back

    async def start(self, *, http_socket: socket.socket | None = None) -> None:
        if self.settings.log_collector_url:  # first, so start-up lines are shipped too
            self.log_shipper = log_shipping.install(
                self.settings.log_collector_url,
                queue_max=self.settings.log_shipping_queue_max,
                batch_max=self.settings.log_shipping_batch_max,
                interval=self.settings.log_shipping_interval_seconds,
                timeout=self.settings.log_shipping_timeout_seconds,
            )
        # Bound first: without ORCHESTRATOR_PUBLIC_URL the issuer is the address served.
        sock = http_socket or _bind(self.settings.host, self.settings.port)
        sources = value_sources(self.settings)  # before anything is derived
        served_host, self.http_port = sock.getsockname()[:2]
        derived = not self.settings.public_url
        if derived:
            public_url = served_url(served_host, self.http_port)
            self.settings = self.settings.model_copy(update={"public_url": public_url})
        self.db = Database(self.settings.database_url)
        await self.db.migrate()
        tokens = await self._page_tokens()
        self.identity = await Identity.start(
            self.db,
            public_url=self.settings.public_url,
            trust_forwarded_headers=self.settings.trust_forwarded_headers,
            clocks=self.clocks,
            redis=self._redis(),
        )
        if self.settings.tracing_enabled:  # spans of calls, jobs and engine steps (issue 13)
            self.tracing = TraceRuntime.start(
                self.settings.tracing_max_traces, self.settings.tracing_max_spans_per_trace
            )
        else:  # no domain spans either (the tracer another server in this process set)
            self._untraced = domain_tracing.install(None)
        chain = InterceptorChain(chain_stages(policies_for(SERVICES), self.identity, self.tracing))
        interceptors = (chain,)
        registry = HandlerRegistry()
        self.grpc_server = grpc.aio.server(interceptors=interceptors, options=GRPC_SERVER_OPTIONS)
        self._wakeups = Wakeups(self.db.url)
        await self._wakeups.start()
        store = self.store = SqlStore(self.db, self._wakeups, self.clocks.wall)
        self._reaper = Reaper(store.leases, self.settings.lease_reaper_interval_seconds)
        self._events = self._event_publication()
        await self._events.start()
        # The shipped workflows (issue 13): POST /workflows/run must work on a fresh server.
        now = datetime.fromtimestamp(self.clocks.wall(), UTC)
        await install_shipped_definitions(orchestra_store(store), now=now)
        self.operations = Operations(
            settings=self.settings,
            db=self.db,
            readiness=self.readiness,
            gauges=self.gauges,
            sources=sources,
            derived={"public_url"} if derived else set(),
            api_versions=[service.file.package for service in SERVICES],
            wall=self.clocks.wall(),
        )
        self._register_loops_and_gauges()
        self.mesh = await Mesh.start(self.settings, self.db, http_port=self.http_port)
        components = Components(
            store=store,
            tokens=tokens,
            identity=self.identity,
            settings=self.settings,
            clocks=self.clocks,
            events=self._events,
            operations=self.operations,
            mesh=self.mesh,
            upstreams=self._upstreams(),
            tracing=self.tracing,
        )
        register_all(components, GenericHandlersOnly(self.grpc_server), registry)
        chain.prepare(registry.handlers)
        await self._add_health_and_reflection()
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        self.grpc_port = self.grpc_server.add_insecure_port(address)
        await self.grpc_server.start()
        self.gateway = Gateway(
            bindings_for(SERVICES),
            InProcessUpstream(registry.handlers, interceptors),
            gateway_config(self.settings, _proto_comments()),
        )
        await self._start_http(sock)
        self._pruner = JobPruner(
            self.db,
            wall=self.clocks.wall,
            retention=timedelta(seconds=self.settings.job_retention_seconds),
            batch_size=self.settings.job_prune_batch_size,
            pause=self.settings.job_prune_pause_seconds,
            interval=self.settings.job_prune_interval_seconds,
        )
        self._pruner.start()
        self._reaper.start()
        self.pack_runs = PackRunEngine(
            store, self.settings.pack_run_advance_interval_seconds, self.clocks.wall
        )
        self.pack_runs.start()
        self.orchestra = OrchestraRunner(
            orchestra_store(store),
            ModelCache(),
            limits_of(self.settings),
            self.clocks.wall,
            self.settings.orchestra_poll_seconds,
        )
        self.orchestra.start()
        self.scheduler = SchedulerLoop.from_settings(store, self.settings, self.clocks.wall)
        self.scheduler.start()
        self.notify = NotifyDelivery(
            store,
            self.db,
            self._upstreams().notification,
            interval=self.settings.notify_poll_seconds,
            concurrency=self.settings.notify_concurrency,
        )
        self.notify.start()  # not when NOTIFICATION_URL is unset: the jobs wait
        await self.health.refresh()
        self.health.start()
        log.info(
            "serving gRPC on %s:%d, HTTP on %s:%d; issuer %s (%s)",
            self.settings.host,
            self.grpc_port,
            self.settings.host,
            self.http_port,
            self.identity.urls.issuer,
            "derived from the HTTP address; set ORCHESTRATOR_PUBLIC_URL to the URL clients use"
            if derived
            else "ORCHESTRATOR_PUBLIC_URL",
        )
        if derived and is_wildcard(served_host):
            log.warning(
                "HTTP listens on every interface but the issuer is %s: remote clients' tokens "
                "and DPoP proofs will not match it; set ORCHESTRATOR_PUBLIC_URL",
                self.settings.public_url,
            )

    def _upstreams(self) -> Upstreams:
        if self.upstreams is None:
            self.upstreams = Upstreams.from_settings(self.settings)
        return self.upstreams

    def _event_publication(self) -> EventPublication:
        """Watchers' fan-out, and the Redis stream outbox when REDIS_HOST is set."""
        feed = SqlEventFeed(self.db)
        interval = self.settings.events_poll_interval_seconds
        grace = self.settings.events_gap_grace_seconds
        hub = EventHub(feed, poll_interval=interval, gap_grace=grace)
        outbox = None
        if self.settings.redis_host:
            outbox = RedisOutbox(
                feed,
                self.db,
                outbox_redis(self.settings.redis_host, self.settings.redis_port),
                stream=self.settings.events_stream,
                maxlen=self.settings.events_stream_maxlen,
                poll_interval=interval,
                gap_grace=grace,
            )
        return EventPublication(feed, hub, outbox)

    def _redis(self) -> Redis | None:
        """The Redis replicas share per-request state in (REDIS_HOST), or None."""
        if not self.settings.redis_host:
            return None
        return Redis(
            host=self.settings.redis_host,
            port=self.settings.redis_port,
            socket_connect_timeout=5,
            socket_timeout=5,
        )

    async def _page_tokens(self) -> PageTokens:
        configured = self.settings.page_token_secret.get_secret_value()
        secret = configured or await get_or_create_secret(self.db, "page_token")
        return PageTokens(secret.encode())

    def _register_loops_and_gauges(self) -> None:
        """The background loops readiness waits for and the domain gauges of /metrics
        (server/domain/health.py, server/observability/domain_gauges.py)."""
        self.readiness.register_task("lease-reaper", lambda: _task_of(self._reaper))
        self.readiness.register_task("job-pruner", lambda: _task_of(self._pruner))
        self.readiness.register_task(
            "scheduler", lambda: self.scheduler.task if self.scheduler else None
        )
        self.readiness.register_task(
            "pack-run-engine", lambda: self.pack_runs._task if self.pack_runs else None
        )
        self.readiness.register_task(
            "orchestra-runner", lambda: self.orchestra._task if self.orchestra else None
        )
        if not self.db.is_sqlite:  # SQLite wakes its watchers in process
            self.readiness.register("wakeup-listener", self._listener_state)
        db = self.db
        self.gauges.register(
            DomainGauge(
                "orchestrator_jobs_queue_depth",
                "Jobs waiting to be leased (queued, throttled, failed awaiting a retry).",
                ("tenant", "job_type"),
                read=lambda: job_gauges.waiting_jobs(db),
            )
        )
        self.gauges.register(
            DomainGauge(
                "orchestrator_jobs_leased",
                "Jobs leased to a worker now.",
                ("tenant", "job_type"),
                read=lambda: job_gauges.leased_jobs(db),
            )
        )
        register_product_gauges(self.gauges, db)  # dead-letter entries, Orchestra instances

    def _listener_state(self) -> LoopState:
        if self._wakeups is not None and self._wakeups.server_pid() is not None:
            return LoopState(True, "listening")
        return LoopState(False, "not connected to PostgreSQL; reconnecting, polling meanwhile")

    async def ready(self) -> bool:
        """Whether /ready would answer ready now."""
        try:
            return not_ready(await self.operations.readiness_checks()) is None
        except Exception:
            log.warning("readiness evaluation failed", exc_info=True)
            return False

    async def _add_health_and_reflection(self) -> None:
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(
            health_servicer, GenericHandlersOnly(self.grpc_server)
        )
        names = [service.full_name for service in SERVICES]
        self.health = HealthReporter(
            health_servicer, names, self.ready, interval_s=self.readiness_interval_s
        )
        await self.health.set_all(False)  # SERVING once started and ready
        # What reflection.enable_server_reflection does for an aio server; it picks the
        # servicer by the server's type, which the wrapper does not have.
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(
                (*names, health.SERVICE_NAME, reflection.SERVICE_NAME)
            ),
            GenericHandlersOnly(self.grpc_server),
        )

    async def _start_http(self, sock: socket.socket) -> None:
        config = uvicorn.Config(
            HttpMetrics(self.gateway, self.gateway.router),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            # The gateway derives x-forwarded-* from the real peer and scheme; uvicorn
            # must not rewrite them from client headers (its default trusts 127.0.0.1).
            proxy_headers=False,
            timeout_graceful_shutdown=max(1, int(self.settings.shutdown_grace_seconds)),
        )
        self._http = _QuietServer(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                await self._http_task  # surfaces the start-up error
                raise RuntimeError("HTTP server exited during start-up")
            await asyncio.sleep(0.01)

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        await self.health.stop()  # NOT_SERVING first: balancers stop sending calls
        if self._http is not None:
            self._http.should_exit = True
        if self._events is not None:
            self._events.close_watches()
        if self._pruner is not None:
            await self._pruner.stop()
        if self._reaper is not None:
            await self._reaper.stop()
        if self.pack_runs is not None:
            await self.pack_runs.stop()
        if self.orchestra is not None:
            await self.orchestra.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.notify is not None:
            await self.notify.stop()
        await self.grpc_server.stop(grace)
        if self._http_task is not None:
            await self._http_task
        await self.identity.close()
        if self._events is not None:
            await self._events.stop()
        if self.mesh is not None:
            await self.mesh.close()
        if self.upstreams is not None:
            await self.upstreams.close()
        if self._wakeups is not None:
            await self._wakeups.close()
        await self.operations.aclose()
        metrics.mark_process_dead()
        if self.tracing is not None:  # flushes the OTLP exporter (a thread: off the loop)
            await asyncio.to_thread(self.tracing.shutdown)
        elif self._untraced is not None:
            domain_tracing.restore(self._untraced)
        await self.db.dispose()
        if self.log_shipper is not None:  # last, so the lines of the stop are shipped too
            shipper, self.log_shipper = self.log_shipper, None
            await log_shipping.uninstall(
                shipper, timeout=self.settings.log_shipping_timeout_seconds
            )

    async def wait(self) -> None:
        await self.grpc_server.wait_for_termination()


def chain_stages(
    policies: Mapping[str, MethodPolicy], identity: Identity, tracing: TraceRuntime | None = None
) -> tuple[Stage, ...]:
    """The interceptor chain's stages, outermost first: every method is traced (with a
    span when `tracing`) and has its errors mapped; authentication, tenancy and operator
    audit run where its policy says."""
    return (
        CallMetrics(),
        Tracing(tracing),
        ErrorMapping(unavailable=connection_lost),
        Authentication(policies, identity.verifier, identity.urls),
        Tenancy(policies),
        OperatorAudit(policies),
    )


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` owns SIGTERM/SIGINT and drains
    gRPC and HTTP together, then exits 0 instead of re-raising the signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _task_of(loop: Reaper | JobPruner | None) -> asyncio.Task[None] | None:
    """The asyncio task a loop runs as (both keep it in `_task` while running)."""
    return None if loop is None else loop._task


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP, and without it Nagle + delayed ACK add ~40 ms to small responses.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _proto_comments() -> dict[str, str]:
    """The proto comments of our APIs (the generated descriptor set keeps source info),
    which become the OpenAPI descriptions."""
    data = resources.files("orchestrator").joinpath("descriptor_set.binpb").read_bytes()
    return comments_from_files(descriptor_pb2.FileDescriptorSet.FromString(data).file)


def services() -> Sequence[ServiceDescriptor]:
    return SERVICES
