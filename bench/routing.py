"""Routing cost per referral: the bundled fixture routing file and a 200-rule file, against a
default-only file (the floor: reading the record's facts) and one translation (intake's cost).

    .venv/bin/python bench/routing.py [--seconds 1] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.mapping.engine import load_mappings
from gateway.routing.router import route
from gateway.routing.rules import RoutingFile, load_routing

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
ROUTING = ROOT / "tests" / "routing" / "files"


def _many_rules(directory: Path) -> Path:
    """A routing file of 200 rules (practice, PCN, postcode and need) that few records match."""
    lines = ["practice_pcns: " + str(ROUTING / "epcn-core-partners.csv"), "rules:"]
    for n in range(50):
        lines += [
            f"  - {{hub: h{n}, practice: [C{n:05d}, D{n:05d}, E{n:05d}]}}",
            f"  - {{hub: h{n}, pcn: [U8{n:04d}]}}",
            f"  - {{hub: h{n}, postcode_district: [ZZ{n}]}}",
            f"  - {{hub: h{n}, need: [{{system: 'http://snomed.info/sct', code: '9{n:06d}'}}]}}",
        ]
    lines.append("default: {hold: none}")
    path = directory / "many.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _rate(call: Callable[[], Any], seconds: float) -> float:
    """Microseconds per call over ``seconds``."""
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(200):
            call()
        calls += 200
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return elapsed / calls * 1e6


def main() -> None:
    """Print microseconds per route for each routing file and per translation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*/*.record.json"))]
    with tempfile.TemporaryDirectory() as tmp:
        floor = Path(tmp) / "default.yaml"
        floor.write_text("rules: []\ndefault: {hub: everyone}\n")
        files: dict[str, RoutingFile] = {
            "default only (floor)": load_routing(floor),
            "tests/routing/files (5 rules)": load_routing(ROUTING / "routing.yaml"),
            "200 rules": load_routing(_many_rules(Path(tmp))),
        }
    from gateway.intake.fhir import translate_message

    mappings = load_mappings(ROOT / "mappings")
    body = (FIXTURES / "uk-core" / "01-new-referral.json").read_bytes()

    def all_records(routing: RoutingFile) -> Callable[[], Any]:
        def call() -> None:
            for record in records:
                route(routing, record)

        return call

    results: dict[str, list[float]] = {name: [] for name in files}
    results["translation, uk-core 01"] = []
    for _ in range(args.rounds):
        for name, routing in files.items():
            per_batch = _rate(all_records(routing), args.seconds)
            results[name].append(per_batch / len(records))
        results["translation, uk-core 01"].append(
            _rate(
                lambda: translate_message(mappings, "uk-core", body, "application/fhir+json"),
                args.seconds,
            )
        )
    print(f"Routing, {len(records)} fixture records, median of {args.rounds} x {args.seconds} s")
    for name, values in results.items():
        print(f"  {name:32} {statistics.median(values):8.2f} µs per referral")


if __name__ == "__main__":
    main()
