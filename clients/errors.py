"""One error type for every transport: the gRPC code name, the message and the
`google.rpc.Status` details, plus the HTTP status when the call went over REST."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApiError(Exception):
    code: str  # gRPC code name, e.g. "INVALID_ARGUMENT"
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    http_status: int | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def detail(self, type_suffix: str) -> dict[str, Any] | None:
        """The first detail whose @type ends with `type_suffix` (e.g. "BadRequest")."""
        for item in self.details:
            if str(item.get("@type", "")).endswith(type_suffix):
                return item
        return None

    @property
    def violations(self) -> list[tuple[str, str]]:
        bad = self.detail("BadRequest") or {}
        return [
            (v.get("field", ""), v.get("description", "")) for v in bad.get("fieldViolations", [])
        ]

    @property
    def reason(self) -> str | None:
        info = self.detail("ErrorInfo")
        return None if info is None else info.get("reason")
