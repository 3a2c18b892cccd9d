"""Everything the operations API (server/services/ops.py) reports, for one server
process: readiness, dependency health, build and run information, the effective
configuration and the metrics exposition. `server/app.py` builds one at start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from server.config import Settings, config_file
from server.domain.health import (
    Check,
    DependencyResult,
    Readiness,
    check_dependencies,
    schema_check,
)
from server.observability import metrics
from server.observability.build_info import Build, build
from server.observability.config_report import ConfigEntry, effective_config
from server.observability.domain_gauges import DomainGauges
from server.observability.probes import Probes
from server.observability.redaction import redact_text
from server.storage.db import Database
from server.storage.schema_state import applied_revisions, head_revisions


@dataclass(frozen=True, slots=True)
class ServerInfo:
    build: Build
    start_time: datetime  # UTC
    uptime_s: float
    api_versions: tuple[str, ...]  # proto packages, sorted
    database_backend: str  # "sqlite" or "postgresql"


class Operations:
    """`sources` are `server.config.value_sources` of the settings as loaded and
    `derived` the fields computed at start; `api_versions` the served proto packages;
    `wall` the time in seconds since the epoch (tests move it)."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        readiness: Readiness,
        gauges: DomainGauges,
        sources: Mapping[str, str],
        derived: Collection[str],
        api_versions: Sequence[str],
        wall: float,
    ) -> None:
        self.settings = settings
        self.readiness = readiness
        self.gauges = gauges
        self._db = db
        self._sources = dict(sources)
        self._derived = frozenset(derived)
        self._api_versions = tuple(sorted(set(api_versions)))
        self._start_wall = wall
        self._start_monotonic = time.monotonic()
        self._probes = Probes(settings, db)
        found = config_file()
        self.config_file = str(found) if found is not None else ""  # read at start
        build_of = build()
        metrics.BUILD_INFO.labels(build_of.version, build_of.git_revision).set(1)

    # --- readiness -------------------------------------------------------------------

    async def readiness_checks(self) -> list[Check]:
        """database, migrations, then every registered loop; the database is given
        HEALTH_CHECK_TIMEOUT_SECONDS to answer."""
        timeout = self.settings.health_check_timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                applied = await applied_revisions(self._db)
        except TimeoutError:
            database = Check("database", False, f"no answer within {timeout:g}s")
            migrations = Check("migrations", False, "unknown: the database did not answer")
        except Exception as exc:
            detail = redact_text(f"unreachable: {type(exc).__name__}: {exc}")[0][:300]
            database = Check("database", False, detail)
            migrations = Check("migrations", False, "unknown: the database did not answer")
        else:
            database = Check("database", True, "reachable")
            migrations = schema_check(applied, head_revisions())
        return [database, migrations, *self.readiness.loops()]

    # --- dependencies ----------------------------------------------------------------

    async def system_health(self) -> tuple[datetime, list[DependencyResult]]:
        """When the checks started and their results (server.domain.health)."""
        started = datetime.now(UTC)
        results = await check_dependencies(
            self._probes.dependencies(), timeout_s=self.settings.health_check_timeout_seconds
        )
        return started, results

    # --- information -----------------------------------------------------------------

    def info(self) -> ServerInfo:
        return ServerInfo(
            build=build(),
            start_time=datetime.fromtimestamp(self._start_wall, UTC),
            uptime_s=time.monotonic() - self._start_monotonic,
            api_versions=self._api_versions,
            database_backend=self._db.url.get_backend_name(),
        )

    def config(self) -> list[ConfigEntry]:
        return effective_config(self.settings, self._sources, derived=self._derived)

    # --- metrics ---------------------------------------------------------------------

    async def metrics(self) -> bytes:
        """The Prometheus text exposition: request metrics, then the domain gauges."""
        gauges = await self.gauges.exposition()
        return metrics.exposition() + gauges

    async def aclose(self) -> None:
        await self._probes.aclose()
