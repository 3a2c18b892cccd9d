"""TokenVerifier: every way a token or Authorization header can be wrong is refused,
with the RFC 6750 error and challenge; a good token becomes a Principal."""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from server.domain.context import ControlClaims
from server.domain.errors import InvalidArgument, Unauthenticated
from server.identity.authorization_server import clients
from server.identity.authorization_server.keys import KeyRing
from server.identity.dpop import DpopVerifier
from server.identity.resource_server import verifier as verifier_module
from server.identity.resource_server.principal import Principal
from server.identity.resource_server.verifier import LEEWAY_SECONDS, TokenRejected, TokenVerifier
from server.identity.revocation import MAX_AGE_SECONDS, RevocationList, revoke_token
from server.identity.urls import PublicUrls
from server.storage.db import Database
from server.storage.tables import TenantRow
from tests.support.clock import ManualClock
from tests.unit.identity.conftest import ISSUER, MintToken, claims
from tests.unit.identity.proofs import client_key, make_proof

URL = f"{ISSUER}/jobengine/sources"


async def _refused(verifier: TokenVerifier, authorization: str | None, **kw: Any) -> TokenRejected:
    with pytest.raises(TokenRejected) as caught:
        await verifier.verify(
            authorization, kw.get("proof"), http_method=kw.get("method", "GET"), http_url=URL
        )
    return caught.value


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_valid_bearer_token_becomes_a_principal(
    verifier: TokenVerifier, mint: MintToken
) -> None:
    token = mint(quota_ticket="CHG-1")
    principal = await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    assert principal.client_id == "client-a"
    assert principal.scopes == frozenset({"orch:read", "orch:quota"})
    assert principal.tenant == "acme" and not principal.is_operator
    assert principal.may_act_for("acme") and not principal.may_act_for("other")
    assert principal.permissions == frozenset({"access orchestra api"})
    assert principal.claims == ControlClaims(quota_reason="capacity review", quota_ticket="CHG-1")
    assert principal.dpop_bound is False
    assert principal.has_scopes("orch:read") and not principal.has_scopes("orch:admin")
    lower = await verifier.verify(f"bearer {token}", None, http_method="GET", http_url=URL)
    assert lower.jti == principal.jti


async def test_operator_principal_lists_its_tenants(
    verifier: TokenVerifier, mint: MintToken
) -> None:
    token = mint(tenant=None, tenants=["a", "b"])
    principal = await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    assert principal.is_operator and principal.tenants == frozenset({"a", "b"})
    assert principal.may_act_for("b") and not principal.may_act_for("c")


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (None, None),
        ("", None),
        ("Basic dXNlcjpwYXNz", None),  # another scheme: no credentials (issue 8 item 13)
        ("Bearer", "invalid_request"),
        ("Bearer a b", "invalid_request"),
        ("Bearer tok\u00e9n", "invalid_request"),
        ("Bearer " + "a" * 9000, "invalid_request"),
        ("Bearer garbage", "invalid_token"),
        ("Bearer a.b.c", "invalid_token"),
    ],
    ids=[
        "missing",
        "blank",
        "basic",
        "no-token",
        "two-tokens",
        "non-ascii",
        "oversized",
        "not-jwt",
        "bad-parts",
    ],
)
async def test_malformed_authorization_is_refused(
    verifier: TokenVerifier, authorization: str | None, error: str | None
) -> None:
    refused = await _refused(verifier, authorization)
    assert refused.error == error
    assert refused.status == (400 if error == "invalid_request" else 401)
    if error is None:  # RFC 6750 §3.1: no error code when credentials are missing
        assert refused.challenge.startswith('Bearer realm="orchestrator", DPoP realm=')
        assert "error=" not in refused.challenge
    else:
        assert f'error="{error}"' in refused.challenge


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"nbf": int(time.time()) + 86_400}, "nbf"),  # a day: params are built at collection
        ({"iat": int(time.time()) + 86_400}, "iat"),
        ({"aud": "https://other.example"}, "aud"),
        ({"iss": "https://issuer.evil"}, "iss"),
        ({"jti": None}, "jti"),
        ({"client_id": None}, "client_id"),
        ({"sub": None}, "sub"),
        ({"tenants": "a,b", "tenant": None}, "malformed"),
        ({"scope": ["orch:read"]}, "malformed"),
    ],
    ids=[
        "expired",
        "not-yet",
        "future-iat",
        "wrong-aud",
        "wrong-iss",
        "no-jti",
        "no-client",
        "no-sub",
        "tenants-str",
        "scope-list",
    ],
)
async def test_bad_claims_are_invalid_token(
    verifier: TokenVerifier, mint: MintToken, overrides: dict[str, Any], message: str
) -> None:
    refused = await _refused(verifier, f"Bearer {mint(**overrides)}")
    assert refused.error == "invalid_token"
    assert message in refused.description


