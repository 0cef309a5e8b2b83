"""What the repeated-key check costs per 12 KB referral, against plain orjson.loads.

    .venv/bin/python bench/json_duplicates.py [--seconds 1.0]

Every row runs in the same process, interleaved round by round, pinned to one CPU when the
platform allows, so the baseline and the check see the same neighbours. The figure is the
median of the rounds' per-call times; the best round is printed beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.fhir.body import _parse_json, _repeated_key, _surely_unique_keys  # noqa: E402

FIXTURE = ROOT / "fixtures" / "emis-web" / "01-new-referral.json"


def _pin() -> None:
    """Run on one CPU, as the other in-process benchmarks do."""
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})


def _round(call: Callable[[], object], seconds: float) -> float:
    """Microseconds per call over one round of about ``seconds``."""
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            call()
        calls += 200
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / calls * 1e6


def main() -> None:
    """Time the baseline and the check on the load fixture and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    _pin()
    raw = FIXTURE.read_bytes()
    value = orjson.loads(raw)
    escaped = raw.find(b"\\") >= 0
    assert _surely_unique_keys(raw, value, escaped), "the fixture should take the fast path"
    rows: dict[str, Callable[[], object]] = {
        "orjson.loads (baseline)": lambda: orjson.loads(raw),
        "before: orjson.loads + NUL pre-filter": lambda: (
            orjson.loads(raw),
            b"\\u0000" in raw,
        ),
        "orjson.loads + repeat proof": lambda: _surely_unique_keys(
            raw, orjson.loads(raw), raw.find(b"\\") >= 0
        ),
        "repeat proof alone": lambda: _surely_unique_keys(raw, value, escaped),
        "_parse_json (gateway: loads, NUL and repeat checks)": lambda: _parse_json(raw),
        "slow pass (object_pairs_hook), for reference": lambda: _repeated_key(raw),
    }
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, call in rows.items():
            times[name].append(_round(call, args.seconds / len(rows)))
    print(f"{FIXTURE.relative_to(ROOT)}: {len(raw):,} bytes, {args.rounds} rounds")
    base = statistics.median(times["orjson.loads (baseline)"])
    for name, samples in times.items():
        median = statistics.median(samples)
        print(
            f"  {name:<52} {median:8.2f} µs median  {min(samples):8.2f} µs best"
            f"  ({median - base:+.2f} µs vs baseline)"
        )


if __name__ == "__main__":
    main()
