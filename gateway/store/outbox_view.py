"""The outbox as the console lists it: items waiting or being delivered, oldest first."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, select

from gateway.store.database import Database
from gateway.store.message_search import utc
from gateway.store.models import OutboxItem

_O = cast(Any, cast(Table, OutboxItem.__table__).c)


def waiting(db: Database, status: str, limit: int = 100) -> list[dict[str, Any]]:
    """Up to ``limit`` items in ``status`` (pending or delivering), oldest first."""
    query = (
        select(
            _O.id,
            _O.referral_id,
            _O.destination,
            _O.kind,
            _O.attempts,
            _O.next_attempt_at,
            _O.lease_until,
            _O.last_error,
            _O.created_at,
        )
        .where(_O.status == status)
        .order_by(_O.id)
        .limit(limit)
    )
    with db.snapshot() as conn:
        rows = [row._asdict() for row in conn.execute(query)]
    for row in rows:
        for name in ("next_attempt_at", "lease_until", "created_at"):
            row[name] = None if row[name] is None else utc(row[name])
    return rows
