"""Record envelopes: what a platform reads of a referral, from the feed or by id."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import orjson
from sqlalchemy import select

from gateway.errors import NotFound
from gateway.record.contact import contact_summary
from gateway.store.database import Database
from gateway.store.hubs import check_routed_to, visible_hubs
from gateway.store.models import RecordVersion, Referral


def envelope(
    referral: Referral, version: RecordVersion, record: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON a platform reads: ids, version, status, hub, cursor, whether and how the
    person may be contacted, and the record itself."""
    body = record if record is not None else orjson.loads(version.record)
    return {
        "id": referral.id,
        "version": version.version,
        "status": version.status,
        "source": referral.source,
        "referral_identifier": referral.referral_identifier,
        "referral_identifier_system": referral.referral_identifier_system or None,
        "workflow_status": referral.workflow_status,
        "cancellation_requested": referral.cancellation_requested,
        "hub": version.hub,
        "cursor": str(version.seq),
        "received_at": version.received_at.replace(
            tzinfo=version.received_at.tzinfo or UTC
        ).isoformat(),
        "contact": contact_summary(body),
        "record": body,
    }


def get_record(
    db: Database, referral_id: str, version: int | None = None, reader: str | None = None
) -> dict[str, Any]:
    """The current (or a given) version of one referral's record; with ``reader`` (a
    platform), only a referral routed to it (Forbidden otherwise, and for a held one)."""
    with db.reading() as session:
        referral = session.get(Referral, referral_id)
        if referral is None:
            raise NotFound(f"no record {referral_id}", expression="id")
        if reader is not None:
            check_routed_to(referral.hub, referral.held_reason, reader, referral_id)
        wanted = version or referral.current_version
        row = session.scalars(
            select(RecordVersion).where(
                RecordVersion.referral_id == referral_id, RecordVersion.version == wanted
            )
        ).first()
        if row is None:
            raise NotFound(f"record {referral_id} has no version {wanted}", expression="version")
        return envelope(referral, row)


def records_since(
    db: Database, cursor: int, limit: int, reader: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Record versions after ``cursor`` in commit order, and the cursor to ask from next;
    with ``reader`` (a platform), only the versions released to it."""
    query = select(RecordVersion, Referral).join(Referral, Referral.id == RecordVersion.referral_id)
    if reader is not None:
        query = query.where(RecordVersion.hub.in_(visible_hubs(reader)))
    with db.reading() as session:
        rows = session.execute(
            query.where(RecordVersion.seq > cursor).order_by(RecordVersion.seq).limit(limit)
        ).all()
        items = [envelope(ref, ver) for ver, ref in rows]
    return items, (rows[-1][0].seq if rows else cursor)
