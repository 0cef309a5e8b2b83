"""The commissioners' measures, per group: referrals received, accepted, declined, completed;
days from referral to first contact (median, 90th percentile); wellbeing change.

Pure: the store supplies the facts (``ReferralFacts``, ``Score``), this module counts.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from gateway.evidence.wellbeing import Change, Score, changes

#: What a measure table can be grouped by.
GROUPINGS = ("period", "source", "practice", "pcn", "hub")
#: Statuses that mean the link-worker service took the referral on.
ACCEPTED = frozenset({"accepted", "in-progress", "on-hold", "completed", "failed"})
#: Counts from 1 to this minus one are shown as "<5" (NHS statistical disclosure practice).
SUPPRESS_BELOW = 5


@dataclass(frozen=True)
class ReferralFacts:
    """What the measures need of one referral, read from the store."""

    referral_id: str
    person: str
    received: datetime
    source: str
    practice: str | None = None
    pcn: str | None = None
    hub: str | None = None
    statuses: frozenset[str] = frozenset()
    first_contact: datetime | None = None


@dataclass(frozen=True)
class Wellbeing:
    """Change on one instrument across the people of a group who have two or more scores."""

    people: int
    mean_change: float
    improved: int

    @property
    def improved_share(self) -> float:
        """The share of those people whose change was meaningful, 0 to 1."""
        return self.improved / self.people if self.people else 0.0


@dataclass(frozen=True)
class Measures:
    """One row of a measure table: the group's counts, times and wellbeing change."""

    grouping: str
    key: str
    received: int
    accepted: int
    declined: int
    completed: int
    contacted: int
    days_to_first_contact_median: float | None
    days_to_first_contact_p90: float | None
    wellbeing: dict[str, Wellbeing] = field(default_factory=dict)


def group_key(facts: ReferralFacts, grouping: str) -> str:
    """A referral's group: its month (``2026-11``), or its source, practice, PCN or hub."""
    if grouping == "period":
        return facts.received.strftime("%Y-%m")
    value = getattr(facts, grouping)
    return str(value) if value else "not stated"


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of ``values`` (sorted or not): the smallest value with at
    least ``share`` of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _wellbeing(found: list[Change]) -> dict[str, Wellbeing]:
    """Per instrument: people, mean change and how many improved meaningfully."""
    by: dict[str, list[Change]] = defaultdict(list)
    for change in found:
        by[change.instrument].append(change)
    return {
        instrument: Wellbeing(
            people=len(items),
            mean_change=round(statistics.fmean(c.change for c in items), 2),
            improved=sum(1 for c in items if c.improved),
        )
        for instrument, items in sorted(by.items())
    }


def measure(
    referrals: Iterable[ReferralFacts], scores: Iterable[tuple[str, Score]], grouping: str
) -> list[Measures]:
    """The measure table for ``grouping``; ``scores`` pairs each score with its referral id."""
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping is one of {', '.join(GROUPINGS)}")
    groups: dict[str, list[ReferralFacts]] = defaultdict(list)
    key_of: dict[str, str] = {}
    for facts in referrals:
        key = group_key(facts, grouping)
        groups[key].append(facts)
        key_of[facts.referral_id] = key
    scored: dict[str, list[Score]] = defaultdict(list)
    for referral_id, score in scores:
        owner = key_of.get(referral_id)
        if owner is not None:
            scored[owner].append(score)
    out = []
    for key in sorted(groups):
        members = groups[key]
        days = [
            (f.first_contact - f.received).total_seconds() / 86400
            for f in members
            if f.first_contact is not None and f.first_contact >= f.received
        ]
        out.append(
            Measures(
                grouping=grouping,
                key=key,
                received=len(members),
                accepted=sum(1 for f in members if f.statuses & ACCEPTED),
                declined=sum(1 for f in members if "rejected" in f.statuses),
                completed=sum(1 for f in members if "completed" in f.statuses),
                contacted=len(days),
                days_to_first_contact_median=round(statistics.median(days), 2) if days else None,
                days_to_first_contact_p90=round(percentile(days, 0.9), 2) if days else None,
                wellbeing=_wellbeing(changes(scored.get(key, []))),
            )
        )
    return out


def suppressed(count: int) -> int | str:
    """A count for publication: "<5" for 1 to 4, so a small group cannot single a person out."""
    return "<5" if 0 < count < SUPPRESS_BELOW else count
