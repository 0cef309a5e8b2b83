"""What routing and consent add to intake, per referral, end to end on SQLite.

Two gateways take the same distinct uk-core referrals through ReferralIntake (translate,
route, consent, store, queue one webhook), alternating in rounds on fresh stores:

- baseline: no routing file, one platform configured (every record to it: one webhook);
- routed: the fixture routing file (tests/routing/files) and its five hubs configured (the
  routed hub's one webhook).

    .venv/bin/python bench/routing_intake.py [--referrals 1500] [--rounds 4]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from gateway.intake.fhir import ReferralIntake
from gateway.intake.journey import Journey
from gateway.mapping.engine import load_mappings
from gateway.outbound.destinations import load_destinations
from gateway.routing.rules import load_routing
from gateway.store.database import Database
from gateway.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "fixtures" / "uk-core" / "01-new-referral.json"
ROUTING = ROOT / "tests" / "routing" / "files" / "routing.yaml"
HUBS = ("calm-minds", "kirklees", "pennine", "tyneside", "leeds")


def referrals(count: int) -> list[bytes]:
    """``count`` copies of the fixture, each a new message about a new referral."""
    base = json.loads(FIXTURE.read_text())
    out = []
    for n in range(count):
        copy_ = copy.deepcopy(base)
        copy_["entry"][0]["resource"]["id"] = str(uuid.uuid4())
        for entry in copy_["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "ServiceRequest":
                resource["identifier"][0]["value"] = f"BENCH-{n:07d}"
        out.append(json.dumps(copy_).encode())
    return out


def destinations_file(directory: Path, hubs: tuple[str, ...]) -> str:
    """A destinations file with a webhook per hub (the secret is never used: no delivery)."""
    lines = ["platforms:"]
    for hub in hubs:
        lines.append(f"  {hub}: {{webhook: 'http://127.0.0.1:9/{hub}', secret_env: BENCH_SECRET}}")
    path = directory / f"destinations-{len(hubs)}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run_once(journey: Journey, bodies: list[bytes], directory: Path, mappings: Any) -> float:
    """CPU seconds of this process per referral taking ``bodies`` into a fresh store (the
    fsync wait, which dwarfs a routing decision and varies with the disk, is not counted)."""
    db = Database(f"sqlite:///{directory / f'{uuid.uuid4()}.db'}")
    upgrade(db)
    intake = ReferralIntake(db, mappings, journey)
    started = time.process_time()
    for body in bodies:
        intake.receive("uk-core", body, "application/fhir+json", channel="bench")
    elapsed = time.process_time() - started
    db.dispose()
    return elapsed / len(bodies)


def place_cost(journey: Journey, records: list[dict[str, Any]], seconds: float = 1.0) -> float:
    """Seconds per record of the routing and consent decision alone (best of 3 runs)."""
    best = float("inf")
    for _ in range(3):
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3:
            for record in records:
                journey.place(record)
            count += len(records)
        best = min(best, (time.perf_counter() - started) / count)
    return best


def main() -> None:
    """Alternate baseline and routed rounds; print the median cost per referral of each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("BENCH_SECRET", "s" * 32)
    mappings = load_mappings(ROOT / "mappings")
    bodies = referrals(args.referrals)
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        directory = Path(tmp)
        one = load_destinations(destinations_file(directory, ("only",)), set(mappings))
        five = load_destinations(destinations_file(directory, HUBS), set(mappings))
        journeys = {
            "baseline": Journey(one),
            "routed": Journey(five, load_routing(ROUTING)),
        }
        times: dict[str, list[float]] = {name: [] for name in journeys}
        run_once(journeys["baseline"], bodies[:100], directory, mappings)  # warm up
        for _ in range(args.rounds):
            for name, journey in journeys.items():
                times[name].append(run_once(journey, bodies, directory, mappings))
        records = [
            json.loads(path.read_text())
            for path in sorted((ROOT / "fixtures").glob("*/*.record.json"))
        ]
        decisions = {name: place_cost(journey, records) for name, journey in journeys.items()}
    base, routed = (statistics.median(times[n]) * 1e6 for n in ("baseline", "routed"))
    print(f"referrals per round: {args.referrals}, rounds: {args.rounds}")
    for name in journeys:
        print(f"{name:8}: {' '.join(f'{t * 1e6:7.1f}' for t in times[name])} µs/referral")
    for name, cost in decisions.items():
        print(f"{name:8}: Journey.place {cost * 1e6:.2f} µs per record (every fixture's golden)")
    print(f"the decision adds {(decisions['routed'] - decisions['baseline']) * 1e6:+.2f} µs")
    added = routed - base
    print(f"end to end (CPU): baseline {base:.1f} µs, routed {routed:.1f} µs: {added:+.1f} µs")


if __name__ == "__main__":
    main()
