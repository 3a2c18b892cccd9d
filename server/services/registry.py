"""RegistryService: read the request, call the domain (`server/domain/registry.py`),
convert the result. Policy (orch:admin, platform-wide, operator reason) and HTTP
behaviour (201/200, Cache-Control, ETag) come from the proto options, not from here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import grpc

from orchestrator.mesh.v1 import registry_service_pb2 as pb
from orchestrator.mesh.v1 import registry_service_pb2_grpc as pb_grpc
from server.domain import registry
from server.domain.context import current_call
from server.domain.pagination import PageTokens
from server.domain.registry import PeerResult, PeerState, PollResult, RegistryStore
from server.mesh import wire
from server.mesh.runtime import Mesh
from server.services.convert import timestamp


def _poll_result(result: PollResult) -> pb.OpenApiPollResult:
    drift = result.drift
    message = pb.OpenApiPollResult(
        name=result.name,
        openapi_url=result.openapi_url,
        status=result.status,
        fetched_at=timestamp(result.fetched_at),
        size_bytes=result.size_bytes,
        drift=pb.OpenApiDrift(
            added_operations=drift.added_operations,
            removed_operations=drift.removed_operations,
            changed_operations=drift.changed_operations,
            added_schemas=drift.added_schemas,
            removed_schemas=drift.removed_schemas,
            changed_schemas=drift.changed_schemas,
        ),
    )
    if result.snapshot is not None:
        message.snapshot_id = result.snapshot.snapshot_id
        message.digest = result.snapshot.digest
    if result.previous_snapshot_id is not None:
        message.previous_snapshot_id = result.previous_snapshot_id
    if result.error_code is not None:
        message.error.code = result.error_code
        message.error.message = result.error_message or ""
    return message


def _peer_result(result: PeerResult) -> pb.PeerSyncResult:
    return pb.PeerSyncResult(
        url=result.url,
        status=result.status,
        message=result.message,
        sent=result.sent,
        accepted_by_peer=result.accepted_by_peer,
        received=result.received,
        applied=result.applied,
        registry_version=result.registry_version,
        duration_ms=result.duration_ms,
    )


def _peer(state: PeerState) -> pb.Peer:
    message = pb.Peer(
        url=state.url,
        status=state.status,
        last_error=state.last_error,
        registry_version=state.registry_version,
    )
    if state.last_contact_at is not None:
        message.last_contact_at.CopyFrom(timestamp(state.last_contact_at))
    if state.last_attempt_at is not None:
        message.last_attempt_at.CopyFrom(timestamp(state.last_attempt_at))
    return message


class RegistryService(pb_grpc.RegistryServiceServicer):
    def __init__(self, tokens: PageTokens, mesh: Mesh, wall: Callable[[], float]) -> None:
        """`wall`: the process's clock, seconds since the epoch (tests move it)."""
        self._store: RegistryStore = mesh.store
        self._tokens = tokens
        self._mesh = mesh
        self._wall = wall

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._wall(), UTC)

    async def RegisterService(
        self, request: pb.RegisterServiceRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterServiceResponse:
        entry, created = await registry.register_service(
            self._store,
            current_call(),
            registry.Registration(
                name=request.name,
                base_url=request.base_url,
                openapi_url=request.openapi_url,
                version=request.version,
                metadata=wire.metadata_of(request.metadata),
            ),
            origin=self._mesh.origin,
            addresses=self._mesh.addresses,
            now=self._now,
        )
        return pb.RegisterServiceResponse(service=wire.message_of(entry), created=created)

    async def ListServices(
        self, request: pb.ListServicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListServicesResponse:
        page = await registry.list_services(
            self._store,
            self._tokens,
            name_prefix=request.name_prefix,
            limit=request.limit,
            continuation_token=request.continuation_token,
        )
        response = pb.ListServicesResponse(items=[wire.message_of(e) for e in page.items])
        if page.continuation_token is not None:
            response.continuation_token = page.continuation_token
        return response

    async def PollOpenApi(
        self, request: pb.PollOpenApiRequest, context: grpc.aio.ServicerContext
    ) -> pb.PollOpenApiResponse:
        results = await registry.poll_openapi(
            self._store,
            current_call(),
            self._mesh.fetcher,
            names=list(request.names),
            concurrency=self._mesh.fetch_concurrency,
            now=self._now,
        )
        return pb.PollOpenApiResponse(results=[_poll_result(r) for r in results])

    async def SyncPeers(
        self, request: pb.SyncPeersRequest, context: grpc.aio.ServicerContext
    ) -> pb.SyncPeersResponse:
        results, version = await registry.sync_peers(
            self._store,
            current_call(),
            self._mesh.links,
            origin=self._mesh.origin,
            addresses=self._mesh.addresses,
            limits=self._mesh.limits,
            now=self._now,
        )
        return pb.SyncPeersResponse(
            results=[_peer_result(r) for r in results], registry_version=version
        )

    async def ReplicateServices(
        self, request: pb.ReplicateServicesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplicateServicesResponse:
        entries = [wire.entry_of(m, f"services[{i}]") for i, m in enumerate(request.services)]
        accepted, version = await registry.replicate_services(
            self._store,
            current_call(),
            sender=request.origin,
            entries=entries,
        )
        return pb.ReplicateServicesResponse(
            accepted=accepted, registry_version=version, origin=self._mesh.origin
        )

    async def ListPeers(
        self, request: pb.ListPeersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPeersResponse:
        peers = await registry.list_peers(self._store, [p.url for p in self._mesh.peers])
        return pb.ListPeersResponse(
            items=[_peer(state) for state in peers],
            registry_version=await registry.current_version(self._store),
            origin=self._mesh.origin,
        )
