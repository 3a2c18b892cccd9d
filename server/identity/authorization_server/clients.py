"""OAuth clients: registration, listing, secret rotation, disabling.

A client is either *bound* to one tenant (the tenant is immutable: remote sites
and tenant automation act for exactly that tenant, seed 004) or an *operator*
client that may act for a list of tenants named per request (an empty list
leaves it platform-level only, e.g. for `orch:admin`). Its scopes and role
permissions are fixed at registration. The secret is returned once, by create
and rotate, and stored only as a scrypt hash.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from server.domain.errors import AlreadyExists, InvalidArgument, NotFound, Violation
from server.identity.authorization_server import passwords
from server.identity.scopes import PERMISSIONS, SCOPES, canonical
from server.storage.db import Database
from server.storage.repositories import identity as repo
from server.storage.tables import OAuthClientRow, utcnow

NAME_MAX = 200
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    display_name: str
    tenant: str | None  # the bound tenant; None for an operator client
    tenants: tuple[str, ...]  # an operator client's allowed tenants
    scopes: tuple[str, ...]
    permissions: tuple[str, ...]
    require_dpop: bool
    disabled: bool
    created_at: datetime
    updated_at: datetime

    @property
    def is_operator(self) -> bool:
        return self.tenant is None


@dataclass(frozen=True, slots=True)
class CreatedClient:
    """A client with its plain secret: shown once, never stored."""

    client: Client
    client_secret: str


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """What client authentication needs: the client and its secret hash."""

    client: Client
    secret_hash: str


def _client(row: OAuthClientRow) -> Client:
    return Client(
        client_id=row.client_id,
        display_name=row.display_name,
        tenant=row.tenant_id,
        tenants=tuple(row.operator_tenants or ()),
        scopes=tuple(row.scopes or ()),
        permissions=tuple(row.permissions or ()),
        require_dpop=row.require_dpop,
        disabled=row.disabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _unknown(field: str, values: Iterable[str], known: Sequence[str]) -> list[Violation]:
    return [
        Violation(field, f"unknown value {value!r}; expected one of {', '.join(known)}")
        for value in values
        if value not in known
    ]


def _validate(
    *,
    client_id: str,
    tenant: str | None,
    tenants: Sequence[str],
    requested_scopes: Sequence[str],
    permissions: Sequence[str],
    display_name: str,
) -> None:
    violations = _unknown("scopes", requested_scopes, SCOPES)
    violations += _unknown("permissions", permissions, PERMISSIONS)
    if not _CLIENT_ID.match(client_id):
        violations.append(Violation("client_id", "must be 3-64 letters, digits, '.', '_' or '-'"))
    if tenant is not None and tenants:
        violations.append(
            Violation("tenants", "a client bound to a tenant cannot also list operator tenants")
        )
    if tenant is not None and not tenant.strip():
        violations.append(Violation("tenant", "must not be blank"))
    if len(display_name) > NAME_MAX:
        violations.append(Violation("display_name", f"must be at most {NAME_MAX} characters"))
    if violations:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        raise InvalidArgument(message, violations=tuple(violations))


async def create_client(
    db: Database,
    *,
    scopes: Sequence[str],
    tenant: str | None = None,
    tenants: Sequence[str] = (),
    permissions: Sequence[str] = (),
    require_dpop: bool = False,
    display_name: str = "",
    client_id: str | None = None,
) -> CreatedClient:
    """Register a client; `tenant` binds it, otherwise it is an operator of `tenants`."""
    client_id = client_id if client_id is not None else f"orch-{secrets.token_hex(8)}"
    tenants = tuple(dict.fromkeys(tenants))
    _validate(
        client_id=client_id,
        tenant=tenant,
        tenants=tenants,
        requested_scopes=scopes,
        permissions=permissions,
        display_name=display_name,
    )
    secret = passwords.generate_secret()
    secret_hash = await asyncio.to_thread(passwords.hash_secret, secret)
    now = utcnow()
    row = OAuthClientRow(
        client_id=client_id,
        secret_hash=secret_hash,
        display_name=display_name,
        tenant_id=tenant,
        operator_tenants=list(tenants),
        scopes=list(canonical(set(scopes))),
        permissions=sorted(set(permissions)),
        require_dpop=require_dpop,
        created_at=now,
        updated_at=now,
    )
    try:
        async with db.transaction() as session:
            named = [tenant] if tenant is not None else list(tenants)
            if missing := await repo.missing_tenants(session, named):
                field = "tenant" if tenant is not None else "tenants"
                raise InvalidArgument.of(field, f"no such tenant: {', '.join(missing)}")
            if await repo.get_client(session, client_id) is not None:
                raise _duplicate(client_id)
            session.add(row)
            await session.flush()
    except sa.exc.IntegrityError as exc:  # a concurrent registration won the race
        raise _duplicate(client_id) from exc
    return CreatedClient(client=_client(row), client_secret=secret)


async def list_clients(db: Database) -> list[Client]:
    async with db.transaction() as session:
        return [_client(row) for row in await repo.list_clients(session)]


async def get_client(db: Database, *, client_id: str) -> Client:
    async with db.transaction() as session:
        row = await repo.get_client(session, client_id)
    if row is None:
        raise _not_found(client_id)
    return _client(row)


async def find_credentials(db: Database, *, client_id: str) -> ClientCredentials | None:
    """The client and its secret hash for authentication; None when unknown."""
    async with db.transaction() as session:
        row = await repo.get_client(session, client_id)
    if row is None:
        return None
    return ClientCredentials(client=_client(row), secret_hash=row.secret_hash)


async def rotate_secret(db: Database, *, client_id: str) -> CreatedClient:
    """Replace the secret; tokens already issued stay valid until they expire."""
    secret = passwords.generate_secret()
    secret_hash = await asyncio.to_thread(passwords.hash_secret, secret)
    async with db.transaction() as session:
        row = await repo.get_client(session, client_id)
        if row is None:
            raise _not_found(client_id)
        row.secret_hash = secret_hash
        row.updated_at = utcnow()
        session.add(row)
    return CreatedClient(client=_client(row), client_secret=secret)


async def disable_client(db: Database, *, client_id: str) -> Client:
    """Refuse the client's authentication and, within a second, its issued tokens."""
    async with db.transaction() as session:
        row = await repo.get_client(session, client_id)
        if row is None:
            raise _not_found(client_id)
        if not row.disabled:
            row.disabled = True
            row.updated_at = utcnow()
            session.add(row)
    return _client(row)


def _duplicate(client_id: str) -> AlreadyExists:
    return AlreadyExists(
        f"client {client_id!r} already exists",
        reason="CLIENT_EXISTS",
        metadata={"clientId": client_id},
    )


def _not_found(client_id: str) -> NotFound:
    return NotFound(
        f"client {client_id!r} not found",
        reason="CLIENT_NOT_FOUND",
        metadata={"clientId": client_id},
    )
