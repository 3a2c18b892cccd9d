"""Orchestra test helpers: definitions stored through the domain, as the CLI does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.app import Application
from server.domain.context import CallContext
from server.domain.orchestra.definitions import Stored, put_definition
from server.domain.orchestra.validation import parse_document
from server.storage.repositories.orchestra import SqlOrchestraStore

_CALL = CallContext(
    method="/orchestrator.orchestra.v1.DefinitionsService/PutDefinition",
    trace_id="0" * 32,
    actor="tests",
    operator_reason="tests",
)


async def load_definition(app: Application, document: dict[str, Any]) -> Stored:
    """Store `document` (the file format) as a new version."""
    return await put_definition(
        SqlOrchestraStore(app.store), _CALL, parse_document(document), now=datetime.now(UTC)
    )
