"""A store locked for 35 s, longer than the lease (6 s) and SQLite's wait (30 s), mid-delivery.

Two stores, locked at once for the same 35 s, each with its webhook target and two items
queued for one referral (version 1, then version 2 behind it). The target holds its answer
to the first item until the lock is in place, then answers, so the worker must record a
delivery in a store it cannot write to. "alone": one worker, which must survive, record
the first item once the lock goes (not send it again) and then deliver the pending second.
"contended": a second, idle worker is waiting to take over the first item's lapsed lease;
the target may get that item twice (the gateway cannot know the first answer was kept), but
never under two deliveries, and nothing may be lost. The lock is taken as a hand-run
``sqlite3`` or a backup would take it: BEGIN IMMEDIATE, without the gateway's write queue.
"""

from __future__ import annotations

import random
import sqlite3
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from faults.deliveries import all_delivered, delivery_counts, outbox, queue_webhooks, receipts
from faults.ledger import line
from faults.procs import Process, Processes, Store, destinations_file, report, wait_for
from fhirserver import free_port

LOCK_SECONDS = 35.0
#: Delivery must resume within this many seconds of the lock's release.
RESUME = 10.0


@dataclass
class Scene:
    """One store with its target and workers."""

    name: str
    store: Store
    destinations: Path
    port: int
    log: Path
    hold: Path
    workers: list[Process]


def scene(root: Path, name: str, run: int) -> Scene:
    """A store with two webhooks queued for one referral, and a target that holds answers."""
    folder = root / name
    folder.mkdir()
    store = Store(folder)
    port = free_port()
    destinations = destinations_file(folder, port)
    queue_webhooks(store, destinations, 1, run, updated=True)
    hold = folder / "hold"
    hold.touch()
    return Scene(name, store, destinations, port, folder / "receipts.log", hold, [])


def sent_once(log: Path) -> bool:
    """True once the target has received exactly one request."""
    return len(receipts(log)) == 1


def test_outbox_workers_survive_a_35_second_store_lock_and_deliver_after_it(
    processes: Processes, rng: random.Random, tmp_path: Path
) -> None:
    run = rng.randrange(10**6)
    alone, contended = scene(tmp_path, "alone", run), scene(tmp_path, "contended", run)
    for s in (alone, contended):
        processes.receiver(s.port, s.log, hold=s.hold)
    for s, count in ((alone, 1), (contended, 2)):
        s.workers = [
            processes.worker(s.store, s.destinations, f"{s.name}-worker-{n}", wait=False)
            for n in range(1, count + 1)
        ]
    for s in (alone, contended):
        for worker in s.workers:
            worker.wait_ready()
    for s in (alone, contended):
        assert wait_for(partial(sent_once, s.log), 30), s.workers[0].log_tail()
        assert outbox(s.store.path)[1][:2] == ("delivering", 1)  # in flight, held back
    locks = [
        sqlite3.connect(s.store.path, isolation_level=None, timeout=30) for s in (alone, contended)
    ]
    for lock in locks:
        lock.execute("BEGIN IMMEDIATE")
    locked = time.monotonic()
    for s in (alone, contended):
        s.hold.unlink()  # the target answers 200: the worker must now record it
    while time.monotonic() - locked < LOCK_SECONDS:
        for s in (alone, contended):
            assert all(w.alive for w in s.workers), f"{s.name}: a worker died under the lock"
        time.sleep(0.5)
    for lock in locks:
        lock.execute("ROLLBACK")
        lock.close()
    released = time.time()
    for s in (alone, contended):
        assert wait_for(partial(all_delivered, s.store.path, 2), RESUME), outbox(s.store.path)
    for s in (alone, contended):
        got = receipts(s.log)
        counts = delivery_counts(s.store.path, got)
        resumed = got[-1].at - released
        report(f"store lock, {s.name}: {line(counts)} item 2 {resumed:.1f} s after the release")
        assert all(w.alive for w in s.workers), f"{s.name}: a worker died after the lock"
        assert counts["lost"] == counts["duplicated"] == counts["unknown"] == 0
        assert counts["accepted"] == 2
        assert resumed <= RESUME
        assert got[-1].delivery == 2 and got[-1].version == 2  # in order: version 2 last
    assert [r.delivery for r in receipts(alone.log)] == [1, 2]  # recorded, not sent again
    assert "cannot record delivered (StoreUnavailable)" in alone.workers[0].log_text()
    got = receipts(contended.log)
    assert delivery_counts(contended.store.path, got)["redelivered"] <= 1, [
        (r.delivery, r.version, round(r.at - released, 2)) for r in got
    ]
