"""Messages per hour by source and status, for the console's volumes page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, func, select

from gateway.store.database import Database
from gateway.store.models import Message

_M = cast(Any, cast(Table, Message.__table__).c)


def hourly(db: Database, since: datetime) -> list[tuple[datetime, str, str, int]]:
    """(hour, source, status, count) for messages received since ``since``, by hour."""
    if db.is_postgres:
        hour = func.date_trunc("hour", _M.received_at)
    else:  # SQLite keeps times as 'YYYY-MM-DD HH:MM:SS.ffffff' text in UTC
        hour = func.substr(_M.received_at, 1, 13)
    query = (
        select(hour.label("hour"), _M.source, _M.status, func.count())
        .where(_M.received_at >= since.astimezone(UTC))
        .group_by(hour, _M.source, _M.status)
    )
    with db.snapshot() as conn:
        rows = conn.execute(query).all()
    return [(_hour(h), source, status, int(n)) for h, source, status, n in rows]


def _hour(value: Any) -> datetime:
    """An hour bucket as an aware UTC datetime."""
    if isinstance(value, str):
        return datetime.strptime(value, "%Y-%m-%d %H").replace(tzinfo=UTC)
    when = cast(datetime, value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
