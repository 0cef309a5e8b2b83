"""Code maps: keep, default and reject policies, the system filter, and the unmapped counter."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.config import ROOT
from gateway.errors import UnknownCode
from gateway.mapping.codemaps import POLICIES, CodeMap, unmapped_counts
from gateway.mapping.engine import load_mappings
from gateway.mapping.transforms import MapState

SCT = "http://snomed.info/sct"
LOCAL = "https://emis.example.org/fhir/CodeSystem/emis-local-codes"
ISOLATION = {"system": SCT, "code": "422650009", "display": "Social isolation"}


def state() -> MapState:
    """A MapState whose location reads like the engine's."""
    return MapState(
        ZoneInfo("Europe/London"),
        where="%referral.reasonCode.coding",
        describe=lambda text: text.replace("%referral", "ServiceRequest"),
    )


def codemap(
    unknown: str, name: str = "test_map", default: Any = None, system: str | None = None
) -> CodeMap:
    """A small code map for a made-up source."""
    entries = {"EMISSP001": ISOLATION, "01": "verified"}
    return CodeMap(name, "test-source", entries, unknown, default, system)


def counted(name: str, code: str) -> int:
    """How often ``code`` was not found in code map ``name`` of test-source so far."""
    return unmapped_counts().get(("test-source", name, code), 0)


def test_policies() -> None:
    assert POLICIES == ("keep", "default", "reject")


@pytest.mark.parametrize("unknown", POLICIES)
def test_known_codes_map_silently_under_every_policy(unknown: str) -> None:
    st = state()
    cm = codemap(unknown, default="fallback")
    assert cm.apply("01", st) == "verified"
    assert cm.apply({"system": LOCAL, "code": "EMISSP001", "display": "x"}, st) == ISOLATION
    assert st.diagnostics == []


def test_keep_returns_the_code_as_sent_and_diagnoses() -> None:
    st = state()
    before = counted("keep_map", "EMISSP999")
    sent = {"system": LOCAL, "code": "EMISSP999", "display": "Local code"}
    assert codemap("keep", "keep_map").apply(sent, st) == sent
    assert codemap("keep", "keep_map").apply("EMISSP999", st) == "EMISSP999"
    assert counted("keep_map", "EMISSP999") == before + 2
    assert [d["code"] for d in st.diagnostics] == ["unmapped-code", "unmapped-code"]
    assert st.diagnostics[0]["location"] == "ServiceRequest.reasonCode.coding"
    assert "kept as sent" in st.diagnostics[0]["message"]


def test_default_returns_the_default_and_diagnoses() -> None:
    st = state()
    before = counted("default_map", "whenever")
    assert codemap("default", "default_map", default="routine").apply("whenever", st) == "routine"
    assert counted("default_map", "whenever") == before + 1
    [diagnostic] = st.diagnostics
    assert diagnostic["code"] == "unmapped-code"
    assert "used the default" in diagnostic["message"]


def test_reject_raises_unknown_code_naming_the_element() -> None:
    before = counted("reject_map", "maybe")
    with pytest.raises(UnknownCode) as caught:
        codemap("reject", "reject_map").apply("maybe", state())
    assert caught.value.status == 422
    assert caught.value.issue_code == "code-invalid"
    assert caught.value.expression == "ServiceRequest.reasonCode.coding"
    assert "maybe" in caught.value.message
    assert counted("reject_map", "maybe") == before + 1


def test_system_filter_passes_other_systems_through_uncounted() -> None:
    st = state()
    cm = codemap("reject", "system_map", system=LOCAL)
    snomed = {"system": SCT, "code": "73595000", "display": "Stress"}
    assert cm.apply(snomed, st) is snomed
    assert counted("system_map", "73595000") == 0
    assert cm.apply({"system": LOCAL, "code": "EMISSP001"}, st) == ISOLATION
    with pytest.raises(UnknownCode, match=f"from {LOCAL}"):
        cm.apply({"system": LOCAL, "code": "EMISSP404"}, st)
    assert st.diagnostics == []


def test_unmapped_counter_is_per_source_map_and_code_and_holds_no_patient_data() -> None:
    before = unmapped_counts()
    st = state()
    for _ in range(3):
        codemap("keep", "count_map").apply("ZZZ1", st)
    codemap("keep", "count_map").apply({"system": LOCAL}, st)  # a coding without a code
    after = unmapped_counts()
    assert (
        after[("test-source", "count_map", "ZZZ1")]
        == before.get(("test-source", "count_map", "ZZZ1"), 0) + 3
    )
    assert ("test-source", "count_map", "None") in after
    after[("test-source", "count_map", "ZZZ1")] = -1  # a copy: the counter is not exposed
    assert unmapped_counts()[("test-source", "count_map", "ZZZ1")] > 0


def test_repository_code_maps_apply_their_policies() -> None:
    mappings = load_mappings(ROOT / "mappings")
    maps = {
        rule.codemap.name: rule.codemap
        for rule in mappings["uk-core"].compiled.rules
        if rule.codemap is not None
    }
    assert maps["priority"].apply("whenever", state()) == "routine"
    consent = maps["consent_state"]
    assert [consent.apply(c, state()) for c in ("permit", "deny", "IMPLIED", "OPTOUT")] == [
        "given",
        "refused",
        "given",
        "refused",
    ]
    # An unknown consent state is not guessed: left out, so the record says "not stated".
    unknown = state()
    assert consent.apply("maybe", unknown) is None
    assert unknown.diagnostics[0]["code"] == "unmapped-code"
    assert maps["nhs_number_verification"].apply("99", state()) == "99"
    verification = maps["nhs_number_verification"]
    assert verification.apply("number-present-and-verified", state()) == verification.apply(
        "01", state()
    )
    kind = maps["social_prescribing_type"]
    snomed = "http://snomed.info/sct"
    assert kind.apply({"system": snomed, "code": "871731000000106"}, state())["code"] == (
        "871731000000106"
    )
    with pytest.raises(UnknownCode):
        kind.apply({"system": snomed, "code": "306181004"}, state())
