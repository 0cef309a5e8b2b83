"""The outbox: order per referral, retries with backoff, dead letters, and no double delivery."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from outbound.rows import fill, referral_rows
from sqlalchemy import event, select, update

from gateway.errors import PermanentDeliveryError, TransientDeliveryError
from gateway.outbound import queue
from gateway.outbound.destinations import Retry
from gateway.outbound.supervisor import Supervisor
from gateway.outbound.worker import Worker, backoff
from gateway.store import outbox as outbox_store
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.models import OutboxItem
from gateway.store.outbox import Claimed, enqueue, now_utc

FAST = Retry(max_attempts=3, base_delay=0.0, max_delay=0.0)


@pytest.fixture
def db(db_url: str) -> Any:
    database = Database(db_url)
    upgrade(database)
    yield database
    database.dispose()


def test_two_workers_deliver_a_thousand_items_once_each_in_order(db: Database) -> None:
    referrals = referral_rows(db, 100)
    fill(db, referrals, 10)
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def deliver(item: Claimed) -> str:
        with lock:
            seen.append((item.referral_id, item.payload["step"]))
        return "ok"

    workers = [Worker(db, {"test": deliver}, FAST, idle_sleep=0.01) for _ in range(2)]

    def drain(worker: Worker) -> None:
        idle = 0
        while idle < 20:
            idle = 0 if worker.run_once() else idle + 1

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(seen) == 1000
    assert len(set(seen)) == 1000  # no item twice
    for rid in referrals:  # per referral, steps in order
        assert [s for r, s in seen if r == rid] == list(range(10))
    assert outbox_store.counts(db) == {"delivered": 1000}


def test_transient_failures_retry_then_dead_letter_and_replay(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 2)
    calls: list[int] = []

    def flaky(item: Claimed) -> str:
        calls.append(item.id)
        raise TransientDeliveryError("503 from target", response="busy")

    worker = Worker(db, {"test": flaky}, FAST)
    for _ in range(10):
        worker.run_once()
    dead = outbox_store.dead_letters(db)
    assert [d["attempts"] for d in dead] == [3]  # the first item, after max_attempts
    assert dead[0]["response"] == "busy"
    assert len(calls) == 3  # the second item waits behind the dead first one
    queue.replay(db, dead[0]["id"])
    assert Worker(db, {"test": lambda item: "ok"}, FAST).run_once()
    assert Worker(db, {"test": lambda item: "ok"}, FAST).run_once()
    assert outbox_store.counts(db) == {"delivered": 2}


def test_permanent_rejection_goes_straight_to_dead_letters(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)

    def reject(item: Claimed) -> str:
        raise PermanentDeliveryError(
            "400 HAPI-0450: bad", response='{"resourceType":"OperationOutcome"}'
        )

    Worker(db, {"test": reject}, Retry()).run_once()
    (dead,) = outbox_store.dead_letters(db)
    assert dead["attempts"] == 1 and "HAPI-0450" in dead["last_error"]


def test_a_fault_in_the_deliverer_is_retried_not_lost(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)

    def broken(item: Claimed) -> str:
        raise RuntimeError("bug")

    Worker(db, {"test": broken}, FAST).run_once()
    assert outbox_store.counts(db) == {"pending": 1}


def test_an_expired_lease_is_claimed_again(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)
    first = queue.claim(db, lease_seconds=60)
    assert first is not None and queue.claim(db) is None  # leased
    with db.writing() as conn:
        conn.execute(update(OutboxItem).values(lease_until=now_utc() - timedelta(seconds=1)))
    again = queue.claim(db)
    assert again is not None and again.id == first.id and again.attempts == 2


def test_retry_after_is_honoured_and_backoff_grows() -> None:
    policy = Retry(max_attempts=10, base_delay=2.0, max_delay=600.0)
    assert backoff(1, policy, retry_after=120) >= 120
    assert 1.0 <= backoff(1, policy) <= 3.0
    assert 256.0 <= backoff(9, policy) <= 600.0
    assert backoff(30, policy) <= 600.0


def test_a_repeated_key_queues_nothing(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)
    fill(db, [rid], 1)
    with db.reading() as session:
        assert len(session.scalars(select(OutboxItem.id)).all()) == 1


def test_a_fault_that_persists_is_dead_lettered_in_the_end(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)

    def broken(item: Claimed) -> str:
        raise RuntimeError("bug")

    worker = Worker(db, {"test": broken}, FAST)
    for _ in range(FAST.max_attempts):
        worker.run_once()
    assert outbox_store.counts(db) == {"dead": 1}


def test_discarding_a_dead_item_lets_later_items_go(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 2)

    def reject(item: Claimed) -> str:
        raise PermanentDeliveryError("400")

    Worker(db, {"test": reject}, FAST).run_once()
    (dead,) = outbox_store.dead_letters(db)
    assert queue.claim(db) is None  # held back behind the dead item
    queue.discard(db, dead["id"])
    assert Worker(db, {"test": lambda item: "ok"}, FAST).run_once()
    assert outbox_store.counts(db) == {"delivered": 1, "discarded": 1}


# --- Surviving a locked store, leases that follow the delivery, recovery after an outage ---

CHILD_WORKER = """
import pathlib, sys, time
from gateway.outbound.destinations import Retry
from gateway.outbound.worker import Worker
from gateway.store.database import Database

