"""Record envelopes: what a platform reads of a referral, from the feed or by id."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import orjson
from sqlalchemy import select

from gateway.errors import NotFound
from gateway.store.database import Database
from gateway.store.models import RecordVersion, Referral


def envelope(
    referral: Referral, version: RecordVersion, record: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON a platform reads: ids, version, status, cursor and the record itself."""
    return {
        "id": referral.id,
        "version": version.version,
        "status": version.status,
        "source": referral.source,
        "referral_identifier": referral.referral_identifier,
        "referral_identifier_system": referral.referral_identifier_system or None,
        "workflow_status": referral.workflow_status,
        "cancellation_requested": referral.cancellation_requested,
        "cursor": str(version.seq),
        "received_at": version.received_at.replace(
            tzinfo=version.received_at.tzinfo or UTC
        ).isoformat(),
        "record": record if record is not None else orjson.loads(version.record),
    }


def get_record(db: Database, referral_id: str, version: int | None = None) -> dict[str, Any]:
    """The current (or a given) version of one referral's record."""
    with db.reading() as session:
        referral = session.get(Referral, referral_id)
        if referral is None:
            raise NotFound(f"no record {referral_id}", expression="id")
        wanted = version or referral.current_version
        row = session.scalars(
            select(RecordVersion).where(
                RecordVersion.referral_id == referral_id, RecordVersion.version == wanted
            )
        ).first()
        if row is None:
            raise NotFound(f"record {referral_id} has no version {wanted}", expression="version")
        return envelope(referral, row)


def records_since(db: Database, cursor: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Record versions after ``cursor`` in commit order, and the cursor to ask from next."""
    with db.reading() as session:
        rows = session.execute(
            select(RecordVersion, Referral)
            .join(Referral, Referral.id == RecordVersion.referral_id)
            .where(RecordVersion.seq > cursor)
            .order_by(RecordVersion.seq)
            .limit(limit)
        ).all()
        items = [envelope(ref, ver) for ver, ref in rows]
    return items, (rows[-1][0].seq if rows else cursor)
