"""The evidence fact tables: kept up from record versions and outcomes by cursor, and the
commissioners' measures and export read from them.

The refresh reads what was committed since its cursors (``record_versions.seq``,
``outcomes.id``) and folds it into one row per referral and one per wellbeing score; intake
never waits for it. The measures are then three grouped queries (counts; the ranks that
give the median and 90th percentile of days to first contact; first and last score per
person and instrument), exact on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from gateway.evidence.facts import outcome_facts, record_facts
from gateway.evidence.measures import GROUPINGS, Measures, ReferralFacts, Wellbeing
from gateway.evidence.wellbeing import MEANINGFUL
from gateway.store.database import Database
from gateway.store.models import (
    EvidenceCursor,
    EvidencePracticePcn,
    EvidenceReferral,
    EvidenceScore,
    EvidenceSeries,
    Outcome,
    RecordVersion,
    Referral,
)

_FACTS = cast(Table, EvidenceReferral.__table__)
_SCORES = cast(Table, EvidenceScore.__table__)
_SERIES = cast(Table, EvidenceSeries.__table__)
_PCNS = cast(Table, EvidencePracticePcn.__table__)
_CURSORS = cast(Table, EvidenceCursor.__table__)
_REFERRALS = cast(Table, Referral.__table__)
_VERSIONS = cast(Table, RecordVersion.__table__)
_OUTCOMES = cast(Table, Outcome.__table__)

#: Rows read per refresh transaction: short enough not to hold SQLite's writer for long.
BATCH = 2000
#: Ids per IN (...) list.
_CHUNK = 500
NOT_STATED = "not stated"
_RECORD_COLUMNS = ("received_at", "month", "source", "practice", "person")


@dataclass(frozen=True)
class Refreshed:
    """How many record versions and outcomes a refresh folded in."""

    versions: int
    outcomes: int


def ordinal(taken: date, outcome_row: int, position: int) -> int | None:
    """A score's place in a person's series: its date, then its outcome's row, then its
    place in the outcome (None past 2**32 outcomes or 256 scores in one outcome)."""
    if outcome_row >= 1 << 32 or position >= 1 << 8:
        return None
    return (taken.toordinal() << 40) | (outcome_row << 8) | position


def _utc(moment: datetime) -> datetime:
    """A stored time as aware UTC (SQLite gives it back naive)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def _position(conn: Connection, name: str) -> int:
    """A cursor's position (0 before the first refresh)."""
    found = conn.execute(select(_CURSORS.c.position).where(_CURSORS.c.name == name)).scalar()
    return int(found or 0)


def _advance(conn: Connection, name: str, position: int, digest: str | None = None) -> None:
    """Move a cursor on (creating it the first time)."""
    statement = _insert(conn, _CURSORS).values(name=name, position=position, digest=digest)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["name"], set_={"position": position, "digest": digest}
        )
    )


