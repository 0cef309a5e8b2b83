"""Where the gateway counts: one call per event, a no-op when metrics are off.

Importing this module does not import prometheus_client (``gateway.metrics`` does, the first
time something is counted), so a process can still choose multiprocess mode after importing
the intake (``gateway.metrics_dir``). ``GATEWAY_METRICS=0`` turns every call here into a
return, which is what the benchmark compares against.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from gateway.intake.pipeline import Outcome, Steps
    from gateway.store.messages import InboundMessage

_switch: bool | None = None
_module: ModuleType | None = None


def enabled() -> bool:
    """Whether this process counts (GATEWAY_METRICS, default on; ``switch`` overrides it)."""
    global _switch
    if _switch is None:
        _switch = os.environ.get("GATEWAY_METRICS", "1").strip() not in ("0", "false", "no", "")
    return _switch


def switch(on: bool) -> None:
    """Turn counting on or off for this process (and, through the environment, its children)."""
    global _switch
    _switch = on
    os.environ["GATEWAY_METRICS"] = "1" if on else "0"


def _metrics() -> ModuleType:
    """gateway.metrics, imported on first use (after the multiprocess directory is set)."""
    global _module
    if _module is None:
        from gateway import metrics

        _module = metrics
    return _module


def outcome_name(outcome: Outcome) -> str:
    """accepted, rejected (the message's fault) or failed (ours, or the store away)."""
    error = outcome.error
    if error is None:
        return "accepted"
    return "failed" if error.status >= 500 else "rejected"


@functools.lru_cache(maxsize=4096)
def _child(family: str, *labels: str) -> Any:
    """A family's child for these label values, looked up once (``labels()`` takes a lock and
    costs microseconds; sources, channels and destinations are few)."""
    return getattr(_metrics(), family).labels(*labels)


class _TimedSteps:
    """A channel's steps whose ``translate`` is timed; everything else passes through."""

    def __init__(self, steps: Steps, source: str) -> None:
        self._steps = steps
        self._source = source

    def translate(self) -> dict[str, Any]:
        """The wrapped steps' translation, observed in the translation histogram."""
        started = time.perf_counter()
        try:
            return self._steps.translate()
        finally:
            seconds = time.perf_counter() - started
            _child("TRANSLATION_SECONDS", self._source).observe(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._steps, name)


Take = Callable[[Any, "InboundMessage", "Steps"], "Outcome"]


def counted_intake(take: Take) -> Take:
    """Decorate ``Pipeline.take``: count each message by source, channel and outcome, and time
    the whole intake and its translation."""

    @functools.wraps(take)
    def counted(pipeline: Any, message: InboundMessage, steps: Steps) -> Outcome:
        if not enabled():
            return take(pipeline, message, steps)
        started = time.perf_counter()
        outcome = take(pipeline, message, cast("Steps", _TimedSteps(steps, message.source)))
        seconds = time.perf_counter() - started
        _child("MESSAGES", message.source, message.channel, outcome_name(outcome)).inc()
        _child("INTAKE_SECONDS", message.channel).observe(seconds)
        return outcome

    return counted


def delivery_attempt(destination: str, result: str) -> None:
    """One outbox delivery attempt ended: delivered, retry or dead."""
    if enabled():
        _child("DELIVERIES", destination, result).inc()
        if result == "dead":
            _child("DEAD_LETTERS", destination).inc()


def mllp_opened(source: str) -> None:
    """An MLLP connection is being served (opened, and now current)."""
    if enabled():
        _child("MLLP_OPENED", source).inc()
        _child("MLLP_CONNECTIONS", source).inc()


def mllp_closed(source: str) -> None:
    """A served MLLP connection has ended (no longer current)."""
    if enabled():
        _child("MLLP_CONNECTIONS", source).dec()


def mllp_refused(source: str, reason: str) -> None:
    """An MLLP connection was refused: busy, shutdown, address or tls."""
    if enabled():
        _child("MLLP_REFUSED", source, reason).inc()
