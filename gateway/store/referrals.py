"""Storing referral records idempotently, and reading them for link-worker platforms."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import IntegrityError

from gateway.errors import Conflict, NotFound, StoreUnavailable
from gateway.store.database import Database
from gateway.store.direct import Direct, Sql
from gateway.store.messages import InboundMessage, message_values
from gateway.store.models import RecordVersion, Referral

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


#: Given the held referral's current record (None when none is held), the record to store.
Apply = Callable[[dict[str, Any] | None], dict[str, Any]]
#: What one new version writes: message row, (identifier, system), status, digest, JSON.
_Rows = tuple[dict[str, Any], tuple[str, str], str, str, str]


def content_digest(record: dict[str, Any]) -> str:
    """The hash that decides "same content": the record without its provenance."""
    content = {k: v for k, v in record.items() if k != "provenance"}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def store_referral(
    db: Database,
    message: InboundMessage,
    record: dict[str, Any],
    content_sha256: str,
    on_stored: OnStored | None = None,
    apply: Apply | None = None,
) -> Stored:
    """Store a new referral or a new version; a repeat stores nothing and returns what it made.

    A repeat is either the same message again (same source and body bytes as one accepted
    before: a retry, however late, returns the version it made and never reopens a referral
    that has moved on) or a new message whose content equals the current version. Two
    identical requests at the same moment make one record: the unique constraints on
    (source, referral identifier and its system) and (referral, version) stop the second,
    which is retried and then finds the first. A new version about another person than the
    held one is refused (``check_same_referral``). Concurrent writers of one process share a
    transaction and its fsync (``Database.write``); the look-ups and rows go through the
    driver cursor (``Direct``).

    With ``apply`` (a cancellation or delete that names the referral and little else), the
    record stored is ``apply(current record)``, built inside the write transaction: a version
    stored meanwhile is withdrawn as it is, never overwritten by the one read before.
    """
    key = referral_key(record)
    prepared = None if apply is not None else _rows_of(message, record, content_sha256, key)

    def work(conn: Connection) -> Stored:
        # Inside the write transaction, so nothing can slip in between the look and the write.
        if db.is_postgres:
            conn.execute(_FEED_LOCK_SQL, {"k": _FEED_LOCK})
        sql = Direct(conn)
        digest = None if prepared is None else content_sha256
        repeat, referral, current = _repeat(sql, message, key, digest)
        if repeat is not None:
            return repeat
        held = orjson.loads(current[2]) if current is not None else None
        if prepared is not None:
            rows, stored_record = prepared, record
            if held is not None:
                check_same_referral(held, record)
        else:
            stored_record = apply(held) if apply is not None else record
            rows = _rows_of(message, stored_record, content_digest(stored_record), key)
            if current is not None and referral is not None and current[4] == rows[3]:
                return _stored_from(sql, current, referral[0], "same-content")
        stored = _insert(sql, message, referral, rows, stored_record)
        if on_stored is not None:
            on_stored(conn, _envelope_of(stored, message.source, key))
        return stored

    # The write lock (SQLite) or the feed lock (PostgreSQL) is held from the look to the write,
    # so a conflict should not happen; if a unique constraint still stops one, the retry finds
    # what the other writer stored.
    for _ in range(_RETRIES):
        try:
            return db.write(work)
        except (IntegrityError, _Overtaken):
            continue
    raise StoreUnavailable("the referral could not be stored after repeated conflicts")


def _rows_of(
    message: InboundMessage, record: dict[str, Any], digest: str, key: tuple[str, str]
) -> _Rows:
    """The values one new version writes (the record gets its received_at)."""
    record["provenance"]["received_at"] = message.received_at.isoformat()
    message_row = message_values(message, status="accepted", http_status=message.success_status)
    message_row["diagnostics"] = (
        orjson.dumps(record["diagnostics"]).decode() if record.get("diagnostics") else None
    )
    return message_row, key, record_status(record), digest, orjson.dumps(record).decode()


# The intake path's statements, run on the driver cursor (see gateway/store/direct.py).
_FIND_REFERRAL = Sql(
    "SELECT id, current_version FROM referrals WHERE source = :source"
    " AND referral_identifier = :identifier AND referral_identifier_system = :system"
)
_FIND_BY_KEY = Sql(
    "SELECT referral_id, record_version, body_sha256, response FROM messages"
    " WHERE source = :source AND dedup_key = :key"
)
_FIND_RESEND = Sql(
    "SELECT record_version, response FROM messages WHERE source = :source"
    " AND body_sha256 = :sha AND referral_id = :referral_id AND status = 'accepted' LIMIT 1"
)
_VERSION = Sql(
    "SELECT version, status, record, received_at, content_sha256 FROM record_versions"
    " WHERE referral_id = :referral_id AND version = :version"
)
_NEW_REFERRAL = Sql(
    """INSERT INTO referrals (id, source, referral_identifier, referral_identifier_system,
    current_version, status, created_at, updated_at, workflow_status, cancellation_requested)
    VALUES (:id, :source, :referral_identifier, :system, 1, :status, :now, :now, 'requested',
    :cancel)""",
    dates=("now",),
)
_NEXT_VERSION = Sql(
    """UPDATE referrals SET current_version = :version, status = :status, updated_at = :now,
    cancellation_requested = :cancel WHERE id = :id AND current_version = :seen""",
    dates=("now",),
)
_NEW_MESSAGE = Sql(
    """INSERT INTO messages (received_at, channel, source, content_type, body, body_truncated,
    body_sha256, request_id, correlation_id, source_message_id, status, http_status,
    diagnostics, referral_id, record_version, control_id, dedup_key, response)
    VALUES (:received_at, :channel, :source, :content_type, :body, :body_truncated,
    :body_sha256, :request_id, :correlation_id, :source_message_id, :status, :http_status,
    :diagnostics, :referral_id, :record_version, :control_id, :dedup_key, :response)
    RETURNING id""",
    dates=("received_at",),
)
_NEW_VERSION = Sql(
    """INSERT INTO record_versions (referral_id, version, content_sha256, status, record,
    received_at, message_id) VALUES (:referral_id, :version, :content_sha256, :status,
    :record, :received_at, :message_id)""",
    dates=("received_at",),
)


def _differs(held: Any, new: Any) -> bool:
    """Whether two stated values differ (case and outer spaces aside); unstated never differs."""
    if held in (None, "") or new in (None, ""):
        return False
    return str(held).strip().casefold() != str(new).strip().casefold()


def check_same_referral(held: dict[str, Any], record: dict[str, Any]) -> None:
    """Refuse a new version of a held referral that is about another person or referral.

    The NHS numbers decide when both versions carry one; otherwise family name, given name
    and date of birth must not change. (An identifier under another system is another
    referral: ``referral_key`` never finds this one for it.)
    Nothing is applied, so no webhook and no write-back can follow.
    """
    person, held_person = record.get("person") or {}, held.get("person") or {}
    elements = (record.get("provenance") or {}).get("elements") or {}
    if held_person.get("nhs_number") and person.get("nhs_number"):
        changed = (
            ["nhs_number"] if _differs(held_person["nhs_number"], person["nhs_number"]) else []
        )
    else:
        changed = [
            item
            for item in ("family_name", "given_name", "date_of_birth")
            if _differs(held_person.get(item), person.get(item))
        ]
    if changed:
        item = f"person.{changed[0]}"
        raise Conflict(
            f"this referral identifier is held for another person ({item.split('.')[1]} differs);"
            " nothing was changed: send a new referral identifier for this person",
            expression=elements.get(item, item),
        )


def referral_key(record: dict[str, Any]) -> tuple[str, str]:
    """A referral's identity within its source: (identifier value, system, "" when none)."""
    referral = record["referral"]
    return str(referral["identifier"]), str(referral.get("identifier_system") or "")


