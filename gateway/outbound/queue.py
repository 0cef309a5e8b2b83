"""Outbox rows: enqueue inside the transaction that caused them, claim, finish, dead letters.

Claims take the oldest due item whose referral has no earlier undelivered item for the same
destination, so per-referral order holds (completed never overtakes accepted). On PostgreSQL
claims use FOR UPDATE SKIP LOCKED, so several workers never take the same item; on SQLite the
write queue serialises claims. A claim is a lease of ``LEASE_SECONDS``, renewed by the
worker while it delivers: a worker that dies mid-delivery stops renewing, and once the lease
runs out another worker takes the item and delivers it again (targets de-duplicate by
identifier). A claim is known by its item id and attempt number, so a worker whose lease was
taken over cannot renew or finish the item any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, and_, case, exists, func, insert, select, update
from sqlalchemy.orm import aliased

from gateway.errors import NotFound
from gateway.store.database import Database
from gateway.store.models import OutboxItem

_OUTBOX = cast(Table, OutboxItem.__table__)
#: States that no longer hold back later items for the same referral and destination.
SETTLED = ("delivered", "discarded")
#: Seconds a claim holds an item unless renewed; a dead worker's item is taken over after it.
LEASE_SECONDS = 6.0


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


def _due_query(now: datetime) -> Any:
    """Items a worker may take now: due (or with a lapsed lease) and not held back."""
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
    return select(_OUTBOX).where(due, ~blocked).order_by(item.id)


def claim(db: Database, lease_seconds: float = LEASE_SECONDS) -> Claimed | None:
    """Take the next due item (or one whose lease ran out), or None when nothing is due."""
    now = now_utc()
    item = cast(Any, _OUTBOX.c)
    query = _due_query(now).limit(1)
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


def _held(item_id: int, attempt: int | None) -> Any:
    """The row of ``item_id``, and when ``attempt`` is given, only while that claim holds it."""
    where = _OUTBOX.c.id == item_id
    if attempt is not None:
        where = where & (_OUTBOX.c.attempts == attempt) & (_OUTBOX.c.status == "delivering")
    return where


def renew(db: Database, item: Claimed, lease_seconds: float = LEASE_SECONDS) -> bool:
    """Extend the lease of a claim in progress; False when the claim was taken over."""
    with db.writing() as conn:
        changed = conn.execute(
            update(_OUTBOX)
            .where(_held(item.id, item.attempts))
            .values(lease_until=now_utc() + timedelta(seconds=lease_seconds))
        ).rowcount
    return bool(changed == 1)


def due_since(db: Database) -> datetime | None:
    """Since when the longest-waiting item a worker could take has been due (None: none)."""
    item = cast(Any, _OUTBOX.c)
    since = case((item.status == "delivering", item.lease_until), else_=item.next_attempt_at)
    due = _due_query(now_utc()).with_only_columns(func.min(since))
    with db.snapshot() as conn:
        found = conn.execute(due.order_by(None)).scalar()
    return _aware(found)


def delivery_ran_within(db: Database, seconds: float) -> bool:
    """True when some worker holds an item under a live lease, or ended an attempt (any
    outcome) in the last ``seconds``: delivery is running somewhere."""
    now = now_utc()
    since = now - timedelta(seconds=seconds)
    item = cast(Any, _OUTBOX.c)
    # Each test is a range of ix_outbox_due (status, next_attempt_at), or the few rows of a
    # small state: an ended lease keeps its end in lease_until, and a delivered item's
    # next_attempt_at becomes its delivery time.
    ran = (
        (item.status == "delivering") & (item.lease_until >= now)
        | (item.status == "delivered") & (item.next_attempt_at >= since)
        | item.status.in_(("pending", "dead")) & (item.lease_until >= since)
    )
    with db.snapshot() as conn:
        return conn.execute(select(item.id).where(ran).limit(1)).first() is not None


def _aware(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite gives them back naive)."""
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else cast(datetime, value)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _finish(db: Database, item_id: int, attempt: int | None, **values: Any) -> bool:
    with db.writing() as conn:
        changed = conn.execute(update(_OUTBOX).where(_held(item_id, attempt)).values(**values))
    return bool(changed.rowcount == 1)


def delivered(
    db: Database, item_id: int, response: str | None, *, attempt: int | None = None
) -> bool:
    """Mark an item delivered, keeping what the destination answered; its destination is
    back, so the other items waiting to retry it become due now. With ``attempt``, only
    while that claim holds the item (False: it was taken over)."""
    now = now_utc()
    item = cast(Any, _OUTBOX.c)
    with db.writing() as conn:
        done = conn.execute(
            update(_OUTBOX)
            .where(_held(item_id, attempt))
            .values(
                status="delivered",
                response=response,
                delivered_at=now,
                next_attempt_at=now,
                lease_until=now,
                last_error=None,
            )
        ).rowcount
        if done != 1:
            return False
        destination = select(item.destination).where(item.id == item_id).scalar_subquery()
        conn.execute(
            update(_OUTBOX)
            .where(
                item.status == "pending",
                item.next_attempt_at > now,
                item.destination == destination,
            )
            .values(next_attempt_at=now)
        )
    return True


def retry_later(
    db: Database,
    item_id: int,
    delay: float,
    error: str,
    response: str | None,
    *,
    attempt: int | None = None,
) -> bool:
    """Put an item back for another attempt after ``delay`` seconds."""
    return _finish(
        db,
        item_id,
        attempt,
        status="pending",
        next_attempt_at=now_utc() + timedelta(seconds=delay),
        lease_until=now_utc(),
        last_error=error[:2000],
        response=response,
    )


def dead_letter(
    db: Database, item_id: int, error: str, response: str | None, *, attempt: int | None = None
) -> bool:
    """Move an item to the dead-letter list, with the destination's answer kept."""
    return _finish(
        db,
        item_id,
        attempt,
        status="dead",
        lease_until=now_utc(),
        last_error=error[:2000],
        response=response,
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
