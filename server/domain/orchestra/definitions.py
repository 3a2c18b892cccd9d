"""Process definitions: storing immutable versions, reading them, and the compiled
models the engine runs (DESIGN §4.3; issue 11 point 1).

A put validates the whole definition first (`validation.compile_definition`: every
violation at once, naming its node or flow), then, in one unit of work with its
audit entry, stores it as a new version:

- `version` 0 stores the next version (1 for a new id), unless the latest version
  has the same content: then that version is answered unchanged (`created` false);
- an existing version with the same content (everything but the version, compared
  as canonical JSON) is answered unchanged (`created` false); with other content it
  is ALREADY_EXISTS: a stored version never changes, so running instances never
  see their definition change under them;
- a version at or below the latest is FAILED_PRECONDITION (VERSION_NOT_NEWER), as is
  a tenant scope other than the stored versions' (DEFINITION_SCOPE_CHANGED), and a
  next version after the last one `version` (int32) holds (VERSION_EXHAUSTED).

Two concurrent puts of one version cannot both store it: the insert skips an
existing primary key, and the loser answers as a repeat would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from server.domain import audit
from server.domain.context import CallContext
from server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    shown,
)
from server.domain.orchestra.model import DefinitionSpec, ProcessModel, spec_from_document
from server.domain.orchestra.records import (
    DEFINITION,
    DefinitionQuery,
    DefinitionRecord,
    OrchestraStore,
    StoredDefinition,
)
from server.domain.orchestra.validation import (
    DEFINITION_ID_RULE,
    VERSION_MAX,
    compile_definition,
    valid_definition_id,
)
from server.domain.pagination import TEXT, KeyCodec, ListingSpec, Page, PageTokens, SortKey


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


INT = KeyCodec(encode=int, decode=_int)
DEFINITION_LISTING: Final[ListingSpec[DefinitionRecord, DefinitionQuery]] = ListingSpec(
    name="orchestra-definitions",
    sort=(SortKey("definitionId", "definition_id", TEXT), SortKey("version", "version", INT)),
    filters={"definitionId": "definition_id"},
)


@dataclass(frozen=True, slots=True)
class Stored:
    definition: DefinitionRecord
    created: bool


def spec_of(record: DefinitionRecord) -> DefinitionSpec:
    """The file-format spec of a stored version."""
    return spec_from_document(json.loads(record.document))


def document_of(record: DefinitionRecord) -> dict[str, Any]:
    """The stored version in the file format (JSON-ready)."""
    document: dict[str, Any] = json.loads(record.document)
    return document


class ModelCache:
    """Compiled models by (id, version): versions are immutable, so each is compiled
    once per process, when first run."""

    def __init__(self, capacity: int = 1024) -> None:
        self._models: dict[tuple[str, int], ProcessModel] = {}
        self._capacity = capacity

    def cached(self, definition_id: str, version: int) -> ProcessModel | None:
        """The model of a version compiled before, without reading it again."""
        return self._models.get((definition_id, version))

    def model(self, record: DefinitionRecord) -> ProcessModel:
        key = (record.definition_id, record.version)
        model = self._models.get(key)
        if model is None:
            model = compile_definition(spec_of(record))
            if len(self._models) >= self._capacity:
                self._models.pop(next(iter(self._models)))
            self._models[key] = model
        return model


async def put_definition(
    store: OrchestraStore,
    call: CallContext,
    spec: DefinitionSpec,
    *,
    now: datetime,
    prefix: str = "",
) -> Stored:
    """Validate and store `spec` as a new version (module docstring). Raises
    InvalidArgument (DEFINITION_INVALID, every violation), AlreadyExists
    (PROCESS_DEFINITION_EXISTS), FailedPrecondition (VERSION_NOT_NEWER,
    DEFINITION_SCOPE_CHANGED, VERSION_EXHAUSTED: the latest version is VERSION_MAX, the
    int32 `version` field's last value, so there is no next one)."""
    compile_definition(spec, prefix=prefix)
    async with store.transaction() as unit:
        if spec.tenant is not None and not await unit.orchestra.tenant_exists(spec.tenant):
            raise InvalidArgument.of(
                f"{prefix}tenant",
                f"no tenant {shown(spec.tenant)} exists; create the tenant first, or leave"
                " tenant out to share the definition with every tenant",
                reason="TENANT_NOT_FOUND",
            )
        latest = await unit.orchestra.definition(spec.id, None)
        if latest is not None and latest.tenant_id != spec.tenant:
            raise FailedPrecondition(
                f"process definition {spec.id!r} is {_scope(latest.tenant_id)}; a new version"
                f" cannot be {_scope(spec.tenant)}",
                reason="DEFINITION_SCOPE_CHANGED",
                metadata={"definition_id": spec.id},
            )
        if not spec.version and latest is not None and spec_of(latest).content() == spec.content():
            return Stored(latest, created=False)  # a repeated put of the latest content
        if not spec.version and latest is not None and latest.version >= VERSION_MAX:
            raise FailedPrecondition(
                f"process definition {spec.id!r} is at version {latest.version}, the last"
                " there can be; store the process under a new definition id",
                reason="VERSION_EXHAUSTED",
                metadata={"definition_id": spec.id, "latest": str(latest.version)},
            )
        version = spec.version or (latest.version + 1 if latest is not None else 1)
        spec = replace(spec, version=version)
        repeat = await _repeat(unit.orchestra, spec)
        if repeat is not None:
            return Stored(repeat, created=False)
        if latest is not None and version <= latest.version:
            raise FailedPrecondition(
                f"process definition {spec.id!r} is at version {latest.version}; a new version"
                f" must be above it, got {version}",
                reason="VERSION_NOT_NEWER",
                metadata={"definition_id": spec.id, "latest": str(latest.version)},
            )
        record = StoredDefinition(
            definition_id=spec.id,
            version=version,
            tenant_id=spec.tenant,
            document=json.dumps(spec.document(), separators=(",", ":"), ensure_ascii=False),
            created_at=now,
            created_by=call.actor,
        )
        if not await unit.orchestra.insert_definition(record):
            repeat = await _repeat(unit.orchestra, spec)  # a concurrent put stored it first
            if repeat is None:
                raise _exists(spec)
            return Stored(repeat, created=False)
        await audit.record(unit.base, call, DEFINITION, before=None, after=record)
    return Stored(record, created=True)


async def _repeat(orchestra: Any, spec: DefinitionSpec) -> DefinitionRecord | None:
    """The stored version of `spec.version` when its content equals `spec`'s; raises
    AlreadyExists when it differs; None when the version is not stored."""
    existing: DefinitionRecord | None = await orchestra.definition(spec.id, spec.version)
    if existing is None:
        return None
    if spec_of(existing).content() != spec.content():
        raise _exists(spec)
    return existing


def _exists(spec: DefinitionSpec) -> AlreadyExists:
    return AlreadyExists(
        f"process definition {spec.id!r} version {spec.version} already exists with other"
        " content; versions are immutable: store a new version",
        reason="PROCESS_DEFINITION_EXISTS",
        metadata={"definition_id": spec.id, "version": str(spec.version)},
    )


def _scope(tenant: str | None) -> str:
    return "shared by every tenant" if tenant is None else f"scoped to tenant {tenant!r}"


async def get_definition(
    store: OrchestraStore, definition_id: str, version: int = 0
) -> DefinitionRecord:
    """One version (the latest for 0). Raises NotFound (PROCESS_DEFINITION_NOT_FOUND)."""
    record = None
    if valid_definition_id(definition_id) and version >= 0:
        record = await store.orchestra.definition(definition_id, version or None)
    if record is None:
        name = definition_id if not version else f"{definition_id} version {version}"
        raise NotFound.of(DEFINITION, name)
    return record


async def list_definitions(
    store: OrchestraStore,
    tokens: PageTokens,
    *,
    definition_id: str,
    limit: int,
    continuation_token: str,
) -> Page[DefinitionRecord]:
    """One page of stored versions by (id, version). Raises InvalidArgument for a
    definitionId filter no definition can have (an id's pattern: a NUL reached
    PostgreSQL, which refuses it in text), a negative limit or a token of other
    filters."""
    if definition_id and not valid_definition_id(definition_id):
        raise InvalidArgument.of(
            "definitionId", f"{DEFINITION_ID_RULE}, got {shown(definition_id)}"
        )
    query = DefinitionQuery(definition_id=definition_id or None)
    return await DEFINITION_LISTING.page(
        tokens, query, limit=limit, token=continuation_token, read=store.orchestra.definitions_page
    )


def available_to(record: DefinitionRecord, tenant_id: str) -> bool:
    """Whether a tenant may start instances of `record`: shared, or scoped to it."""
    return record.tenant_id is None or record.tenant_id == tenant_id


def describe(record: DefinitionRecord) -> Mapping[str, Any]:
    return {"id": record.definition_id, "version": record.version, "tenant": record.tenant_id}
