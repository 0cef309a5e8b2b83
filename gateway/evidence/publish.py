"""Measure tables as published (API, report page, command line): small counts suppressed.

Every count from 1 to 4 becomes "<5"; a median, percentile or mean drawn from fewer than 5
referrals or people is withheld too, since it can describe a single person. Zero is shown:
it describes nobody.
"""

from __future__ import annotations

from typing import Any

from gateway.evidence.measures import SUPPRESS_BELOW, Measures, Wellbeing, suppressed

#: The count columns of a published row, in order.
COUNTS = ("received", "accepted", "declined", "completed", "contacted")


def _enough(count: int) -> bool:
    """Whether a statistic over ``count`` people may be shown."""
    return count >= SUPPRESS_BELOW


def _wellbeing(change: Wellbeing) -> dict[str, Any]:
    """One instrument's change for publication: the share only where its count may show."""
    enough = _enough(change.people)
    share_shown = enough and (change.improved == 0 or _enough(change.improved))
    return {
        "people": suppressed(change.people),
        "mean_change": change.mean_change if enough else None,
        "improved": suppressed(change.improved) if enough else None,
        "improved_share": round(change.improved_share, 3) if share_shown else None,
    }


def published(row: Measures) -> dict[str, Any]:
    """One measure row for publication, suppressed where small."""
    enough = _enough(row.contacted)
    return {
        "group": row.key,
        **{name: suppressed(getattr(row, name)) for name in COUNTS},
        "days_to_first_contact_median": row.days_to_first_contact_median if enough else None,
        "days_to_first_contact_p90": row.days_to_first_contact_p90 if enough else None,
        "wellbeing": {instrument: _wellbeing(w) for instrument, w in row.wellbeing.items()},
    }


def table(rows: list[Measures]) -> list[dict[str, Any]]:
    """A whole measure table for publication."""
    return [published(row) for row in rows]
