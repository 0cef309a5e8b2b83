"""Pull watermarks: the newest meta.lastUpdated taken from each polled source.

Values are the source server's clock, kept in UTC (SQLite keeps no offset, so everything
stored is UTC and a naive value read back is UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.store.database import Database
from gateway.store.models import PullWatermark

_WATERMARKS = cast(Table, PullWatermark.__table__)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive value is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_watermark(db: Database, source: str) -> datetime | None:
    """How far ``source`` has been read, or None before its first successful poll."""
    with db.snapshot() as conn:
        value = conn.execute(
            select(_WATERMARKS.c.watermark).where(_WATERMARKS.c.source == source)
        ).scalar_one_or_none()
    return None if value is None else as_utc(value)


def save_watermark(db: Database, source: str, watermark: datetime, now: datetime) -> None:
    """Move the watermark forward to ``watermark`` (never back)."""
    value, stamp = as_utc(watermark), as_utc(now)
    for _ in range(2):  # a second poller may insert the row between our look and our insert
        try:
            with db.writing() as conn:
                moved = conn.execute(
                    update(_WATERMARKS)
                    .where(_WATERMARKS.c.source == source, _WATERMARKS.c.watermark < value)
                    .values(watermark=value, updated_at=stamp)
                ).rowcount
                if moved:
                    return
                found = conn.execute(
                    select(_WATERMARKS.c.source).where(_WATERMARKS.c.source == source)
                ).first()
                if found is None:
                    conn.execute(
                        insert(_WATERMARKS).values(source=source, watermark=value, updated_at=stamp)
                    )
                return
        except IntegrityError:
            continue