def _principal(jti: str, exp: int) -> Principal:
    """The principal of `mint`'s default claims."""
    return Principal(
        client_id="client-a",
        scopes=frozenset({"orch:read", "orch:quota"}),
        tenant="acme",
        tenants=frozenset(),
        permissions=frozenset({"access orchestra api"}),
        claims=ControlClaims(quota_reason="capacity review"),
        jti=jti,
        expires_at=exp,
        dpop_bound=False,
    )


async def test_expiry_has_a_small_leeway(
    verifier: TokenVerifier, mint: MintToken, wall: ManualClock
) -> None:
    exp = int(wall()) + 60
    token = mint(exp=exp, jti="jti-leeway")
    wall.advance(60 + LEEWAY_SECONDS - 1)  # the last second of the leeway: accepted
    principal = await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    assert principal == _principal("jti-leeway", exp)
    wall.advance(1)  # RFC 7519 §4.1.4: not "on or after" exp (plus the leeway); nor from cache
    refused = await _refused(verifier, f"Bearer {token}")
    assert (refused.error, refused.description) == ("invalid_token", "the access token expired")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"typ": "JWT"}, "at+jwt"),
        ({"typ": None}, "at+jwt"),
        ({"kid": "unknown-kid"}, "unknown signing key"),
    ],
    ids=["typ-jwt", "no-typ", "unknown-kid"],
)
async def test_bad_headers_are_invalid_token(
    verifier: TokenVerifier, keys: KeyRing, mint: MintToken, header: dict[str, Any], message: str
) -> None:
    signing = await keys.signing_key()
    protected = {"alg": "ES256", "typ": "at+jwt", "kid": signing.kid, **header}
    protected = {k: v for k, v in protected.items() if v is not None}
    token = jwt.encode(protected, claims(), signing, default_type=None)
    refused = await _refused(verifier, f"Bearer {token}")
    assert refused.error == "invalid_token"
    assert message in refused.description


async def test_application_at_jwt_typ_is_accepted(
    verifier: TokenVerifier, mint: MintToken, wall: ManualClock
) -> None:
    exp = int(wall()) + 3600
    token = mint(header={"typ": "application/at+jwt"}, jti="jti-long-typ", exp=exp)
    principal = await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    assert principal == _principal("jti-long-typ", exp)


async def test_wrong_signature_is_refused(
    verifier: TokenVerifier, keys: KeyRing, mint: MintToken
) -> None:
    signing = await keys.signing_key()
    forged = mint(key=ECKey.generate_key("P-256"), header={"kid": signing.kid})
    assert (await _refused(verifier, f"Bearer {forged}")).description == "bad signature"
    good = mint()
    head, _payload, signature = good.split(".")
    tampered = f"{head}.{_b64({**claims(), 'scope': 'orch:admin'})}.{signature}"
    assert (await _refused(verifier, f"Bearer {tampered}")).description == "bad signature"


async def test_alg_none_is_refused(verifier: TokenVerifier, keys: KeyRing) -> None:
    signing = await keys.signing_key()
    header = {"alg": "none", "typ": "at+jwt", "kid": signing.kid}
    token = f"{_b64(header)}.{_b64(claims())}."
    refused = await _refused(verifier, f"Bearer {token}")
    assert "alg" in refused.description


async def test_hs256_signed_with_the_public_key_is_refused(
    verifier: TokenVerifier, keys: KeyRing
) -> None:
    """The classic algorithm confusion: the public JWK bytes used as an HMAC secret."""
    signing = await keys.signing_key()
    public_bytes = json.dumps(signing.as_dict(private=False)).encode()
    secret = OctKey.import_key(public_bytes)
    token = jwt.encode({"alg": "HS256", "typ": "at+jwt", "kid": signing.kid}, claims(), secret)
    refused = await _refused(verifier, f"Bearer {token}")
    assert refused.error == "invalid_token" and "alg" in refused.description


