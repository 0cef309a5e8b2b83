"""Wellbeing change per person: first and last score of the same instrument, and whether the
change is meaningful. The thresholds and their sources are in docs/evidence.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

#: instrument -> (smallest meaningful change in points, +1 if a higher score is better else -1).
MEANINGFUL: dict[str, tuple[float, int]] = {
    "wemwbs": (3.0, 1),
    "swemwbs": (1.0, 1),
    "ons4-life-satisfaction": (1.0, 1),
    "ons4-worthwhile": (1.0, 1),
    "ons4-happiness": (1.0, 1),
    "ons4-anxiety": (1.0, -1),
    "ucla3": (1.0, -1),
}


@dataclass(frozen=True)
class Score:
    """One wellbeing score of one person on one instrument."""

    person: str
    instrument: str
    taken: date
    score: float


@dataclass(frozen=True)
class Change:
    """One person's change on one instrument between the first and last score."""

    person: str
    instrument: str
    first: float
    last: float

    @property
    def change(self) -> float:
        """Last minus first, in the instrument's points."""
        return self.last - self.first

    @property
    def improved(self) -> bool:
        """Whether the change is at least the meaningful change, in the better direction."""
        threshold, better = MEANINGFUL.get(self.instrument, (float("inf"), 1))
        return self.change * better >= threshold


def changes(scores: Iterable[Score]) -> list[Change]:
    """Each person's first-to-last change per instrument, for people with two or more scores.

    Scores on the same day keep the order they came in; the first is the earliest date's
    first score and the last the latest date's last score.
    """
    first: dict[tuple[str, str], Score] = {}
    last: dict[tuple[str, str], Score] = {}
    count: dict[tuple[str, str], int] = {}
    for score in scores:
        key = (score.person, score.instrument)
        count[key] = count.get(key, 0) + 1
        held = first.get(key)
        if held is None or score.taken < held.taken:
            first[key] = score
        held = last.get(key)
        if held is None or score.taken >= held.taken:
            last[key] = score
    return [
        Change(
            person, instrument, first[(person, instrument)].score, last[(person, instrument)].score
        )
        for (person, instrument), n in count.items()
        if n >= 2
    ]
