"""The operator console's reads of inbound messages: search newest first, and one message.

Every search is one statement answered from an index (migration 0010): by source and time,
by refused status and time, by the sender's message id, by a referral's identifier (through
the versions its messages made), by being held. Pages are keyset pages, newest first, on
(received_at, id). An NHS number is looked for in the stored records (an expression index on
the record's person.nhs_number) and among the ten-digit numbers kept from each refused
message's raw body when it was refused (migration 0011, gateway/store/refused_numbers.py);
the console keeps it to admins, and audits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, exists, literal_column, or_, select

from gateway.store.database import Database
from gateway.store.models import Message, RecordVersion, Referral, RefusedNhsNumber

#: The statuses the console filters by; "held" is an accepted message of a held referral.
STATUSES = ("accepted", "rejected", "failed", "held")
PAGE = 50

_MESSAGES = cast(Table, Message.__table__)
_REFERRALS = cast(Table, Referral.__table__)
_VERSIONS = cast(Table, RecordVersion.__table__)
_M = cast(Any, _MESSAGES.c)
_R = cast(Any, _REFERRALS.c)
_V = cast(Any, _VERSIONS.c)
_N = cast(Any, cast(Table, RefusedNhsNumber.__table__).c)
_PERSON_SQLITE: Any = literal_column("json_extract(record_versions.record, '$.person.nhs_number')")
_PERSON_PG: Any = literal_column("((record_versions.record::jsonb) -> 'person' ->> 'nhs_number')")
_SUMMARY = (
    _M.id,
    _M.received_at,
    _M.channel,
    _M.source,
    _M.status,
    _M.http_status,
    _M.source_message_id,
    _M.referral_id,
    _M.record_version,
    _M.reprocessed_from,
    _R.held_reason,
)


@dataclass(frozen=True)
class MessageQuery:
    """What to look for; every field is optional (None: any)."""

    source: str | None = None
    channel: str | None = None
    status: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None
    message_id: str | None = None
    referral: str | None = None
    nhs_number: str | None = None
    #: The keyset cursor: the (received_at, id) of the last row of the page before.
    before: tuple[datetime, int] | None = None


@dataclass(frozen=True)
class Found:
    """One page of messages, newest first, and the cursor of the next page (None: last)."""

    messages: list[dict[str, Any]]
    next: tuple[datetime, int] | None


def utc(value: Any) -> datetime:
    """A stored time as an aware UTC datetime (SQLite keeps them as naive UTC text)."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else cast(datetime, value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _naive(value: datetime) -> datetime:
    """A bound time in UTC, as the store keeps it."""
    return value.astimezone(UTC) if value.tzinfo else value


def _conditions(db: Database, query: MessageQuery, page: int) -> list[Any]:
    """The WHERE terms of a search."""
    terms: list[Any] = []
    terms += _source_and_times(query, _M.source, _M.received_at)
    if query.channel:
        terms.append(_M.channel == query.channel)
    if query.status == "held":
        terms += [_M.status == "accepted", _M.id.in_(_held(query, page))]
    elif query.status:
        terms.append(_M.status == query.status)
    if query.message_id:
        wanted = query.message_id.strip()
        by_id = [_M.source_message_id == wanted]
        if wanted.isascii() and wanted.isdigit() and len(wanted) < 19:
            by_id.append(_M.id == int(wanted))
        terms.append(or_(*by_id))
    if query.referral:
        named = or_(_R.referral_identifier == query.referral, _R.id == query.referral)
        made = select(_V.message_id).join(_REFERRALS, _R.id == _V.referral_id).where(named)
        terms.append(_M.id.in_(made))
    if query.nhs_number:
        terms.append(_about_person(db, query))
    if query.before is not None:
        at, last_id = _naive(query.before[0]), query.before[1]
        terms += [_M.received_at <= at, or_(_M.received_at < at, _M.id < last_id)]
    return terms


def _source_and_times(query: MessageQuery, source: Any, received_at: Any) -> list[Any]:
    """The query's source and time range as terms on the given columns."""
    terms = [] if not query.source else [source == query.source]
    if query.received_from is not None:
        terms.append(received_at >= _naive(query.received_from))
    if query.received_to is not None:
        terms.append(received_at < _naive(query.received_to))
    return terms


def _held(query: MessageQuery, page: int) -> Any:
    """The messages that made versions of held referrals, found from the held referrals.

    A version's received_at and source are its message's, so the time, source and page
    limits apply here; with no other filter, only the page's newest ids are taken.
    """
    found = (
        select(_V.message_id)
        .select_from(_REFERRALS.join(_VERSIONS, _V.referral_id == _R.id))
        .where(_R.held_reason.is_not(None))
    )
    found = found.where(*_source_and_times(query, _R.source, _V.received_at))
    if query.before is not None:
        at, last_id = _naive(query.before[0]), query.before[1]
        found = found.where(_V.received_at <= at, or_(_V.received_at < at, _V.message_id < last_id))
    others = (query.channel, query.message_id, query.referral, query.nhs_number)
    if not any(others):
        found = found.order_by(_V.received_at.desc(), _V.message_id.desc()).limit(page + 1)
    return found


