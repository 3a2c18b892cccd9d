"""The process definitions shipped with the server (`server/definitions/*.yaml`, the
file format of DESIGN.md §4.3), stored at start when absent (issue 13 point 1: the
multi-source ingestion workflow `POST /workflows/run` starts must exist on a fresh
server).

Each file is parsed and checked as `orchestrator definitions load` would, then handed
to `domain.workflows.install_shipped`: stored (audited, actor "server") unless that
version or a newer one is stored, left alone when a definition of that id is scoped
to one tenant (a warning names it). Replicas starting together store it once (the
definition insert skips an existing version). A shipped file that does not load is a
bug of this build: it raises.
"""

from __future__ import annotations

import logging
from datetime import datetime
from importlib import resources

import yaml

from server.domain.orchestra.model import DefinitionSpec
from server.domain.orchestra.records import OrchestraStore
from server.domain.orchestra.validation import compile_definition, parse_document
from server.domain.workflows import install_shipped

log = logging.getLogger("orchestrator.definitions")
PACKAGE = "server.definitions"


def shipped_specs() -> list[DefinitionSpec]:
    """Every shipped definition, by file name, parsed and compiled (so a broken file
    fails here, not at a run)."""
    specs = []
    for entry in sorted(resources.files(PACKAGE).iterdir(), key=lambda item: item.name):
        if entry.name.endswith((".yaml", ".yml", ".json")):
            spec = parse_document(yaml.safe_load(entry.read_text(encoding="utf-8")))
            compile_definition(spec)
            specs.append(spec)
    return specs


async def install_shipped_definitions(store: OrchestraStore, *, now: datetime) -> dict[str, str]:
    """Store each shipped definition when absent; definition id -> what was done
    ("stored", "present" or "scoped")."""
    done: dict[str, str] = {}
    for spec in shipped_specs():
        outcome = await install_shipped(store, spec, now=now)
        if outcome == "scoped":
            log.warning(
                "shipped process definition %r not stored: a definition of that id is"
                " scoped to one tenant; POST /workflows/run runs that tenant's only",
                spec.id,
            )
        elif outcome == "stored":
            log.info("stored the shipped process definition %s v%d", spec.id, spec.version)
        done[spec.id] = outcome
    return done
