"""Orchestra test helpers: definitions stored through the domain, as the CLI does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from server.app import Application
from server.domain.context import CallContext
from server.domain.orchestra.definitions import ModelCache, Stored, put_definition
from server.domain.orchestra.instances import OrchestraLimits, engine_call, start_process
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


async def start_saga(app: Application, tenant: str) -> str:
    """Start a saga of `tenant` (a service task declaring a compensation; its job waits
    in the queue): the saga's id."""
    stored = await load_definition(
        app,
        {
            "id": "st_saga",
            "nodes": [
                {"id": "start", "type": "start"},
                {
                    "id": "book",
                    "type": "service_task",
                    "job_type": "st.book",
                    "compensation": "st.unbook",
                },
                {"id": "done", "type": "end"},
            ],
            "flows": [{"from": "start", "to": "book"}, {"from": "book", "to": "done"}],
        },
    )
    return await start_process(
        SqlOrchestraStore(app.store),
        ModelCache(),
        engine_call(tenant),
        stored.definition.definition_id,
        None,
        OrchestraLimits(),
        now=datetime.now(UTC),
    )
