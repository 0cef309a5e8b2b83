"""Delivery in /healthz: a stopped or stuck outbox worker fails health; counts need a key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from outbound.rows import fill, referral_rows
from sqlalchemy import update
from support import Gateway, build_gateway

from gateway.outbound import queue
from gateway.outbound.destinations import Retry
from gateway.outbound.supervisor import Supervisor
from gateway.outbound.worker import Worker
from gateway.services import attach_outbox_worker, services
from gateway.store.database import Database
from gateway.store.keys import create_key
from gateway.store.models import OutboxItem
from gateway.store.outbox import Claimed, now_utc

STALL = 1  # GATEWAY_OUTBOX_STALL_SECONDS for these tests
FAST = Retry(max_attempts=3, base_delay=0.0, max_delay=0.0)


@pytest.fixture
def gw(sqlite_url: str) -> Iterator[Gateway]:
    gateway = build_gateway(sqlite_url, OUTBOX_STALL_SECONDS=STALL)
    yield gateway
    supervisor = services(gateway.app).outbox_worker
    if supervisor is not None:
        supervisor.stop(10)
    services(gateway.app).db.dispose()


def _db(gw: Gateway) -> Database:
    db: Database = services(gw.app).db
    return db


def _overdue(db: Database, seconds: float) -> None:
    """Make every pending item due ``seconds`` ago."""
    with db.writing() as conn:
        conn.execute(
            update(OutboxItem)
            .where(OutboxItem.status == "pending")
            .values(next_attempt_at=now_utc() - timedelta(seconds=seconds))
        )


def _supervised(gw: Gateway, delivered: list[int]) -> Supervisor:
    """An outbox worker thread in the app, as `gateway serve` starts one."""

    def deliver(item: Claimed) -> str:
        delivered.append(item.id)
        return "ok"

    supervisor = Supervisor(Worker(_db(gw), {"test": deliver}, FAST, idle_sleep=0.05))
    attach_outbox_worker(gw.app, supervisor)
    supervisor.start()
    return supervisor


def test_health_is_ok_while_the_worker_delivers(gw: Gateway) -> None:
    delivered: list[int] = []
    _supervised(gw, delivered)
    fill(_db(gw), referral_rows(_db(gw), 1), 1)
    deadline = time.monotonic() + 10
    while not delivered and time.monotonic() < deadline:
        time.sleep(0.05)
    assert delivered
    response = gw.client.get("/healthz")
    assert response.status_code == 200 and response.json["status"] == "ok"


def test_health_fails_when_the_worker_has_stopped_and_items_are_due(gw: Gateway) -> None:
    supervisor = _supervised(gw, [])
    supervisor.stop(10)
    db = _db(gw)
    assert gw.client.get("/healthz").status_code == 200  # stopped, but nothing is due
    fill(db, referral_rows(db, 1), 1)
    assert gw.client.get("/healthz").status_code == 200  # due for less than the interval
    _overdue(db, STALL + 1)
    time.sleep(STALL + 0.1)  # the heartbeat is now older than the interval too
    response = gw.client.get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "outbox stalled"


def test_health_fails_when_no_worker_anywhere_takes_due_items(gw: Gateway) -> None:
    # No worker in this process (GATEWAY_OUTBOX_IN_SERVE=0): the store tells.
    db = _db(gw)
    first, second = referral_rows(db, 2)
    fill(db, [first], 1)
    _overdue(db, STALL + 1)
    assert gw.client.get("/healthz").status_code == 503
    # A worker elsewhere holding an item under a live lease is delivery running.
    claimed = queue.claim(db)
    assert claimed is not None
    fill(db, [second], 1)
    _overdue(db, STALL + 1)
    assert gw.client.get("/healthz").status_code == 200
    # So is one that has just finished an item: it is between two claims.
    queue.retry_later(db, claimed.id, 60, "503", None, attempt=claimed.attempts)
    assert gw.client.get("/healthz").status_code == 200
    time.sleep(STALL + 0.1)  # and then nothing more happens
    assert gw.client.get("/healthz").status_code == 503


def test_an_item_held_back_behind_a_dead_letter_does_not_fail_health(gw: Gateway) -> None:
    db = _db(gw)
    rid = referral_rows(db, 1)[0]
    fill(db, [rid], 2)
    first = queue.claim(db)
    assert first is not None
    queue.dead_letter(db, first.id, "400", None, attempt=first.attempts)
    _overdue(db, STALL + 1)
    assert gw.client.get("/healthz").status_code == 200  # waiting for an operator, not stuck


@pytest.mark.parametrize(("kind", "sees"), [("platform", True), ("admin", True), ("source", False)])
def test_outbox_counts_only_for_platform_and_admin_keys(gw: Gateway, kind: str, sees: bool) -> None:
    db = _db(gw)
    fill(db, referral_rows(db, 1), 1)
    key = create_key(db, kind, "uk-core" if kind == "source" else "ops")
    body = gw.client.get("/healthz", headers={"Authorization": f"Bearer {key}"}).json
    assert ("outbox" in body) is sees
    if sees:
        assert body["outbox"] == {"pending": 1}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer spg_p_not-a-key"}])
def test_no_outbox_counts_without_a_valid_key(gw: Gateway, headers: dict[str, str]) -> None:
    response = gw.client.get("/healthz", headers=headers)
    assert response.status_code == 200  # health stays open: no 401
    assert "outbox" not in response.json