def _envelope_of(stored: Stored, source: str, key: tuple[str, str]) -> dict[str, Any]:
    """The feed envelope of a version just stored (as GET /records/{id} shows it)."""
    identifier, system = key
    return {
        "id": stored.referral_id,
        "version": stored.version,
        "status": stored.status,
        "source": source,
        "referral_identifier": identifier,
        "referral_identifier_system": system or None,
        "received_at": stored.received_at.isoformat(),
        "record": stored.record,
    }


def _stored_from(
    sql: Direct, row: tuple[Any, ...], referral_id: str, repeat: str, response: bytes | None = None
) -> Stored:
    """A Stored for an existing record version row (version, status, record, received_at)."""
    version, status, record, received_at, _ = row
    return Stored(
        referral_id,
        version,
        False,
        status,
        orjson.loads(record),
        sql.date(received_at),
        response,
        repeat,
    )


def _version_row(sql: Direct, referral_id: str, version: int) -> tuple[Any, ...] | None:
    """One stored version of a referral."""
    return sql.first(_VERSION, {"referral_id": referral_id, "version": version})


def _repeat(
    sql: Direct, message: InboundMessage, key: tuple[str, str], content_sha256: str | None
) -> tuple[Stored | None, tuple[Any, ...] | None, tuple[Any, ...] | None]:
    """(what an earlier message stored if this one repeats it, the referral row, its current
    version row); the same-content check only when ``content_sha256`` is known."""
    if message.dedup_key is not None:
        earlier = sql.first(_FIND_BY_KEY, {"source": message.source, "key": message.dedup_key})
        if earlier is not None and earlier[0] and earlier[1]:
            referral_id, version, body_sha256, response = earlier
            why = "resend" if body_sha256 == message.sha256 else "key-reused"
            row = _version_row(sql, referral_id, version)
            if row is not None:
                return _stored_from(sql, row, referral_id, why, response), None, None
    identifier, system = key
    referral = sql.first(
        _FIND_REFERRAL, {"source": message.source, "identifier": identifier, "system": system}
    )
    if referral is None:
        return None, None, None
    referral_id, current_version = referral
    resent = sql.first(
        _FIND_RESEND,
        {"source": message.source, "sha": message.sha256, "referral_id": referral_id},
    )
    if resent is not None:
        row = _version_row(sql, referral_id, resent[0])
        if row is not None:
            return _stored_from(sql, row, referral_id, "resend", resent[1]), referral, None
    current = _version_row(sql, referral_id, current_version)
    if current is not None and current[4] == content_sha256:
        return _stored_from(sql, current, referral_id, "same-content"), referral, current
    return None, referral, current


def _insert(
    sql: Direct,
    message: InboundMessage,
    referral: tuple[Any, ...] | None,
    rows: _Rows,
    record: dict[str, Any],
) -> Stored:
    """Insert the referral (or its next version), the message and the record version."""
    message_row, (identifier, system), status, content_sha256, record_json = rows
    now = message.received_at
    # The referrer cancelled: a request the platform confirms with an outcome.
    cancel = status == "cancelled"
    if referral is None:
        referral_id, version = str(uuid.uuid4()), 1
        sql.execute(
            _NEW_REFERRAL,
            {
                "id": referral_id,
                "source": message.source,
                "referral_identifier": identifier,
                "system": system,
                "status": status,
                "now": now,
                "cancel": cancel,
            },
        )
    else:
        referral_id, seen = referral
        version = seen + 1
        moved = sql.execute(
            _NEXT_VERSION,
            {
                "id": referral_id,
                "seen": seen,
                "version": version,
                "status": status,
                "now": now,
                "cancel": cancel,
            },
        )
        if moved.rowcount != 1:
            raise _Overtaken
    message_id = sql.first(
        _NEW_MESSAGE, {**message_row, "referral_id": referral_id, "record_version": version}
    )[0]  # type: ignore[index]
    sql.execute(
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
