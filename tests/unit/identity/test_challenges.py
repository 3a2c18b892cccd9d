"""server/identity/challenges.py: one realm for Basic, Bearer and DPoP challenges."""

from __future__ import annotations

from server.identity.challenges import (
    BASIC_CHALLENGE,
    REALM,
    credentials_required_challenge,
    resource_challenge,
)
from server.identity.dpop import DPOP_ALGORITHMS
from server.identity.resource_server.principal import TokenRejected

ALGS = " ".join(DPOP_ALGORITHMS)


def test_the_realm() -> None:
    assert REALM == "orchestrator"


def test_basic_challenge_names_realm_and_charset() -> None:
    assert BASIC_CHALLENGE == 'Basic realm="orchestrator", charset="UTF-8"'


def test_missing_credentials_offer_both_schemes() -> None:
    assert credentials_required_challenge() == (
        f'Bearer realm="orchestrator", DPoP realm="orchestrator", algs="{ALGS}"'
    )
    assert TokenRejected(None, "no token").challenge == credentials_required_challenge()


def test_error_description_is_restricted_to_the_rfc_6750_set() -> None:
    rendered = resource_challenge(
        "Bearer", error="invalid_token", description='bad "kid" \\ caf\u00e9\x7f'
    )
    assert rendered == (
        'Bearer realm="orchestrator", error="invalid_token", '
        "error_description=\"bad 'kid' / caf??\""
    )


def test_dpop_challenge_carries_algs_unless_told_not_to() -> None:
    assert resource_challenge("DPoP", error="invalid_dpop_proof", description="x") == (
        f'DPoP realm="orchestrator", algs="{ALGS}", error="invalid_dpop_proof", '
        'error_description="x"'
    )
    assert (
        resource_challenge(
            "DPoP", error="insufficient_scope", description="d", scope="orch:read", algs=False
        )
        == 'DPoP realm="orchestrator", error="insufficient_scope", error_description="d", '
        'scope="orch:read"'
    )
