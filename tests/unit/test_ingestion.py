"""Ingestion requests and workflow views without a server (server/domain/ingestion.py,
server/domain/workflows.py) and the example worker's options and answers
(examples/ingest_worker.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from server.domain.errors import InvalidArgument
from server.domain.ingestion import INGEST_JOB_TYPES, IngestRequest, job_type_of, validate
from server.domain.workflows import job_types_of
from server.shipped_definitions import shipped_specs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ingest_worker.py"
KNOWN = "github, jira, confluence, swagger"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ingest_worker_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_job_types_are_ingest_dot_source() -> None:
    assert INGEST_JOB_TYPES == (
        "ingest.github",
        "ingest.jira",
        "ingest.confluence",
        "ingest.swagger",
    )
    assert job_type_of("jira") == "ingest.jira"


def test_validate_names_every_bad_field_at_once() -> None:
    validate(IngestRequest(source="github", scope="s" * 1000, correlation_id="c" * 200))
    with pytest.raises(InvalidArgument) as refused:
        validate(IngestRequest(source="x" * 300, scope="a\x7fb", correlation_id="c" * 201))
    shown = repr("x" * 200 + "…") + " (300 characters)"  # errors.shown
    assert [(v.field, v.description) for v in refused.value.violations] == [
        ("source", f"unknown source {shown}: must be one of {KNOWN}"),
        ("scope", "must not contain control characters"),
        ("correlation_id", "must be at most 200 characters, got 201"),
    ]


def test_the_shipped_definition_forks_four_ingestions_then_analyses() -> None:
    [spec] = shipped_specs()
    assert (spec.id, spec.version, spec.tenant) == ("multi_source_ingestion", 1, None)
    document = json.dumps(spec.document())
    assert job_types_of(document) == ["analysis.consistency", *sorted(INGEST_JOB_TYPES)]
    flows = {(flow.from_node, flow.to_node) for flow in spec.flows}
    for source in ("github", "jira", "confluence", "swagger"):
        assert {("fork", f"ingest_{source}"), (f"ingest_{source}", "join")} <= flows
    assert {("start", "fork"), ("join", "analyze"), ("analyze", "done")} <= flows


def test_job_types_of_includes_compensations_once() -> None:
    document = {
        "nodes": [
            {"id": "a", "type": "service_task", "job_type": "x", "compensation": "undo.x"},
            {"id": "b", "type": "service_task", "job_type": "x"},
            {"id": "s", "type": "start"},
        ]
    }
    assert job_types_of(json.dumps(document)) == ["undo.x", "x"]


def test_the_example_leases_every_ingestion_job_type_unless_told_otherwise() -> None:
    example = _example()
    args = example.parse_args(["--client-id", "c", "--client-secret", "s"])
    assert args.job_types == [*INGEST_JOB_TYPES, "analysis.consistency"]
    args = example.parse_args(
        ["--client-id", "c", "--client-secret", "s", "--job-type=ingest.jira"]
    )
    assert args.job_types == ["ingest.jira"]
    with pytest.raises(SystemExit) as bad:
        example.parse_args(["--client-id", "c", "--client-secret", "s", "--concurrency", "0"])
    assert bad.value.code == 2


def test_the_example_help_says_job_type_is_optional_and_what_it_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its --help once showed examples/worker.py's: --job-type required, the generic
    description. examples/worker.py itself still requires --job-type."""
    monkeypatch.delenv("ORCHESTRATOR_CLIENT_ID", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_CLIENT_SECRET", raising=False)
    example = _example()
    with pytest.raises(SystemExit) as shown:
        example.parse_args(["--help"])
    assert shown.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "[--job-type JOB_TYPES]" in text
    assert text.count("Run the example worker of the mesh API's ingestion") == 1
    assert "Run an example Orchestrator worker" not in text
    assert (
        "(default: all of ingest.github, ingest.jira, ingest.confluence, ingest.swagger,"
        " analysis.consistency)"
    ) in text
    with pytest.raises(SystemExit) as refused:
        example.base.parse_args(["--client-id", "c", "--client-secret", "s"])
    assert refused.value.code == 2
    assert "the following arguments are required: --job-type" in capsys.readouterr().err
    with pytest.raises(SystemExit) as missing:
        example.parse_args(["--job-type", "x"])  # worker.py's rules between options hold
    assert missing.value.code == 2
    assert "--client-id and --client-secret are required" in capsys.readouterr().err


def test_the_example_answers_stable_counts_and_their_totals() -> None:
    example = _example()
    first = example.ingest_result("github", {"scope": "acme/app", "correlation_id": "k"})
    assert first == example.ingest_result("github", {"scope": "acme/app", "correlation_id": "k"})
    item = first["ingest_github"]
    assert (item["source"], item["scope"], item["correlation_id"]) == ("github", "acme/app", "k")
    assert 5 <= item["documents"] <= 120 and 1 <= item["pull_requests"] <= item["documents"]
    variables = {
        **first,
        **example.ingest_result("jira", {}),
        **example.ingest_result("confluence", {}),
        **example.ingest_result("swagger", {}),
    }
    analysis = example.analysis_result(variables)["analysis"]
    total = sum(
        variables[f"ingest_{s}"]["documents"] for s in ("github", "jira", "confluence", "swagger")
    )
    assert analysis["sources"] == ["confluence", "github", "jira", "swagger"]
    assert analysis["documents"] == total
    assert 0 <= analysis["findings"] <= total // 10
    assert analysis["consistent"] == (analysis["findings"] == 0)
