"""The only `table=True` classes: the database schema, as SQLModel rows.

API shapes are the protos; these are storage rows, converted in `server/services`.
Names are compared byte-wise on every backend (`C` collation on PostgreSQL, SQLite's
default BINARY) so keyset pages come out in the same order everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# Byte-wise ordering on PostgreSQL; SQLite compares BINARY already.
SortableText = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


class TenantRow(SQLModel, table=True):
    __tablename__ = "tenants"

    tenant_id: str = Field(primary_key=True, max_length=64)
    display_name: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class SourceRow(SQLModel, table=True):
    __tablename__ = "sources"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "name", name="uq_sources_tenant_name"),
        sa.Index("ix_sources_tenant_name_id", "tenant_id", "name", "source_id"),
    )

    source_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    tenant_id: str = Field(max_length=64)
    project_id: str | None = Field(default=None, max_length=64)
    name: str = Field(max_length=200, sa_type=SortableText)
    source_type: str = Field(max_length=64)
    enabled: bool = True
    paused: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class AuditEntryRow(SQLModel, table=True):
    """One operator action, written in the same transaction as the change it records.

    `reason`/`ticket` are the X-Stella-Operator-* headers of the call; `token_id` and
    the quota/backfill reason and ticket are the claims of the token that made it
    (seed 003), so an entry says both why the operator acted and why the token was
    granted. Listings run newest first over (created_at, entry_id), which the index
    serves backwards; entry_id compares byte-wise so ties order alike everywhere.
    """

    __tablename__ = "audit_entries"
    __table_args__ = (sa.Index("ix_audit_tenant_time_id", "tenant_id", "created_at", "entry_id"),)

    entry_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    tenant_id: str | None = Field(default=None, max_length=64)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=200)
    resource: str = Field(max_length=400)
    reason: str | None = Field(default=None, max_length=1024)
    ticket: str | None = Field(default=None, max_length=256)
    token_id: str | None = Field(default=None, max_length=64)
    quota_reason: str | None = Field(default=None, max_length=256)
    quota_ticket: str | None = Field(default=None, max_length=128)
    backfill_reason: str | None = Field(default=None, max_length=256)
    backfill_ticket: str | None = Field(default=None, max_length=128)
    trace_id: str = Field(max_length=64)
    before: str | None = Field(default=None, sa_type=sa.Text)
    after: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class ServerSecretRow(SQLModel, table=True):
    """Secrets every replica must share (e.g. the page-token key), created once."""

    __tablename__ = "server_secrets"

    name: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=512)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class OAuthClientRow(SQLModel, table=True):
    """An OAuth client (machine identity) of the client credentials grant.

    Either bound to one tenant (`tenant_id`, immutable) or an operator client
    (`tenant_id` NULL) that may act for the tenants in `operator_tenants`. The
    secret is stored only as a scrypt hash (server/identity/authorization_server/passwords.py).
    """

    __tablename__ = "oauth_clients"

    client_id: str = Field(primary_key=True, max_length=64, sa_type=SortableText)
    secret_hash: str = Field(max_length=256)
    display_name: str = Field(default="", max_length=200)
    tenant_id: str | None = Field(
        default=None, max_length=64, foreign_key="tenants.tenant_id", index=True
    )
    operator_tenants: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    scopes: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    permissions: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    require_dpop: bool = False
    disabled: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class SigningKeyRow(SQLModel, table=True):
    """An access-token signing key; `state` is current, previous or retired.

    The private JWK is stored as plain JSON: encryption at rest (KMS, sealed
    secrets) is out of scope here and belongs to the database's protection.
    """

    __tablename__ = "signing_keys"
    __table_args__ = (sa.Index("ix_signing_keys_state", "state"),)

    kid: str = Field(primary_key=True, max_length=128)
    alg: str = Field(max_length=16)
    private_jwk: str = Field(sa_type=sa.Text)
    public_jwk: str = Field(sa_type=sa.Text)
    state: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)
    retired_at: datetime | None = Field(default=None, sa_type=Timestamp)


class RevokedTokenRow(SQLModel, table=True):
    """A revoked access token, kept until it would have expired anyway."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (sa.Index("ix_revoked_tokens_expires_at", "expires_at"),)

    jti: str = Field(primary_key=True, max_length=128)
    client_id: str = Field(max_length=64)
    expires_at: datetime = Field(sa_type=Timestamp)
    revoked_at: datetime = Field(default_factory=utcnow, sa_type=Timestamp)


class DpopProofRow(SQLModel, table=True):
    """A DPoP proof already accepted by some replica: the jti replay cache (RFC 9449 §11.1).

    `proof_key` is hex SHA-256 of the proof key's thumbprint and the `jti`; inserting it
    is the check (the primary key refuses a second use). `expires_at_ms` is when the
    proof's `iat` window closes, in epoch milliseconds of the identity wall clock, after
    which the row may be overwritten or purged.
    """

    __tablename__ = "dpop_proofs"
    __table_args__ = (sa.Index("ix_dpop_proofs_expires_at_ms", "expires_at_ms"),)

    proof_key: str = Field(primary_key=True, max_length=64)
    expires_at_ms: int = Field(sa_type=sa.BigInteger)


class AuthFailureRow(SQLModel, table=True):
    """Consecutive failed client authentications of one client id, for the throttle.

    `failures` counts failures since the last success; the row lapses `expires_at_ms`
    (the window after the last failure, epoch milliseconds) and is then counted afresh.
    """

    __tablename__ = "auth_failures"
    __table_args__ = (sa.Index("ix_auth_failures_expires_at_ms", "expires_at_ms"),)

    client_id: str = Field(primary_key=True, max_length=128)
    failures: int
    last_failure_ms: int = Field(sa_type=sa.BigInteger)
    expires_at_ms: int = Field(sa_type=sa.BigInteger)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table behind a row class, for the SQLAlchemy Core hot paths."""
    return model.__table__  # type: ignore[attr-defined,no-any-return]
