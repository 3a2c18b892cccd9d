"""DPoP jti replay (RFC 9449 §11.1) through `DpopVerifier.first_use` on the SQL store
replicas share, here on SQLite; PostgreSQL and Redis: tests/integration/test_replica_state.py."""

from __future__ import annotations

import pytest

from server.identity.dpop import DpopError, DpopVerifier
from server.identity.replay import SqlReplayStore
from server.storage.repositories.guards import SqlGuards
from tests.support.clock import ManualClock
from tests.unit.identity.proofs import client_key, make_proof

URL = "https://api.example/oauth/token"
NOW = 1_790_000_000


async def test_a_proof_is_accepted_once(guards: SqlGuards) -> None:
    clock = ManualClock(NOW)
    verifier = DpopVerifier(replay=SqlReplayStore(guards, clock=clock), clock=clock)
    proof = verifier.verify(
        make_proof(client_key(), htu=URL, iat=NOW), http_method="POST", http_url=URL
    )
    await verifier.first_use(proof)
    with pytest.raises(DpopError, match=r"^proof was already used \(jti replay\)$"):
        await verifier.first_use(proof)


async def test_the_same_jti_with_another_key_is_not_a_replay(guards: SqlGuards) -> None:
    clock = ManualClock(NOW)
    verifier = DpopVerifier(replay=SqlReplayStore(guards, clock=clock), clock=clock)
    for _ in range(2):
        proof = make_proof(client_key(), htu=URL, iat=NOW, jti="j1")
        await verifier.first_use(verifier.verify(proof, http_method="POST", http_url=URL))


async def test_a_jti_is_remembered_until_its_iat_window_closes(guards: SqlGuards) -> None:
    """iat + max_age + 1 s: as long as `verify` could accept the proof, and no longer."""
    clock = ManualClock(NOW)
    store = SqlReplayStore(guards, clock=clock)
    assert await store.first_use("k", expires_at=NOW + 61)
    clock.advance(60.999)
    assert not await store.first_use("k", expires_at=NOW + 61)
    clock.advance(0.001)  # the entry's time is up: a new use is recorded anew
    assert await store.first_use("k", expires_at=NOW + 130)
    assert not await store.first_use("k", expires_at=NOW + 130)


async def test_a_verifier_without_a_store_refuses_to_accept(guards: SqlGuards) -> None:
    verifier = DpopVerifier()
    proof = verifier.verify(make_proof(client_key(), htu=URL), http_method="POST", http_url=URL)
    with pytest.raises(RuntimeError, match="replay store"):
        await verifier.first_use(proof)
