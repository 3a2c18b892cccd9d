"""Bad ids are answered small (critic finding 9b on issue 13) on SQLite and
PostgreSQL against the session's real server: an id no saga can have is 400
naming `sagaId`, a definitionId with NUL or over 64 characters 400 naming
`definitionId`, and a 404 repeats at most 200 characters of an id."""

from __future__ import annotations

import uuid

import httpx
import pytest

from server.identity.scopes import ORCHESTRA_PERMISSION
from tests.support.auth import TokenFactory


def _violations(response: httpx.Response) -> list[str]:
    body = response.json()
    return [
        v["field"]
        for d in body["details"]
        if d["@type"].endswith("BadRequest")
        for v in d["fieldViolations"]
    ]


@pytest.mark.parametrize(
    ("saga_id", "length"),
    [("x" * 65, 65), ("x" * 5000, 5000), ("a%00b", 3), ("a%1Bb", 3)],
)
async def test_an_id_no_saga_can_have_is_400_naming_saga_id(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, saga_id: str, length: int
) -> None:
    headers = await tokens.headers(tenant, ("orch:read",))
    response = await http.get(f"/infrastructure/saga/{saga_id}", headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert _violations(response) == ["sagaId"]
    assert response.json()["error"] == (
        "sagaId: is not a saga id: saga ids are instance ids, at most 64 characters"
        f" without control characters (got {length} characters)"
    )
    assert len(response.content) < 1000


@pytest.mark.parametrize("definition_id", ["a\u0000b", "a" * 65, "x" * 5000])
async def test_a_run_of_no_possible_definition_is_400_naming_definition_id(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str, definition_id: str
) -> None:
    headers = {
        **await tokens.headers(tenant, ("orch:read", "orch:operate")),
        "X-Stella-Operator-Reason": "finding 9b",
    }
    response = await http.post(
        "/workflows/run", json={"definitionId": definition_id}, headers=headers
    )
    assert response.status_code == 400, response.text
    assert _violations(response) == ["definitionId"]
    assert response.json()["error"] == (
        "definitionId: must be 1-64 letters, digits, '_', '.' or '-', starting with a letter"
    )


async def test_a_404_repeats_at_most_200_characters_of_the_id(
    http: httpx.AsyncClient, tokens: TokenFactory, tenant: str
) -> None:
    token = await tokens.token(tenant, (), permissions=[ORCHESTRA_PERMISSION])
    headers = {"Authorization": f"Bearer {token}", "X-Stella-Tenant": tenant}
    long_id = "y" * 5000
    response = await http.get(f"/orchestra-api/instance/{long_id}", headers=headers)
    assert response.status_code == 404, response.text
    assert response.json()["error"] == (f"instance {'y' * 200 + '…'!r} (5000 characters) not found")
    assert len(response.content) < 1000
    short_id = str(uuid.uuid4())
    response = await http.get(f"/orchestra-api/instance/{short_id}", headers=headers)
    assert response.json()["error"] == f"instance {short_id!r} not found"
