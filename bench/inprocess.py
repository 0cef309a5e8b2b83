"""Section 1: in-process translation speed on one core, no HTTP and no store."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from payload import FIXTURES, LOAD_SOURCE

from gateway.fhir.body import decode_body
from gateway.fhir.structure import check_resource
from gateway.intake.fhir import translate_message
from gateway.mapping.engine import Mapping, load_mappings
from gateway.record.model import ReferralRecord
from gateway.record.schema import validate_record

SOURCES = ("emis-web", "systmone", "vision", "uk-core")
CONTENT_TYPE = "application/fhir+json"
TARGET_PER_SECOND = 5000.0


@dataclass(frozen=True)
class Timing:
    """How many calls ran in how long, and the fastest of the 0.1 s windows.

    The machine is shared, so the best window shows the code's speed without the neighbours'
    interference; the mean over the whole run is the headline figure.
    """

    name: str
    calls: int
    seconds: float
    best_window_us: float

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def mean_us(self) -> float:
        return self.seconds / self.calls * 1e6

    @property
    def best_per_second(self) -> float:
        return 1e6 / self.best_window_us

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "per_second": self.per_second,
            "mean_us": self.mean_us,
            "best_per_second": self.best_per_second,
        }


@contextmanager
def pinned() -> Iterator[int]:
    """Run the block on one CPU (the last one allowed), restoring the affinity afterwards.

    Restoring matters: the servers started later inherit this process's affinity.
    """
    allowed = os.sched_getaffinity(0)
    cpu = max(allowed)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, allowed)


def _batch_size(func: Callable[[], object], warm_seconds: float) -> int:
    """Warm ``func`` up; return a batch size that takes about 5 ms, to keep the clock out."""
    warm_until = time.perf_counter() + warm_seconds
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            func()
        took = time.perf_counter() - start
        if took < 0.005:
            batch *= 2
        elif time.perf_counter() >= warm_until:
            return batch


def measure(funcs: dict[str, Callable[[], object]], seconds: float) -> list[Timing]:
    """Time each function for about ``seconds`` in 0.1 s windows taken in turn.

    Taking the functions in turn, rather than one after another, spreads any slow spell of
    the shared machine over all of them, so their ratios stay meaningful.
    """
    window = 0.1
    batches = {name: _batch_size(func, min(0.3, seconds / 5)) for name, func in funcs.items()}
    calls = dict.fromkeys(funcs, 0)
    spent = dict.fromkeys(funcs, 0.0)
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(max(1, round(seconds / window))):
        for name, func in funcs.items():
            batch, done = batches[name], 0
            start = time.perf_counter()
            while True:
                for _ in range(batch):
                    func()
                done += batch
                took = time.perf_counter() - start
                if took >= window:
                    break
            calls[name] += done
            spent[name] += took
            best[name] = min(best[name], took / done * 1e6)
    return [Timing(name, calls[name], spent[name], best[name]) for name in funcs]


def print_breakdown(
    rows: list[dict[str, Any]],
    width: int,
    decimals: int = 1,
    heading: str = "step",
    mean: str = "mean",
    rest: str | None = None,
) -> None:
    """Print steps timed in turn with the whole (``rows[0]``): each step's share, the
    remainder by difference when ``rest`` labels it, then the whole."""
    whole, *parts = rows
    num = f">8.{decimals}f"
    print(f"     {heading:<{width}} {mean:>8} {'best':>8} {'share':>6}")
    for part in parts:
        print(
            f"     {part['name']:<{width}} {part['mean_us']:{num}} {part['best_window_us']:{num}}"
            f" {part['mean_us'] / whole['mean_us']:>6.0%}"
        )
    if rest is not None:
        left = whole["mean_us"] - sum(p["mean_us"] for p in parts)
        print(f"     {rest:<{width}} {left:{num}} {'':>8} {left / whole['mean_us']:>6.0%}")
    print(f"     {whole['name']:<{width}} {whole['mean_us']:{num}} {whole['best_window_us']:{num}}")


def fixture_body(source: str) -> bytes:
    return (FIXTURES / source / "01-new-referral.json").read_bytes()


def run(seconds: float, part_seconds: float) -> dict[str, Any]:
    """Every in-process figure, as a JSON-ready dict."""
    mappings: dict[str, Mapping] = load_mappings(FIXTURES.parent / "mappings")
    out: dict[str, Any] = {"target_per_second": TARGET_PER_SECOND}
    with pinned() as cpu:
        out["cpu"] = cpu
        bodies = {source: fixture_body(source) for source in SOURCES}
        whole: dict[str, Callable[[], object]] = {}
        for source, body in bodies.items():
            translate_message(mappings, source, body, CONTENT_TYPE)  # fails loudly if invalid
            whole[source] = partial(translate_message, mappings, source, body, CONTENT_TYPE)
        out["translate"] = [
            {**t.as_dict(), "body_bytes": len(bodies[t.name])} for t in measure(whole, seconds)
        ]

        body = bodies[LOAD_SOURCE]
        resource, record, _ = translate_message(mappings, LOAD_SOURCE, body, CONTENT_TYPE)
        mapping = mappings[LOAD_SOURCE]
        parts = measure(
            {
                "translate_message (whole)": whole[LOAD_SOURCE],
                "decode_body": partial(decode_body, body, CONTENT_TYPE),
                "check_resource": partial(check_resource, resource),
                "mapping.translate": partial(mapping.translate, resource),
            },
            part_seconds,
        )
        out["breakdown"] = {"source": LOAD_SOURCE, "parts": [p.as_dict() for p in parts]}

        errors = ReferralRecord().validate(record)
        if errors:
            raise SystemExit(f"marshmallow rejects the fixture's record: {errors}")
        schema = ReferralRecord()
        validations = measure(
            {
                "validate_record (generated check)": partial(validate_record, record),
                "marshmallow ReferralRecord().validate": lambda: ReferralRecord().validate(record),
                "marshmallow, schema reused": partial(schema.validate, record),
            },
            part_seconds,
        )
        out["validation"] = [v.as_dict() for v in validations]
    return out
