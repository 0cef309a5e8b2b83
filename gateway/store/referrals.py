"""Storing referral records idempotently: the intake hot path, on the driver cursor (Direct)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from gateway.errors import StoreUnavailable
from gateway.record.contact import contact_summary
from gateway.store import intake_sql
from gateway.store.database import Database
from gateway.store.direct import Direct
from gateway.store.hubs import EVERY_HUB
from gateway.store.identity import check_same_referral, content_digest, record_status, referral_key
from gateway.store.messages import InboundMessage, message_values

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


@dataclass(frozen=True)
class Placed:
    """Where a version goes: its hub ("*" every platform) and, when held, why (hub kept)."""

    hub: str | None
    held_reason: str | None = None

    @property
    def released(self) -> bool:
        """Whether platforms may see the version: not held, and a hub to see it."""
        return self.held_reason is None and self.hub is not None

    @property
    def visible_to(self) -> str | None:
        """The hub stored on the version: who may read it (None: no platform)."""
        return self.hub if self.released else None


#: Where versions went before routing existed: every platform.
EVERY_PLATFORM = Placed(EVERY_HUB)

#: Called inside the write transaction with each new record version's envelope and where
#: the referral was before it (None for a new referral): webhooks, notices, write-backs.
OnStored = Callable[[Connection, dict[str, Any], Placed | None], None]


#: Given the held referral's current record (None when none is held), the record to store.
Apply = Callable[[dict[str, Any] | None], dict[str, Any]]
#: What one new version writes: message row, (identifier, system), status, digest, JSON.
_Rows = tuple[dict[str, Any], tuple[str, str], str, str, str]


def store_referral(
    db: Database,
    message: InboundMessage,
    record: dict[str, Any],
    content_sha256: str,
    on_stored: OnStored | None = None,
    apply: Apply | None = None,
    placed: Placed | None = None,
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

    ``placed`` is where the new version goes (routing and consent); None keeps where the
    referral is (a withdrawal), or every platform for a new one.
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
        before = None if referral is None else Placed(referral[2], referral[3])
        where = placed or before or EVERY_PLATFORM
        stored = _insert(sql, message, referral, rows, stored_record, where)
        if on_stored is not None:
            on_stored(conn, _envelope_of(stored, message.source, key, where), before)
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


def _envelope_of(
    stored: Stored, source: str, key: tuple[str, str], where: Placed
) -> dict[str, Any]:
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
        "hub": where.hub,
        "held_reason": where.held_reason,
        "contact": contact_summary(stored.record),
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
    return sql.first(intake_sql.VERSION, {"referral_id": referral_id, "version": version})


def _repeat(
    sql: Direct, message: InboundMessage, key: tuple[str, str], content_sha256: str | None
) -> tuple[Stored | None, tuple[Any, ...] | None, tuple[Any, ...] | None]:
    """(what an earlier message stored if this one repeats it, the referral row, its current
    version row); the same-content check only when ``content_sha256`` is known."""
    if message.dedup_key is not None:
        earlier = sql.first(
            intake_sql.FIND_BY_KEY, {"source": message.source, "key": message.dedup_key}
        )
        if earlier is not None and earlier[0] and earlier[1]:
            referral_id, version, body_sha256, response = earlier
            why = "resend" if body_sha256 == message.sha256 else "key-reused"
            row = _version_row(sql, referral_id, version)
            if row is not None:
                return _stored_from(sql, row, referral_id, why, response), None, None
    identifier, system = key
    referral = sql.first(
        intake_sql.FIND_REFERRAL,
        {"source": message.source, "identifier": identifier, "system": system},
    )
    if referral is None:
        return None, None, None
    referral_id, current_version = referral[0], referral[1]
    resent = sql.first(
        intake_sql.FIND_RESEND,
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
    where: Placed,
) -> Stored:
    """Insert the referral (or its next version), the message and the record version."""
    message_row, (identifier, system), status, content_sha256, record_json = rows
    now = message.received_at
    # The referrer cancelled: a request the platform confirms with an outcome.
    cancel = status == "cancelled"
    if referral is None:
        referral_id, version = str(uuid.uuid4()), 1
        sql.execute(
            intake_sql.NEW_REFERRAL,
            {
                "id": referral_id,
                "source": message.source,
                "referral_identifier": identifier,
                "system": system,
                "status": status,
                "now": now,
                "cancel": cancel,
                "hub": where.hub,
                "held": where.held_reason,
            },
        )
    else:
        referral_id, seen = referral[0], referral[1]
        version = seen + 1
        moved = sql.execute(
            intake_sql.NEXT_VERSION,
            {
                "id": referral_id,
                "seen": seen,
                "version": version,
                "status": status,
                "now": now,
                "cancel": cancel,
                "hub": where.hub,
                "held": where.held_reason,
            },
        )
        if moved.rowcount != 1:
            raise _Overtaken
    message_id = sql.first(
        intake_sql.NEW_MESSAGE,
        {**message_row, "referral_id": referral_id, "record_version": version},
    )[0]  # type: ignore[index]
    sql.execute(
        intake_sql.NEW_VERSION,
        {
            "referral_id": referral_id,
            "version": version,
            "content_sha256": content_sha256,
            "status": status,
            "record": record_json,
            "received_at": now,
            "message_id": message_id,
            "hub": where.visible_to,
        },
    )
    return Stored(referral_id, version, True, status, record, now, message.response)
