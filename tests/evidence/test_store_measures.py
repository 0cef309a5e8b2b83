"""Measures read from the store's fact tables against a recount of the generated truth.

10,000 referrals with their outcomes are written in two loads, each followed by a refresh,
so the second refresh folds in only what is new. The recount below uses the generated
values alone: no gateway code between the truth and the expected numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.evidence import synthetic
from gateway.evidence.publish import table
from gateway.evidence.synthetic import GeneratedReferral
from gateway.store import evidence
from gateway.store.database import Database
from gateway.store.migrate import upgrade

GROUPINGS = ("period", "source", "practice", "pcn", "hub")
WORKING = {"accepted", "in-progress", "on-hold", "completed", "failed"}
LOWER_IS_BETTER = {"ons4-anxiety", "ucla3"}


def _key(ref: GeneratedReferral, grouping: str) -> str:
    if grouping == "period":
        return f"{ref.received.year:04d}-{ref.received.month:02d}"
    value = {
        "source": ref.source,
        "practice": ref.practice,
        "pcn": synthetic.PCNS.get(ref.practice or ""),
        "hub": ref.hub,
    }[grouping]
    return value or "not stated"


def _recount(refs: list[GeneratedReferral], grouping: str) -> dict[str, dict[str, Any]]:
    """Every measure per group, counted from the generated values."""
    groups: dict[str, list[GeneratedReferral]] = defaultdict(list)
    loaded_at = {ref.id: n for n, ref in enumerate(refs)}
    for ref in refs:
        groups[_key(ref, grouping)].append(ref)
    out = {}
    for group, members in sorted(groups.items()):
        statuses = [{o.status for o in r.outcomes} for r in members]
        days = []
        for ref in members:
            met = [
                when
                for o in ref.outcomes
                for when, attendance in o.contacts
                if attendance in (None, "attended") and when >= ref.received
            ]
            if met:
                days.append((min(met) - ref.received) / timedelta(days=1))
        days.sort()
        n = len(days)
        median = (days[(n - 1) // 2] + days[n // 2]) / 2 if n else None
        p90 = days[math.ceil(0.9 * n) - 1] if n else None
        series: dict[tuple[str, str], list[tuple[Any, Any, float]]] = defaultdict(list)
        for ref in members:
            for k, outcome in enumerate(ref.outcomes):
                for place, (instrument, taken, value) in enumerate(outcome.scores):
                    # Same day: the order they reached the store (load, outcome, position).
                    order = (loaded_at[ref.id], k, place)
                    series[(ref.nhs_number, instrument)].append((taken, order, value))
        changes: dict[str, list[float]] = defaultdict(list)
        improved: dict[str, int] = defaultdict(int)
        for (_, instrument), items in series.items():
            if len(items) < 2:
                continue
            delta = max(items)[2] - min(items)[2]
            changes[instrument].append(delta)
            gain = -delta if instrument in LOWER_IS_BETTER else delta
            improved[instrument] += gain >= (3 if instrument == "wemwbs" else 1)
        out[group] = {
            "received": len(members),
            "accepted": sum(1 for s in statuses if s & WORKING),
            "declined": sum(1 for s in statuses if "rejected" in s),
            "completed": sum(1 for s in statuses if "completed" in s),
            "contacted": n,
            "median": None if median is None else round(median, 2),
            "p90": None if p90 is None else round(p90, 2),
            "wellbeing": {
                i: (len(c), round(sum(c) / len(c), 2), improved[i])
                for i, c in sorted(changes.items())
            },
        }
    return out


def _got(rows: list[Any]) -> dict[str, dict[str, Any]]:
    return {
        r.key: {
            "received": r.received,
            "accepted": r.accepted,
            "declined": r.declined,
            "completed": r.completed,
            "contacted": r.contacted,
            "median": r.days_to_first_contact_median,
            "p90": r.days_to_first_contact_p90,
            "wellbeing": {
                i: (w.people, w.mean_change, w.improved) for i, w in sorted(r.wellbeing.items())
            },
        }
        for r in rows
    }


@pytest.fixture
def loaded(db_url: str) -> Iterator[tuple[Database, list[GeneratedReferral]]]:
    """A store holding 10,000 generated referrals, loaded and refreshed in two steps."""
    db = Database(db_url)
    upgrade(db)
    evidence.sync_practice_pcns(db, synthetic.PCNS)
    refs = synthetic.load(db, 6000, seed=1)
    assert evidence.refresh(db).versions > 6000  # one referral in ten has two versions
    refs += synthetic.load(db, 4000, seed=2, first=6000)
    again = evidence.refresh(db)
    assert 4000 < again.versions < 6000  # only the new ones
    yield db, refs
    db.dispose()


def test_measures_from_the_store_match_a_recount(
    loaded: tuple[Database, list[GeneratedReferral]],
) -> None:
    db, refs = loaded
    assert len(refs) == 10_000
    assert evidence.refresh(db) == evidence.Refreshed(0, 0)
    for grouping in GROUPINGS:
        got = _got(evidence.measures(db, grouping))
        want = _recount(refs, grouping)
        assert list(got) == list(want), grouping
        for key in want:
            assert got[key] == want[key], (grouping, key)
    since, until = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    inside = [r for r in refs if since <= r.received < until]
    assert _got(evidence.measures(db, "source", since, until)) == _recount(inside, "source")


def test_every_measure_is_exercised_and_small_groups_suppressed(
    loaded: tuple[Database, list[GeneratedReferral]],
) -> None:
    db, refs = loaded
    rows = evidence.measures(db, "hub")
    assert {r.key for r in rows} == {"leeds", "pennine", "*", "not stated"}
    for row in rows:
        assert row.accepted and row.declined and row.completed and row.contacted
        assert set(row.wellbeing) == set(synthetic.RANGES)
        assert all(0 < w.improved < w.people for w in row.wellbeing.values())
    first = min(r.received for r in refs)
    few = evidence.measures(db, "source", first, first + timedelta(hours=6))
    assert few and all(0 < r.received < 5 for r in few)
    for row in table(few):
        assert row["received"] == "<5"
        assert row["days_to_first_contact_median"] is None
        assert all(w["mean_change"] is None for w in row["wellbeing"].values())
    (big,) = table(evidence.measures(db, "source", None, None))[:1]
    assert isinstance(big["received"], int) and big["received"] > 1000
    assert big["days_to_first_contact_median"] is not None
