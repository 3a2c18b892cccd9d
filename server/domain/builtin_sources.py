"""The built-in "mesh" source: where the jobs the mesh API enqueues belong (issue 13).

Every job names a registered source of its tenant (domain/jobs.py). The mesh API's
enqueueing endpoints (`POST /ingest`, `POST /jobs/recalc-quality`, `POST
/jobs/notify-consolidation`) take no source from the caller, so their jobs go to one
built-in source per tenant and project, created on first use:

- name `mesh` (`mesh:<projectId>` for a call narrowed by X-Stella-Project: names are
  unique per tenant), sourceType `mesh`, enabled, tagged with the call's project, so a
  project-narrowed caller sees both the source and its jobs;
- id: a UUID v5 of (tenant, project, name) in a fixed namespace, so every replica and
  every retry names the same source;
- created in its own short transaction before the enqueue, without an audit entry
  (the server's own action; the enqueue that follows is audited). Two first uses at
  once both succeed: the loser's insert is refused by the (tenant, name) uniqueness
  and it reads the winner's row.

It is an ordinary source afterwards: listed by `GET /sources`, and pausing it holds
back every mesh enqueue of that tenant (they answer 409 SOURCE_PAUSED) until resumed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Final

from server.domain.context import CallContext
from server.domain.errors import AlreadyExists
from server.domain.sources import Source

if TYPE_CHECKING:
    from server.domain.units import Store

MESH_SOURCE_NAME: Final = "mesh"
MESH_SOURCE_TYPE: Final = "mesh"
_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "orchestrator:mesh-builtin-source")


def mesh_source_name(project_id: str | None) -> str:
    """The built-in source's name in a project ("mesh", or "mesh:<projectId>")."""
    return MESH_SOURCE_NAME if project_id is None else f"{MESH_SOURCE_NAME}:{project_id}"


def mesh_source_id(tenant_id: str, project_id: str | None) -> str:
    """The built-in source's id: UUID v5 of tenant, project and name (RFC 9562 §5.5)."""
    name = mesh_source_name(project_id)
    return str(uuid.uuid5(_NAMESPACE, f"{tenant_id}\x1f{project_id or ''}\x1f{name}"))


async def builtin_source(store: Store, call: CallContext, *, now: datetime) -> str:
    """The id of the caller's built-in mesh source (tenant and project of `call`),
    created enabled on first use. Raises nothing of its own; a source of that name
    registered by hand (another id) is used as it is."""
    tenant_id = call.require_tenant()
    name = mesh_source_name(call.project_id)
    async with store.transaction() as uow:
        found = await uow.sources.find_by_name(tenant_id, name)
    if found is not None:
        return found.source_id
    source = Source(
        source_id=mesh_source_id(tenant_id, call.project_id),
        tenant_id=tenant_id,
        project_id=call.project_id,
        name=name,
        source_type=MESH_SOURCE_TYPE,
        enabled=True,
        paused=False,
        created_at=now,
        updated_at=now,
    )
    try:
        async with store.transaction() as uow:
            await uow.sources.add(source)
        return source.source_id
    except AlreadyExists:  # a concurrent first use created it: read the winner's row
        async with store.transaction() as uow:
            found = await uow.sources.find_by_name(tenant_id, name)
        if found is None:  # pragma: no cover - the name was taken, so a row holds it
            raise
        return found.source_id
