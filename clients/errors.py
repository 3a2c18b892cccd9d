"""One error type for every transport: the gRPC code name, the message and the
`google.rpc.Status` details, plus the HTTP status when the call went over REST."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2


@dataclass
class ApiError(Exception):
    code: str  # gRPC code name, e.g. "INVALID_ARGUMENT"
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    http_status: int | None = None

    @classmethod
    def from_status(cls, status: status_pb2.Status) -> ApiError:
        """The error of a `google.rpc.Status` (gRPC and in-process calls), its details
        as their JSON mapping: the shape the REST error body carries (DESIGN.md §5)."""
        try:
            name = code_pb2.Code.Name(status.code)
        except ValueError:
            name = code_pb2.Code.Name(code_pb2.UNKNOWN)
        details: list[dict[str, Any]] = []
        for detail in status.details:
            try:
                details.append(json_format.MessageToDict(detail))
            except (json_format.Error, TypeError, KeyError):  # a type this process lacks
                details.append({"@type": detail.type_url})
        return cls(code=name, message=status.message, details=details)

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
