"""OpenAPI drift: what changed between two snapshots of one service's document.

A document is reduced to its *outline*: every operation, keyed `"METHOD /path"` (the
path as the document writes it, e.g. `"GET /registry"`; OpenAPI 3.x §4.8.8, Swagger
2.0 "Paths Object"), and every named schema (`components.schemas` in OpenAPI 3,
`definitions` in Swagger 2), each with the SHA-256 of its canonical JSON (keys
sorted, no whitespace). Path-level `parameters` and `servers` are folded into every
operation of the path, since changing them changes each operation. Two outlines
differ by the keys only one has (added, removed) and the keys whose digests differ
(changed). Nothing here fetches or stores; `domain/registry.py` polls.

Only JSON documents are read (OpenAPI's canonical form, what gateways serve at
/openapi.json); a document that is not an object with an `openapi` (3.x) or
`swagger` ("2.0") version and a `paths` object is refused as "not an OpenAPI
document", naming what is missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# HTTP methods of a Path Item Object (OpenAPI 3.1 §4.8.9; 3.2 adds `query`).
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace", "query")
# Path Item fields that apply to every operation of the path.
_SHARED = ("parameters", "servers")


class NotOpenApi(ValueError):
    """The document is JSON but not an OpenAPI (3.x) or Swagger (2.0) document; the
    message says what is missing, e.g. "has no `paths` object"."""


@dataclass(frozen=True, slots=True)
class Outline:
    """A document's operations and schemas, each with the digest of its definition."""

    operations: Mapping[str, str] = field(default_factory=dict)
    schemas: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """Compact JSON text, as a snapshot stores it."""
        return canonical({"operations": self.operations, "schemas": self.schemas})

    @classmethod
    def from_json(cls, text: str) -> Outline:
        data = json.loads(text)
        return cls(operations=dict(data["operations"]), schemas=dict(data["schemas"]))


@dataclass(frozen=True, slots=True)
class Drift:
    """What a new outline has that the previous one did not, and the reverse; each
    list sorted."""

    added_operations: tuple[str, ...] = ()
    removed_operations: tuple[str, ...] = ()
    changed_operations: tuple[str, ...] = ()
    added_schemas: tuple[str, ...] = ()
    removed_schemas: tuple[str, ...] = ()
    changed_schemas: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not any(
            (
                self.added_operations,
                self.removed_operations,
                self.changed_operations,
                self.added_schemas,
                self.removed_schemas,
                self.changed_schemas,
            )
        )


def canonical(value: Any) -> str:
    """Canonical JSON text: keys sorted, no whitespace, ASCII only (\\u escapes keep even a
    lone surrogate, which JSON text may hold and UTF-8 cannot, storable)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def document_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the document's canonical JSON: equal for equal documents,
    whatever their key order or whitespace."""
    return _digest(document)


def outline(document: Any) -> Outline:
    """The outline of a parsed JSON document. Raises NotOpenApi."""
    if not isinstance(document, dict):
        raise NotOpenApi(f"is a JSON {_kind(document)}, not an object")
    version = document.get("openapi", document.get("swagger"))
    if not isinstance(version, str):
        raise NotOpenApi("has no `openapi` (3.x) or `swagger` (2.0) version string")
    paths = document.get("paths", {} if "webhooks" in document else None)
    if not isinstance(paths, dict):
        raise NotOpenApi("has no `paths` object")
    operations: dict[str, str] = {}
    for path, item in paths.items():
        if not isinstance(item, dict):
            raise NotOpenApi(f"path {path!r} is not a Path Item object")
        shared = {key: item[key] for key in _SHARED if key in item}
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            operations[f"{method.upper()} {path}"] = _digest([shared, operation])
    return Outline(operations=operations, schemas=_schemas(document))


def _schemas(document: Mapping[str, Any]) -> dict[str, str]:
    components = document.get("components")
    found = components.get("schemas") if isinstance(components, dict) else None
    if found is None:
        found = document.get("definitions")  # Swagger 2.0
    if not isinstance(found, dict):
        return {}
    return {str(name): _digest(schema) for name, schema in found.items()}


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def drift(previous: Outline, current: Outline) -> Drift:
    """What changed from `previous` to `current`."""
    ops = _compare(previous.operations, current.operations)
    schemas = _compare(previous.schemas, current.schemas)
    return Drift(
        added_operations=ops[0],
        removed_operations=ops[1],
        changed_operations=ops[2],
        added_schemas=schemas[0],
        removed_schemas=schemas[1],
        changed_schemas=schemas[2],
    )


def _compare(
    before: Mapping[str, str], after: Mapping[str, str]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    added = tuple(sorted(after.keys() - before.keys()))
    removed = tuple(sorted(before.keys() - after.keys()))
    changed = tuple(sorted(k for k in before.keys() & after.keys() if before[k] != after[k]))
    return added, removed, changed
