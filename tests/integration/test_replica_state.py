"""Several replicas behave as one (issue 8 item 9): the DPoP jti replay cache and the
failed-secret throttle live in the shared database, or in Redis when REDIS_HOST is set.

Kind: per-process state guarding a protocol rule that holds across the deployment.
Neighbours covered: a proof replayed at the token endpoint and at a resource, across
processes; failures counted across processes; concurrent first uses and increments
from separate connection pools (atomicity, not luck); the window after which an entry
may be reused or a count starts afresh; the purge of expired rows; migration 0004.
Real PostgreSQL (127.0.0.1:5432) and real Redis (127.0.0.1:6379), no mocks.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from joserfc.jwk import JWKRegistry
from redis.asyncio import Redis
from sqlmodel import SQLModel

from server.identity.authorization_server.throttle import (
    FailureCounts,
    FailureThrottle,
    RedisFailureCounts,
    SqlFailureCounts,
)
from server.identity.replay import RedisReplayStore, ReplayStore, SqlReplayStore
from server.storage.db import Database, alembic_config
from server.storage.repositories.guards import SqlGuards
from server.storage.tables import AuthFailureRow, DpopProofRow, table_of
from tests.support.clock import ManualClock
from tests.support.process import ServedProcess, base_env
from tests.unit.identity.proofs import client_key, make_proof

PG_ADMIN_URL = os.environ.get(
    "ORCHESTRATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# The load balancer's URL in front of both replicas: every proof names it.
PUBLIC_URL = "http://127.0.0.1:18099"
REPLAY = "proof was already used (jti replay)"
NOW = 1_790_000_000.0

pytestmark = pytest.mark.postgres


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh PostgreSQL database of its own (asyncpg URL), dropped afterwards."""
    name = f"orch_replicas_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield (
            sa.make_url(PG_ADMIN_URL)
            .set(drivername="postgresql+asyncpg", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def pg(pg_url: str) -> AsyncIterator[Database]:
    db = Database(pg_url)
    await db.migrate()
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def guards(pg: Database) -> AsyncIterator[SqlGuards]:
    shared = SqlGuards(pg)
    try:
        yield shared
    finally:
        await shared.close()


@pytest.fixture
async def redis_one() -> AsyncIterator[tuple[Redis, str]]:
    """A Redis client and a key prefix of this test's own (its keys deleted afterwards)."""
    client = Redis(host=REDIS_HOST, port=REDIS_PORT)
    prefix = f"orchestrator-test:{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


# --- the stores, on real PostgreSQL and real Redis -------------------------------------------


@dataclass
class TwoReplicas:
    """Two replicas' handles on one backend: SqlGuards on one PostgreSQL database (two
    engines, two pools) or two Redis clients sharing a key prefix of this test's own."""

    backend: str
    guards: tuple[SqlGuards, SqlGuards] | None = None
    redis: tuple[Redis, Redis] | None = None
    prefix: str = ""

    def replay(self, clock: ManualClock) -> tuple[ReplayStore, ReplayStore]:
        if self.guards is not None:
            return SqlReplayStore(self.guards[0], clock=clock), SqlReplayStore(
                self.guards[1], clock=clock
            )
        assert self.redis is not None
        return RedisReplayStore(self.redis[0], clock=clock, prefix=self.prefix), RedisReplayStore(
            self.redis[1], clock=clock, prefix=self.prefix
        )

    def counts(self) -> tuple[FailureCounts, FailureCounts]:
        if self.guards is not None:
            return SqlFailureCounts(self.guards[0]), SqlFailureCounts(self.guards[1])
        assert self.redis is not None
        return RedisFailureCounts(self.redis[0], prefix=self.prefix), RedisFailureCounts(
            self.redis[1], prefix=self.prefix
        )


@pytest.fixture(params=["postgres", "redis"])
async def two(request: pytest.FixtureRequest, pg: Database) -> AsyncIterator[TwoReplicas]:
    if request.param == "postgres":
        guards = SqlGuards(pg), SqlGuards(pg)
        try:
            yield TwoReplicas("postgres", guards=guards)
        finally:
            for shared in guards:
                await shared.close()
        return
    clients = Redis(host=REDIS_HOST, port=REDIS_PORT), Redis(host=REDIS_HOST, port=REDIS_PORT)
    prefix = f"orchestrator-test:{uuid.uuid4().hex}:"
    try:
        yield TwoReplicas("redis", redis=clients, prefix=prefix)
    finally:
        keys = [key async for key in clients[0].scan_iter(match=prefix + "*")]
        if keys:
            await clients[0].delete(*keys)
        for client in clients:
            await client.aclose()


@pytest.fixture
def clock_at_now() -> ManualClock:
    """Real time, standing still: Redis expires keys on its own (real) clock."""
    return ManualClock(float(int(time.time())))


async def test_a_key_is_used_once_across_replicas_even_when_they_race(
    two: TwoReplicas, clock_at_now: ManualClock
) -> None:
    one, other = two.replay(clock_at_now)
    expires_at = clock_at_now() + 61
    for round_ in range(5):
        key = f"race-{round_}-{uuid.uuid4().hex}"
        attempts = [store.first_use(key, expires_at=expires_at) for store in (one, other) * 10]
        results = await asyncio.gather(*attempts)
        assert sorted(results) == [False] * 19 + [True]
    assert await one.first_use("other", expires_at=expires_at)


async def test_a_sql_entry_may_be_used_again_once_its_window_closed(pg: Database) -> None:
    clock = ManualClock(NOW)
    guards = SqlGuards(pg), SqlGuards(pg)
    try:
        one, other = (SqlReplayStore(shared, clock=clock) for shared in guards)
        assert await one.first_use("k", expires_at=NOW + 61)
        clock.advance(60.999)
        assert not await other.first_use("k", expires_at=NOW + 61)
        clock.advance(0.001)
        assert await other.first_use("k", expires_at=NOW + 125)
        assert not await one.first_use("k", expires_at=NOW + 125)
    finally:
        for shared in guards:
            await shared.close()


async def test_a_redis_entry_lives_as_long_as_its_window(redis_one: tuple[Redis, str]) -> None:
    redis, prefix = redis_one
    clock = ManualClock(float(int(time.time())))
    store = RedisReplayStore(redis, clock=clock, prefix=prefix)
    assert await store.first_use("k", expires_at=clock() + 61)
    assert 60_000 < await redis.pttl(prefix + "k") <= 61_000
    assert await redis.get(prefix + "k") == b"1"
    assert await store.first_use("short", expires_at=clock() + 0.05)
    await asyncio.sleep(0.1)  # Redis's own clock expires it; nothing of ours to move
    assert await store.first_use("short", expires_at=clock() + 61)


async def test_failures_are_counted_once_across_replicas_even_when_they_race(
    two: TwoReplicas,
) -> None:
    one, other = two.counts()
    now = float(int(time.time()))
    client = f"client-{uuid.uuid4().hex}"
    adds = [c.add_failure(client, now=now, window=900.0) for c in (one, other) * 10]
    assert sorted(await asyncio.gather(*adds)) == list(range(1, 21))
    assert await one.failures(client, now=now) == (20, now)
    assert await other.failures(client, now=now) == (20, now)
    await other.clear(client)
    assert await one.failures(client, now=now) is None
    assert await one.failures(f"never-{client}", now=now) is None


async def test_a_lockout_earned_on_one_replica_holds_on_the_other(two: TwoReplicas) -> None:
    clock = ManualClock(float(int(time.time())))
    here, there = (FailureThrottle(counts, clock=clock) for counts in two.counts())
    client = f"client-{uuid.uuid4().hex}"
    for throttle in (here, there, here, there):
        await throttle.failed(client)
    assert await here.retry_after(client) is None  # 4 of 5 free failures
    await there.failed(client)
    assert await here.retry_after(client) == 1.0
    assert await there.retry_after(client) == 1.0
    await here.succeeded(client)
    assert await there.retry_after(client) is None


async def test_purge_deletes_only_what_expired(pg: Database, guards: SqlGuards) -> None:
    now_ms = int(NOW * 1000)
    assert await guards.first_use("old", expires_at_ms=now_ms, now_ms=now_ms - 61_000)
    assert await guards.first_use("live", expires_at_ms=now_ms + 1, now_ms=now_ms - 60_000)
    await guards.add_failure("lapsed", now_ms=now_ms - 900_000, window_ms=900_000)
    await guards.add_failure("counting", now_ms=now_ms - 899_999, window_ms=900_000)
    await guards.purge(now_ms=now_ms)
    async with pg.read() as conn:
        proofs = (await conn.execute(sa.select(table_of(DpopProofRow).c.proof_key))).scalars()
        failures = (await conn.execute(sa.select(table_of(AuthFailureRow).c.client_id))).scalars()
        assert (list(proofs), list(failures)) == (["live"], ["counting"])


async def test_migration_0004_matches_the_tables_and_goes_down_and_up(pg: Database) -> None:
    def differences(connection: sa.Connection) -> list[object]:
        context = MigrationContext.configure(connection)
        return [
            diff
            for diff in compare_metadata(context, SQLModel.metadata)
            if diff[0] != "remove_table"  # alembic_version
            and any(name in repr(diff) for name in ("dpop_proofs", "auth_failures"))
        ]

    def alembic(connection: sa.Connection, action: str, revision: str) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        getattr(command, action)(cfg, revision)

    def tables(connection: sa.Connection) -> set[str]:
        return set(sa.inspect(connection).get_table_names())

    async with pg.engine.begin() as conn:
        assert await conn.run_sync(differences) == []
        await conn.run_sync(alembic, "downgrade", "0003")
        assert {"dpop_proofs", "auth_failures"}.isdisjoint(await conn.run_sync(tables))
    await pg.migrate()
    async with pg.engine.connect() as conn:
        assert {"dpop_proofs", "auth_failures"} <= await conn.run_sync(tables)


# --- two real server processes on one database -----------------------------------------------


def _thumbprint_key(proof: str) -> str:
    """The replay key of a proof, as DpopVerifier.first_use derives it."""
    header_b64, payload_b64 = proof.split(".")[:2]
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=" * (-len(payload_b64) % 4)))
    jkt = JWKRegistry.import_key(header["jwk"]).thumbprint()
    return hashlib.sha256(f"{jkt}\x00{payload['jti']}".encode()).hexdigest()


def _oauth_error(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"} and body["error"] == error, body
    return str(body["error_description"])


def _challenge(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    return response.headers["www-authenticate"]


@pytest.fixture
def replicas(
    tmp_path: Path, pg_url: str, request: pytest.FixtureRequest
) -> Iterator[tuple[ServedProcess, ServedProcess]]:
    """Two `orchestrator serve` processes on one PostgreSQL database behind one public
    URL; the first bootstraps the dev data, the second finds it there."""
    shared = {"ORCHESTRATOR_DATABASE_URL": pg_url, "ORCHESTRATOR_PUBLIC_URL": PUBLIC_URL}
    if request.param == "redis":
        shared |= {"REDIS_HOST": REDIS_HOST, "REDIS_PORT": str(REDIS_PORT)}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = ServedProcess.start(base_env(tmp_path, **shared), cwd=tmp_path / "a")
    try:
        second = ServedProcess.start(base_env(tmp_path, **shared), cwd=tmp_path / "b", dev=False)
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        statuses = (first.stop(), second.stop())
        assert statuses == (0, 0), "".join(first.lines + second.lines)
        assert "Traceback" not in "".join(first.lines + second.lines)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain client (this module's servers are child processes, not the session app)."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def _stored_proof_keys(pg_url: str) -> list[str]:
    db = Database(pg_url)
    try:
        async with db.read() as conn:
            query = sa.select(table_of(DpopProofRow).c.proof_key)
            return list((await conn.execute(query)).scalars())
    finally:
        await db.dispose()


async def _redis_ttl(key: str) -> int:
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        return int(await redis.pttl("orchestrator:dpop-jti:" + key))
    finally:
        await redis.aclose()


@pytest.mark.parametrize("replicas", ["postgres", "redis"], indirect=True)
async def test_a_dpop_proof_replayed_on_another_replica_is_refused(
    replicas: tuple[ServedProcess, ServedProcess],
    pg_url: str,
    http: httpx.AsyncClient,
    request: pytest.FixtureRequest,
) -> None:
    first, second = replicas
    credentials = first.credentials
    assert credentials is not None
    key = client_key()
    form = {"grant_type": "client_credentials"}

    token_proof = make_proof(key, htu=f"{PUBLIC_URL}/oauth/token")
    issued = await http.post(
        f"{first.base}/oauth/token", data=form, auth=credentials, headers={"DPoP": token_proof}
    )
    assert issued.status_code == 200, issued.text
    replayed = await http.post(
        f"{second.base}/oauth/token", data=form, auth=credentials, headers={"DPoP": token_proof}
    )
    assert _oauth_error(replayed, 400, "invalid_dpop_proof") == REPLAY

    token = issued.json()["access_token"]
    url = f"{PUBLIC_URL}/jobengine/sources"
    proof = make_proof(key, htm="GET", htu=url, access_token=token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    listed = await http.get(f"{second.base}/jobengine/sources", headers=headers)
    assert listed.status_code == 200, listed.text
    again = await http.get(f"{first.base}/jobengine/sources", headers=headers)
    assert _challenge(again) == (
        f'DPoP realm="orchestrator", algs="{_algs(again)}", '
        f'error="invalid_dpop_proof", error_description="{REPLAY}"'
    )
    fresh = make_proof(key, htm="GET", htu=url, access_token=token)
    headers["DPoP"] = fresh
    assert (await http.get(f"{first.base}/jobengine/sources", headers=headers)).status_code == 200

    # Where the replicas kept it: PostgreSQL, or Redis (and then nothing in PostgreSQL).
    stored = await _stored_proof_keys(pg_url)
    used = {_thumbprint_key(p) for p in (token_proof, proof, fresh)}
    if request.node.callspec.params["replicas"] == "postgres":
        assert used <= set(stored)
    else:
        assert stored == []
        assert all([0 < await _redis_ttl(k) <= 61_000 for k in used])


def _algs(response: httpx.Response) -> str:
    return response.headers["www-authenticate"].split('algs="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("replicas", ["postgres", "redis"], indirect=True)
async def test_failed_secrets_are_counted_across_replicas(
    replicas: tuple[ServedProcess, ServedProcess], http: httpx.AsyncClient
) -> None:
    first, second = replicas
    credentials = first.credentials
    assert credentials is not None
    client_id, secret = credentials
    form = {"grant_type": "client_credentials"}
    for server in (first, second, first, second):  # four of the five free failures
        wrong = await http.post(f"{server.base}/oauth/token", data=form, auth=(client_id, "wrong"))
        assert _oauth_error(wrong, 401, "invalid_client") == "client authentication failed"
    fifth = await http.post(f"{first.base}/oauth/token", data=form, auth=(client_id, "wrong"))
    assert _oauth_error(fifth, 401, "invalid_client") == "client authentication failed"
    for server in (second, first):  # locked everywhere for 1 s, even with the right secret
        locked = await http.post(f"{server.base}/oauth/token", data=form, auth=(client_id, secret))
        assert _oauth_error(locked, 401, "invalid_client") == (
            "too many failed authentications; retry in 1 s"
        )
    await asyncio.sleep(1.0)  # real processes on real time: the 1 s lockout runs out
    unlocked = await http.post(f"{second.base}/oauth/token", data=form, auth=(client_id, secret))
    assert unlocked.status_code == 200, unlocked.text
    # The success reset the count on every replica: one failure is free again.
    wrong = await http.post(f"{first.base}/oauth/token", data=form, auth=(client_id, "wrong"))
    assert _oauth_error(wrong, 401, "invalid_client") == "client authentication failed"
    issued = await http.post(f"{first.base}/oauth/token", data=form, auth=credentials)
    assert issued.status_code == 200, issued.text
