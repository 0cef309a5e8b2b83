"""The outbox side of the fault tests: queueing webhooks, and counting what the target got.

Referrals are taken through the real intake (an app on the test's store, destinations
configured), so each new record version queues one webhook outbox item as in production.
The target (receiver.py) logs one line per request it received; a platform de-duplicates
on ``X-Gateway-Delivery`` (the outbox item id), so "accepted" is the distinct ids, and a
"redelivery" is a second request for an id, which the gateway sends only when it could not
know the first arrived (its worker died, or the answer was lost with the target).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from faults.ledger import fhir_referral
from faults.procs import Store
from support import build_gateway

from gateway.services import services


@dataclass(frozen=True)
class Receipt:
    """One request the target received."""

    at: float
    delivery: int
    record: str
    version: int


def queue_webhooks(
    store: Store, destinations: Path, count: int, run: int, *, updated: bool = False
) -> None:
    """Take ``count`` new referrals through intake, so ``count`` webhooks are queued; with
    ``updated``, then an update of each (a second version, queued behind the first)."""
    gw = build_gateway(store.url, DESTINATIONS=str(destinations), OUTBOX_IN_SERVE=0)
    versions = ["01-new-referral.json", "02-update-reason.json"][: 2 if updated else 1]
    try:
        for version, fixture in enumerate(versions, 1):
            for n in range(count):
                _, body = fhir_referral(n, run, fixture)
                answer = gw.post("/fhir/$process-message", body, "emis-web")
                assert answer.status_code == 200, answer.data[:500]
                assert f"stored as version {version}".encode() in answer.data, answer.data[:500]
    finally:
        services(gw.app).db.dispose()


def receipts(log: Path) -> list[Receipt]:
    """Every request the target logged, in arrival order."""
    if not log.exists():
        return []
    found = []
    for row in log.read_text().splitlines():
        at, delivery, record, version = row.split()
        found.append(Receipt(float(at), int(delivery), record, int(version)))
    return found


def outbox(db_path: Path) -> dict[int, tuple[str, int, str]]:
    """Outbox item id -> (status, attempts, idempotency key)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT id, status, attempts, idempotency_key FROM outbox").fetchall()
    finally:
        conn.close()
    return {int(i): (status, int(attempts), key) for i, status, attempts, key in rows}


def all_delivered(db_path: Path, count: int) -> bool:
    """True once ``count`` items are queued and every one is delivered."""
    items = outbox(db_path)
    return len(items) == count and all(s == "delivered" for s, _, _ in items.values())


def delivery_counts(db_path: Path, got: list[Receipt]) -> dict[str, int]:
    """queued, delivered (by the store), accepted (distinct ids at the target), lost,
    duplicated (one record version under several ids, or queued twice), redelivered."""
    items = outbox(db_path)
    per_id = Counter(r.delivery for r in got)
    ids_per_version: dict[tuple[str, int], set[int]] = {}
    for r in got:
        ids_per_version.setdefault((r.record, r.version), set()).add(r.delivery)
    keys = Counter(key for _, _, key in items.values())
    delivered = {i for i, (status, _, _) in items.items() if status == "delivered"}
    return {
        "queued": len(items),
        "delivered": len(delivered),
        "accepted": len(per_id),
        "lost": len(set(items) - set(per_id)),
        "duplicated": sum(1 for ids in ids_per_version.values() if len(ids) > 1)
        + sum(n - 1 for n in keys.values()),
        "redelivered": sum(n - 1 for n in per_id.values()),
        "unknown": len(set(per_id) - set(items)),
    }
