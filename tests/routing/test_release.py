"""Release: a refused consent holds the referral whatever the route; a hold keeps its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.routing.release import CONSENT_REFUSED, may_contact, release
from gateway.routing.router import Route

ROOT = Path(__file__).resolve().parents[2]
TO_LEEDS = Route("leeds", "Leeds", "practice B99002")


@pytest.mark.parametrize(
    ("consent", "released"),
    [
        ({"information_sharing": "given"}, True),
        ({"information_sharing": "not-obtained", "reason_not_obtained": "not asked yet"}, True),
        (None, True),
        ({"information_sharing": "refused"}, False),
    ],
)
def test_only_a_refused_consent_holds(consent: object, released: bool) -> None:
    decision = release({"consent": consent}, TO_LEEDS)
    assert decision.released is released
    assert decision.hub == "leeds"
    assert decision.consent_refused is not released


def test_the_refusal_reason_travels() -> None:
    record = {
        "consent": {"information_sharing": "refused", "reason_not_obtained": "wants to think"}
    }
    assert release(record, TO_LEEDS).held_reason == f"{CONSENT_REFUSED}: wants to think"


def test_a_routing_hold_keeps_the_routing_reason() -> None:
    decision = release({}, Route(None, "default", "no hub covers this area yet"))
    assert not decision.released
    assert decision.held_reason == "no hub covers this area yet"
    assert not decision.consent_refused


def test_the_consent_refused_fixtures_are_held() -> None:
    held = []
    for path in sorted(ROOT.glob("fixtures/*/*.record.json")):
        record = json.loads(path.read_text())
        if not release(record, TO_LEEDS).released:
            held.append(path.parent.name)
    assert "hospital-a" in held and "hospital-b" in held


def test_may_contact_is_read_only_when_stated() -> None:
    assert may_contact({"safeguarding": {"may_contact": False}}) is False
    assert may_contact({"safeguarding": {"may_contact": True}}) is True
    assert may_contact({"safeguarding": {"may_contact": "no"}}) is None
    assert may_contact({}) is None
