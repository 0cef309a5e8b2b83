"""The outbox table: items queued in the transaction that caused them, claimed, finished.

A claim takes the oldest due item whose referral has no earlier unsettled item for the same
destination, so per-referral order holds (completed never overtakes accepted). On PostgreSQL
claims use FOR UPDATE SKIP LOCKED, so several workers never take the same item; on SQLite the
write queue serialises claims. A claim is known by its item id and attempt number: once its
lease ran out and another worker took the item over, the first can neither renew nor finish
it. How long a lease lasts, and how much of an error is kept, is the outbound side's policy
(gateway/outbound/queue.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, and_, case, exists, func, insert, select, update

from gateway.store.database import Database
from gateway.store.models import OutboxItem

_OUTBOX = cast(Table, OutboxItem.__table__)
_ITEM = cast(Any, _OUTBOX.c)
_EARLIER = cast(Any, _OUTBOX.alias("earlier").c)
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
    """The current time in UTC (the clock of every outbox time stored)."""
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
    found = conn.execute(select(_ITEM.id).where(_ITEM.idempotency_key == key)).first()
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
    blocked = exists().where(
        and_(
            _EARLIER.referral_id == _ITEM.referral_id,
            _EARLIER.destination == _ITEM.destination,
            _EARLIER.id < _ITEM.id,
            _EARLIER.status.not_in(SETTLED),
        )
    )
    due = (_ITEM.status == "pending") & (_ITEM.next_attempt_at <= now) | (
        _ITEM.status == "delivering"
    ) & (_ITEM.lease_until < now)
    return select(_OUTBOX).where(due, ~blocked).order_by(_ITEM.id)


def claim(db: Database, lease: timedelta) -> Claimed | None:
    """Take the next item due now (or one whose lease ran out), leased for ``lease`` from the
    moment the write lock is ours; None when nothing is due.

    The clock is read inside the write transaction: a claim that waited out a locked store
    (longer than a lease) must not be born with a lease already past, which another worker
    would take over at once and send the item a second time.
    """
    # An idle worker polls often: look without the write lock first, so polling never
    # queues behind (or holds up) referral intake.
    with db.snapshot() as conn:
        if conn.execute(_due_query(now_utc()).limit(1).with_only_columns(_ITEM.id)).first() is None:
            return None
    with db.writing() as conn:
        now = now_utc()
        query = _due_query(now).limit(1)
        if db.is_postgres:
            query = query.with_for_update(skip_locked=True, of=_OUTBOX)
        row = conn.execute(query).first()
        if row is None:
            return None
        conn.execute(
            update(_OUTBOX)
            .where(_ITEM.id == row.id)
            .values(status="delivering", attempts=row.attempts + 1, lease_until=now + lease)
        )
    payload = orjson.loads(row.payload)
    return Claimed(row.id, row.referral_id, row.destination, row.kind, payload, row.attempts + 1)


def _held(item_id: int, attempt: int | None) -> Any:
    """The row of ``item_id``, and when ``attempt`` is given, only while that claim holds it."""
    where = _ITEM.id == item_id
    if attempt is not None:
        where = where & (_ITEM.attempts == attempt) & (_ITEM.status == "delivering")
    return where


def renew(db: Database, item: Claimed, lease: timedelta) -> bool:
    """Extend the lease of a claim in progress to ``lease`` from now (read once the write lock
    is ours, as for a claim); False when the claim was taken over."""
    with db.writing() as conn:
        changed = conn.execute(
            update(_OUTBOX)
            .where(_held(item.id, item.attempts))
            .values(lease_until=now_utc() + lease)
        ).rowcount
    return bool(changed == 1)


def due_since(db: Database) -> datetime | None:
    """Since when the longest-waiting item a worker could take has been due (None: none)."""
    since = case((_ITEM.status == "delivering", _ITEM.lease_until), else_=_ITEM.next_attempt_at)
    due = _due_query(now_utc()).with_only_columns(func.min(since))
    with db.snapshot() as conn:
        found = conn.execute(due.order_by(None)).scalar()
    return _aware(found)


def delivery_ran_within(db: Database, seconds: float) -> bool:
    """True when some worker holds an item under a live lease, or ended an attempt (any
    outcome) in the last ``seconds``: delivery is running somewhere."""
    now = now_utc()
    since = now - timedelta(seconds=seconds)
    # Each test is a range of ix_outbox_due (status, next_attempt_at), or the few rows of a
    # small state: an ended lease keeps its end in lease_until, and a delivered item's
    # next_attempt_at becomes its delivery time.
    ran = (
        (_ITEM.status == "delivering") & (_ITEM.lease_until >= now)
        | (_ITEM.status == "delivered") & (_ITEM.next_attempt_at >= since)
        | _ITEM.status.in_(("pending", "dead")) & (_ITEM.lease_until >= since)
    )
    with db.snapshot() as conn:
        return conn.execute(select(_ITEM.id).where(ran).limit(1)).first() is not None


def _aware(value: Any) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite gives them back naive)."""
    if value is None:
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else cast(datetime, value)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def finish(db: Database, item_id: int, attempt: int | None, **values: Any) -> bool:
    """Set ``values`` on an item; with ``attempt``, only while that claim holds it."""
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
        destination = select(_ITEM.destination).where(_ITEM.id == item_id).scalar_subquery()
        conn.execute(
            update(_OUTBOX)
            .where(
                _ITEM.status == "pending",
                _ITEM.next_attempt_at > now,
                _ITEM.destination == destination,
            )
            .values(next_attempt_at=now)
        )
    return True


def dead_letters(db: Database) -> list[dict[str, Any]]:
    """Every dead-lettered item, oldest first (payload left out)."""
    query = (
        select(
            _ITEM.id,
            _ITEM.referral_id,
            _ITEM.destination,
            _ITEM.kind,
            _ITEM.attempts,
            _ITEM.last_error,
            _ITEM.response,
            _ITEM.created_at,
        )
        .where(_ITEM.status == "dead")
        .order_by(_ITEM.id)
    )
    with db.snapshot() as conn:
        rows = conn.execute(query).all()
    return [{**row._asdict(), "created_at": row.created_at.isoformat()} for row in rows]


def settle_dead(db: Database, item_id: int, **values: Any) -> bool:
    """Set ``values`` on a dead-lettered item; False when ``item_id`` is no dead letter."""
    with db.writing() as conn:
        changed = conn.execute(
            update(_OUTBOX).where(_ITEM.id == item_id, _ITEM.status == "dead").values(**values)
        ).rowcount
    return bool(changed == 1)


def counts(db: Database) -> dict[str, int]:
    """How many items are in each state (for health and metrics)."""
    with db.snapshot() as conn:
        rows = conn.execute(select(_ITEM.status, func.count()).group_by(_ITEM.status)).all()
    return {status: int(n) for status, n in rows}
