"""Domain gauges: numbers about the product's rows, read from the database at scrape
time, cached for a few seconds.

The hook other parts of the server use to add a gauge (server/app.py registers the
job gauges; dead-letter size or instances by status join the same way)::

    gauges.register(
        DomainGauge(
            "orchestrator_deadletter_entries",
            "Dead-letter entries not yet replayed, by tenant.",
            ("tenant",),
            read=lambda: deadletter_counts(db),  # async -> [(("acme",), 3.0), ...]
        )
    )

A `read` must be cheap: a query an index answers (a GROUP BY over a partial index),
never a scan of a table that grows with history, because it runs on a scrape. The
cache makes every read run at most once per `ttl_s` (5 s by default) however many
scrapers there are (an HA pair of Prometheus servers scrapes each target twice per
interval), and concurrent scrapes share one read. Every replica reads the same
database, so across replicas aggregate these with max(), never sum().

A read that fails or takes longer than `timeout_s` leaves its family out of that
scrape (stale numbers would mislead) and sets `orchestrator_domain_gauge_up{gauge}`
to 0; the others are served.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("orchestrator.metrics")

METRIC_NAME: Final = re.compile(r"^orchestrator_[a-z][a-z0-9_]*$")
UP_FAMILY: Final = "orchestrator_domain_gauge_up"

Samples = Iterable[tuple[Sequence[str], float]]


@dataclass(frozen=True, slots=True)
class DomainGauge:
    """One gauge family: `read()` returns its samples as (label values, value), the
    label values in the order of `labels`."""

    name: str  # "orchestrator_..." (Prometheus naming: base units, no _total)
    documentation: str
    labels: tuple[str, ...]
    read: Callable[[], Awaitable[Samples]]


class DomainGauges:
    """The registered gauges and their last reading."""

    def __init__(
        self,
        *,
        ttl_s: float = 5.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gauges: dict[str, DomainGauge] = {}
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._families: list[GaugeMetricFamily] = []
        self._read_at: float | None = None
        self._lock = asyncio.Lock()
        self.reads = 0  # how many times the gauges were read (the cache's effect)

    def register(self, gauge: DomainGauge) -> None:
        """Add a gauge. Raises ValueError for a name that is not `orchestrator_...` in
        Prometheus's lower_snake_case or is already registered (wiring bugs, at start)."""
        if not METRIC_NAME.fullmatch(gauge.name) or gauge.name == UP_FAMILY:
            raise ValueError(f"gauge name {gauge.name!r} must be orchestrator_<snake_case>")
        if gauge.name in self._gauges:
            raise ValueError(f"gauge {gauge.name!r} is already registered")
        self._gauges[gauge.name] = gauge
        self._read_at = None  # the next scrape reads the new one too

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._gauges)

    def invalidate(self) -> None:
        """Forget the last reading: the next scrape reads the database."""
        self._read_at = None

    async def families(self) -> list[GaugeMetricFamily]:
        """The gauges' families, read now unless the last reading is fresh."""
        async with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._ttl_s:
                self._families = await self._read_all()
                self._read_at = self._clock()
            return self._families

    async def exposition(self) -> bytes:
        """The families in the Prometheus text format."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Fixed(await self.families()))
        return generate_latest(registry)

    async def _read_all(self) -> list[GaugeMetricFamily]:
        self.reads += 1
        gauges = list(self._gauges.values())
        results = await asyncio.gather(*(self._read(gauge) for gauge in gauges))
        families: list[GaugeMetricFamily] = []
        up = GaugeMetricFamily(
            UP_FAMILY,
            "1 when the domain gauge was read at the last scrape, else 0.",
            labels=["gauge"],
        )
        for gauge, family in zip(gauges, results, strict=True):
            up.add_metric([gauge.name], 0.0 if family is None else 1.0)
            if family is not None:
                families.append(family)
        return [*families, up] if gauges else []

    async def _read(self, gauge: DomainGauge) -> GaugeMetricFamily | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                samples = list(await gauge.read())
        except Exception as exc:
            log.warning("domain gauge %s not read: %s: %s", gauge.name, type(exc).__name__, exc)
            return None
        family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=list(gauge.labels))
        for values, value in samples:
            family.add_metric([str(v) for v in values], float(value))
        return family


class _Fixed(Collector):
    def __init__(self, families: Sequence[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families
