"""Instance variables: names, values and the size cap (issue 11 points 2 and Bad input).

Variables are a JSON object: a name to any JSON value. A name is 1-128 letters,
digits or '_' starting with a letter or '_', so it is a CEL identifier that
conditions can use as it is; path characters ('/', '.', '[', ...) are refused.
Values are any JSON (null included); NaN and infinities are not JSON. The whole set,
as compact JSON, is at most the configured cap (`ORCHESTRA_VARIABLES_MAX_BYTES`):
a start, signal or set that would exceed it is refused, nothing written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from server.domain.errors import InvalidArgument, Violation, echo, shown

NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
NAME_RULE: Final = (
    "must be 1-128 letters, digits or '_', starting with a letter or '_'"
    " (no path characters such as '/', '.' or '[')"
)
MAX_BYTES_DEFAULT: Final = 256 * 1024
_EXACT: Final = 2**53
_NAME = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def dumps(variables: Mapping[str, Any]) -> str:
    """Compact JSON text, keys sorted: how variables are stored. Raises ValueError for
    NaN or an infinity."""
    return json.dumps(
        variables, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def check_names(variables: Mapping[str, Any], field: str) -> None:
    """InvalidArgument naming `field.<name>` for each bad name."""
    violations = [
        Violation(
            f"{field}.{echo(name)}" if name else field, f"variable name {shown(name)} {NAME_RULE}"
        )
        for name in variables
        if not valid_name(name)
    ]
    if violations:
        raise InvalidArgument.from_violations(violations, reason="VARIABLE_NAME_INVALID")


def encode(variables: Mapping[str, Any], max_bytes: int, field: str) -> str:
    """`variables` as stored text, checked against the cap. Raises InvalidArgument
    naming `field` for values JSON cannot carry or a set over `max_bytes`."""
    try:
        text = dumps(variables)
    except ValueError:
        raise InvalidArgument.of(
            field, "must be JSON: NaN and infinities are not", reason="VARIABLES_INVALID"
        ) from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidArgument.of(
            field,
            f"the instance's variables would be {size} bytes as JSON; at most {max_bytes} are"
            " allowed",
            reason="VARIABLES_TOO_LARGE",
        )
    return text


def normalize(value: Any) -> Any:
    """`value` with integral doubles within 2^53 as integers, recursively. Protobuf's
    Value carries every JSON number as a double (`1` arrives as `1.0`); CEL compares an
    int with an int but never with a double, so `amount < 1000` needs `amount` to be
    the integer the caller wrote."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT:
        return int(value)
    if isinstance(value, dict):
        return {key: normalize(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalize(item) for item in value]
    return value
