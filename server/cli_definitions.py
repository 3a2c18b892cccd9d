"""`orchestrator definitions load FILE`: store a process definition from a YAML or JSON
file (DESIGN.md §4.3, §6), as the admin API's PutDefinition does, audited.

Exit status: 0 stored (or the same version with the same content already was;
prints `{"definition_id", "version", "created"}`), 1 refused (each violation on its
own line, naming the node or flow), 2 an unreadable file or one that is not YAML.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from server.domain.context import CallContext
from server.domain.errors import DomainError, InvalidArgument
from server.domain.orchestra.definitions import put_definition
from server.domain.orchestra.validation import parse_document
from server.storage.db import Database
from server.storage.repositories.orchestra import SqlOrchestraStore
from server.storage.store import SqlStore

# The audit trail names the method the admin API would have called.
PUT_METHOD = "/orchestrator.orchestra.v1.DefinitionsService/PutDefinition"


def add_definitions_commands(commands: Any) -> None:
    parser = commands.add_parser("definitions", help="manage Orchestra process definitions")
    sub = parser.add_subparsers(dest="definitions_command", required=True)
    load = sub.add_parser("load", help="validate a YAML/JSON definition and store it")
    load.add_argument("file", type=Path)
    load.add_argument(
        "--reason", default="", help="why (the audit entry's reason; default names the file)"
    )


def read_document(path: Path) -> Any:
    """The file's one YAML (or JSON) document. Raises ValueError, one line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid"
        raise ValueError(f"{path} is not YAML or JSON{where}: {problem}") from None


async def load_definition(args: argparse.Namespace, db: Database) -> int:
    try:
        document = read_document(args.file)
    except ValueError as exc:
        print(f"orchestrator definitions load: {exc}", file=sys.stderr)
        return 2
    call = CallContext(
        method=PUT_METHOD,
        trace_id=uuid.uuid4().hex,
        actor="cli",
        authenticated=True,
        operator_reason=args.reason or f"orchestrator definitions load {args.file}",
    )
    try:
        spec = parse_document(document)
        stored = await put_definition(
            SqlOrchestraStore(SqlStore(db)), call, spec, now=datetime.now(UTC)
        )
    except InvalidArgument as exc:
        print(f"{args.file}: definition refused:", file=sys.stderr)
        for violation in exc.violations:
            print(f"  {violation.field}: {violation.description}", file=sys.stderr)
        return 1
    except DomainError as exc:
        print(f"{args.file}: definition refused: {exc}", file=sys.stderr)
        return 1
    record = stored.definition
    print(
        json.dumps(
            {
                "definition_id": record.definition_id,
                "version": record.version,
                "created": stored.created,
            }
        ),
        flush=True,
    )
    return 0
