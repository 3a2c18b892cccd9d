"""OpenAPI drift (server/domain/openapi_drift.py): operations keyed "METHOD /path",
schemas of OpenAPI 3 and Swagger 2, path-level parameters folded into each operation,
and documents that are not OpenAPI refused naming what is missing."""

from __future__ import annotations

from typing import Any

import pytest

from server.domain.openapi_drift import Drift, NotOpenApi, document_digest, drift, outline


def _doc(**paths: Any) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "paths": paths,
        "components": {"schemas": {"Pet": {"type": "object"}, "Old": {"type": "string"}}},
    }


def test_added_removed_and_changed_operations_and_schemas() -> None:
    before = _doc(**{"/pets": {"get": {"responses": {}}, "post": {"responses": {}}}})
    after = _doc(
        **{
            "/pets": {"get": {"responses": {"200": {}}}},
            "/pets/{id}": {"delete": {"responses": {}}},
        }
    )
    after["components"]["schemas"] = {"Pet": {"type": "object", "required": ["id"]}, "New": {}}
    assert drift(outline(before), outline(after)) == Drift(
        added_operations=("DELETE /pets/{id}",),
        removed_operations=("POST /pets",),
        changed_operations=("GET /pets",),
        added_schemas=("New",),
        removed_schemas=("Old",),
        changed_schemas=("Pet",),
    )
    assert drift(outline(before), outline(before)).empty


def test_path_parameters_change_every_operation_of_the_path() -> None:
    before = _doc(**{"/a": {"get": {}, "put": {}}})
    after = _doc(**{"/a": {"parameters": [{"name": "x", "in": "query"}], "get": {}, "put": {}}})
    assert drift(outline(before), outline(after)).changed_operations == ("GET /a", "PUT /a")


def test_swagger_2_definitions_are_the_schemas() -> None:
    found = outline({"swagger": "2.0", "paths": {}, "definitions": {"Pet": {}}})
    assert set(found.schemas) == {"Pet"} and found.operations == {}


def test_equal_documents_have_equal_digests_whatever_the_key_order() -> None:
    assert document_digest({"a": 1, "b": [1, 2]}) == document_digest({"b": [1, 2], "a": 1})


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([1], "is a JSON array, not an object"),
        ("x", "is a JSON string, not an object"),
        ({"paths": {}}, "has no `openapi` (3.x) or `swagger` (2.0) version string"),
        ({"openapi": "3.1.0"}, "has no `paths` object"),
        ({"openapi": "3.1.0", "paths": {"/a": []}}, "path '/a' is not a Path Item object"),
    ],
)
def test_documents_that_are_not_openapi(document: Any, message: str) -> None:
    with pytest.raises(NotOpenApi) as raised:
        outline(document)
    assert str(raised.value) == message


def test_webhooks_only_documents_have_no_operations() -> None:
    assert outline({"openapi": "3.1.0", "webhooks": {}}).operations == {}
