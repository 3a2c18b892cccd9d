"""Every authenticated method, over gRPC and every HTTP binding, refuses every bad
credential the same way (issue 4 §8, "Bad input"; DESIGN.md §4.1, §4.5, §5).

The tests are generated at collection time from `server.app.SERVICES` and the proto
policies (`tests/integration/security/surface.py`): one test per (case, method), each calling
the method directly over gRPC and through each of its HTTP bindings. Every call
must give exactly the case's status, ErrorInfo reason, message and challenge;
REST's status is the one the gateway's table gives the gRPC code, so gRPC and REST
cannot drift apart. The positive controls prove the same calls with a correct
credential get past authentication, so no refusal passes vacuously.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from google.rpc import code_pb2
from joserfc.jwk import ECKey

from orchestrator.api.v1 import options_pb2
from server.identity.dpop import DPOP_ALGORITHMS
from server.identity.resource_server.verifier import LEEWAY_SECONDS, MAX_TOKEN_BYTES
from server.identity.revocation import MAX_AGE_SECONDS
from server.interceptors.tenancy import LEGACY_TENANT_HEADER, TENANT_HEADER
from server.storage.tables import AuditEntryRow, SourceRow, table_of
from tests.integration.security import forge
from tests.integration.security.conftest import DpopToken, Headers, Security, other_scope
from tests.integration.security.surface import (
    ALL_POLICIES,
    SURFACE,
    Outcome,
    SecuredMethod,
    Target,
    call,
    expected_http_status,
    secured,
)
from tests.support.clock import TestClock
from tests.unit.identity.proofs import client_key, make_proof

REALM = 'realm="orchestrator"'
DPOP_CHALLENGE = f'DPoP {REALM}, algs="{" ".join(DPOP_ALGORITHMS)}"'
AUTHORIZATION = "Authorization"
INVALID_REQUEST_CHALLENGE = f'Bearer {REALM}, error="invalid_request"'


@dataclass(frozen=True, slots=True)
class Expected:
    code: int
    reason: str
    message: str
    challenge: str | None
    violations: tuple[str, ...] = ()  # BadRequest field names

    @property
    def http_status(self) -> int:
        return {
            code_pb2.UNAUTHENTICATED: 401,
            code_pb2.INVALID_ARGUMENT: 400,
            code_pb2.PERMISSION_DENIED: 403,
        }[self.code]


CREDENTIALS_REQUIRED = f"Bearer {REALM}, {DPOP_CHALLENGE}"
UNSUPPORTED_SCHEME = Expected(
    code_pb2.UNAUTHENTICATED,
    "UNAUTHENTICATED",
    "the Authorization scheme must be Bearer or DPoP",
    CREDENTIALS_REQUIRED,
)


def refused(error: str, description: str, *, dpop: bool = False) -> Expected:
    """An RFC 6750 §3.1 refusal: 400 for invalid_request, else 401, with its challenge."""
    own = DPOP_CHALLENGE if dpop else f"Bearer {REALM}"
    code = code_pb2.INVALID_ARGUMENT if error == "invalid_request" else code_pb2.UNAUTHENTICATED
    challenge = f'{own}, error="{error}", error_description="{description}"'
    return Expected(code, error, description, challenge)


Build = Callable[[Security, SecuredMethod, Target], Awaitable[Headers]]
Expect = Callable[[Security, SecuredMethod], Expected]


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    build: Build  # the headers of one call (called once per target)
    expect: Expect
    applies: Callable[[SecuredMethod], bool] = lambda method: True
    transports: tuple[str, ...] = ("grpc", "rest")


def _bearer(token: str) -> tuple[str, str]:
    return (AUTHORIZATION, f"Bearer {token}")


def _with(security: Security, method: SecuredMethod, *credentials: tuple[str, str]) -> Headers:
    return [*security.context_headers(method), *credentials]


# --- credentials, one way wrong each ------------------------------------------------------


async def _no_token(security: Security, method: SecuredMethod, target: Target) -> Headers:
    return _with(security, method)


async def _forged(
    security: Security, method: SecuredMethod, key: ECKey | None = None, **changes: object
) -> str:
    claims = forge.fresh(await security.base_claims(method), **changes)
    return forge.sign(claims, key or await security.signing_key())


async def _expired(security: Security, method: SecuredMethod, target: Target) -> Headers:
    now = int(time.time())
    token = await _forged(security, method, iat=now - 7200, exp=now - 3600)
    return _with(security, method, _bearer(token))


async def _wrong_signature(security: Security, method: SecuredMethod, target: Target) -> Headers:
    impostor = forge.impostor_key(kid=(await security.signing_key()).kid)
    return _with(security, method, _bearer(await _forged(security, method, impostor)))


async def _unknown_kid(security: Security, method: SecuredMethod, target: Target) -> Headers:
    impostor = forge.impostor_key()
    return _with(security, method, _bearer(await _forged(security, method, impostor)))


async def _alg_none(security: Security, method: SecuredMethod, target: Target) -> Headers:
    claims = forge.fresh(await security.base_claims(method))
    token = forge.unsigned(claims, (await security.signing_key()).kid)
    return _with(security, method, _bearer(token))


async def _hmac_public_key(security: Security, method: SecuredMethod, target: Target) -> Headers:
    claims = forge.fresh(await security.base_claims(method))
    token = forge.hmac_with_public_key(claims, await security.signing_key())
    return _with(security, method, _bearer(token))


async def _wrong_typ(security: Security, method: SecuredMethod, target: Target) -> Headers:
    claims = forge.fresh(await security.base_claims(method))
    token = forge.sign(claims, await security.signing_key(), typ="JWT")
    return _with(security, method, _bearer(token))


async def _wrong_audience(security: Security, method: SecuredMethod, target: Target) -> Headers:
    token = await _forged(security, method, aud="https://elsewhere.example")
    return _with(security, method, _bearer(token))


async def _wrong_issuer(security: Security, method: SecuredMethod, target: Target) -> Headers:
    token = await _forged(security, method, iss="https://impostor.example")
    return _with(security, method, _bearer(token))


async def _revoked(security: Security, method: SecuredMethod, target: Target) -> Headers:
    token, _ = await security.revoked_token(method)
    return _with(security, method, _bearer(token))


async def _client_disabled(security: Security, method: SecuredMethod, target: Target) -> Headers:
    token, _ = await security.disabled_client_token(method)
    return _with(security, method, _bearer(token))


async def _not_yet_valid(security: Security, method: SecuredMethod, target: Target) -> Headers:
    token = await _forged(security, method, nbf=int(time.time()) + 3600)
    return _with(security, method, _bearer(token))


async def _issued_in_future(security: Security, method: SecuredMethod, target: Target) -> Headers:
    now = int(time.time())
    token = await _forged(security, method, iat=now + 3600, exp=now + 7200)
    return _with(security, method, _bearer(token))


async def _without_exp(security: Security, method: SecuredMethod, target: Target) -> Headers:
    return _with(security, method, _bearer(await _forged(security, method, exp=None)))


async def _malformed_scope(security: Security, method: SecuredMethod, target: Target) -> Headers:
    token = await _forged(security, method, scope=list(method.policy.scopes))
    return _with(security, method, _bearer(token))


async def _no_scheme(security: Security, method: SecuredMethod, target: Target) -> Headers:
    return _with(security, method, (AUTHORIZATION, await security.method_token(method)))


async def _basic_scheme(security: Security, method: SecuredMethod, target: Target) -> Headers:
    return _with(security, method, (AUTHORIZATION, "Basic Y2xpZW50OnNlY3JldA=="))


async def _garbage_token68(security: Security, method: SecuredMethod, target: Target) -> Headers:
    return _with(security, method, (AUTHORIZATION, "Bearer not a token!"))


async def _not_a_jwt(security: Security, method: SecuredMethod, target: Target) -> Headers:
    return _with(security, method, _bearer("bm90LWEtand0"))


async def _oversized(security: Security, method: SecuredMethod, target: Target) -> Headers:
    return _with(security, method, _bearer("A" * (MAX_TOKEN_BYTES + 1)))


async def _far_oversized(security: Security, method: SecuredMethod, target: Target) -> Headers:
    return _with(security, method, _bearer("A" * 17_000))


async def _two_authorizations(security: Security, method: SecuredMethod, target: Target) -> Headers:
    token = await security.method_token(method)
    return _with(security, method, _bearer(token), _bearer(token))


async def _dpop_as_bearer(security: Security, method: SecuredMethod, target: Target) -> Headers:
    bound = await security.dpop_token(method)
    return _with(security, method, _bearer(bound.token))


async def _dpop_without_proof(security: Security, method: SecuredMethod, target: Target) -> Headers:
    bound = await security.dpop_token(method)
    return _with(security, method, (AUTHORIZATION, f"DPoP {bound.token}"))


async def _dpop_garbage_proof(security: Security, method: SecuredMethod, target: Target) -> Headers:
    bound = await security.dpop_token(method)
    return _with(security, method, (AUTHORIZATION, f"DPoP {bound.token}"), ("DPoP", "garbage"))


async def _dpop_proof_for_other_url(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    bound = await security.dpop_token(method)
    proof = security.proof(bound, target, path="/elsewhere")
    return _with(security, method, (AUTHORIZATION, f"DPoP {bound.token}"), ("DPoP", proof))


def _dpop(bound: DpopToken, proof: str) -> list[tuple[str, str]]:
    return [(AUTHORIZATION, f"DPoP {bound.token}"), ("DPoP", proof)]


async def _dpop_proof_wrong_key(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    bound = await security.dpop_token(method)
    stranger = DpopToken(bound.token, client_key())
    return _with(security, method, *_dpop(bound, security.proof(stranger, target)))


async def _dpop_proof_for_other_token(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    bound = await security.dpop_token(method)
    other = DpopToken(await security.method_token(method), bound.key)
    return _with(security, method, *_dpop(bound, security.proof(other, target)))


async def _dpop_proof_wrong_method(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    bound = await security.dpop_token(method)
    wrong = "PATCH" if target.http_method != "PATCH" else "PUT"
    url = security.public_url + target.path
    proof = make_proof(bound.key, htm=wrong, htu=url, access_token=bound.token)
    return _with(security, method, *_dpop(bound, proof))


async def _dpop_stale_proof(security: Security, method: SecuredMethod, target: Target) -> Headers:
    bound = await security.dpop_token(method)
    url = security.public_url + target.path
    proof = make_proof(
        bound.key,
        htm=target.http_method,
        htu=url,
        access_token=bound.token,
        iat=int(time.time()) - 3600,
    )
    return _with(security, method, *_dpop(bound, proof))


async def _dpop_two_proofs(security: Security, method: SecuredMethod, target: Target) -> Headers:
    bound = await security.dpop_token(method)
    return _with(
        security,
        method,
        *_dpop(bound, security.proof(bound, target)),
        ("DPoP", security.proof(bound, target)),
    )


async def _dpop_replayed_proof(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    """A proof accepted once is refused the second time (RFC 9449 §11.1)."""
    bound = await security.dpop_token(method)
    headers = _with(security, method, *_dpop(bound, security.proof(bound, target)))
    first = await call(target, headers, channel=security.channel, http=security.http)
    assert not first.refused_by_authentication, (target.label, first)
    return headers


async def _dpop_forwarded_spoof(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    """A proof for another URL, with headers claiming the request went there: the URL a
    proof must name is the gateway's (or gRPC's) own, never a client's say-so."""
    bound = await security.dpop_token(method)
    proof = security.proof(bound, target, path="/elsewhere")
    return _with(
        security,
        method,
        *_dpop(bound, proof),
        ("X-Forwarded-Uri", "/elsewhere"),
        ("X-Forwarded-Host", "127.0.0.1:5099"),
        ("Grpc-Metadata-X-Forwarded-Uri", "/elsewhere"),
    )


