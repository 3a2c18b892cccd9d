"""Structured logs: one JSON object per line on stderr, with the trace id when known."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from server.domain.context import _current


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.entry(record), ensure_ascii=False, default=str)

    def entry(self, record: logging.LogRecord) -> dict[str, object]:
        """The line as an object: time (RFC 3339 UTC, milliseconds), level, logger,
        message, and trace_id and exception when there are any. Read in the caller's
        context (the trace id of the call being served)."""
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        call = _current.get()
        trace_id = getattr(record, "trace_id", None) or (call.trace_id if call else None)
        if trace_id:
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return entry


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