url, marker = sys.argv[1], pathlib.Path(sys.argv[2])

def hang(item):
    marker.write_text(str(item.id))
    time.sleep(600)

Worker(Database(url), {"test": hang}, Retry(), idle_sleep=0.05).run_forever()
"""


def short_busy_timeout(db: Database, milliseconds: int) -> None:
    """Make every new connection of ``db`` give up on SQLite's lock after ``milliseconds``."""

    def pragma(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.execute(f"PRAGMA busy_timeout={milliseconds}")

    for engine in (db.engine, db.read_engine):
        event.listen(engine, "connect", pragma)


def wait_for(condition: Any, seconds: float) -> bool:
    """Poll ``condition`` until it is true or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_the_worker_survives_a_store_locked_longer_than_its_wait(sqlite_url: str) -> None:
    # The store's write lock is held by another connection for ten times the worker's busy
    # timeout, just as the worker records a delivery: it must wait it out, not die.
    db = Database(sqlite_url)
    short_busy_timeout(db, 200)
    upgrade(db)
    rid, later = referral_rows(db, 2)
    fill(db, [rid], 1)
    locked, released = threading.Event(), threading.Event()
    calls: list[int] = []

    def hold_write_lock() -> None:
        conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(2.5)
        conn.execute("ROLLBACK")
        conn.close()
        released.set()

    def deliver(item: Claimed) -> str:
        calls.append(item.id)
        if len(calls) == 1:  # the store locks while the first delivery is in flight
            threading.Thread(target=hold_write_lock, daemon=True).start()
            locked.wait(5)
        return "ok"

    worker = Worker(db, {"test": deliver}, FAST, idle_sleep=0.05)
    thread = worker.start()
    try:
        assert released.wait(10)
        fill(db, [later], 1)  # a new item after the lock
        assert wait_for(lambda: outbox_store.counts(db) == {"delivered": 2}, 10), (
            outbox_store.counts(db)
        )
        assert thread.is_alive()
        assert len(calls) == 2  # the first was recorded once the lock went, not sent again
    finally:
        worker.stop()
        thread.join(10)
        db.dispose()


def test_a_killed_workers_item_is_delivered_by_another_within_ten_seconds(
    db: Database, tmp_path: Path
) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)
    marker = tmp_path / "delivering"
    child = subprocess.Popen([sys.executable, "-c", CHILD_WORKER, db.url, str(marker)])
    try:
        assert wait_for(marker.exists, 20), "the first worker never started delivering"
    finally:
        child.send_signal(signal.SIGKILL)  # mid-delivery: its lease is never released
        child.wait(10)
    killed = time.monotonic()
    taken: list[Claimed] = []

    def deliver(item: Claimed) -> str:
        taken.append(item)
        return "ok"

    survivor = Worker(db, {"test": deliver}, FAST, idle_sleep=0.05)
    while not taken and time.monotonic() - killed < 10:
        if not survivor.run_once():
            time.sleep(0.05)
    assert taken, "the item was not taken over within 10 s"
    assert taken[0].id == int(marker.read_text()) and taken[0].attempts == 2
    assert outbox_store.counts(db) == {"delivered": 1}


def test_a_slow_delivery_keeps_its_item_by_renewing_the_lease(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)
    started, finish = threading.Event(), threading.Event()

    def slow(item: Claimed) -> str:
        started.set()
        finish.wait(10)
        return "ok"

    worker = Worker(db, {"test": slow}, FAST, lease_seconds=1.0)
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    assert started.wait(10)
    deadline = time.monotonic() + 2.5  # two and a half leases
    while time.monotonic() < deadline:
        assert queue.claim(db, lease_seconds=1.0) is None  # still held by the slow delivery
        time.sleep(0.1)
    finish.set()
    thread.join(10)
    assert outbox_store.counts(db) == {"delivered": 1}


def test_a_claim_that_was_taken_over_can_neither_renew_nor_finish(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)
    first = queue.claim(db)
    assert first is not None
    with db.writing() as conn:
        conn.execute(update(OutboxItem).values(lease_until=now_utc() - timedelta(seconds=1)))
    second = queue.claim(db)
    assert second is not None and second.attempts == first.attempts + 1
    assert not queue.renew(db, first)
    assert not outbox_store.delivered(db, first.id, "late", attempt=first.attempts)
    assert outbox_store.counts(db) == {"delivering": 1}
    assert queue.renew(db, second)
    assert outbox_store.delivered(db, second.id, "ok", attempt=second.attempts)
    assert outbox_store.counts(db) == {"delivered": 1}


def test_the_default_retry_schedule_is_capped_at_thirty_seconds() -> None:
    policy = Retry()
    delays = [backoff(attempt, policy) for attempt in range(1, policy.max_attempts)]
    assert max(delays) <= 30.0
    assert all(d >= 15.0 for d in delays[4:])  # at the cap: 15-30 s, spread by jitter
    # While a target stays down, an item is kept for at least 24 minutes of retries.
    assert sum(delays) >= 24 * 60


def test_a_delivery_that_succeeds_wakes_its_destinations_waiting_items(db: Database) -> None:
    waiting_a, waiting_b, fresh_a, other = referral_rows(db, 4)
    slow = Retry(max_attempts=5, base_delay=100.0, max_delay=100.0)
    down = {"up": False}

    def target(item: Claimed) -> str:
        if not down["up"]:
            raise TransientDeliveryError("connection refused")
        return "ok"

    with db.writing() as conn:
        for rid, destination in (
            (waiting_a, "writeback:a"),
            (waiting_b, "writeback:a"),
            (other, "writeback:b"),
        ):
            enqueue(
                conn, referral_id=rid, destination=destination, kind="test", key=rid, payload={}
            )
    worker = Worker(db, {"test": target}, slow)
    assert [worker.run_once() for _ in range(4)] == [True, True, True, False]  # all waiting
    down["up"] = True  # the target is back; a new item for it goes first
    with db.writing() as conn:
        enqueue(
            conn, referral_id=fresh_a, destination="writeback:a", kind="test", key="new", payload={}
        )
    assert [worker.run_once() for _ in range(4)] == [True, True, True, False]
    with db.reading() as session:
        states = dict(session.execute(select(OutboxItem.referral_id, OutboxItem.status)).all())
    assert states == {
        waiting_a: "delivered",
        waiting_b: "delivered",
        fresh_a: "delivered",
        other: "pending",  # another destination: still backing off
    }


def test_the_supervisor_restarts_a_loop_that_ends(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)
    worker = Worker(db, {"test": lambda item: "ok"}, FAST, idle_sleep=0.05)
    real = worker.run_forever
    crashes = {"left": 2}

    def crashing() -> None:
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("escaped the loop")
        real()

    worker.run_forever = crashing  # type: ignore[method-assign]
    supervisor = Supervisor(worker, restart_pause=0.05)
    supervisor.start()
    try:
        assert wait_for(lambda: outbox_store.counts(db) == {"delivered": 1}, 10)
        assert supervisor.restarts == 2
    finally:
        supervisor.stop(10)


def test_a_dead_worker_thread_is_replaced_when_health_is_checked(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)
    worker = Worker(db, {"test": lambda item: "ok"}, FAST, idle_sleep=0.05)
    supervisor = Supervisor(worker)
    # As if the thread had died: one that has already finished, without stop().
    supervisor._thread = threading.Thread(target=lambda: None)
    supervisor._thread.start()
    supervisor._thread.join()
    try:
        assert supervisor.ensure_running()
        assert wait_for(lambda: outbox_store.counts(db) == {"delivered": 1}, 10)
    finally:
        supervisor.stop(10)
    assert not supervisor.ensure_running()  # a stopped worker is not brought back
