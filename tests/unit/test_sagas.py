"""Saga rules without a database (issue 13 point 2): which definitions make sagas, the
statistics' arithmetic, and a job's error in words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from server.domain.orchestra import sagas
from server.domain.orchestra.validation import compile_definition, parse_document


def _model(compensation: str | None) -> Any:
    task: dict[str, Any] = {"id": "book", "type": "service_task", "job_type": "room.book"}
    if compensation is not None:
        task["compensation"] = compensation
    return compile_definition(
        parse_document(
            {
                "id": "trip",
                "nodes": [{"id": "start", "type": "start"}, task, {"id": "done", "type": "end"}],
                "flows": [{"from": "start", "to": "book"}, {"from": "book", "to": "done"}],
            }
        )
    )


def test_a_definition_with_a_compensation_makes_sagas() -> None:
    assert _model("room.cancel").saga is True
    assert _model("room.cancel").nodes["book"].compensation == "room.cancel"
    assert _model(None).saga is False


@dataclass(frozen=True)
class Row:
    definition_id: str
    status: str
    instances: int
    seconds: float | None


def test_counts_and_mean_duration_of_finished_sagas() -> None:
    counts = sagas.SagaCounts()
    for row in (
        Row("trip", "running", 4, None),
        Row("trip", "compensating", 1, None),
        Row("trip", "compensated", 2, 3.0),
        Row("trip", "completed", 1, 1.5),
        Row("trip", "failed", 1, 4.5),
    ):
        counts.add(row)
    assert counts.total == 9
    assert counts.finished == 4
    assert counts.by_status == {
        "running": 4,
        "compensating": 1,
        "completed": 1,
        "compensated": 2,
        "failed": 1,
        "canceled": 0,
    }
    assert counts.mean_duration == timedelta(seconds=9.0 / 4)
    assert sagas.SagaCounts().mean_duration is None


def test_job_errors_in_words() -> None:
    error = '{"category":"dependency","code":"DOWN","message":"it broke"}'
    assert sagas.error_text(error) == "dependency DOWN it broke"
    assert sagas.error_text(None) == "no error recorded"
    assert sagas.error_text("plain") == "plain"