def _about_person(db: Database, query: MessageQuery) -> Any:
    """Messages whose record names the NHS number, or refused ones whose body holds it.

    Two indexed parts, one list: the records by the expression index, and the bodies of the
    refused messages (within the search's source and times, when it has them).
    """
    nhs_number = str(query.nhs_number)
    # The expression of migration 0010's index ix_record_versions_nhs_number, word for word.
    person = _PERSON_PG if db.is_postgres else _PERSON_SQLITE
    in_record = select(_V.message_id).where(person == nhs_number)
    # Refused bodies by the numbers kept from them when they were refused (migration 0011).
    refused = (
        select(_N.message_id)
        .join(_MESSAGES, _M.id == _N.message_id)
        .where(_N.nhs_number == nhs_number, *_source_and_times(query, _M.source, _M.received_at))
    )
    return _M.id.in_(in_record.union_all(refused))


def search(db: Database, query: MessageQuery, page: int = PAGE) -> Found:
    """One page of the messages that match ``query``, newest first."""
    statement = (
        select(*_SUMMARY)
        .select_from(_MESSAGES.outerjoin(_REFERRALS, _R.id == _M.referral_id))
        .where(*_conditions(db, query, page))
        .order_by(_M.received_at.desc(), _M.id.desc())
        .limit(page + 1)
    )
    with db.snapshot() as conn:
        rows = [_summary(row._asdict()) for row in conn.execute(statement)]
    more = len(rows) > page
    rows = rows[:page]
    cursor = (rows[-1]["received_at"], rows[-1]["id"]) if more else None
    return Found(rows, cursor)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    """A search row with its time in UTC and whether its referral is held."""
    row["received_at"] = utc(row["received_at"])
    row["held"] = row.pop("held_reason") is not None and row["status"] == "accepted"
    return row


def message(db: Database, message_id: int) -> dict[str, Any] | None:
    """One stored message whole (raw body, answer, diagnostics), or None."""
    with db.snapshot() as conn:
        row = conn.execute(
            select(_MESSAGES, _R.held_reason, _R.referral_identifier)
            .select_from(_MESSAGES.outerjoin(_REFERRALS, _R.id == _M.referral_id))
            .where(_M.id == message_id)
        ).first()
        if row is None:
            return None
        found = row._asdict()
        attempts = conn.execute(
            select(_M.id, _M.status, _M.received_at)
            .where(_M.reprocessed_from == message_id)
            .order_by(_M.id)
        ).all()
        made = None
        if found["referral_id"] is not None and found["record_version"] is not None:
            made = conn.execute(
                select(_V.version, _V.status, _V.seq, _V.message_id).where(
                    _V.referral_id == found["referral_id"],
                    _V.version == found["record_version"],
                )
            ).first()
    found["received_at"] = utc(found["received_at"])
    found["diagnostics"] = orjson.loads(found["diagnostics"]) if found["diagnostics"] else []
    found["attempts"] = [
        {"id": a.id, "status": a.status, "received_at": utc(a.received_at)} for a in attempts
    ]
    # The version this message made; an identical resend points at a version it did not make.
    found["versions"] = (
        [{"version": made.version, "status": made.status, "cursor": made.seq}]
        if made is not None and made.message_id == message_id
        else []
    )
    found["points_at"] = made.version if made is not None else None
    return found


def set_reprocessed_from(db: Database, new_id: int, original_id: int) -> None:
    """Link a reprocess attempt's message row to the stored message it ran again."""
    with db.writing() as conn:
        conn.execute(_MESSAGES.update().where(_M.id == new_id).values(reprocessed_from=original_id))


def message_of_version(db: Database, referral_id: str, version: int) -> int | None:
    """The id of the message that made a record version."""
    with db.snapshot() as conn:
        found = conn.execute(
            select(_V.message_id).where(_V.referral_id == referral_id, _V.version == version)
        ).scalar()
    return None if found is None else int(found)


def matching_ids(
    db: Database,
    *,
    statuses: tuple[str, ...],
    source: str | None = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    limit: int = 10_000,
) -> list[int]:
    """Ids of stored messages for a batch reprocess, oldest first: attempts, and messages
    an attempt already got accepted, are left out."""
    attempt = _MESSAGES.alias("attempt").c
    accepted_again = exists().where(attempt.reprocessed_from == _M.id, attempt.status == "accepted")
    terms = [_M.status.in_(statuses), _M.reprocessed_from.is_(None), ~accepted_again]
    within = MessageQuery(source=source, received_from=received_from, received_to=received_to)
    terms += _source_and_times(within, _M.source, _M.received_at)
    statement = select(_M.id).where(*terms).order_by(_M.id).limit(limit)
    with db.snapshot() as conn:
        return [int(i) for i in conn.execute(statement).scalars()]
