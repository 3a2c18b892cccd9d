"""The effective configuration as /config/effective shows it: every setting, its
value with secrets redacted (server/observability/redaction.py), and its source.

Sources (server/config.py `value_sources`): "env", "file", "default", "override"
(set by the program embedding the server), and "derived" for a value the server
worked out at start (ORCHESTRATOR_PUBLIC_URL from the address it serves).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from server.config import Settings, variable_of
from server.observability.redaction import REDACTED, is_secret_name, redact_text, redact_value

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    name: str  # the environment variable, e.g. "PORT"
    value: object  # JSON: None, bool, int, float, str (or a list of those)
    source: str
    redacted: bool


def effective_config(
    settings: Settings, sources: Mapping[str, str], *, derived: Collection[str] = ()
) -> list[ConfigEntry]:
    """Every field of `settings`, ordered by variable name. `sources` is
    `value_sources` of the settings as loaded; fields in `derived` (field names) were
    computed at start."""
    dumped = settings.model_dump(mode="json")
    entries = []
    for field_name in Settings.model_fields:
        raw = getattr(settings, field_name)
        name = variable_of(field_name)
        value: object
        hidden: bool
        if isinstance(raw, SecretStr):
            value, hidden = _secret(name, raw.get_secret_value())
        else:
            value, hidden = redact_value(name, dumped[field_name])
            if not hidden and name != field_name:
                value, hidden = redact_value(field_name, dumped[field_name])
        source = "derived" if field_name in derived else sources.get(field_name, "default")
        entries.append(ConfigEntry(name, value, source, hidden))
    return sorted(entries, key=lambda entry: entry.name)


def _secret(name: str, secret: str) -> tuple[object, bool]:
    """A setting typed as a secret: hidden whole, except a list of URLs under a name
    that is not a secret's (ORCHESTRATOR_PEERS), shown with each URL's credentials
    hidden. An empty one shows as "" (unset)."""
    if not secret:
        return "", False
    if not is_secret_name(name) and all(_URL.match(part.strip()) for part in secret.split(",")):
        shown, _ = redact_text(secret)
        return shown, True
    return REDACTED, True
