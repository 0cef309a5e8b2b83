"""Routing decisions: every fixture to its hub, each criterion, first match, the default."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from gateway.cli import main
from gateway.routing.router import explain, facts, route
from gateway.routing.rules import load_routing

ROOT = Path(__file__).resolve().parents[2]
ROUTING = Path(__file__).resolve().parent / "files"
EXPECTED: dict[str, str] = json.loads((ROUTING / "expected.json").read_text())


def _record(**parts: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "person": {"address": {"postcode": parts.get("postcode")}},
        "gp_practice": {"ods_code": parts.get("practice")},
        "referral": {
            "referral_to": {"ods_code": parts.get("referral_to")},
            "reason_codes": parts.get("reasons", []),
        },
        "presenting_issues": parts.get("issues", []),
        "provenance": {"source_system": parts.get("source", "uk-core")},
    }
    return record


@pytest.fixture(scope="module")
def routing() -> Any:
    return load_routing(ROUTING / "routing.yaml")


def test_every_fixture_record_is_in_the_expected_table() -> None:
    records = sorted(
        str(p.relative_to(ROOT / "fixtures")) for p in ROOT.glob("fixtures/*/*.record.json")
    )
    assert records == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_goes_to_its_hub(routing: Any, name: str) -> None:
    record = json.loads((ROOT / "fixtures" / name).read_text())
    decision = route(routing, record)
    assert (decision.hub or "held") == EXPECTED[name]


def test_need_matches_a_reason_code_or_a_presenting_issue(routing: Any) -> None:
    stress = {"system": "http://snomed.info/sct", "code": "73595000"}
    assert route(routing, _record(reasons=[stress])).hub == "calm-minds"
    assert route(routing, _record(issues=[stress], practice="B99006")).hub == "calm-minds"
    other_system = {"system": "http://read.info/ctv3", "code": "73595000"}
    assert route(routing, _record(issues=[other_system])).held


def test_the_first_matching_rule_wins(routing: Any) -> None:
    decision = route(routing, _record(practice="B99006", postcode="NE1 7RU"))
    assert decision.hub == "kirklees"
    assert decision.rule == "Hospital B's catchment practice"
    assert decision.reason == "practice B99006"


def test_pcn_comes_from_the_practice_table(routing: Any) -> None:
    assert route(routing, _record(practice="b99005")).hub == "pennine"
    assert route(routing, _record(practice="B99002")).held  # its Pennine membership ended


def test_postcode_district_and_local_authority(routing: Any) -> None:
    assert route(routing, _record(postcode="ne2 4hh")).hub == "tyneside"
    assert route(routing, _record(postcode="LS29LN")).hub == "leeds"
    assert route(routing, _record(postcode="WF13 3LN")).held  # Kirklees, no rule


def test_a_silent_record_is_held_with_the_reason(routing: Any) -> None:
    decision = route(routing, {"person": {}, "referral": {}, "provenance": {}})
    assert decision.held
    assert decision.reason == routing.hold_reason


def test_a_default_hub_takes_what_no_rule_matches(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("rules:\n  - {hub: a, referral_to: [R1], source: [gp-v2]}\ndefault: {hub: b}\n")
    routing = load_routing(path)
    assert route(routing, _record(referral_to="r1", source="gp-v2")).hub == "a"
    assert route(routing, _record(referral_to="R1", source="uk-core")).hub == "b"


def test_explain_says_why_each_rule_did_not_match(routing: Any) -> None:
    lines = explain(routing, _record(postcode="NE1 7RU"))
    assert lines[1].startswith("1. Stress referrals to the wellbeing hub -> calm-minds: no (need")
    assert lines[4] == "4. Tyneside postcodes -> tyneside: matches (postcode_district NE1)"
    assert lines[-1] == "decision: tyneside by Tyneside postcodes (postcode_district NE1)"


def test_route_explain_on_the_command_line() -> None:
    fixture = ROOT / "fixtures" / "hospital-b" / "01-discharge.hl7"
    runner = CliRunner()
    args = ["route", "--routing", str(ROUTING / "routing.yaml"), "--source", "hospital-b"]
    result = runner.invoke(main, [*args, "--explain", str(fixture)])
    assert result.exit_code == 0, result.output
    assert (
        "2. Hospital B's catchment practice -> kirklees: matches (practice B99006)" in result.output
    )
    held = ROOT / "fixtures" / "gp-v2" / "04-v23-message.record.json"
    result = runner.invoke(main, ["route", "--routing", str(ROUTING / "routing.yaml"), str(held)])
    assert result.exit_code == 3
    assert result.output.startswith("held: no hub covers this area yet")


_TEXT = st.one_of(st.none(), st.text(max_size=12), st.integers(), st.lists(st.text(max_size=3)))


@given(
    practice=_TEXT,
    postcode=_TEXT,
    referral_to=_TEXT,
    codes=st.lists(st.dictionaries(st.sampled_from(["system", "code"]), _TEXT), max_size=4),
)
def test_any_record_shape_gets_a_decision_and_is_not_changed(
    practice: Any, postcode: Any, referral_to: Any, codes: Any
) -> None:
    routing = load_routing(ROUTING / "routing.yaml")
    record = _record(practice=practice, postcode=postcode, referral_to=referral_to, issues=codes)
    before = copy.deepcopy(record)
    decision = route(routing, record)
    assert decision.hub in routing.hubs or decision.held
    assert record == before


def _linear(routing: Any, record: dict[str, Any]) -> str | None:
    """The decision by trying every rule in order, as the routing file reads."""
    seen = facts(routing, record)
    for rule in routing.rules:
        if all(not accepted.isdisjoint(seen[name]) for name, accepted in rule.criteria):
            return str(rule.hub)
    return routing.default_hub


_MIXED = """practice_pcns: {pcns}
rules:
  - {{hub: a, practice: [B99004], need: [{{code: '73595000'}}]}}
  - {{hub: b, pcn: [U99001], postcode_district: [NE1]}}
  - {{hub: c, practice: [B99004, B99006]}}
  - {{hub: d, need: [{{system: 'http://snomed.info/sct', code: '422650009'}}], source: [gp-v2]}}
  - {{hub: e, postcode_district: [NE1, LS1]}}
default: {{hold: none}}
"""


@given(
    practice=st.sampled_from([None, "B99004", "B99005", "B99006", "B99002"]),
    postcode=st.sampled_from([None, "NE1 7RU", "LS1 4AP", "M1 2AB"]),
    source=st.sampled_from(["gp-v2", "uk-core"]),
    codes=st.lists(
        st.sampled_from(
            [
                {"system": "http://snomed.info/sct", "code": "73595000"},
                {"system": "http://snomed.info/sct", "code": "422650009"},
                {"system": "urn:other", "code": "422650009"},
            ]
        ),
        max_size=2,
    ),
)
def test_the_indexed_decision_equals_trying_every_rule_in_order(
    tmp_path_factory: Any, practice: Any, postcode: Any, source: str, codes: Any
) -> None:
    path = tmp_path_factory.mktemp("routing") / "mixed.yaml"
    path.write_text(_MIXED.format(pcns=ROUTING / "epcn-core-partners.csv"))
    routing = load_routing(path)
    record = _record(practice=practice, postcode=postcode, source=source, issues=codes)
    assert route(routing, record).hub == _linear(routing, record)