async def test_previous_key_stays_valid_after_rotation_retired_does_not(
    verifier: TokenVerifier, keys: KeyRing, mint: MintToken
) -> None:
    before = mint()
    old_kid = (await keys.signing_key()).kid
    new_kid = await keys.rotate()
    assert new_kid != old_kid
    assert [k["kid"] for k in await keys.jwks()] == [new_kid, old_kid]
    await verifier.verify(f"Bearer {before}", None, http_method="GET", http_url=URL)
    await keys.rotate()  # old key retired now
    assert old_kid not in [k["kid"] for k in await keys.jwks()]
    refused = await _refused(verifier, f"Bearer {before}")
    assert refused.description == "unknown signing key"


async def test_another_replicas_rotation_is_picked_up_on_unknown_kid(
    db: Database, keys: KeyRing, urls: PublicUrls
) -> None:
    replica = KeyRing(db, unknown_kid_interval=0.0)
    await replica.load()
    await keys.rotate()  # "the other replica" rotates
    signing = await keys.signing_key()
    assert replica.get(str(signing.kid)) is None
    assert await replica.resolve(str(signing.kid)) is not None


async def test_unknown_kid_reloads_are_rate_limited(db: Database) -> None:
    now = [100.0]
    ring = KeyRing(db, unknown_kid_interval=1.0, clock=lambda: now[0])
    await ring.load()
    other = KeyRing(db)
    new_kid = await other.rotate()
    assert await ring.resolve(new_kid) is None  # loaded this instant: no reload yet
    now[0] += 1.0
    assert await ring.resolve(new_kid) is not None


async def test_revocation_reaches_another_replica_within_one_second(
    db: Database, keys: KeyRing, urls: PublicUrls, mint: MintToken
) -> None:
    elapsed = ManualClock(0.0)  # the replica's monotonic clock
    replica = TokenVerifier(
        keys=keys, revocations=RevocationList(db, clock=elapsed), dpop=DpopVerifier(), urls=urls
    )
    token = mint(jti="jti-replica")
    await replica.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    await revoke_token(
        db, jti="jti-replica", client_id="client-a", expires_at=int(time.time()) + 3600
    )
    elapsed.advance(MAX_AGE_SECONDS - 0.01)  # the list it loaded is still fresh
    still = await replica.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    assert still.jti == "jti-replica"
    elapsed.advance(0.01)  # stale: the next check reloads it and sees the revocation
    refused = await _refused(replica, f"Bearer {token}")
    assert (refused.error, refused.description) == ("invalid_token", "the access token was revoked")
    assert MAX_AGE_SECONDS == 0.5  # the documented bound: every replica within a second


async def test_disabled_client_tokens_are_refused(
    db: Database, verifier: TokenVerifier, revocations: RevocationList, mint: MintToken
) -> None:
    async with db.transaction() as session:
        session.add(TenantRow(tenant_id="acme", display_name="Acme"))
    created = await clients.create_client(db, scopes=["orch:read"], tenant="acme")
    client_id = created.client.client_id
    token = mint(client_id=client_id, sub=client_id)
    await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    await clients.disable_client(db, client_id=client_id)
    revocations.invalidate()
    refused = await _refused(verifier, f"Bearer {token}")
    assert refused.description == "the access token was revoked"


async def test_dpop_bound_token_needs_the_dpop_scheme_and_a_matching_proof(
    verifier: TokenVerifier, mint: MintToken
) -> None:
    key = client_key()
    token = mint(cnf={"jkt": key.thumbprint()})
    as_bearer = await _refused(verifier, f"Bearer {token}")
    assert as_bearer.error == "invalid_token" and "DPoP" in as_bearer.description

    proof = make_proof(key, htm="GET", htu=URL, access_token=token)
    principal = await verifier.verify(
        f"DPoP {token}", proof, http_method="GET", http_url=URL + "?limit=5"
    )
    assert principal.dpop_bound

    missing = await _refused(verifier, f"DPoP {token}")
    assert missing.error == "invalid_dpop_proof"
    assert missing.challenge.startswith('DPoP realm="orchestrator", algs="ES256')

    other = make_proof(client_key(), htm="GET", htu=URL, access_token=token)
    wrong_key = await _refused(verifier, f"DPoP {token}", proof=other)
    assert wrong_key.description == "the proof key is not the token's key"

    no_ath = make_proof(key, htm="GET", htu=URL)
    assert "ath" in (await _refused(verifier, f"DPoP {token}", proof=no_ath)).description

    wrong_method = make_proof(key, htm="POST", htu=URL, access_token=token)
    refused = await _refused(verifier, f"DPoP {token}", proof=wrong_method)
    assert "htm" in refused.description


