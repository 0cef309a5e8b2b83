"""Prometheus metrics: what every process counts, and the page ``/metrics`` serves.

The gunicorn workers, the outbox workers and the MLLP process each count into files under
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode), which
``gateway.metrics_dir.prepare`` sets before this module is first imported: one folder per
process role under GATEWAY_METRICS_DIR, and ``/metrics`` in any web worker adds up the files
of every role. Without that directory (a test, ``gateway translate``)
counting works within the process. Labels carry source, channel, outcome and destination
names only: never a message's content.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from gateway.metrics_dir import ENV

#: Seconds: intake answers in milliseconds, translation in tenths of one.
_INTAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_TRANSLATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)

MESSAGES = Counter(
    "gateway_messages",
    "Inbound messages by source, channel and outcome",
    ["source", "channel", "outcome"],
)
INTAKE_SECONDS = Histogram(
    "gateway_intake_seconds",
    "Time from a message's arrival to its answer",
    ["channel"],
    buckets=_INTAKE_BUCKETS,
)
TRANSLATION_SECONDS = Histogram(
    "gateway_translation_seconds",
    "Time to translate one message",
    ["source"],
    buckets=_TRANSLATION_BUCKETS,
)
DELIVERIES = Counter(
    "gateway_delivery_attempts",
    "Outbox delivery attempts by destination and result",
    ["destination", "result"],
)
DEAD_LETTERS = Counter(
    "gateway_dead_letters", "Outbox items given up on, by destination", ["destination"]
)
MLLP_CONNECTIONS = Gauge(
    "gateway_mllp_connections",
    "Open MLLP connections by source",
    ["source"],
    multiprocess_mode="livesum",
)
MLLP_OPENED = Counter(
    "gateway_mllp_connections_opened", "MLLP connections served, by source", ["source"]
)
MLLP_REFUSED = Counter(
    "gateway_mllp_connections_refused",
    "MLLP connections refused, by source and reason (busy, shutdown, address, tls)",
    ["source", "reason"],
)


def process_ended(pid: int) -> None:
    """Drop a finished process's live gauges (gunicorn's ``child_exit`` hook calls it)."""
    if os.environ.get(ENV):
        mark_process_dead(pid)  # type: ignore[no-untyped-call]


class OutboxCollector(Collector):
    """Outbox depth and oldest-item age by state, read from the store when scraped."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, int, float | None]]]) -> None:
        self.read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """The two gauges from one read of (state, count, age of oldest in seconds)."""
        depth = GaugeMetricFamily("gateway_outbox_items", "Outbox items by state", labels=["state"])
        age = GaugeMetricFamily(
            "gateway_outbox_oldest_seconds",
            "Age of the oldest outbox item by state",
            labels=["state"],
        )
        for state, count, oldest in self.read():
            depth.add_metric([state], count)
            age.add_metric([state], oldest or 0.0)
        yield depth
        yield age


def exposition(
    outbox: OutboxCollector | None = None, root: str | Path | None = None
) -> tuple[bytes, str]:
    """The text ``/metrics`` answers: every process's counts (or this one's) and the outbox.

    In multiprocess mode, the files of this process's folder and of every role's folder
    under ``root``. A fresh registry per scrape, so concurrent scrapes never share one.
    """
    registry = CollectorRegistry()
    own = os.environ.get(ENV)
    if own:
        registry.register(_Files(own, root))
    else:
        registry.register(_ThisProcess())
    if outbox is not None:
        registry.register(outbox)
    return generate_latest(registry), CONTENT_TYPE_LATEST


class _ThisProcess(Collector):
    """This process's own metrics (the default registry's), for a scrape's registry."""

    def collect(self) -> Iterable[Any]:
        """Whatever the default registry holds now."""
        return REGISTRY.collect()


class _Files(Collector):
    """The sum of every counting file of this process's folder and ``root``'s role folders."""

    def __init__(self, own: str, root: str | Path | None) -> None:
        self.own = Path(own)
        self.root = Path(root) if root else None

    def collect(self) -> Iterable[Any]:
        """Merged from the files as they are now (a process may start or end meanwhile)."""
        files = set(self.own.glob("*.db"))
        if self.root is not None:
            files.update(self.root.glob("*/*.db"))
        merged = MultiProcessCollector.merge(sorted(map(str, files)), accumulate=True)  # type: ignore[no-untyped-call]
        return cast(Iterable[Any], merged)
