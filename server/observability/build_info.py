"""What this build is: the product name, the installed version and the git revision.

The revision is ORCHESTRATOR_GIT_REVISION when set (images built without a `.git`
set it at build time), else `git rev-parse HEAD` of the checkout the server runs
from, else empty. Worked out once per process.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Final

NAME: Final = "orchestrator"
REVISION_VARIABLE: Final = "ORCHESTRATOR_GIT_REVISION"
_REVISION: Final = re.compile(r"^[0-9a-f]{7,64}$")
_SOURCE_ROOT: Final = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class Build:
    name: str
    version: str  # "0.1.0"; "" when the distribution is not installed
    git_revision: str  # full commit hash; "" when unknown


@functools.cache
def build() -> Build:
    return Build(NAME, _version(), _revision())


def _version() -> str:
    try:
        return metadata.version(NAME)
    except metadata.PackageNotFoundError:
        return ""


def _revision() -> str:
    configured = os.environ.get(REVISION_VARIABLE, "").strip()
    if configured:
        return configured
    if not (_SOURCE_ROOT / ".git").exists():
        return ""
    try:
        done = subprocess.run(
            ["git", "-C", str(_SOURCE_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    revision = done.stdout.strip()
    return revision if done.returncode == 0 and _REVISION.fullmatch(revision) else ""
