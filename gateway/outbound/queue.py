"""The outbound side of the outbox: leases, what is kept of an error, operator actions.

The rows and their SQL are the store's (gateway/store/outbox.py: enqueue, counts, dead
letters, delivered, due_since); this module decides how a worker and an operator use them.
A claim is a lease of ``LEASE_SECONDS``, renewed by the worker while it delivers: a worker
that dies mid-delivery stops renewing, and once the lease runs out another worker takes the
item and delivers it again (targets de-duplicate by identifier). Replaying or discarding an
item that is no dead letter is a NotFound.
"""

from __future__ import annotations

from datetime import timedelta

from gateway.errors import NotFound
from gateway.store import outbox
from gateway.store.database import Database
from gateway.store.outbox import Claimed, now_utc

#: Seconds a claim holds an item unless renewed; a dead worker's item is taken over after it.
LEASE_SECONDS = 6.0
#: How much of a delivery error is kept on the item.
KEPT_ERROR = 2000


def claim(db: Database, lease_seconds: float = LEASE_SECONDS) -> Claimed | None:
    """Take the next due item (or one whose lease ran out), or None when nothing is due."""
    return outbox.claim(db, timedelta(seconds=lease_seconds))


def renew(db: Database, item: Claimed, lease_seconds: float = LEASE_SECONDS) -> bool:
    """Extend the lease of a claim in progress; False when the claim was taken over."""
    return outbox.renew(db, item, timedelta(seconds=lease_seconds))


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
    return outbox.finish(
        db,
        item_id,
        attempt,
        status="pending",
        next_attempt_at=now_utc() + timedelta(seconds=delay),
        lease_until=now_utc(),
        last_error=error[:KEPT_ERROR],
        response=response,
    )


def dead_letter(
    db: Database, item_id: int, error: str, response: str | None, *, attempt: int | None = None
) -> bool:
    """Move an item to the dead-letter list, with the destination's answer kept."""
    return outbox.finish(
        db,
        item_id,
        attempt,
        status="dead",
        lease_until=now_utc(),
        last_error=error[:KEPT_ERROR],
        response=response,
    )


def replay(db: Database, item_id: int) -> None:
    """Send a dead-lettered item again (attempts start over)."""
    again = {"status": "pending", "attempts": 0, "next_attempt_at": now_utc(), "last_error": None}
    if not outbox.settle_dead(db, item_id, **again):
        raise NotFound(f"no dead-lettered outbox item {item_id}", expression="id")


def discard(db: Database, item_id: int) -> None:
    """Give up on a dead-lettered item (kept, marked discarded); it stops holding others back."""
    if not outbox.settle_dead(db, item_id, status="discarded"):
        raise NotFound(f"no dead-lettered outbox item {item_id}", expression="id")
