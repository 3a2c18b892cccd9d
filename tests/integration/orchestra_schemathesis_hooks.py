"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS) for tests/integration/
test_orchestra_schemathesis.py: the seed 004 document run against the server.

They load tests/integration/schemathesis_hooks.py first, so its rules and checks hold
here too: a positive `POST /oauth/token` carries the test client's real id and secret,
error texts are in the product's words, and every operation answers 2xx at least
once in the run.

The seed's document has no links and states in prose, not in JSON Schema, what makes
a request succeed: a `definition_id` that names a definition available to the
tenant, an `instance_id` of the tenant's, a `token_id` of a parked token, variable
names of 1-128 letters, digits or '_' starting with a letter or '_' (the product's
rule; the seed says only "keyed by name"). So a positive case is brought within
those rules, on the values the test prepared (ORCHESTRA_ST_DEFINITION, a
definition whose instances park on a user task; ORCHESTRA_ST_INSTANCE, a running
instance of it that no signal here moves on):

- two positive cases in three of each operation name what the test prepared (a
  token to signal is a parked token of a running instance of the definition other
  than ORCHESTRA_ST_INSTANCE, read with the run's token just before the call; a
  new instance is started when there is none); the third keeps its generated
  identifier, so the 404, 422 and empty-map answers are checked against the
  document as well;
- variable names (the `name` path parameter, the keys of `variables`) become
  valid names, keeping the generated values.

Negative cases are left alone.

One check joins them, `token_answers_as_rfc_6749`, for the token operation, whose
status code conformance the test switches off: the seed documents 200 and 401 there
and calls the operation the standard client-credentials grant, whose standard (RFC
6749 §5.2) answers a request with a missing or unsupported parameter 400 with an
error code (`invalid_request`, `unsupported_grant_type`, ...). So the operation may
answer 200 with a token, 401 `invalid_client`, or 400 with one of §5.2's codes;
nothing else, save 415 for a body that is not a form (RFC 9110 §15.5.16: the
operation takes `application/x-www-form-urlencoded` only).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import schemathesis

from tests.integration import schemathesis_hooks  # noqa: F401  (its hooks and checks apply)
from tests.integration.schemathesis_hooks import BASE_URL_VARIABLE, TOKEN_VARIABLE

DEFINITION_VARIABLE = "ORCHESTRA_ST_DEFINITION"
INSTANCE_VARIABLE = "ORCHESTRA_ST_INSTANCE"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
TOKEN_PATH = "/oauth/token"
FORM = "application/x-www-form-urlencoded"  # the only body the seed's token operation has
# RFC 6749 §5.2's error codes a client-credentials token request can get with a 400.
OAUTH_400_CODES = frozenset(
    {"invalid_request", "invalid_grant", "unauthorized_client", "unsupported_grant_type"}
    | {"invalid_scope", "invalid_client"}
)
_TURNS: defaultdict[str, Iterator[int]] = defaultdict(itertools.count)


def _positive(case: Any) -> bool:
    meta = case.meta
    return meta is not None and bool(meta.generation.mode.is_positive)


def _prepared_turn(case: Any) -> bool:
    """True for two cases in three of each operation (see the module docstring)."""
    return next(_TURNS[case.operation.label]) % 3 != 2


def _valid_name(name: object, index: int) -> str:
    text = name if isinstance(name, str) else ""
    return text if NAME.fullmatch(text) else f"v{index}"


def _call(method: str, path: str) -> Any:
    """The JSON answer of a call with the run's token; None unless 2xx."""
    base, token = os.environ.get(BASE_URL_VARIABLE), os.environ.get(TOKEN_VARIABLE)
    if not base or not token:
        return None
    headers = {"Authorization": f"Bearer {token}"}
    try:
        response = httpx.request(method, base + path, headers=headers, timeout=10)
    except httpx.HTTPError:
        return None
    return response.json() if 200 <= response.status_code < 300 else None


def _parked_token(definition_id: str, keep: str) -> str | None:
    """A parked token of a running instance of `definition_id` other than `keep`."""
    query = f"?definition_id={quote(definition_id)}&status=running"
    listed = _call("GET", f"/orchestra-api/instances{query}") or []
    candidates = [item["id"] for item in listed if item.get("id") != keep]
    if not candidates:
        started = _call("POST", f"/orchestra-api/process/{quote(definition_id)}/start")
        if not isinstance(started, dict):
            return None
        candidates = [started["instance_id"]]
    state = _call("GET", f"/orchestra-api/instance/{quote(candidates[0])}")
    for token in (state or {}).get("tokens", ()):
        if token.get("status") == "parked":
            return str(token["id"])
    return None


def _within_rules(case: Any) -> None:
    """Bring a positive case within the rules of the module docstring."""
    definition_id = os.environ.get(DEFINITION_VARIABLE, "")
    instance_id = os.environ.get(INSTANCE_VARIABLE, "")
    parameters = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    if "name" in parameters:
        parameters["name"] = _valid_name(parameters["name"], 0)
    if isinstance(case.body, dict) and isinstance(case.body.get("variables"), dict):
        variables = case.body["variables"]
        case.body["variables"] = {
            _valid_name(key, index): value for index, (key, value) in enumerate(variables.items())
        }
    if not _prepared_turn(case):
        return
    if "definition_id" in parameters:
        parameters["definition_id"] = definition_id
    if "instance_id" in parameters:
        parameters["instance_id"] = instance_id
    if "token_id" in parameters:
        token_id = _parked_token(definition_id, instance_id)
        if token_id is not None:
            parameters["token_id"] = token_id


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.operation.path.startswith("/orchestra-api/") and _positive(case):
        _within_rules(case)


@schemathesis.check
def token_answers_as_rfc_6749(ctx: Any, response: Any, case: Any) -> bool | None:
    """POST /oauth/token answers 200 with a bearer token, 401 `invalid_client`, or 400
    with an RFC 6749 §5.2 error code."""
    if case.operation.path != TOKEN_PATH or case.method.upper() != "POST":
        return None  # another method's 405 is the unsupported-method check's business
    status = response.status_code
    media_type = str((case.headers or {}).get("Content-Type") or case.media_type or "")
    if status == 415 and not media_type.startswith(FORM):
        return None  # a body the operation does not take (RFC 9110 §15.5.16), not §5.2's
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"token answer {status} is not JSON") from None
    if status == 200:
        if not isinstance(body.get("access_token"), str) or body.get("token_type") != "Bearer":
            raise AssertionError(f"token answer without a bearer token: {body}")
    elif status == 401:
        if body.get("error") != "invalid_client":
            raise AssertionError(f"401 without error invalid_client: {body}")
    elif status == 400:
        if body.get("error") not in OAUTH_400_CODES:
            raise AssertionError(f"400 without an RFC 6749 error code: {body}")
    else:
        raise AssertionError(f"token answer {status}: neither the seed's nor RFC 6749's")
    return None
