"""What auditing a read costs: GET /records/{id} and feed pages with and without the audit
append, in one process on a SQLite store, alternating.

    .venv/bin/python bench/feed_reads.py [--referrals 300] [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from payload import LOAD_SOURCE, fill, referral_template  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.channels import records  # noqa: E402
from gateway.services import services  # noqa: E402
from gateway.store.keys import create_key  # noqa: E402
from gateway.store.migrate import upgrade  # noqa: E402


def _rate(call: Callable[[], Any], seconds: float) -> float:
    """Calls per second over ``seconds``."""
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        call()
        calls += 1
    return calls / (time.perf_counter() - start)


def main() -> None:
    """Print reads per second with the audit append (shipped) and without (baseline)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.INFO)  # intake logs a line per referral
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp}/bench.db"})
        db = services(app).db
        upgrade(db)
        source_key = create_key(db, "source", LOAD_SOURCE)
        platform = {"Authorization": f"Bearer {create_key(db, 'platform', 'bench')}"}
        client = app.test_client()
        template = referral_template()
        for n in range(args.referrals):
            answer = client.post(
                "/fhir/$process-message",
                data=fill(template, 1, 0, n),
                headers={
                    "Authorization": f"Bearer {source_key}",
                    "Content-Type": "application/fhir+json",
                },
            )
            assert answer.status_code == 200, answer.get_data(as_text=True)
        first = client.get("/records?limit=1", headers=platform).get_json()["items"][0]["id"]

        def one() -> None:
            assert client.get(f"/records/{first}", headers=platform).status_code == 200

        def page() -> None:
            assert client.get("/records?limit=100", headers=platform).status_code == 200

        shipped = records.record_event
        results: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for audited in (False, True):
                records.record_event = shipped if audited else (lambda *a, **k: None)  # type: ignore[assignment]
                side = "audited" if audited else "baseline"
                results.setdefault(f"record {side}", []).append(_rate(one, args.seconds))
                results.setdefault(f"feed page {side}", []).append(_rate(page, args.seconds))
        records.record_event = shipped  # type: ignore[assignment]
    print(f"Reads per second, median of {args.rounds} alternating rounds of {args.seconds} s")
    for name, values in results.items():
        print(f"  {name:22} {statistics.median(values):8.1f}/s")


if __name__ == "__main__":
    main()
