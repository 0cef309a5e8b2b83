"""The outbox: order per referral, retries with backoff, dead letters, and no double delivery."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from gateway.destinations import Retry
from gateway.errors import PermanentDeliveryError, TransientDeliveryError
from gateway.outbox import queue
from gateway.outbox.queue import Claimed, enqueue, now_utc
from gateway.outbox.worker import Worker, backoff
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.models import OutboxItem, Referral

FAST = Retry(max_attempts=3, base_delay=0.0, max_delay=0.0)


def referral_rows(db: Database, count: int) -> list[str]:
    """``count`` bare referral rows (outbox items need a referral)."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    now = now_utc()
    with db.writing() as conn:
        for n, rid in enumerate(ids):
            conn.execute(
                insert(Referral).values(
                    id=rid,
                    source="uk-core",
                    referral_identifier=f"r{n}",
                    current_version=1,
                    status="active",
                    created_at=now,
                    updated_at=now,
                    workflow_status="requested",
                    cancellation_requested=False,
                )
            )
    return ids


@pytest.fixture
def db(db_url: str) -> Any:
    database = Database(db_url)
    upgrade(database)
    yield database
    database.dispose()


def fill(db: Database, referrals: list[str], per_referral: int) -> None:
    """Queue ``per_referral`` items for each referral, interleaved across referrals."""
    with db.writing() as conn:
        for step in range(per_referral):
            for rid in referrals:
                enqueue(
                    conn,
                    referral_id=rid,
                    destination="writeback:uk-core",
                    kind="test",
                    key=f"{rid}:{step}",
                    payload={"step": step},
                )


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
    assert queue.counts(db) == {"delivered": 1000}


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
    dead = queue.dead_letters(db)
    assert [d["attempts"] for d in dead] == [3]  # the first item, after max_attempts
    assert dead[0]["response"] == "busy"
    assert len(calls) == 3  # the second item waits behind the dead first one
    queue.replay(db, dead[0]["id"])
    assert Worker(db, {"test": lambda item: "ok"}, FAST).run_once()
    assert Worker(db, {"test": lambda item: "ok"}, FAST).run_once()
    assert queue.counts(db) == {"delivered": 2}


def test_permanent_rejection_goes_straight_to_dead_letters(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)

    def reject(item: Claimed) -> str:
        raise PermanentDeliveryError(
            "400 HAPI-0450: bad", response='{"resourceType":"OperationOutcome"}'
        )

    Worker(db, {"test": reject}, Retry()).run_once()
    (dead,) = queue.dead_letters(db)
    assert dead["attempts"] == 1 and "HAPI-0450" in dead["last_error"]


def test_a_fault_in_the_deliverer_is_retried_not_lost(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 1)

    def broken(item: Claimed) -> str:
        raise RuntimeError("bug")

    Worker(db, {"test": broken}, FAST).run_once()
    assert queue.counts(db) == {"pending": 1}


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
    assert queue.counts(db) == {"dead": 1}


def test_discarding_a_dead_item_lets_later_items_go(db: Database) -> None:
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 2)

    def reject(item: Claimed) -> str:
        raise PermanentDeliveryError("400")

    Worker(db, {"test": reject}, FAST).run_once()
    (dead,) = queue.dead_letters(db)
    assert queue.claim(db) is None  # held back behind the dead item
    queue.discard(db, dead["id"])
    assert Worker(db, {"test": lambda item: "ok"}, FAST).run_once()
    assert queue.counts(db) == {"delivered": 1, "discarded": 1}
