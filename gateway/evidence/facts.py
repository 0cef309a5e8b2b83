"""What the measures keep of a record and of an outcome: pure readings, no store.

A record gives its practice and the person (a digest of the NHS number, so one person's
scores link across referrals); an outcome gives its status flags, the contacts that took
place and its wellbeing scores.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from gateway.evidence.measures import ACCEPTED

_NOT_DIGIT = re.compile(r"[^0-9]")
#: Contact outcomes that mean the person and the link worker did meet or speak.
MET = frozenset({None, "attended"})


@dataclass(frozen=True)
class RecordFacts:
    """What the measures read of a referral's current record."""

    practice: str | None
    person: str


@dataclass(frozen=True)
class ScoreFact:
    """One wellbeing score of an outcome, in the order the outcome lists it."""

    position: int
    instrument: str
    taken: date
    score: float


@dataclass(frozen=True)
class OutcomeFacts:
    """What the measures read of one outcome."""

    accepted: bool
    declined: bool
    completed: bool
    #: When the link worker and the person met or spoke (attended, or attendance not said).
    contacts: tuple[datetime, ...]
    scores: tuple[ScoreFact, ...]


def person_digest(nhs_number: str | None, referral_id: str) -> str:
    """A stable key for the person within the store (the referral's own when no NHS number)."""
    digits = _NOT_DIGIT.sub("", nhs_number or "")
    seed = f"nhs:{digits}" if digits else f"referral:{referral_id}"
    return hashlib.sha256(seed.encode("ascii")).hexdigest()[:32]


def record_facts(record: dict[str, Any], referral_id: str) -> RecordFacts:
    """The practice ODS code (upper case) and the person key of one record."""
    practice = (record.get("gp_practice") or {}).get("ods_code")
    practice = practice.strip().upper()[:20] or None if isinstance(practice, str) else None
    nhs_number = (record.get("person") or {}).get("nhs_number")
    nhs = nhs_number if isinstance(nhs_number, str) else None
    return RecordFacts(practice, person_digest(nhs, referral_id))


def moment(value: Any) -> datetime | None:
    """An ISO 8601 date-time (or date) as an aware UTC datetime; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        found = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (found if found.tzinfo else found.replace(tzinfo=UTC)).astimezone(UTC)


def _day(value: Any) -> date | None:
    """An ISO date (or the date of a date-time)."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def outcome_facts(outcome: dict[str, Any]) -> OutcomeFacts:
    """Status flags, contacts that took place, and the scores of one outcome."""
    status = outcome.get("status")
    contacts = [
        moment(c.get("date"))
        for c in outcome.get("contacts") or ()
        if isinstance(c, dict) and c.get("outcome") in MET
    ]
    met = [c for c in contacts if c is not None]
    scores = []
    for position, item in enumerate(outcome.get("assessments") or ()):
        if not isinstance(item, dict):
            continue
        taken, score = _day(item.get("date")), item.get("score")
        instrument = item.get("instrument")
        if taken is None or not isinstance(score, int | float) or not isinstance(instrument, str):
            continue
        scores.append(ScoreFact(position, instrument[:100], taken, float(score)))
    return OutcomeFacts(
        accepted=status in ACCEPTED,
        declined=status == "rejected",
        completed=status == "completed",
        contacts=tuple(sorted(met)),
        scores=tuple(scores),
    )
