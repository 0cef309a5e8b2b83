"""Storing referral records idempotently, and reading them for link-worker platforms."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.errors import NotFound, StoreUnavailable
from gateway.store.database import Database
from gateway.store.messages import InboundMessage, add_message
from gateway.store.models import Message, RecordVersion, Referral

# A PostgreSQL transaction-scoped advisory lock serialises record writes, so that the
# feed cursor (record_versions.seq) is assigned in commit order and readers never skip a row.
_FEED_LOCK = 0x5350_4757  # "SPGW"
_RETRIES = 5


@dataclass(frozen=True)
class Stored:
    """What storing a referral did: the record id and version, and whether it was new."""

    referral_id: str
    version: int
    created: bool
    status: str
    record: dict[str, Any]
    received_at: datetime
    response: bytes | None = None
    #: Why nothing new was stored: "resend" (same message again), "same-content" (a new
    #: message equal to the current version) or "key-reused" (an accepted control id sent
    #: again with other content). None when this call stored a new version.
    repeat: str | None = None


def record_status(record: dict[str, Any]) -> str:
    """The record's lifecycle status: cancelled when the referral was revoked."""
    status = str(record["referral"]["status"])
    return "cancelled" if status == "revoked" else status


def store_referral(
    db: Database,
    message: InboundMessage,
    record: dict[str, Any],
    content_sha256: str,
) -> Stored:
    """Store a new referral or a new version; a repeat stores nothing and returns what it made.

    A repeat is either the same message again (same source and body bytes as one accepted
    before: a retry, however late, returns the version it made and never reopens a referral
    that has moved on) or a new message whose content equals the current version. Two
    identical requests at the same moment make one record: the unique constraints on
    (source, referral identifier) and (referral, version) stop the second, which is retried
    and then finds the first.
    """
    identifier = str(record["referral"]["identifier"])
    for _ in range(_RETRIES):
        try:
            with db.transaction() as session:
                return _store_once(db, session, message, record, content_sha256, identifier)
        except IntegrityError:
            continue
    raise StoreUnavailable("the referral could not be stored after repeated conflicts")


def _version(session: Session, referral_id: str, **where: Any) -> RecordVersion | None:
    """One stored version of a referral, chosen by column values."""
    query = select(RecordVersion).where(RecordVersion.referral_id == referral_id)
    for column, value in where.items():
        query = query.where(getattr(RecordVersion, column) == value)
    return session.scalars(query.limit(1)).first()


def _accepted_with_key(session: Session, message: InboundMessage) -> Stored | None:
    """What an earlier accepted message with the same dedup key stored, with its response."""
    earlier = session.scalars(
        select(Message).where(
            Message.source == message.source, Message.dedup_key == message.dedup_key
        )
    ).first()
    if earlier is None or earlier.referral_id is None or earlier.record_version is None:
        return None
    version = _version(session, earlier.referral_id, version=earlier.record_version)
    assert version is not None
    return Stored(
        earlier.referral_id,
        version.version,
        False,
        version.status,
        orjson.loads(version.record),
        version.received_at,
        earlier.response,
        "resend" if earlier.body_sha256 == message.sha256 else "key-reused",
    )


def _repeat_of(
    session: Session, message: InboundMessage, referral: Referral, content_sha256: str
) -> tuple[RecordVersion | None, str]:
    """The version a repeated message made, or the current version when content is unchanged."""
    earlier = session.scalars(
        select(Message.record_version)
        .where(
            Message.source == message.source,
            Message.body_sha256 == message.sha256,
            Message.referral_id == referral.id,
            Message.status == "accepted",
        )
        .limit(1)
    ).first()
    if earlier is not None:
        return _version(session, referral.id, version=earlier), "resend"
    current = _version(session, referral.id, version=referral.current_version)
    if current is not None and current.content_sha256 == content_sha256:
        return current, "same-content"
    return None, ""


def _store_once(
    db: Database,
    session: Session,
    message: InboundMessage,
    record: dict[str, Any],
    content_sha256: str,
    identifier: str,
) -> Stored:
    """One attempt inside one transaction."""
    if db.is_postgres:
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _FEED_LOCK})
    if message.dedup_key is not None:
        earlier = _accepted_with_key(session, message)
        if earlier is not None:
            return earlier
    referral = session.scalars(
        select(Referral).where(
            Referral.source == message.source, Referral.referral_identifier == identifier
        )
    ).first()
    if referral is not None:
        same, why = _repeat_of(session, message, referral, content_sha256)
        if same is not None:
            return Stored(
                referral.id,
                same.version,
                False,
                same.status,
                orjson.loads(same.record),
                same.received_at,
                repeat=why,
            )
    now = message.received_at
    status = record_status(record)
    record["provenance"]["received_at"] = now.isoformat()
    if referral is None:
        referral = Referral(
            id=str(uuid.uuid4()),
            source=message.source,
            referral_identifier=identifier,
            current_version=1,
            status=status,
            created_at=now,
            updated_at=now,
        )
        session.add(referral)
    else:
        referral.current_version += 1
        referral.status = status
        referral.updated_at = now
    session.flush()
    stored_message = add_message(
        session,
        message,
        status="accepted",
        http_status=message.success_status,
        referral_id=referral.id,
        record_version=referral.current_version,
        diagnostics=record.get("diagnostics") or None,
    )
    session.add(
        RecordVersion(
            referral_id=referral.id,
            version=referral.current_version,
            content_sha256=content_sha256,
            status=status,
            record=orjson.dumps(record).decode(),
            received_at=now,
            message_id=stored_message.id,
        )
    )
    return Stored(referral.id, referral.current_version, True, status, record, now)


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
        "cursor": str(version.seq),
        "received_at": version.received_at.replace(
            tzinfo=version.received_at.tzinfo or UTC
        ).isoformat(),
        "record": record if record is not None else orjson.loads(version.record),
    }


def get_record(db: Database, referral_id: str, version: int | None = None) -> dict[str, Any]:
    """The current (or a given) version of one referral's record."""
    with db.transaction() as session:
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
    with db.transaction() as session:
        rows = session.execute(
            select(RecordVersion, Referral)
            .join(Referral, Referral.id == RecordVersion.referral_id)
            .where(RecordVersion.seq > cursor)
            .order_by(RecordVersion.seq)
            .limit(limit)
        ).all()
        items = [envelope(ref, ver) for ver, ref in rows]
    return items, (rows[-1][0].seq if rows else cursor)


def now_utc() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


__all__ = ["Message", "Stored", "get_record", "now_utc", "records_since", "store_referral"]