def _referral_rows(conn: Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Fact rows (record columns, no outcome yet) for referrals, from their current version."""
    out = []
    for chunk in _chunks(ids):
        found = conn.execute(
            select(
                _REFERRALS.c.id, _REFERRALS.c.source, _REFERRALS.c.created_at, _VERSIONS.c.record
            )
            .join(
                _VERSIONS,
                and_(
                    _VERSIONS.c.referral_id == _REFERRALS.c.id,
                    _VERSIONS.c.version == _REFERRALS.c.current_version,
                ),
            )
            .where(_REFERRALS.c.id.in_(chunk))
        )
        for row in found:
            record = orjson.loads(row.record)
            facts = record_facts(record if isinstance(record, dict) else {}, row.id)
            received = _utc(row.created_at)
            out.append(
                {
                    "referral_id": row.id,
                    "received_at": received,
                    "month": received.strftime("%Y-%m"),
                    "source": row.source,
                    "practice": facts.practice,
                    "person": facts.person,
                    "accepted": 0,
                    "declined": 0,
                    "completed": 0,
                    "first_contact": None,
                    "contact_days": None,
                }
            )
    return out


def _upsert_referrals(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert fact rows, or refresh the record columns of those held (outcome columns kept)."""
    if not rows:
        return
    statement = _insert(conn, _FACTS)
    statement = statement.on_conflict_do_update(
        index_elements=["referral_id"],
        set_={c: statement.excluded[c] for c in _RECORD_COLUMNS},
    )
    conn.execute(statement, rows)


def _after(conn: Connection, cursor: str, key: Any, columns: list[Any], batch: int) -> list[Any]:
    """The next ``batch`` rows past a cursor, in ``key`` order (``key`` as ``position``)."""
    return list(
        conn.execute(
            select(key.label("position"), *columns)
            .where(key > _position(conn, cursor))
            .order_by(key)
            .limit(batch)
        )
    )


def _fold_versions(conn: Connection, batch: int) -> int:
    """One batch of record versions after the cursor; returns how many were read."""
    rows = _after(conn, "versions", _VERSIONS.c.seq, [_VERSIONS.c.referral_id], batch)
    if not rows:
        return 0
    ids = list(dict.fromkeys(r.referral_id for r in rows))
    _upsert_referrals(conn, _referral_rows(conn, ids))
    _advance(conn, "versions", int(rows[-1].position))
    return len(rows)


def _fold_outcomes(conn: Connection, batch: int) -> int:
    """One batch of outcomes after the cursor: flags, first contact and scores."""
    columns = [_OUTCOMES.c.referral_id, _OUTCOMES.c.body]
    rows = _after(conn, "outcomes", _OUTCOMES.c.id, columns, batch)
    if not rows:
        return 0
    ids = list(dict.fromkeys(r.referral_id for r in rows))
    held = _held_facts(conn, ids)
    missing = [i for i in ids if i not in held]
    if missing:  # an outcome whose referral's version the refresh has not reached yet
        _upsert_referrals(conn, _referral_rows(conn, missing))
        held.update(_held_facts(conn, missing))
    scores = []
    for row in rows:
        found = outcome_facts(orjson.loads(row.body))
        state = held[row.referral_id]
        state["accepted"] |= found.accepted
        state["declined"] |= found.declined
        state["completed"] |= found.completed
        # A contact dated before the referral arrived is a slip of the platform's, not a
        # first contact: the first is the earliest on or after receipt.
        after = [c for c in found.contacts if c >= state["received_at"]]
        if after and (state["first_contact"] is None or after[0] < state["first_contact"]):
            state["first_contact"] = after[0]
        for score in found.scores:
            place = ordinal(score.taken, int(row.position), score.position)
            if place is not None:
                scores.append(
                    {
                        "ordinal": place,
                        "referral_id": row.referral_id,
                        "instrument": score.instrument,
                        "taken": score.taken,
                        "score": score.score,
                    }
                )
    _write_outcome_facts(conn, held)
    if scores:
        conn.execute(_insert(conn, _SCORES).on_conflict_do_nothing(), scores)
        _sum_series(conn, list(dict.fromkeys(s["referral_id"] for s in scores)))
    _advance(conn, "outcomes", int(rows[-1].position))
    return len(rows)


def _sum_series(conn: Connection, ids: Sequence[str]) -> None:
    """Sum up the scores of these referrals again, per instrument: first, last and count."""
    columns = ("first_ordinal", "last_ordinal", "scores")
    for chunk in _chunks(ids):
        summed = (
            select(
                _SCORES.c.referral_id,
                _SCORES.c.instrument,
                func.min(_SCORES.c.ordinal),
                func.max(_SCORES.c.ordinal),
                func.count(),
            )
            .where(_SCORES.c.referral_id.in_(chunk))
            .group_by(_SCORES.c.referral_id, _SCORES.c.instrument)
        )
        statement = _insert(conn, _SERIES).from_select(
            ["referral_id", "instrument", *columns], summed
        )
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["referral_id", "instrument"],
                set_={c: statement.excluded[c] for c in columns},
            )
        )


