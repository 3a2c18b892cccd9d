"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS) for tests/integration/
test_schemathesis.py. They touch positive cases only; negative cases, the checks and
the phases are left alone.

Valid credentials: the resource operations get a valid access token on the command
line; the OAuth endpoints authenticate the client in the body (client_secret_post,
RFC 6749 §2.3.1; the document says so with `client_id`/`client_secret` fields, and
HTTP Basic beside them is refused), so a positive case there carries the test
client's id and secret (ORCHESTRATOR_ST_CLIENT_ID, ORCHESTRATOR_ST_CLIENT_SECRET)
instead of generated ones that never authenticate.

Two request rules of this API cannot be said in JSON Schema, so no document makes a
generator respect them; the operations' descriptions state both in prose:

- a listing's `continuationToken` is valid only as a previous page's token, issued by
  this server for the same filters (AIP-158; anything else is 400
  INVALID_PAGE_TOKEN): a positive case carries none, as a first page does;
- `until` must be after `since` (ListAuditEntries; else 400 naming `until`): a
  positive case with both has them in that order.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import schemathesis

CLIENT_ID_VARIABLE = "ORCHESTRATOR_ST_CLIENT_ID"
CLIENT_SECRET_VARIABLE = "ORCHESTRATOR_ST_CLIENT_SECRET"
TOKEN = "continuationToken"
OAUTH_CLIENT_PATHS = frozenset({"/oauth/token", "/oauth/introspect", "/oauth/revoke"})


def _instant(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).upper())
    except ValueError:
        return None


def _with_client(body: dict[str, Any]) -> None:
    client_id = os.environ.get(CLIENT_ID_VARIABLE)
    secret = os.environ.get(CLIENT_SECRET_VARIABLE)
    if client_id and secret:
        body["client_id"], body["client_secret"] = client_id, secret


def _ordered_window(query: dict[str, Any]) -> None:
    since, until = _instant(query.get("since")), _instant(query.get("until"))
    if since is None or until is None or since.tzinfo is None or until.tzinfo is None:
        return
    if until == since:
        del query["until"]
    elif until < since:
        query["since"], query["until"] = query["until"], query["since"]


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    if isinstance(case.body, dict) and case.operation.path in OAUTH_CLIENT_PATHS:
        _with_client(case.body)
    if isinstance(case.query, dict):
        if case.query.get(TOKEN):
            del case.query[TOKEN]
        _ordered_window(case.query)
    return case
