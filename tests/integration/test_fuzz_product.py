"""Random requests never produce a 5xx from the product's gateway: 3,000 on each backend,
built like the echo API's in tests/conformance/test_fuzz.py."""

from __future__ import annotations

import httpx

from server.app import Application
from tests.conformance.test_fuzz import fuzz
from tests.support.auth import TokenFactory


async def test_product_gateway_answers_random_requests_without_5xx(
    app: Application, tokens: TokenFactory
) -> None:
    transport = httpx.ASGITransport(app=app.gateway)
    # Authenticated as tenant t1 (the tenant the random headers name), so the fuzz gets
    # past the resource server into request handling as well as being refused by it.
    token = await tokens.token("t1")
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=auth) as client:
        # A watch (server streaming, e.g. GET /infrastructure/events/watch) never ends by
        # itself: it has its own tests; a request/response fuzz would wait on it forever.
        statuses = await fuzz(
            client, app.gateway, seed=2, count=3000, skip=lambda b: b.server_streaming
        )
    assert sum(statuses.values()) == 3000
    assert statuses.get(200, 0) + statuses.get(201, 0) > 10
