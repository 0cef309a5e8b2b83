"""Storing referral records idempotently, and reading them for link-worker platforms."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from gateway.errors import NotFound, StoreUnavailable
from gateway.store.database import Database
from gateway.store.messages import InboundMessage, message_values
from gateway.store.models import Message, RecordVersion, Referral

# A PostgreSQL transaction-scoped advisory lock serialises record writes, so that the
# feed cursor (record_versions.seq) is assigned in commit order and readers never skip a row.
_FEED_LOCK = 0x5350_4757  # "SPGW"
_RETRIES = 5
_FEED_LOCK_SQL = text("SELECT pg_advisory_xact_lock(:k)")


class _Overtaken(Exception):
    """Another writer stored a version of this referral since we looked."""


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


#: Called inside the write transaction with each new record version's envelope (webhooks).
OnStored = Callable[[Connection, dict[str, Any]], None]


def store_referral(
    db: Database,
    message: InboundMessage,
    record: dict[str, Any],
    content_sha256: str,
    on_stored: OnStored | None = None,
) -> Stored:
    """Store a new referral or a new version; a repeat stores nothing and returns what it made.

    A repeat is either the same message again (same source and body bytes as one accepted
    before: a retry, however late, returns the version it made and never reopens a referral
    that has moved on) or a new message whose content equals the current version. Two
    identical requests at the same moment make one record: the unique constraints on
    (source, referral identifier) and (referral, version) stop the second, which is retried
    and then finds the first. Rows are written with Core statements prepared before the
    write transaction starts, so the write lock is held as briefly as possible.
    """
    identifier = str(record["referral"]["identifier"])
    status = record_status(record)
    record["provenance"]["received_at"] = message.received_at.isoformat()
    record_json = orjson.dumps(record).decode()
    message_row = message_values(message, status="accepted", http_status=message.success_status)
    message_row["diagnostics"] = (
        orjson.dumps(record["diagnostics"]).decode() if record.get("diagnostics") else None
    )
    rows = (message_row, identifier, status, content_sha256, record_json)
    # Optimistic: look for a repeat outside the write lock, then write; a writer that got
    # in between is caught by the unique constraints or the version check, and we look again.
    for _ in range(_RETRIES):
        with db.snapshot() as conn:
            repeat, referral = _repeat(conn, message, identifier, content_sha256)
        if repeat is not None:
            return repeat
        try:
            with db.writing() as conn:
                if db.is_postgres:
                    conn.execute(_FEED_LOCK_SQL, {"k": _FEED_LOCK})
                stored = _insert(conn, message, referral, rows, record)
                if on_stored is not None:
                    on_stored(conn, _envelope_of(stored, message.source, rows[1]))
                return stored
        except (IntegrityError, _Overtaken):
            continue
    raise StoreUnavailable("the referral could not be stored after repeated conflicts")


_REFERRALS = cast(Table, Referral.__table__)
_MESSAGES = cast(Table, Message.__table__)
_VERSIONS = cast(Table, RecordVersion.__table__)

# Statements built once: building SQLAlchemy statements per request costs more than running
# them, so the intake path only binds parameters.
_FIND_REFERRAL = select(_REFERRALS.c.id, _REFERRALS.c.current_version).where(
    _REFERRALS.c.source == bindparam("source"),
    _REFERRALS.c.referral_identifier == bindparam("identifier"),
)
_FIND_BY_KEY = select(
    _MESSAGES.c.referral_id,
    _MESSAGES.c.record_version,
    _MESSAGES.c.body_sha256,
    _MESSAGES.c.response,
).where(_MESSAGES.c.source == bindparam("source"), _MESSAGES.c.dedup_key == bindparam("key"))
_FIND_RESEND = (
    select(_MESSAGES.c.record_version, _MESSAGES.c.response)
    .where(
        _MESSAGES.c.source == bindparam("source"),
        _MESSAGES.c.body_sha256 == bindparam("sha"),
        _MESSAGES.c.referral_id == bindparam("referral_id"),
        _MESSAGES.c.status == "accepted",
    )
    .limit(1)
)
_VERSION = select(
    _VERSIONS.c.version,
    _VERSIONS.c.status,
    _VERSIONS.c.record,
    _VERSIONS.c.received_at,
    _VERSIONS.c.content_sha256,
).where(
    _VERSIONS.c.referral_id == bindparam("referral_id"),
    _VERSIONS.c.version == bindparam("version"),
)
_NEW_REFERRAL = insert(_REFERRALS)


def _envelope_of(stored: Stored, source: str, identifier: str) -> dict[str, Any]:
    """The feed envelope of a version just stored (as GET /records/{id} shows it)."""
    return {
        "id": stored.referral_id,
        "version": stored.version,
        "status": stored.status,
        "source": source,
        "referral_identifier": identifier,
        "received_at": stored.received_at.isoformat(),
        "record": stored.record,
    }


_NEXT_VERSION = (
    update(_REFERRALS)
    .where(
        _REFERRALS.c.id == bindparam("rid"),
        _REFERRALS.c.current_version == bindparam("seen"),
    )
    .values(
        current_version=bindparam("version"),
        status=bindparam("new_status"),
        updated_at=bindparam("now"),
        cancellation_requested=bindparam("cancel"),
    )
)
_NEW_MESSAGE = insert(_MESSAGES).returning(_MESSAGES.c.id)
_NEW_VERSION = insert(_VERSIONS)


def _stored_from(row: Any, referral_id: str, repeat: str, response: bytes | None = None) -> Stored:
    """A Stored for an existing record version row (version, status, record, received_at)."""
    return Stored(
        referral_id,
        row.version,
        False,
        row.status,
        orjson.loads(row.record),
        row.received_at,
        response,
        repeat,
    )


def _version_row(conn: Connection, referral_id: str, version: int) -> Any:
    """One stored version of a referral."""
    return conn.execute(_VERSION, {"referral_id": referral_id, "version": version}).first()


def _repeat(
    conn: Connection, message: InboundMessage, identifier: str, content_sha256: str
) -> tuple[Stored | None, Any]:
    """(what an earlier message stored if this one repeats it, the referral row or None)."""
    if message.dedup_key is not None:
        earlier = conn.execute(
            _FIND_BY_KEY, {"source": message.source, "key": message.dedup_key}
        ).first()
        if earlier is not None and earlier.referral_id and earlier.record_version:
            why = "resend" if earlier.body_sha256 == message.sha256 else "key-reused"
            row = _version_row(conn, earlier.referral_id, earlier.record_version)
            return _stored_from(row, earlier.referral_id, why, earlier.response), None
    referral = conn.execute(
        _FIND_REFERRAL, {"source": message.source, "identifier": identifier}
    ).first()
    if referral is None:
        return None, None
    resent = conn.execute(
        _FIND_RESEND,
        {"source": message.source, "sha": message.sha256, "referral_id": referral.id},
    ).first()
    if resent is not None:
        row = _version_row(conn, referral.id, resent.record_version)
        return _stored_from(row, referral.id, "resend", resent.response), referral
    current = _version_row(conn, referral.id, referral.current_version)
    if current is not None and current.content_sha256 == content_sha256:
        return _stored_from(current, referral.id, "same-content"), referral
    return None, referral


def _insert(
    conn: Connection,
    message: InboundMessage,
    referral: Any,
    rows: tuple[dict[str, Any], str, str, str, str],
    record: dict[str, Any],
) -> Stored:
    """Insert the referral (or its next version), the message and the record version."""
    message_row, identifier, status, content_sha256, record_json = rows
    now = message.received_at
    if referral is None:
        referral_id, version = str(uuid.uuid4()), 1
        conn.execute(
            _NEW_REFERRAL,
            {
                "id": referral_id,
                "source": message.source,
                "referral_identifier": identifier,
                "current_version": 1,
                "status": status,
                "created_at": now,
                "updated_at": now,
                "workflow_status": "requested",
                "cancellation_requested": status == "cancelled",
            },
        )
    else:
        referral_id, version = referral.id, referral.current_version + 1
        moved = conn.execute(
            _NEXT_VERSION,
            {
                "rid": referral_id,
                "seen": referral.current_version,
                "version": version,
                "new_status": status,
                "now": now,
                # The referrer cancelled: a request the platform confirms with an outcome.
                "cancel": status == "cancelled",
            },
        )
        if moved.rowcount != 1:
            raise _Overtaken
    message_id = conn.execute(
        _NEW_MESSAGE, {**message_row, "referral_id": referral_id, "record_version": version}
    ).scalar_one()
    conn.execute(
        _NEW_VERSION,
        {
            "referral_id": referral_id,
            "version": version,
            "content_sha256": content_sha256,
            "status": status,
            "record": record_json,
            "received_at": now,
            "message_id": message_id,
        },
    )
    return Stored(referral_id, version, True, status, record, now, message.response)


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