async def _bearer_token_as_dpop(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    token = await security.method_token(method)
    return _with(security, method, (AUTHORIZATION, f"DPoP {token}"))


async def _missing_scope(security: Security, method: SecuredMethod, target: Target) -> Headers:
    other = other_scope(method)
    assert other is not None
    token = await security.token((other,), permissions=method.policy.permissions)
    return _with(security, method, _bearer(token))


async def _other_tenant(security: Security, method: SecuredMethod, target: Target) -> Headers:
    token = await security.method_token(method)
    return [*security.context_headers(method, tenant=security.tenant_b), _bearer(token)]


async def _other_tenant_legacy(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    token = await security.method_token(method)
    headers = [
        (LEGACY_TENANT_HEADER if name == TENANT_HEADER else name, value)
        for name, value in security.context_headers(method, tenant=security.tenant_b)
    ]
    return [*headers, _bearer(token)]


async def _operator_without_tenant(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    token = await security.operator_token(method)
    headers = [h for h in security.context_headers(method) if h[0] != TENANT_HEADER]
    return [*headers, _bearer(token)]


async def _operator_foreign_tenant(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    token = await security.operator_token(method)
    return [*security.context_headers(method, tenant=security.tenant_b), _bearer(token)]


def _insufficient_scope(security: Security, method: SecuredMethod) -> Expected:
    needed = " ".join(method.policy.scopes)
    return Expected(
        code_pb2.PERMISSION_DENIED,
        "insufficient_scope",
        f"the access token lacks the scope {', '.join(method.policy.scopes)}",
        f'Bearer {REALM}, error="insufficient_scope", '
        f'error_description="the access token lacks a required scope", scope="{needed}"',
    )


def _forbidden_by(header: str) -> Expect:
    def expected(security: Security, method: SecuredMethod) -> Expected:
        return Expected(
            code_pb2.PERMISSION_DENIED,
            "TENANT_FORBIDDEN",
            f"{header}: this access token may not act for tenant {security.tenant_b!r}",
            None,
        )

    return expected


_tenant_forbidden = _forbidden_by(TENANT_HEADER)


def _constant(expected: Expected) -> Expect:
    return lambda security, method: expected


def _tenant_header_mode(method: SecuredMethod) -> bool:
    return method.policy.tenant_mode == options_pb2.TENANT_MODE_HEADER


INVALID_TOKEN = "invalid_token"
CASES: tuple[Case, ...] = (
    Case(
        "no-token",
        _no_token,
        _constant(
            Expected(
                code_pb2.UNAUTHENTICATED,
                "UNAUTHENTICATED",
                "an access token is required",
                f"Bearer {REALM}, {DPOP_CHALLENGE}",
            )
        ),
    ),
    Case("expired", _expired, _constant(refused(INVALID_TOKEN, "the access token expired"))),
    Case("wrong-signature", _wrong_signature, _constant(refused(INVALID_TOKEN, "bad signature"))),
    Case("alg-none", _alg_none, _constant(refused(INVALID_TOKEN, "alg must be ES256"))),
    Case(
        "hs256-with-public-key",
        _hmac_public_key,
        _constant(refused(INVALID_TOKEN, "alg must be ES256")),
    ),
    Case("wrong-typ", _wrong_typ, _constant(refused(INVALID_TOKEN, "the token is not an at+jwt"))),
    Case(
        "wrong-audience",
        _wrong_audience,
        _constant(refused(INVALID_TOKEN, "invalid or missing claim aud")),
    ),
    Case(
        "wrong-issuer",
        _wrong_issuer,
        _constant(refused(INVALID_TOKEN, "invalid or missing claim iss")),
    ),
    Case("unknown-kid", _unknown_kid, _constant(refused(INVALID_TOKEN, "unknown signing key"))),
    Case("revoked", _revoked, _constant(refused(INVALID_TOKEN, "the access token was revoked"))),
    Case(
        "client-disabled",
        _client_disabled,
        _constant(refused(INVALID_TOKEN, "the access token was revoked")),
    ),
    Case(
        "not-yet-valid",
        _not_yet_valid,
        _constant(refused(INVALID_TOKEN, "invalid or missing claim nbf")),
    ),
    Case(
        "issued-in-future",
        _issued_in_future,
        _constant(refused(INVALID_TOKEN, "invalid or missing claim iat")),
    ),
    Case(
        "without-exp",
        _without_exp,
        _constant(refused(INVALID_TOKEN, "invalid or missing claim exp")),
    ),
    Case(
        "malformed-scope", _malformed_scope, _constant(refused(INVALID_TOKEN, "malformed claims"))
    ),
    # Another scheme, or a bare token, is no access token at all (RFC 6750 §3.1): 401
    # with the challenges of the schemes we accept, no error code (issue 8 item 13).
    Case("no-scheme", _no_scheme, _constant(UNSUPPORTED_SCHEME)),
    Case("basic-scheme", _basic_scheme, _constant(UNSUPPORTED_SCHEME)),
    Case(
        "garbage-token68",
        _garbage_token68,
        _constant(refused("invalid_request", "the Authorization value is malformed")),
    ),
    Case(
        "not-a-jwt",
        _not_a_jwt,
        _constant(refused(INVALID_TOKEN, "the access token is not a JWT")),
    ),
    # One byte over the verifier's limit (the server raises gRPC core's own metadata
    # limits so that ours decide, over both transports alike).
    Case(
        "oversized-token",
        _oversized,
        _constant(refused("invalid_request", "the access token exceeds 8 KiB")),
    ),
    Case(
        "oversized-token-17k",
        _far_oversized,
        _constant(refused("invalid_request", "the access token exceeds 8 KiB")),
    ),
    Case(
        "two-authorization-headers",
        _two_authorizations,
        _constant(refused("invalid_request", "send one Authorization header")),
    ),
    Case(
        "dpop-token-as-bearer",
        _dpop_as_bearer,
        _constant(refused(INVALID_TOKEN, "a DPoP-bound token must be sent with the DPoP scheme")),
    ),
    Case(
        "dpop-without-proof",
        _dpop_without_proof,
        _constant(refused("invalid_dpop_proof", "the DPoP header is required", dpop=True)),
    ),
    Case(
        "dpop-garbage-proof",
        _dpop_garbage_proof,
        _constant(refused("invalid_dpop_proof", "proof is not a well-formed JWS", dpop=True)),
    ),
    Case(
        "dpop-proof-for-other-url",
        _dpop_proof_for_other_url,
        _constant(refused("invalid_dpop_proof", "htu does not match the request URL", dpop=True)),
    ),
    Case(
        "dpop-proof-wrong-key",
        _dpop_proof_wrong_key,
        _constant(refused("invalid_dpop_proof", "the proof key is not the token's key", dpop=True)),
    ),
    Case(
        "dpop-proof-for-other-token",
        _dpop_proof_for_other_token,
        _constant(refused("invalid_dpop_proof", "ath does not match the access token", dpop=True)),
    ),
    Case(
        "dpop-proof-wrong-method",
        _dpop_proof_wrong_method,
        _constant(
            refused("invalid_dpop_proof", "htm does not match the request method", dpop=True)
        ),
    ),
    Case(
        "dpop-stale-proof",
        _dpop_stale_proof,
        _constant(refused("invalid_dpop_proof", "iat is outside the acceptable window", dpop=True)),
    ),
    Case(
        "dpop-two-proofs",
        _dpop_two_proofs,
        _constant(refused("invalid_dpop_proof", "send exactly one DPoP header", dpop=True)),
    ),
    Case(
        "dpop-replayed-proof",
        _dpop_replayed_proof,
        _constant(refused("invalid_dpop_proof", "proof was already used (jti replay)", dpop=True)),
    ),
    Case(
        "dpop-forwarded-headers-spoof",
        _dpop_forwarded_spoof,
        _constant(refused("invalid_dpop_proof", "htu does not match the request URL", dpop=True)),
    ),
    Case(
        "bearer-token-as-dpop",
        _bearer_token_as_dpop,
        _constant(refused(INVALID_TOKEN, "the token is not DPoP-bound", dpop=True)),
    ),
    Case(
        "missing-scope",
        _missing_scope,
        _insufficient_scope,
        applies=lambda method: other_scope(method) is not None and bool(method.policy.scopes),
    ),
    Case("other-tenant", _other_tenant, _tenant_forbidden, applies=_tenant_header_mode),
    Case(
        "other-tenant-legacy-header",
        _other_tenant_legacy,
        _forbidden_by("X-StellaOps-Tenant"),
        applies=_tenant_header_mode,
    ),
    Case(
        "operator-without-tenant",
        _operator_without_tenant,
        _constant(
            Expected(
                code_pb2.INVALID_ARGUMENT,
                "TENANT_REQUIRED",
                f"{TENANT_HEADER}: header is required for this operation",
                None,
                violations=(TENANT_HEADER,),
            )
        ),
        applies=_tenant_header_mode,
    ),
    Case(
        "operator-foreign-tenant",
        _operator_foreign_tenant,
        _tenant_forbidden,
        applies=_tenant_header_mode,
    ),
)

# Known server/gateway bugs, as (case, full method or "*") -> reason.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def _marks(case: Case, method: SecuredMethod) -> list[pytest.MarkDecorator]:
    reason = KNOWN_BUGS.get((case.name, method.full_method)) or KNOWN_BUGS.get((case.name, "*"))
    return [pytest.mark.xfail(strict=True, reason=reason)] if reason else []


def _parameters() -> list[object]:
    return [
        pytest.param(case, method, id=f"{case.name}-{method.name}", marks=_marks(case, method))
        for case in CASES
        for method in SURFACE
        if case.applies(method)
    ]


def assert_outcome(outcome: Outcome, target: Target, expected: Expected) -> None:
    where = f"{target.label}: {outcome}"
    assert outcome.code == expected.code, where
    if outcome.transport == "rest":
        assert outcome.http_status == expected.http_status, where
        assert outcome.http_status == expected_http_status(target.binding, outcome.code), where
        assert isinstance(outcome.body, dict) and set(outcome.body) == {
            "error",
            "code",
            "details",
        }, where
    assert outcome.reason == expected.reason, where
    assert outcome.message == expected.message, where
    assert outcome.challenge == expected.challenge, where
    assert outcome.violations == expected.violations, where


async def _refusal_within_deadline(
    security: Security, case: Case, method: SecuredMethod, clock: TestClock
) -> None:
    """A revoked token (RFC 7009) is refused at once by the process that revoked it; a
    client disabled from another process is refused once the revocation list is older
    than MAX_AGE_SECONDS (the server's monotonic clock, by which the list's age is
    judged, is moved that far, not slept through; the wall clock stays put)."""
    if case.name == "revoked":
        await security.revoked_token(method)
    else:
        await security.disabled_client_token(method)
        clock.advance_elapsed(MAX_AGE_SECONDS)


@pytest.mark.parametrize(("case", "method"), _parameters())
async def test_bad_credentials_are_refused_alike_over_grpc_and_rest(
    security: Security, case: Case, method: SecuredMethod, clock: TestClock
) -> None:
    if case.name in ("revoked", "client-disabled"):
        await _refusal_within_deadline(security, case, method, clock)
    expected = case.expect(security, method)
    failures = []
    for target in method.targets:
        if target.transport not in case.transports:
            continue
        headers = await case.build(security, method, target)
        outcome = await call(target, headers, channel=security.channel, http=security.http)
        try:
            assert_outcome(outcome, target, expected)
        except AssertionError as failure:
            failures.append(str(failure))
    assert not failures, "\n".join(failures)


# --- positive controls ------------------------------------------------------------------------


def _consistent(outcomes: list[tuple[Target, Outcome]]) -> None:
    """Past authentication, every target answers alike: one code, one reason, and each
    REST status the one the gateway's table gives that code (2xx for OK)."""
    codes = {(outcome.code, outcome.reason) for _, outcome in outcomes}
    assert len(codes) == 1, outcomes
    for target, outcome in outcomes:
        assert not outcome.refused_by_authentication, (target.label, outcome)
        if outcome.transport == "rest" and outcome.code == code_pb2.OK:
            assert outcome.http_status is not None and 200 <= outcome.http_status < 300
        elif outcome.transport == "rest":
            assert outcome.http_status == expected_http_status(target.binding, outcome.code)


Control = Callable[[Security, SecuredMethod, Target], Awaitable[Headers]]


async def _bearer_control(security: Security, method: SecuredMethod, target: Target) -> Headers:
    return _with(security, method, _bearer(await security.method_token(method)))


async def _forged_control(security: Security, method: SecuredMethod, target: Target) -> Headers:
    """Forged from the same claims with the server's key and nothing wrong: accepted,
    so each forged refusal above is about its one broken property."""
    return _with(security, method, _bearer(await _forged(security, method)))


async def _dpop_control(security: Security, method: SecuredMethod, target: Target) -> Headers:
    bound = await security.dpop_token(method)
    return _with(
        security,
        method,
        (AUTHORIZATION, f"DPoP {bound.token}"),
        ("DPoP", security.proof(bound, target)),
    )


async def _legacy_header_control(
    security: Security, method: SecuredMethod, target: Target
) -> Headers:
    token = await security.method_token(method)
    headers = [
        (LEGACY_TENANT_HEADER if name == TENANT_HEADER else name, value)
        for name, value in security.context_headers(method)
    ]
    return [*headers, _bearer(token)]


async def _operator_control(security: Security, method: SecuredMethod, target: Target) -> Headers:
    return _with(security, method, _bearer(await security.operator_token(method)))


CONTROLS: dict[str, tuple[Control, Callable[[SecuredMethod], bool]]] = {
    "bearer": (_bearer_control, lambda method: True),
    "forged-with-server-key": (_forged_control, lambda method: True),
    "dpop": (_dpop_control, lambda method: True),
    "legacy-tenant-header": (_legacy_header_control, _tenant_header_mode),
    "operator": (_operator_control, _tenant_header_mode),
}


@pytest.mark.parametrize(
    ("control", "method"),
    [
        pytest.param(name, method, id=f"{name}-{method.name}")
        for name, (_, applies) in CONTROLS.items()
        for method in SURFACE
        if applies(method)
    ],
)
async def test_correct_credentials_get_past_authentication(
    security: Security, control: str, method: SecuredMethod
) -> None:
    build, _ = CONTROLS[control]
    outcomes = []
    for target in method.targets:
        headers = await build(security, method, target)
        outcome = await call(target, headers, channel=security.channel, http=security.http)
        outcomes.append((target, outcome))
    _consistent(outcomes)


# --- the table itself -----------------------------------------------------------------------


def test_the_surface_is_every_authenticated_method_and_binding() -> None:
    """The generated tests cover what the protos declare: a method that is not in the
    table is public by its proto policy, and every secured method is reachable."""
    secured = {method.full_method for method in SURFACE}
    assert secured == {name for name, policy in ALL_POLICIES.items() if policy.authenticated}
    assert secured, "no authenticated method found: the generator is broken"
    for method in SURFACE:
        assert method.targets[0].transport == "grpc"
        assert all(target.transport == "rest" for target in method.targets[1:])


def test_public_methods_claim_no_scope_tenant_or_audit() -> None:
    """A method the proto makes public cannot also demand scopes, a tenant or a reason:
    those would be silently unenforced."""
    for name, policy in ALL_POLICIES.items():
        if not policy.authenticated:
            assert policy.scopes == (), name
            assert policy.permissions == (), name
            assert policy.tenant_mode == options_pb2.TENANT_MODE_NONE, name
            assert not policy.operator_audit, name


# --- refused mutations write nothing -------------------------------------------------------

SOURCES = "/orchestrator.jobengine.v1.SourcesService"
REGISTER = secured(f"{SOURCES}/RegisterSource")
PAUSE = secured(f"{SOURCES}/PauseSource")
NO_WRITE_CASES = [
    pytest.param(case, id=case.name, marks=_marks(case, REGISTER))
    for case in CASES
    # The replay case makes one accepted call first, by design.
    if case.name != "dpop-replayed-proof" and case.applies(REGISTER) and case.applies(PAUSE)
]


async def _audit_rows(security: Security) -> int:
    table = table_of(AuditEntryRow)
    tenants = (security.tenant_a, security.tenant_b)
    async with security.app.db.read() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c.tenant_id.in_(tenants))
        )
    return int(count or 0)


async def _source_rows(security: Security, names: list[str]) -> list[tuple[Any, ...]]:
    table = table_of(SourceRow)
    async with security.app.db.read() as conn:
        rows = await conn.execute(
            sa.select(table.c.name, table.c.paused, table.c.updated_at).where(
                table.c.name.in_(names)
            )
        )
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("case", NO_WRITE_CASES)
async def test_refused_mutations_write_nothing(security: Security, case: Case) -> None:
    """Bad input never causes a partial write: a refused RegisterSource with a valid body
    creates no source, a refused PauseSource of a real source leaves it as it was, and
    neither writes an audit entry (issue 4, "Bad input")."""
    owner = [
        (AUTHORIZATION, f"Bearer {await security.method_token(REGISTER)}"),
        *security.context_headers(REGISTER),
    ]
    existing = f"keep-{uuid.uuid4().hex[:8]}"
    created = await security.http.post(
        "/jobengine/sources", json={"name": existing, "sourceType": "webhook"}, headers=owner
    )
    assert created.status_code == 201, created.text
    source_id = created.json()["sourceId"]
    before = (await _audit_rows(security), await _source_rows(security, [existing]))

    names = []
    failures = []
    for method in (REGISTER, PAUSE):
        expected = case.expect(security, method)
        for target in method.targets:
            if target.transport not in case.transports:
                continue
            if method is REGISTER:
                name = f"never-{uuid.uuid4().hex[:8]}"
                names.append(name)
                grpc_fields = {"name": name, "source_type": "webhook"}
                rest_body = {"name": name, "sourceType": "webhook"}
                concrete = (
                    target.with_payload(fields=grpc_fields)
                    if target.binding is None
                    else target.with_payload(fields={}, body=rest_body)
                )
            else:
                concrete = target.with_payload(fields={"source_id": source_id}, body={})
            headers = await case.build(security, method, concrete)
            outcome = await call(concrete, headers, channel=security.channel, http=security.http)
            try:
                assert_outcome(outcome, concrete, expected)
            except AssertionError as failure:
                failures.append(str(failure))
    assert await _source_rows(security, names) == []
    assert (await _audit_rows(security), await _source_rows(security, [existing])) == before
    assert not failures, "\n".join(failures)


# --- header values gRPC metadata cannot carry ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status", "challenge"),
    [
        (b"Bearer\tabc", 401, CREDENTIALS_REQUIRED),
        (b"Bearer abc\xe9def", 400, INVALID_REQUEST_CHALLENGE),
    ],
    ids=["tab", "obs-text"],
)
async def test_uncarriable_authorization_is_refused_with_a_challenge(
    security: Security, value: bytes, status: int, challenge: str
) -> None:
    """REST only: a gRPC client cannot even send these bytes. The gateway carries them
    percent-encoded, and the resource server judges the value it gets: `Bearer%09abc`
    (RFC 9110 §11.4 separates scheme and token by SP only) is of no scheme we accept,
    401 with both challenges; `Bearer abc%E9def` is a malformed Bearer token, 400."""
    failures = []
    for method in SURFACE:
        headers = [(k.encode(), v.encode()) for k, v in security.context_headers(method)]
        headers.append((AUTHORIZATION.encode(), value))
        for target in method.targets[1:]:
            assert target.binding is not None
            takes_body = target.binding.body_all or target.binding.body is not None
            response = await security.http.request(
                target.binding.http_method,
                target.path,
                headers=headers,
                json={} if takes_body else None,
            )
            got = response.headers.get("www-authenticate", "")
            if (response.status_code, got.startswith(challenge)) != (status, True):
                failures.append(f"{target.label}: {response.status_code} {got!r}")
    assert not failures, "\n".join(failures)


# --- a token remembered as verified still expires ------------------------------------------


async def test_a_token_accepted_before_is_refused_once_expired(
    security: Security, clock: TestClock
) -> None:
    """The verifier remembers tokens that passed; time still runs out for them: a token
    inside the leeway gets exactly what a valid token gets over both transports, then,
    once the server's clock passes exp plus the leeway, is refused as expired."""
    method = secured("/orchestrator.jobengine.v1.SourcesService/ListSources")
    valid = _with(security, method, _bearer(await security.method_token(method)))
    expires = int(clock.wall()) - LEEWAY_SECONDS + 2  # accepted for 1-2 s more
    token = await _forged(security, method, exp=expires)
    headers = _with(security, method, _bearer(token))
    for target in method.targets:
        outcome = await call(target, headers, channel=security.channel, http=security.http)
        baseline = await call(target, valid, channel=security.channel, http=security.http)
        assert outcome == baseline, target.label
        assert (outcome.code, outcome.http_status, outcome.challenge) == (
            code_pb2.OK,
            200 if target.binding is not None else None,
            None,
        ), target.label
    clock.advance(2)
    expected = refused(INVALID_TOKEN, "the access token expired")
    for target in method.targets:
        outcome = await call(target, headers, channel=security.channel, http=security.http)
        assert_outcome(outcome, target, expected)
