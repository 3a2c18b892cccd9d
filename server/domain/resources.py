"""Resource types: what the domain names, audits and reports about each kind of resource.

A `ResourceType` is declared once per resource, next to its rules (e.g. `SOURCE` in
`domain/sources.py`), and everything that used to be spelled per call derives from it:
resource names `{collection}/{id}` (AIP-122), audit actions `{collection}.{verb}` and
before/after snapshots (`domain/audit.py`), and the NOT_FOUND / ALREADY_EXISTS errors
with reasons `{SINGULAR}_NOT_FOUND` / `{SINGULAR}_EXISTS` (`domain/errors.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ResourceType(Generic[R]):
    """One kind of resource, e.g. `ResourceType("source", "sources", "sourceId", ...)`.

    `singular` is the noun in messages ("source 'x' not found"); `collection` the
    AIP-122 collection id; `id_field` the JSON name of the id, which error metadata
    uses as its key; `id_of` reads a resource's id and `snapshot` gives the audited
    view of one (JSON-ready values, the API's field names)."""

    singular: str
    collection: str
    id_field: str
    id_of: Callable[[R], str]
    snapshot: Callable[[R], Mapping[str, Any]]

    @property
    def reason_prefix(self) -> str:
        """`singular` as an ErrorInfo reason prefix: "dead-letter entry" -> DEAD_LETTER_ENTRY."""
        return re.sub(r"[^A-Za-z0-9]+", "_", self.singular).strip("_").upper()

    def name(self, resource_id: str) -> str:
        """The resource name `{collection}/{id}` (AIP-122), as audit entries record it."""
        return f"{self.collection}/{resource_id}"