def _held_facts(conn: Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The outcome columns held for referrals, by referral id."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(ids):
        for row in conn.execute(
            select(
                _FACTS.c.referral_id,
                _FACTS.c.received_at,
                _FACTS.c.accepted,
                _FACTS.c.declined,
                _FACTS.c.completed,
                _FACTS.c.first_contact,
            ).where(_FACTS.c.referral_id.in_(chunk))
        ):
            out[row.referral_id] = {
                "received_at": _utc(row.received_at),
                "accepted": bool(row.accepted),
                "declined": bool(row.declined),
                "completed": bool(row.completed),
                "first_contact": None if row.first_contact is None else _utc(row.first_contact),
            }
    return out


def _write_outcome_facts(conn: Connection, held: dict[str, dict[str, Any]]) -> None:
    """Store the folded flags and first contact (with its days from receipt)."""
    rows = [
        {
            "rid": rid,
            "a": int(state["accepted"]),
            "d": int(state["declined"]),
            "c": int(state["completed"]),
            "fc": state["first_contact"],
            "days": None
            if state["first_contact"] is None
            else (state["first_contact"] - state["received_at"]).total_seconds() / 86400,
        }
        for rid, state in held.items()
    ]
    conn.execute(
        update(_FACTS)
        .where(_FACTS.c.referral_id == bindparam("rid"))
        .values(
            accepted=bindparam("a"),
            declined=bindparam("d"),
            completed=bindparam("c"),
            first_contact=bindparam("fc"),
            contact_days=bindparam("days"),
        ),
        rows,
    )


def _behind(db: Database) -> bool:
    """Whether anything was committed past the cursors (read without the write lock)."""
    with db.snapshot() as conn:
        seq = conn.execute(select(func.max(_VERSIONS.c.seq))).scalar() or 0
        last = conn.execute(select(func.max(_OUTCOMES.c.id))).scalar() or 0
        return bool(seq > _position(conn, "versions") or last > _position(conn, "outcomes"))


def sync_practice_pcns(db: Database, table: Mapping[str, str]) -> bool:
    """Copy the practice to PCN table the measures group by, when it changed; True if so."""
    digest = hashlib.sha256(json.dumps(sorted(table.items())).encode()).hexdigest()
    with db.snapshot() as conn:
        held = conn.execute(
            select(_CURSORS.c.digest).where(_CURSORS.c.name == "practice_pcns")
        ).scalar()
    if held == digest:
        return False
    with db.writing() as conn:
        conn.execute(delete(_PCNS))
        rows = [{"practice": p[:20], "pcn": n[:20]} for p, n in table.items()]
        if rows:
            conn.execute(_PCNS.insert(), rows)
        _advance(conn, "practice_pcns", len(rows), digest)
    return True


def refresh(db: Database, batch: int = BATCH) -> Refreshed:
    """Fold every record version and outcome committed since the last refresh into the facts."""
    versions = outcomes = 0
    if not _behind(db):
        return Refreshed(0, 0)
    while True:
        with db.writing() as conn:
            read = _fold_versions(conn, batch)
        versions += read
        if read < batch:
            break
    while True:
        with db.writing() as conn:
            read = _fold_outcomes(conn, batch)
        outcomes += read
        if read < batch:
            break
    return Refreshed(versions, outcomes)


def _grouped(grouping: str) -> tuple[ColumnElement[Any], FromClause]:
    """The group expression for ``grouping`` and the join it reads from."""
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping is one of {', '.join(GROUPINGS)}")
    source: FromClause = _FACTS
    if grouping == "period":
        return _FACTS.c.month, source
    if grouping == "source":
        return _FACTS.c.source, source
    if grouping == "practice":
        return func.coalesce(_FACTS.c.practice, literal(NOT_STATED)), source
    if grouping == "pcn":
        joined = _FACTS.outerjoin(_PCNS, _PCNS.c.practice == _FACTS.c.practice)
        return func.coalesce(_PCNS.c.pcn, literal(NOT_STATED)), joined
    joined = _FACTS.join(_REFERRALS, _REFERRALS.c.id == _FACTS.c.referral_id)
    return func.coalesce(_REFERRALS.c.hub, literal(NOT_STATED)), joined


def _period(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    """Referrals received from ``since`` up to (not including) ``until``."""
    out = []
    if since is not None:
        out.append(_FACTS.c.received_at >= _utc(since))
    if until is not None:
        out.append(_FACTS.c.received_at < _utc(until))
    return out


def _counts(conn: Connection, group: Any, joined: FromClause, where: list[Any]) -> list[Any]:
    """Per group: received, accepted, declined, completed, contacted."""
    contacted = func.sum(case((_FACTS.c.contact_days >= 0, 1), else_=0))
    return list(
        conn.execute(
            select(
                group.label("g"),
                func.count().label("received"),
                func.sum(_FACTS.c.accepted).label("accepted"),
                func.sum(_FACTS.c.declined).label("declined"),
                func.sum(_FACTS.c.completed).label("completed"),
                contacted.label("contacted"),
            )
            .select_from(joined)
            .where(*where)
            .group_by(group)
        )
    )


def _contact_days(
    conn: Connection, group: Any, joined: FromClause, where: list[Any]
) -> dict[str, tuple[float, float]]:
    """Per group, the exact median and nearest-rank 90th percentile of days to first
    contact: only the rows at the ranks they need leave the database."""
    days = _FACTS.c.contact_days
    ranked = (
        select(
            group.label("g"),
            days.label("d"),
            func.row_number().over(partition_by=group, order_by=days).label("rn"),
            func.count().over(partition_by=group).label("n"),
        )
        .select_from(joined)
        .where(*where, days >= 0)
        .subquery()
    )
    n, rn = ranked.c.n, ranked.c.rn
    picked = conn.execute(
        select(ranked.c.g, ranked.c.d, rn, n).where(
            or_(rn == (n + 1) // 2, rn == n // 2 + 1, rn == (9 * n + 9) // 10)
        )
    )
    at: dict[str, dict[int, float]] = defaultdict(dict)
    size: dict[str, int] = {}
    for row in picked:
        at[row.g][int(row.rn)] = float(row.d)
        size[row.g] = int(row.n)
    out = {}
    for key, values in at.items():
        count = size[key]
        if count % 2:
            median = values[(count + 1) // 2]
        else:
            median = (values[count // 2] + values[count // 2 + 1]) / 2
        out[key] = (median, values[max(1, (9 * count + 9) // 10)])
    return out


def _improved(instrument: Any, change: Any) -> Any:
    """1 where ``change`` on ``instrument`` is meaningful (gateway.evidence.wellbeing), else 0."""
    return case(
        *[
            (and_(instrument == name, change * better >= threshold), 1)
            for name, (threshold, better) in MEANINGFUL.items()
        ],
        else_=0,
    )


def _wellbeing(
    conn: Connection, group: Any, joined: FromClause, where: list[Any]
) -> dict[str, dict[str, Wellbeing]]:
    """Per group and instrument: people with two or more scores, mean first-to-last change,
    and how many changed meaningfully.

    Each person's series (one per referral and instrument) are merged per group: the lowest
    first ordinal and the highest last, joined back to their scores.
    """
    series = _SERIES
    people = (
        select(
            group.label("g"),
            series.c.instrument,
            func.min(series.c.first_ordinal).label("lo"),
            func.max(series.c.last_ordinal).label("hi"),
        )
        .select_from(joined.join(series, series.c.referral_id == _FACTS.c.referral_id))
        .where(*where)
        .group_by(group, _FACTS.c.person, series.c.instrument)
        .having(func.sum(series.c.scores) >= 2)
        .subquery()
    )
    first, last = _SCORES.alias("first_score"), _SCORES.alias("last_score")
    change = last.c.score - first.c.score
    out: dict[str, dict[str, Wellbeing]] = defaultdict(dict)
    for row in conn.execute(
        select(
            people.c.g,
            people.c.instrument,
            func.count().label("people"),
            func.avg(change).label("mean"),
            func.sum(_improved(people.c.instrument, change)).label("improved"),
        )
        .select_from(
            people.join(first, first.c.ordinal == people.c.lo).join(
                last, last.c.ordinal == people.c.hi
            )
        )
        .group_by(people.c.g, people.c.instrument)
        .order_by(people.c.g, people.c.instrument)
    ):
        out[row.g][row.instrument] = Wellbeing(
            int(row.people), round(float(row.mean), 2), int(row.improved)
        )
    return out


def measures(
    db: Database,
    grouping: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Measures]:
    """The measure table for ``grouping`` over referrals received in the period, from the
    facts as they stand (call ``refresh`` first to include what arrived since)."""
    group, joined = _grouped(grouping)
    where = _period(since, until)
    with db.snapshot() as conn:
        counts = _counts(conn, group, joined, where)
        days = _contact_days(conn, group, joined, where)
        wellbeing = _wellbeing(conn, group, joined, where)
    out = []
    for row in sorted(counts, key=lambda r: str(r.g)):
        median, p90 = days.get(row.g, (None, None))
        out.append(
            Measures(
                grouping=grouping,
                key=str(row.g),
                received=int(row.received),
                accepted=int(row.accepted or 0),
                declined=int(row.declined or 0),
                completed=int(row.completed or 0),
                contacted=int(row.contacted or 0),
                days_to_first_contact_median=None if median is None else round(median, 2),
                days_to_first_contact_p90=None if p90 is None else round(p90, 2),
                wellbeing=wellbeing.get(row.g, {}),
            )
        )
    return out


@dataclass(frozen=True)
class ExportReferral:
    """One referral for the export: its current record, facts and scores in order."""

    record: dict[str, Any]
    facts: ReferralFacts
    scores: list[tuple[str, Any, float]]


def export_count(db: Database, since: datetime | None, until: datetime | None) -> int:
    """How many referrals the export of the period holds."""
    with db.snapshot() as conn:
        found = conn.execute(select(func.count()).select_from(_FACTS).where(*_period(since, until)))
        return int(found.scalar_one())


def export_referrals(
    db: Database, since: datetime | None, until: datetime | None, page: int = 1000
) -> Iterator[ExportReferral]:
    """Every referral received in the period, oldest first, read a page at a time."""
    after: tuple[datetime, str] | None = None
    while True:
        with db.snapshot() as conn:
            found = _export_page(conn, _period(since, until), after, page)
        yield from found
        if len(found) < page:
            return
        last = found[-1].facts
        after = (last.received, last.referral_id)


def _export_page(
    conn: Connection, where: list[Any], after: tuple[datetime, str] | None, page: int
) -> list[ExportReferral]:
    """One page of the export, after the (received, id) of the previous page's last."""
    if after is not None:
        moment, rid = _utc(after[0]), after[1]
        where = [
            *where,
            or_(
                _FACTS.c.received_at > moment,
                and_(_FACTS.c.received_at == moment, _FACTS.c.referral_id > rid),
            ),
        ]
    rows = conn.execute(
        select(_FACTS, _REFERRALS.c.hub, _PCNS.c.pcn, _VERSIONS.c.record)
        .select_from(
            _FACTS.join(_REFERRALS, _REFERRALS.c.id == _FACTS.c.referral_id)
            .join(
                _VERSIONS,
                and_(
                    _VERSIONS.c.referral_id == _REFERRALS.c.id,
                    _VERSIONS.c.version == _REFERRALS.c.current_version,
                ),
            )
            .outerjoin(_PCNS, _PCNS.c.practice == _FACTS.c.practice)
        )
        .where(*where)
        .order_by(_FACTS.c.received_at, _FACTS.c.referral_id)
        .limit(page)
    ).all()
    scores: dict[str, list[tuple[str, Any, float]]] = defaultdict(list)
    for chunk in _chunks([r.referral_id for r in rows]):
        for s in conn.execute(
            select(_SCORES.c.referral_id, _SCORES.c.instrument, _SCORES.c.taken, _SCORES.c.score)
            .where(_SCORES.c.referral_id.in_(chunk))
            .order_by(_SCORES.c.ordinal)
        ):
            scores[s.referral_id].append((s.instrument, s.taken, float(s.score)))
    out = []
    for row in rows:
        statuses = {
            name
            for name, flag in (
                ("accepted", row.accepted),
                ("rejected", row.declined),
                ("completed", row.completed),
            )
            if flag
        }
        facts = ReferralFacts(
            referral_id=row.referral_id,
            person=row.person,
            received=_utc(row.received_at),
            source=row.source,
            practice=row.practice,
            pcn=row.pcn,
            hub=row.hub,
            statuses=frozenset(statuses),
            first_contact=None if row.first_contact is None else _utc(row.first_contact),
        )
        record = orjson.loads(row.record)
        out.append(
            ExportReferral(
                record if isinstance(record, dict) else {}, facts, scores[row.referral_id]
            )
        )
    return out
