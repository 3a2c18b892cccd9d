"""Bodiless successes and conditional requests over an AIP-154 etag, for the echo
API's notes (tests/protos/gwtest/v1/echo.proto, gateway/v1/http.proto options).

Sources: RFC 9110 §15.3.5 (204), §15.3.6 (205), §15.4.5 (304), §13.1.1 (If-Match,
strong comparison), §8.8.3 (ETag); RFC 6585 §3 (428); AIP-154 (etag field, ABORTED
on a mismatch). The etag comparison happens in the echo server, as policy lives in
the server; the gateway carries the tag and maps the answer. Every case runs
in-process and through the proxy.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from google.api import annotations_pb2
from google.api import http_pb2 as rule_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor

from gateway.app import Gateway
from gateway.bindings import BindingError, bindings_for
from gateway.inprocess import InProcessUpstream
from gateway.openapi import documents_by_api
from gateway.v1 import http_pb2 as gateway_http_pb2
from tests.support import protos

pb = protos.echo_pb2()
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def _note_id() -> str:
    return f"n-{uuid.uuid4().hex[:12]}"


def _gateway_error(message: str, code: str, reason: str, field: str) -> dict[str, Any]:
    """The status body of an error the gateway makes itself (gateway/errors.py)."""
    return {
        "error": message,
        "code": code,
        "details": [
            {"@type": ERROR_INFO, "reason": reason, "domain": "gateway"},
            {"@type": BAD_REQUEST, "fieldViolations": [{"field": field, "description": message}]},
        ],
    }


def _bodiless(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.content == b""
    assert "content-type" not in response.headers


async def test_204_has_no_body_and_no_content_type(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.delete(f"/v1/notes/{note}", headers={"If-Match": '"v1"'})
        _bodiless(response, 204)
        assert "content-length" not in response.headers  # RFC 9110 §8.6
        gone = await client.get(f"/v1/notes/{note}")
    assert gone.status_code == 404
    assert gone.json() == {
        "error": f"note {note} was deleted",
        "code": "NOT_FOUND",
        "details": [],
    }


async def test_205_has_no_body_although_the_server_returns_the_note(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.post(f"/v1/notes/{note}:reset", json={})
        _bodiless(response, 205)
        assert response.headers["content-length"] == "0"
        after = await client.get(f"/v1/notes/{note}")
    assert after.json() == {"id": note, "text": f"note {note}", "etag": "v2"}


async def test_304_as_success_status_is_bodiless_with_the_resource_etag(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get(f"/v1/notes/{note}:check")
    _bodiless(response, 304)
    assert response.headers["etag"] == '"v1"'


async def test_get_etag_is_the_resource_etag_and_if_none_match_is_304(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.get(f"/v1/notes/{note}")
        cached = await client.get(f"/v1/notes/{note}", headers={"If-None-Match": 'W/"v1"'})
    assert response.status_code == 200
    assert response.json() == {"id": note, "text": f"note {note}", "etag": "v1"}
    assert response.headers["etag"] == '"v1"'
    _bodiless(cached, 304)
    assert cached.headers["etag"] == '"v1"'


async def test_if_match_that_matches_updates_and_answers_the_new_etag(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        read = await client.get(f"/v1/notes/{note}")
        response = await client.patch(
            f"/v1/notes/{note}", json={"text": "new"}, headers={"If-Match": read.headers["etag"]}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"id": note, "text": "new", "etag": "v2"}
    assert response.headers["etag"] == '"v2"'
    assert response.headers["content-type"] == "application/json"


async def test_if_match_mismatch_is_412_with_the_server_error(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.patch(
            f"/v1/notes/{note}", json={"text": "lost"}, headers={"If-Match": '"v9"'}
        )
        after = await client.get(f"/v1/notes/{note}")
    assert response.status_code == 412
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": f"etag v9 is not the current etag of note {note}",
        "code": "ABORTED",
        "details": [],
    }
    assert after.json()["text"] == f"note {note}"  # nothing changed


async def test_body_etag_mismatch_without_if_match_is_412_too(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.patch(f"/v1/notes/{note}", json={"text": "x", "etag": "v7"})
    assert response.status_code == 412
    assert response.json()["code"] == "ABORTED"


async def test_if_match_list_tries_each_strong_tag(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.patch(
            f"/v1/notes/{note}", json={"text": "b"}, headers={"If-Match": '"v5", W/"v1", "v1"'}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"id": note, "text": "b", "etag": "v2"}


async def test_if_match_star_passes(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.patch(
            f"/v1/notes/{note}", json={"text": "any"}, headers={"If-Match": "*"}
        )
        deleted = await client.delete(f"/v1/notes/{note}", headers={"If-Match": "*"})
        missing = await client.patch(
            f"/v1/notes/{note}", json={"text": "late"}, headers={"If-Match": "*"}
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"id": note, "text": "any", "etag": "v2"}
    _bodiless(deleted, 204)
    # RFC 9110 §13.2.1: without the condition the answer is 404, so `*` is not
    # evaluated (it would be false: there is no current representation, §13.1.1).
    assert missing.status_code == 404
    assert missing.json() == {
        "error": f"note {note} was deleted",
        "code": "NOT_FOUND",
        "details": [],
    }


async def test_weak_if_match_never_matches(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.patch(
            f"/v1/notes/{note}", json={"text": "weak"}, headers={"If-Match": 'W/"v1"'}
        )
        after = await client.get(f"/v1/notes/{note}")
    assert response.status_code == 412
    assert response.json() == _gateway_error(
        'If-Match W/"v1" lists only weak entity-tags, which never match (RFC 9110 §13.1.1)',
        "ABORTED",
        "PRECONDITION_FAILED",
        "If-Match",
    )
    assert after.json()["etag"] == "v1"


async def test_an_empty_if_match_tag_never_matches(gateway_url: str) -> None:
    """`If-Match: ""` is a well-formed entity-tag no resource has: its condition is
    false (412), never a request without a condition, which an empty etag field
    would read as (critic finding). Listed with a matching tag, that one counts."""
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        empty = await client.patch(
            f"/v1/notes/{note}", json={"text": "empty"}, headers={"If-Match": '""'}
        )
        mixed = await client.patch(
            f"/v1/notes/{note}", json={"text": "mixed"}, headers={"If-Match": '"", W/"v1"'}
        )
        removal = await client.delete(f"/v1/notes/{note}", headers={"If-Match": '""'})
        after = await client.get(f"/v1/notes/{note}")
        listed = await client.patch(
            f"/v1/notes/{note}", json={"text": "listed"}, headers={"If-Match": '"", "v1"'}
        )
    expected = _gateway_error(
        'If-Match "" lists only entity-tags that are weak or empty, which never match'
        " (RFC 9110 §13.1.1)",
        "ABORTED",
        "PRECONDITION_FAILED",
        "If-Match",
    )
    assert (empty.status_code, empty.json()) == (412, expected)
    assert mixed.status_code == 412
    assert mixed.json()["error"] == (
        'If-Match W/"v1", "" lists only entity-tags that are weak or empty, which never'
        " match (RFC 9110 §13.1.1)"
    )
    assert (removal.status_code, removal.json()) == (412, expected)
    assert after.status_code == 200
    assert after.json() == {"id": note, "text": after.json()["text"], "etag": "v1"}
    assert listed.status_code == 200, listed.text
    assert listed.json()["etag"] == "v2"


async def test_required_precondition_missing_is_428(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.delete(f"/v1/notes/{note}")
        still = await client.get(f"/v1/notes/{note}")
        by_field = await client.delete(f"/v1/notes/{note}?etag=v1")
    assert response.status_code == 428
    assert response.headers["content-type"] == "application/json"
    assert response.json() == _gateway_error(
        "this method requires a precondition: send If-Match with the resource's ETag, or etag",
        "FAILED_PRECONDITION",
        "PRECONDITION_REQUIRED",
        "If-Match",
    )
    assert still.status_code == 200  # the server was not called
    _bodiless(by_field, 204)  # the etag field is a precondition too (AIP-154)


async def test_a_long_body_etag_is_repeated_short(gateway_url: str) -> None:
    """The conflict message repeated the body's etag whole (up to the 4 MB body cap),
    control characters and all."""
    long = "E" * 5000 + '\n{"forged":1}'
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.patch(
            f"/v1/notes/{_note_id()}",
            json={"text": "x", "etag": long},
            headers={"If-Match": '"a"'},
        )
    assert response.status_code == 400
    assert response.json()["error"] == (
        'If-Match "a" disagrees with note.etag "' + "E" * 40 + '"...'
    )


async def test_body_etag_and_if_match_that_disagree_are_400(gateway_url: str) -> None:
    note = _note_id()
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.patch(
            f"/v1/notes/{note}",
            json={"text": "x", "etag": "v1"},
            headers={"If-Match": '"v2", "v3"'},
        )
        agree = await client.patch(
            f"/v1/notes/{note}",
            json={"text": "y", "etag": "v1"},
            headers={"If-Match": '"v0", "v1"'},
        )
    assert response.status_code == 400
    assert response.json() == _gateway_error(
        'If-Match "v2", "v3" disagrees with note.etag "v1"',
        "INVALID_ARGUMENT",
        "PRECONDITION_CONFLICT",
        "note.etag",
    )
    assert agree.status_code == 200
    assert agree.json() == {"id": note, "text": "y", "etag": "v2"}


async def test_malformed_if_match_is_400(gateway_url: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        response = await client.patch(
            f"/v1/notes/{_note_id()}", json={"text": "x"}, headers={"If-Match": "v1"}
        )
    assert response.status_code == 400
    assert response.json() == _gateway_error(
        "If-Match is not '*' or a list of entity-tags: \"v1\"",
        "INVALID_ARGUMENT",
        "BAD_PRECONDITION",
        "If-Match",
    )


async def test_an_if_match_listing_too_many_tags_is_400_unread(gateway_url: str) -> None:
    """The gateway parses If-Match before the call (no token needed to reach it): past
    64 entity-tags it stops with 400, and what it repeats of the header is short. A
    list of 20,000 tags (a 120 KB header) took 2 s of the event loop when duplicates
    were looked up in a list."""
    many = ", ".join(f'"t{i}"' for i in range(65))
    garbage = "x" * 5000
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
        refused = await client.patch(
            f"/v1/notes/{_note_id()}", json={"text": "x"}, headers={"If-Match": many}
        )
        weak = await client.patch(
            f"/v1/notes/{_note_id()}",
            json={"text": "x"},
            headers={"If-Match": ", ".join(f'W/"t{i}"' for i in range(64))},
        )
        malformed = await client.patch(
            f"/v1/notes/{_note_id()}", json={"text": "x"}, headers={"If-Match": garbage}
        )
    assert refused.status_code == 400
    assert refused.json() == _gateway_error(
        "If-Match lists more than 64 entity-tags",
        "INVALID_ARGUMENT",
        "BAD_PRECONDITION",
        "If-Match",
    )
    assert weak.status_code == 412  # 64 weak tags: read, and none can match
    assert len(weak.content) < 1000
    assert malformed.status_code == 400
    assert malformed.json()["error"] == (
        "If-Match is not '*' or a list of entity-tags: \"" + "x" * 40 + '"...'
    )


def _operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][path][method]
    return found


def test_openapi_documents_bodiless_successes_and_preconditions() -> None:
    service = pb.DESCRIPTOR.services_by_name["EchoService"]
    document = documents_by_api(bindings_for([service]))["gwtest"]
    delete = _operation(document, "/v1/notes/{id}", "delete")
    assert delete["responses"]["204"] == {"description": "No Content"}
    assert [p for p in delete["parameters"] if p["in"] == "header"] == [
        {
            "name": "If-Match",
            "in": "header",
            "description": "The resource's ETag (strong; weak tags never match) or `*`; "
            "its value goes into `etag`. A mismatch is answered 412.",
            "required": True,
            "schema": {"type": "string", "minLength": 1},
        }
    ]
    assert delete["responses"]["412"] == {"$ref": "#/components/responses/Error412"}
    assert delete["responses"]["428"] == {"$ref": "#/components/responses/Error428"}
    assert document["components"]["responses"]["Error428"] == {
        "description": "Precondition Required",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    reset = _operation(document, "/v1/notes/{id}:reset", "post")
    assert reset["responses"]["205"] == {"description": "Reset Content"}
    check = _operation(document, "/v1/notes/{id}:check", "get")
    assert check["responses"]["304"] == {"description": "Not Modified", "headers": {"ETag": ETAG}}
    assert "200" not in check["responses"]
    update = _operation(document, "/v1/notes/{id}", "patch")  # one path item per shape
    assert update["responses"]["200"]["headers"] == {"ETag": ETAG}
    assert update["responses"]["200"]["content"] == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Note"}}
    }
    if_match = [p for p in update["parameters"] if p["name"] == "If-Match"]
    assert if_match == [
        {
            "name": "If-Match",
            "in": "header",
            "description": "The resource's ETag (strong; weak tags never match) or `*`; "
            "its value goes into `note.etag`. A mismatch is answered 412.",
            "schema": {"type": "string"},
        }
    ]
    assert "412" in update["responses"]
    assert "428" not in update["responses"]
    get = _operation(document, "/v1/notes/{id}", "get")
    assert get["responses"]["200"]["headers"] == {"ETag": ETAG}
    assert get["responses"]["304"] == {"description": "Not Modified", "headers": {"ETag": ETAG}}
    assert [p["name"] for p in get["parameters"] if p["in"] == "header"] == ["If-None-Match"]
    assert "412" not in get["responses"]


ETAG = {
    "required": True,
    "description": "The resource's `etag` field, quoted: send it back in If-Match or "
    "If-None-Match.",
    "schema": {"type": "string"},
}


def test_unsupported_success_status_is_refused_at_start_up() -> None:
    supported = "200, 201, 202, 203, 204, 205, 304"
    for status, verb, reason in (
        (206, "get", f"success_status 206 is not one of {supported}"),
        (302, "get", f"success_status 302 is not one of {supported}"),
        (304, "post", "success_status 304 on POST; only GET"),
    ):
        with pytest.raises(BindingError) as refused:
            Gateway(bindings_for([_ping_service(verb, status)]), InProcessUpstream({}))
        assert str(refused.value) == f"acme.v1.Echo.Ping (/v1/pings/{{id}}): {reason}"


def _ping_service(verb: str, status: int) -> ServiceDescriptor:
    """A one-method service `verb /v1/pings/{id}` with `success_status: status`."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name=f"acme/v1/s{status}{verb}.proto", package="acme.v1", syntax="proto3"
    )
    message = file.message_type.add(name="Ping")
    message.field.add(name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    method = file.service.add(name="Echo").method.add(
        name="Ping", input_type=".acme.v1.Ping", output_type=".acme.v1.Ping"
    )
    method.options.Extensions[annotations_pb2.http].CopyFrom(
        rule_pb2.HttpRule(**{verb: "/v1/pings/{id}"})
    )
    method.options.Extensions[gateway_http_pb2.http].success_status = status
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName("acme.v1.Echo")
