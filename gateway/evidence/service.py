"""What the API, the report page and the command line share: the period asked for, measures
brought up to date, and the export written from the store."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from gateway.evidence.export import ExportInput, csv_lines, ndjson
from gateway.evidence.measures import Measures
from gateway.evidence.pseudonym import MIN_SECRET_BYTES, PseudonymKeyError
from gateway.store import evidence as facts
from gateway.store.database import Database

FORMATS = ("csv", "ndjson")


class BadPeriod(ValueError):
    """A period bound that is not an ISO date, or a period that ends before it starts."""


def _day(value: str | None, name: str) -> date | None:
    """An ISO date (``2026-11-30``), or None when not given."""
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadPeriod(f"{name} must be a date, YYYY-MM-DD") from None


def period(since: str | None, to: str | None) -> tuple[datetime | None, datetime | None]:
    """From the start of ``since`` to the end of ``to`` (both days included), in UTC."""
    first, last = _day(since, "from"), _day(to, "to")
    if first and last and last < first:
        raise BadPeriod("to must not be before from")
    start = datetime(first.year, first.month, first.day, tzinfo=UTC) if first else None
    end = (
        datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1) if last else None
    )
    return start, end


def current_measures(
    db: Database,
    grouping: str,
    since: datetime | None,
    until: datetime | None,
    practice_pcns: Mapping[str, str] | None = None,
) -> list[Measures]:
    """The measure table with everything committed so far folded in first."""
    if practice_pcns is not None:
        facts.sync_practice_pcns(db, practice_pcns)
    facts.refresh(db)
    return facts.measures(db, grouping, since, until)


def export_secret(configured: str | bytes | None) -> bytes:
    """The pseudonym secret from configuration; refused when missing or too short."""
    secret = configured.encode() if isinstance(configured, str) else configured or b""
    if len(secret) < MIN_SECRET_BYTES:
        raise PseudonymKeyError(
            f"set GATEWAY_EVIDENCE_SECRET to at least {MIN_SECRET_BYTES} bytes to export"
        )
    return secret


def _first_last(scores: list[tuple[str, Any, float]]) -> dict[str, tuple[float, float]]:
    """Per instrument, the first and last score (``scores`` come in date order)."""
    out: dict[str, tuple[float, float]] = {}
    for instrument, _, value in scores:
        held = out.get(instrument)
        out[instrument] = (held[0] if held else value, value)
    return out


def export_inputs(
    db: Database, since: datetime | None, until: datetime | None
) -> Iterator[ExportInput]:
    """Each referral of the period as the export writer takes it (facts refreshed first)."""
    facts.refresh(db)
    for item in facts.export_referrals(db, since, until):
        yield ExportInput(item.record, item.facts, _first_last(item.scores))


def export_text(
    items: Iterator[ExportInput], secret: bytes, form: str, on: date | None = None
) -> Iterator[str]:
    """The export as CSV or NDJSON text, chunk by chunk."""
    writer = csv_lines if form == "csv" else ndjson
    return writer(items, export_secret(secret), on or datetime.now(UTC).date())
