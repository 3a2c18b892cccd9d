"""Registry entries <-> `orchestrator.mesh.v1.RegisteredService`: what the service
answers and what peers exchange (the same message, so a peer's GET /registry is this
server's replication input). Times travel as Timestamps at microsecond precision,
which is what every backend stores, so a replication key survives the round trip.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from orchestrator.mesh.v1 import registry_service_pb2 as pb
from server.domain.errors import InvalidArgument
from server.domain.registry import ServiceEntry
from server.services.convert import free_json, timestamp


def struct_of(metadata: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(dict(metadata))
    return message


def metadata_of(message: struct_pb2.Struct, field: str = "metadata") -> dict[str, Any]:
    """Raises InvalidArgument naming `field` for a NaN or an infinity, or JSON nested
    too deeply (`convert.free_json`)."""
    found: dict[str, Any] = free_json(message, field=field)
    return found


def message_of(entry: ServiceEntry) -> pb.RegisteredService:
    return pb.RegisteredService(
        name=entry.name,
        base_url=entry.base_url,
        openapi_url=entry.openapi_url,
        version=entry.version,
        metadata=struct_of(entry.metadata),
        revision=entry.revision,
        origin=entry.origin,
        created_at=timestamp(entry.created_at),
        updated_at=timestamp(entry.updated_at),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799  # 0001-01-01, 9999-12-31 (RFC 3339)


def _time(value: timestamp_pb2.Timestamp, field: str) -> datetime:
    if not (_MIN_SECONDS <= value.seconds <= _MAX_SECONDS and 0 <= value.nanos < 10**9):
        raise InvalidArgument.of(field, "must be a time between 0001-01-01 and 9999-12-31")
    return _EPOCH + timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def entry_of(message: pb.RegisteredService, where: str = "services[0]") -> ServiceEntry:
    """An entry as a peer sent it (checked by the domain before it is applied). Raises
    InvalidArgument naming `{where}.createdAt` or `.updatedAt` for a time out of range."""
    return ServiceEntry(
        name=message.name,
        base_url=message.base_url,
        openapi_url=message.openapi_url,
        version=message.version,
        metadata=metadata_of(message.metadata, f"{where}.metadata"),
        revision=message.revision,
        origin=message.origin,
        created_at=_time(message.created_at, f"{where}.createdAt"),
        updated_at=_time(message.updated_at, f"{where}.updatedAt"),
    )
