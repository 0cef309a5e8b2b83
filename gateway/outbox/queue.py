"""Outbox rows: enqueue inside the transaction that caused them, claim, finish, dead letters.

Claims take the oldest due item whose referral has no earlier undelivered item for the same
destination, so per-referral order holds (completed never overtakes accepted). On PostgreSQL
claims use FOR UPDATE SKIP LOCKED, so several workers never take the same item; on SQLite the
write queue serialises claims. A claim is a lease: a worker that dies mid-delivery loses it
when the lease runs out, and the item is delivered again (targets de-duplicate by identifier).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, and_, exists, func, insert, select, update
from sqlalchemy.orm import aliased

from gateway.errors import NotFound
from gateway.store.database import Database
from gateway.store.models import OutboxItem

_OUTBOX = cast(Table, OutboxItem.__table__)
#: States that no longer hold back later items for the same referral and destination.
SETTLED = ("delivered", "discarded")


@dataclass(frozen=True)
class Claimed:
    """An item a worker holds for delivery."""

    id: int
    referral_id: str
    destination: str
    kind: str
    payload: dict[str, Any]
    attempts: int


def now_utc() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def enqueue(
    conn: Connection,
    *,
    referral_id: str,
    destination: str,
    kind: str,
    key: str,
    payload: dict[str, Any],
) -> None:
    """Queue one delivery in the caller's transaction; a repeated key queues nothing."""
    found = conn.execute(select(_OUTBOX.c.id).where(_OUTBOX.c.idempotency_key == key)).first()
    if found is not None:
        return
    now = now_utc()
    conn.execute(
        insert(_OUTBOX).values(
            referral_id=referral_id,
            destination=destination,
            kind=kind,
            idempotency_key=key,
            payload=orjson.dumps(payload).decode(),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def claim(db: Database, lease_seconds: float = 120.0) -> Claimed | None:
    """Take the next due item (or one whose lease ran out), or None when nothing is due."""
    now = now_utc()
    earlier = aliased(OutboxItem)
    item = cast(Any, _OUTBOX.c)
    blocked = exists().where(
        and_(
            earlier.referral_id == item.referral_id,
            earlier.destination == item.destination,
            earlier.id < item.id,
            earlier.status.not_in(SETTLED),
        )
    )
    due = (item.status == "pending") & (item.next_attempt_at <= now) | (
        item.status == "delivering"
    ) & (item.lease_until < now)
    query = select(_OUTBOX).where(due, ~blocked).order_by(item.id).limit(1)
    # An idle worker polls often: look without the write lock first, so polling never
    # queues behind (or holds up) referral intake.
    with db.snapshot() as conn:
        if conn.execute(query.with_only_columns(item.id)).first() is None:
            return None
    if db.is_postgres:
        query = query.with_for_update(skip_locked=True, of=_OUTBOX)
    with db.writing() as conn:
        row = conn.execute(query).first()
        if row is None:
            return None
        conn.execute(
            update(_OUTBOX)
            .where(item.id == row.id)
            .values(
                status="delivering",
                attempts=row.attempts + 1,
                lease_until=now + timedelta(seconds=lease_seconds),
            )
        )
    return Claimed(
        row.id,
        row.referral_id,
        row.destination,
        row.kind,
        orjson.loads(row.payload),
        row.attempts + 1,
    )


def _finish(db: Database, item_id: int, **values: Any) -> None:
    with db.writing() as conn:
        conn.execute(update(_OUTBOX).where(_OUTBOX.c.id == item_id).values(**values))


def delivered(db: Database, item_id: int, response: str | None) -> None:
    """Mark an item delivered, keeping what the destination answered."""
    _finish(
        db,
        item_id,
        status="delivered",
        response=response,
        delivered_at=now_utc(),
        lease_until=None,
        last_error=None,
    )


def retry_later(db: Database, item_id: int, delay: float, error: str, response: str | None) -> None:
    """Put an item back for another attempt after ``delay`` seconds."""
    _finish(
        db,
        item_id,
        status="pending",
        next_attempt_at=now_utc() + timedelta(seconds=delay),
        lease_until=None,
        last_error=error[:2000],
        response=response,
    )


def dead_letter(db: Database, item_id: int, error: str, response: str | None) -> None:
    """Move an item to the dead-letter list, with the destination's answer kept."""
    _finish(
        db, item_id, status="dead", lease_until=None, last_error=error[:2000], response=response
    )


def dead_letters(db: Database) -> list[dict[str, Any]]:
    """Every dead-lettered item, oldest first (payload left out)."""
    with db.reading() as session:
        rows = session.execute(
            select(OutboxItem).where(OutboxItem.status == "dead").order_by(OutboxItem.id)
        ).scalars()
        return [
            {
                "id": r.id,
                "referral_id": r.referral_id,
                "destination": r.destination,
                "kind": r.kind,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "response": r.response,
                "created_at": r.created_at.isoformat(),
            }
            for r in rows
        ]


def replay(db: Database, item_id: int) -> None:
    """Send a dead-lettered item again (attempts start over)."""
    with db.writing() as conn:
        changed = conn.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id == item_id, _OUTBOX.c.status == "dead")
            .values(status="pending", attempts=0, next_attempt_at=now_utc(), last_error=None)
        ).rowcount
    if changed != 1:
        raise NotFound(f"no dead-lettered outbox item {item_id}", expression="id")


def discard(db: Database, item_id: int) -> None:
    """Give up on a dead-lettered item (kept, marked discarded); it stops holding others back."""
    with db.writing() as conn:
        changed = conn.execute(
            update(_OUTBOX)
            .where(_OUTBOX.c.id == item_id, _OUTBOX.c.status == "dead")
            .values(status="discarded")
        ).rowcount
    if changed != 1:
        raise NotFound(f"no dead-lettered outbox item {item_id}", expression="id")


def counts(db: Database) -> dict[str, int]:
    """How many items are in each state (for health and metrics)."""
    with db.reading() as session:
        rows = session.execute(
            select(OutboxItem.status, func.count()).group_by(OutboxItem.status)
        ).all()
    return {status: int(n) for status, n in rows}
