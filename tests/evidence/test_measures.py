"""Evidence measures against an independent count over 10,000 generated referrals."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from gateway.evidence.measures import ReferralFacts, measure, percentile, suppressed
from gateway.evidence.wellbeing import MEANINGFUL, Score, changes

START = datetime(2026, 1, 1, tzinfo=UTC)
STATUS_PATHS = [
    (),
    ("accepted",),
    ("rejected",),
    ("accepted", "in-progress"),
    ("accepted", "in-progress", "completed"),
    ("accepted", "cancelled"),
    ("cancelled",),
]


def _generate(n: int, seed: int) -> tuple[list[ReferralFacts], list[tuple[str, Score]]]:
    rng = random.Random(seed)
    referrals, scores = [], []
    for i in range(n):
        received = START + timedelta(minutes=rng.randrange(0, 60 * 24 * 300))
        statuses = frozenset(rng.choice(STATUS_PATHS))
        contact = received + timedelta(hours=rng.randrange(1, 24 * 40)) if statuses else None
        person = f"p{rng.randrange(n // 2)}"
        facts = ReferralFacts(
            referral_id=f"r{i}",
            person=person,
            received=received,
            source=rng.choice(["emis-web", "gp-v2", "hospital-a"]),
            practice=rng.choice(["B99001", "B99002", None]),
            pcn=rng.choice(["U99001", "U99002"]),
            hub=rng.choice(["leeds", "pennine", None]),
            statuses=statuses,
            first_contact=contact,
        )
        referrals.append(facts)
        for _ in range(rng.randrange(0, 4)):
            instrument = rng.choice(["wemwbs", "swemwbs", "ons4-anxiety", "ucla3"])
            low, high = {"wemwbs": (14, 70), "swemwbs": (7, 35)}.get(instrument, (0, 9))
            taken = received.date() + timedelta(days=rng.randrange(0, 120))
            scores.append(
                (facts.referral_id, Score(person, instrument, taken, rng.randint(low, high)))
            )
    return referrals, scores


def _independent(
    referrals: list[ReferralFacts], scores: list[tuple[str, Score]], grouping: str
) -> dict[str, dict[str, object]]:
    """The same measures counted the long way: one pass per group, no shared helpers."""

    def key(f: ReferralFacts) -> str:
        if grouping == "period":
            return f"{f.received.year:04d}-{f.received.month:02d}"
        value = getattr(f, grouping)
        return value if value else "not stated"

    out: dict[str, dict[str, object]] = {}
    for group in sorted({key(f) for f in referrals}):
        members = [f for f in referrals if key(f) == group]
        ids = {f.referral_id for f in members}
        days = sorted(
            (f.first_contact - f.received) / timedelta(days=1)
            for f in members
            if f.first_contact is not None
        )
        n = len(days)
        median = None
        if n:
            median = days[n // 2] if n % 2 else (days[n // 2 - 1] + days[n // 2]) / 2
        p90 = days[-(-9 * n // 10) - 1] if n else None
        series: dict[tuple[str, str], list[tuple[date, int, float]]] = {}
        for order, (rid, s) in enumerate(scores):
            if rid in ids:
                series.setdefault((s.person, s.instrument), []).append((s.taken, order, s.score))
        wellbeing: dict[str, tuple[int, int]] = {}
        for (_, instrument), items in series.items():
            if len(items) < 2:
                continue
            items.sort()
            delta = items[-1][2] - items[0][2]
            better = -delta if instrument in ("ons4-anxiety", "ucla3") else delta
            needed = 3 if instrument == "wemwbs" else 1
            people, improved = wellbeing.get(instrument, (0, 0))
            wellbeing[instrument] = (people + 1, improved + (better >= needed))
        out[group] = {
            "received": len(members),
            "accepted": len([f for f in members if f.statuses - {"rejected", "cancelled"}]),
            "declined": len([f for f in members if "rejected" in f.statuses]),
            "completed": len([f for f in members if "completed" in f.statuses]),
            "median": None if median is None else round(median, 2),
            "p90": None if p90 is None else round(p90, 2),
            "wellbeing": dict(sorted(wellbeing.items())),
        }
    return out


@pytest.fixture(scope="module")
def data() -> tuple[list[ReferralFacts], list[tuple[str, Score]]]:
    return _generate(10_000, seed=20261203)


@pytest.mark.parametrize("grouping", ["period", "source", "practice", "pcn", "hub"])
def test_measures_match_an_independent_count(
    data: tuple[list[ReferralFacts], list[tuple[str, Score]]], grouping: str
) -> None:
    referrals, scores = data
    expected = _independent(referrals, scores, grouping)
    rows = measure(referrals, scores, grouping)
    assert [r.key for r in rows] == list(expected)
    assert sum(r.received for r in rows) == 10_000
    for row in rows:
        want = expected[row.key]
        got = {
            "received": row.received,
            "accepted": row.accepted,
            "declined": row.declined,
            "completed": row.completed,
            "median": row.days_to_first_contact_median,
            "p90": row.days_to_first_contact_p90,
            "wellbeing": {i: (w.people, w.improved) for i, w in row.wellbeing.items()},
        }
        assert got == want, row.key


def test_the_generated_set_exercises_every_measure(
    data: tuple[list[ReferralFacts], list[tuple[str, Score]]],
) -> None:
    (row,) = measure([f for f in data[0] if f.source == "gp-v2"], data[1], "source")
    assert row.accepted and row.declined and row.completed and row.contacted
    assert set(row.wellbeing) == {"wemwbs", "swemwbs", "ons4-anxiety", "ucla3"}
    assert all(0 < w.improved < w.people for w in row.wellbeing.values())


def test_change_runs_from_the_earliest_to_the_latest_score() -> None:
    d = date(2026, 3, 1)
    found = changes(
        [
            Score("a", "wemwbs", d + timedelta(days=30), 50),
            Score("a", "wemwbs", d, 40),
            Score("a", "wemwbs", d + timedelta(days=10), 70),
            Score("b", "wemwbs", d, 40),
        ]
    )
    assert [(c.person, c.first, c.last, c.improved) for c in found] == [("a", 40, 50, True)]


@pytest.mark.parametrize(
    ("instrument", "first", "last", "improved"),
    [
        ("wemwbs", 40, 43, True),
        ("wemwbs", 40, 42, False),
        ("swemwbs", 20, 21, True),
        ("ons4-anxiety", 7, 6, True),
        ("ons4-anxiety", 6, 7, False),
        ("ucla3", 8, 7, True),
        ("ucla3", 7, 8, False),
    ],
)
def test_meaningful_change_follows_the_instrument(
    instrument: str, first: float, last: float, improved: bool
) -> None:
    d = date(2026, 3, 1)
    (change,) = changes(
        [Score("a", instrument, d, first), Score("a", instrument, d + timedelta(days=1), last)]
    )
    assert change.improved is improved
    assert instrument in MEANINGFUL


def test_nearest_rank_percentile() -> None:
    assert percentile([5, 1, 3, 2, 4, 6, 7, 8, 9, 10], 0.9) == 9
    assert percentile([1], 0.9) == 1
    assert percentile([1, 2], 0.9) == 2


def test_small_counts_are_suppressed() -> None:
    assert [suppressed(n) for n in (0, 1, 4, 5, 120)] == [0, "<5", "<5", 5, 120]


def test_an_unknown_grouping_is_refused() -> None:
    with pytest.raises(ValueError, match="grouping is one of"):
        measure([], [], "postcode")
