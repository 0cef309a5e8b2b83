"""Outbox depth and the age of each state's oldest item, for the metrics scrape."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, func, select

from gateway.store.database import Database
from gateway.store.models import OutboxItem
from gateway.store.outbox import SETTLED, now_utc
from gateway.store.outbox import _aware as aware

_ITEM = cast(Any, cast(Table, OutboxItem.__table__).c)


def state_ages(db: Database) -> list[tuple[str, int, float | None]]:
    """(state, items, seconds since the oldest was queued) per state; no age for settled ones."""
    query = select(_ITEM.status, func.count(), func.min(_ITEM.created_at)).group_by(_ITEM.status)
    with db.snapshot() as conn:
        rows = conn.execute(query).all()
    now = now_utc()
    out: list[tuple[str, int, float | None]] = []
    for status, count, oldest in rows:
        since = aware(oldest)
        age = None if status in SETTLED or since is None else (now - since).total_seconds()
        out.append((str(status), int(count), age))
    return out