async def test_dpop_scheme_with_an_unbound_token_is_refused(
    verifier: TokenVerifier, mint: MintToken
) -> None:
    token = mint()
    proof = make_proof(client_key(), htm="GET", htu=URL, access_token=token)
    refused = await _refused(verifier, f"DPoP {token}", proof=proof)
    assert (refused.error, refused.description) == ("invalid_token", "the token is not DPoP-bound")


def test_rejections_become_domain_errors_with_the_challenge() -> None:
    token_error = TokenRejected("invalid_token", 'bad "quoted" \\ thing')
    domain = token_error.to_domain_error()
    assert isinstance(domain, Unauthenticated)
    assert domain.reason == "invalid_token"
    assert domain.challenge == (
        'Bearer realm="orchestrator", error="invalid_token", '
        "error_description=\"bad 'quoted' / thing\""
    )
    request_error = TokenRejected("invalid_request", "malformed").to_domain_error()
    assert isinstance(request_error, InvalidArgument)
    assert request_error.reason == "invalid_request" and request_error.challenge


# --- the verified-token cache -------------------------------------------------------


async def test_a_remembered_token_is_refused_once_it_expires(
    keys: KeyRing, revocations: RevocationList, urls: PublicUrls, mint: MintToken
) -> None:
    now = [time.time()]
    verifier = TokenVerifier(
        keys=keys, revocations=revocations, dpop=DpopVerifier(), urls=urls, clock=lambda: now[0]
    )
    token = mint(exp=int(now[0]) + 60)
    first = await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    again = await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    assert again is first  # served from the cache, principal and all
    now[0] += 60 + 10 + 1  # past exp plus the leeway
    refused = await _refused(verifier, f"Bearer {token}")
    assert (refused.error, refused.description) == ("invalid_token", "the access token expired")


async def test_a_remembered_token_is_refused_once_its_key_is_retired(
    db: Database, keys: KeyRing, verifier: TokenVerifier, mint: MintToken
) -> None:
    token = mint()
    await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    await keys.rotate()  # the token's key becomes "previous": still published
    await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    await keys.rotate()  # ... and now retired
    refused = await _refused(verifier, f"Bearer {token}")
    assert (refused.error, refused.description) == ("invalid_token", "unknown signing key")


async def test_a_remembered_token_is_still_checked_for_revocation(
    db: Database, verifier: TokenVerifier, revocations: RevocationList, mint: MintToken
) -> None:
    token = mint(jti="jti-cached-then-revoked")
    await verifier.verify(f"Bearer {token}", None, http_method="GET", http_url=URL)
    revocations.add("jti-cached-then-revoked")
    refused = await _refused(verifier, f"Bearer {token}")
    assert (refused.error, refused.description) == ("invalid_token", "the access token was revoked")


def test_the_cache_can_be_used_from_threads(
    verifier: TokenVerifier, mint: MintToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Introspection and revocation decode tokens in worker threads
    (`asyncio.to_thread`) while the event loop verifies: evicting and replacing
    entries concurrently must never raise (KeyError or "dictionary changed size")."""
    monkeypatch.setattr(verifier_module, "VERIFIED_CACHE_SIZE", 4)  # evict all the time
    tokens = [mint(jti=f"threaded-{i}") for i in range(12)]
    errors: list[BaseException] = []
    stop = time.monotonic() + 2

    def decode_round_robin(offset: int) -> None:
        i = offset
        while time.monotonic() < stop and not errors:
            try:
                assert verifier.decode(tokens[i % len(tokens)])["jti"] == f"threaded-{i % 12}"
            except BaseException as exc:
                errors.append(exc)
            i += 1

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=decode_round_robin, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    assert errors == []


@pytest.mark.parametrize("cnf", ["jkt-as-string", {"jkt": 5}, {}, []])
async def test_a_malformed_confirmation_is_refused_not_ignored(
    verifier: TokenVerifier, mint: MintToken, cnf: object
) -> None:
    refused = await _refused(verifier, f"Bearer {mint(cnf=cnf)}")
    assert (refused.error, refused.description) == ("invalid_token", "malformed claims")
