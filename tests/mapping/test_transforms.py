"""Each named transform: what it converts, what it drops and diagnoses, what it rejects."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from gateway.errors import InvalidContent
from gateway.mapping.transforms import (
    REGISTRY,
    MapState,
    address,
    any_true,
    boolean,
    coding,
    concept_text,
    concept_texts,
    fhir_date,
    fhir_datetime,
    given_names,
    human_name,
    joined_text,
    lower,
    nhs_number_checked,
    ods_code,
    overflow_text,
    plain_text,
    reason_150,
)
from gateway.mapping.transforms_person import (
    NHS_COMMUNICATION,
    interpreter_language,
    preferred_language,
    telecom,
    what_matters_to_me,
)
from gateway.nhs_number import check_digit, is_valid, synthetic
from gateway.record.model import REASON_MAX

LONDON = ZoneInfo("Europe/London")


def state(where: str = "%patient.x") -> MapState:
    """A fresh MapState in UK time whose location reads like the engine's."""
    return MapState(LONDON, where=where, describe=lambda text: text.replace("%patient", "Patient"))


def test_registry_names_and_kinds() -> None:
    collection = {name for name, t in REGISTRY.items() if t.collection}
    assert collection == {
        "telecom",
        "joined_text",
        "given_names",
        "v2_telecom",
        "concept_texts",
        "any_true",
        "interpreter_language",
        "preferred_language",
        "what_matters_to_me",
    }
    assert {"nhs_number", "datetime", "reason_150", "boolean", "address"} <= set(REGISTRY)


@pytest.mark.parametrize("serial", [0, 1, 2, 7, 123])
def test_synthetic_nhs_numbers_are_valid_and_in_the_999_range(serial: int) -> None:
    number = synthetic(serial)
    assert number.startswith("999") and len(number) == 10
    assert is_valid(number)
    assert nhs_number_checked(number, state()) == number


def test_synthetic_sequence_starts_as_documented() -> None:
    assert [synthetic(0), synthetic(1)] == ["9990000018", "9990000026"]


@pytest.mark.parametrize("typed", ["999 000 0018", "999-000-0018", " 9990000018 "])
def test_nhs_number_spaces_and_hyphens_are_removed(typed: str) -> None:
    assert nhs_number_checked(typed, state()) == "9990000018"


@pytest.mark.parametrize(
    "bad",
    [
        "9990000017",  # wrong check digit
        "9990000019",
        "999000001",  # nine digits
        "99900000180",  # eleven digits
        "999000001X",
        "9990000000",  # 999000000 has no valid check digit (remainder gives 10)
    ],
)
def test_nhs_number_rejects_bad_numbers_naming_the_element(bad: str) -> None:
    with pytest.raises(InvalidContent) as caught:
        nhs_number_checked(bad, state("%patient.identifier.value"))
    assert caught.value.status == 400
    assert caught.value.expression == "Patient.identifier.value"


def test_nhs_number_without_a_check_digit_stem() -> None:
    assert check_digit("999000000") is None


@pytest.mark.parametrize("empty", [None, "", "   ", True, {}, []])
def test_nhs_number_absent_is_dropped(empty: object) -> None:
    assert nhs_number_checked(empty, state()) is None


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-07-02T10:15:00", "2026-07-02T10:15:00+01:00"),  # BST
        ("2026-01-15T10:15:00", "2026-01-15T10:15:00+00:00"),  # GMT
        ("2026-03-29T00:59:59", "2026-03-29T00:59:59+00:00"),  # the hour before BST starts
        ("2026-03-29T02:00:00", "2026-03-29T02:00:00+01:00"),  # just after
        ("2026-10-25T00:59:59", "2026-10-25T00:59:59+01:00"),  # BST ends at 02:00 local
        ("2026-10-25T02:00:00", "2026-10-25T02:00:00+00:00"),
        ("2026-07-02T10:15", "2026-07-02T10:15:00+01:00"),
        ("2026-07-02T10:15:00.250", "2026-07-02T10:15:00.250000+01:00"),
        ("2026-07-02T10:15:00Z", "2026-07-02T10:15:00+00:00"),
        ("2026-07-02T10:15:00+02:00", "2026-07-02T10:15:00+02:00"),  # an offset is kept
        ("2026-01-15T10:15:00-05:00", "2026-01-15T10:15:00-05:00"),
        ("2026-07-02", "2026-07-02"),  # a date stays a date
        ("  2026-07-02T10:15:00 ", "2026-07-02T10:15:00+01:00"),
    ],
)
def test_datetime_applies_the_source_time_zone_to_local_times(value: str, expected: str) -> None:
    st = state()
    assert fhir_datetime(value, st) == expected
    assert st.diagnostics == []


def test_datetime_uses_the_time_zone_it_is_given() -> None:
    st = MapState(ZoneInfo("America/New_York"))
    assert fhir_datetime("2026-07-02T10:15:00", st) == "2026-07-02T10:15:00-04:00"


@pytest.mark.parametrize("value", ["garbage", "2026-13-40T10:15:00", "02/07/2026 10:15"])
def test_datetime_unparsed_is_dropped_and_diagnosed(value: str) -> None:
    st = state("%referral.authoredOn")
    assert fhir_datetime(value, st) is None
    assert [d["code"] for d in st.diagnostics] == ["unparsed-date"]
    assert st.diagnostics[0]["location"] == "%referral.authoredOn"
    assert value not in st.diagnostics[0]["message"]  # no patient data in diagnostics


@pytest.mark.parametrize("partial", ["2026", "2026-07"])
def test_datetime_keeps_partial_fhir_dates(partial: str) -> None:
    st = state()
    assert fhir_datetime(partial, st) == partial
    assert st.diagnostics == []


def test_date_takes_the_date_part_and_diagnoses_partial_dates() -> None:
    st = state()
    assert fhir_date("1948-03-14", st) == "1948-03-14"
    assert fhir_date("1948-03-14T00:00:00+00:00", st) == "1948-03-14"
    assert fhir_date("1948-03", st) is None
    assert fhir_date(None, st) is None
    assert [d["code"] for d in st.diagnostics] == ["unparsed-date"]


def test_reason_150_keeps_short_text_as_it_is() -> None:
    st = state()
    exact = "x" * REASON_MAX
    assert reason_150(exact, st) == exact
    assert reason_150("  Feels isolated  ", st) == "Feels isolated"
    assert reason_150("", st) is None
    assert st.diagnostics == []


@pytest.mark.parametrize("length", [151, 160, 200, 1000, 5000])
def test_reason_150_cuts_at_a_word_and_diagnoses(length: int) -> None:
    words = "Lives alone since her husband died, rarely leaves the house; stopped lunch club. "
    text = (words * (1 + length // len(words)))[:length].strip()
    st = state("%referral.reasonCode.text")
    cut = reason_150(text, st)
    assert cut is not None
    assert len(cut) <= REASON_MAX
    assert cut.endswith("…")
    kept = cut[:-1]
    assert text.startswith(kept)
    assert text[len(kept)] in " ,;."  # the cut falls between words
    assert not kept.endswith((" ", ",", ";", "."))
    [diagnostic] = st.diagnostics
    assert diagnostic["code"] == "truncated"
    assert diagnostic["location"] == "%referral.reasonCode.text"
    assert f"was {len(text)} characters; cut to {len(cut)}" in diagnostic["message"]
    assert overflow_text(text, state()) == text


def test_reason_150_without_spaces_cuts_hard() -> None:
    cut = reason_150("x" * 400, state())
    assert cut == "x" * (REASON_MAX - 1) + "…"


def test_overflow_text_only_for_long_text() -> None:
    assert overflow_text("x" * REASON_MAX, state()) is None
    assert overflow_text("x" * (REASON_MAX + 1), state()) == "x" * (REASON_MAX + 1)


def test_telecom_first_of_each_kind_mobile_by_use() -> None:
    points = [
        {"system": "fax", "value": "01632 960999"},
        {"system": "phone", "value": "07700 900123", "use": "mobile"},
        {"system": "phone", "value": "01632 960001", "use": "home"},
        {"system": "phone", "value": "01632 960002", "use": "work"},
        {"system": "email", "value": "m.ellis@example.com"},
        {"system": "email", "value": "second@example.com"},
        {"system": "phone", "value": "   "},
        {"system": "phone"},
        "not a ContactPoint",
    ]
    assert telecom(points, state()) == {
        "mobile": "07700 900123",
        "phone": "01632 960001",
        "email": "m.ellis@example.com",
    }
    assert telecom([], state()) is None
    assert telecom([{"system": "fax", "value": "01632 960999"}], state()) is None


def test_telecom_sms_and_the_lowest_rank_is_preferred() -> None:
    points = [
        {"system": "phone", "value": "01632 960001", "use": "home", "rank": 2},
        {"system": "sms", "value": "07700 900124", "rank": 1},
        {"system": "email", "value": "a@example.com", "rank": 3},
    ]
    assert telecom(points, state()) == {
        "phone": "01632 960001",
        "sms": "07700 900124",
        "email": "a@example.com",
        "preferred": "sms",
    }
    # A mobile ranked first; XML gives the rank as text; rank 0, a boolean or none is ignored.
    ranked = [
        {"system": "phone", "value": "07700 900125", "use": "mobile", "rank": "1"},
        {"system": "email", "value": "b@example.com", "rank": 0},
    ]
    assert telecom(ranked, state())["preferred"] == "mobile"
    unranked = [{"system": "email", "value": "c@example.com", "rank": True}]
    assert telecom(unranked, state()) == {"email": "c@example.com"}
    # A ranked ContactPoint the record has no place for (fax) does not make a preference.
    fax = [{"system": "fax", "value": "01632 960999", "rank": 1}, {"system": "phone", "value": "1"}]
    assert "preferred" not in telecom(fax, state())


def test_concept_texts_text_else_display_without_repeats() -> None:
    concepts = [
        {"text": "Has a dog that can be protective", "coding": [{"display": "ignored"}]},
        {"coding": [{"system": "s", "code": "1", "display": "Adult safeguarding concern"}]},
        {"text": "Has a dog that can be protective"},
        {"coding": []},
        "plain words",
    ]
    assert concept_texts(concepts, state()) == (
        "Has a dog that can be protective\n\nAdult safeguarding concern\n\nplain words"
    )
    assert concept_texts([{}], state()) is None


def test_any_true_over_booleans_and_text() -> None:
    assert any_true([False, "true"], state()) is True
    assert any_true([False, "false"], state()) is False
    assert any_true([], state()) is None
    odd = state()
    assert any_true(["yes", False], odd) is False
    assert odd.diagnostics[0]["code"] == "unparsed-boolean"


def _nhs_communication(language: str, preferred: bool, interpreter: bool) -> dict[str, object]:
    return {
        "url": NHS_COMMUNICATION,
        "extension": [
            {"url": "language", "valueCodeableConcept": {"coding": [{"display": language}]}},
            {"url": "preferred", "valueBoolean": preferred},
            {"url": "interpreterRequired", "valueBoolean": interpreter},
        ],
    }


def test_interpreter_language_from_the_retired_extension_or_a_language() -> None:
    retired = [
        _nhs_communication("English", True, False),
        _nhs_communication("Tigrinya", False, True),
    ]
    assert interpreter_language(retired, state()) == "Tigrinya"
    # No language with interpreterRequired true: none, even though languages are given.
    assert interpreter_language(retired[:1], state()) is None
    assert interpreter_language([{"text": "Farsi"}], state()) == "Farsi"
    assert interpreter_language([], state()) is None


def test_preferred_language_the_preferred_one_else_the_first() -> None:
    both = [_nhs_communication("Welsh", False, False), _nhs_communication("English", True, False)]
    assert preferred_language(both, state()) == "English"
    neither = [
        _nhs_communication("Welsh", False, False),
        _nhs_communication("English", False, False),
    ]
    assert preferred_language(neither, state()) == "Welsh"
    assert preferred_language([{"coding": [{"display": "Urdu"}]}], state()) == "Urdu"


def test_what_matters_to_me_takes_texts_and_only_labelled_notes() -> None:
    notes = [
        {"text": "Drives, but not after dark."},
        {"text": "What matters to me: my allotment and the choir"},
        {"text": "  what matters to me - seeing my grandchildren"},
        {"text": "What mattered before was work"},
        {"author": "no text"},
    ]
    assert what_matters_to_me(notes, state()) == (
        "What matters to me: my allotment and the choir"
        "\n\nwhat matters to me - seeing my grandchildren"
    )
    assert what_matters_to_me([{"text": "Drives, but not after dark."}], state()) is None
    # Plain texts (an Observation's valueString, a questionnaire answer) need no label.
    assert (
        what_matters_to_me(["Getting back to swimming", " "], state()) == "Getting back to swimming"
    )


def test_address_lines_city_district_postcode() -> None:
    value = {
        "use": "home",
        "line": ["12 Park Row", " ", "Flat 2"],
        "city": "Leeds",
        "district": "West Yorkshire",
        "postalCode": "ls1 4ap",
        "country": "GB",
    }
    assert address(value, state()) == {
        "lines": ["12 Park Row", "Flat 2"],
        "city": "Leeds",
        "district": "West Yorkshire",
        "postcode": "LS1 4AP",
    }
    assert address({"city": "  "}, state()) is None
    assert address("12 Park Row", state()) is None


@pytest.mark.parametrize(
    "value, expected", [(True, True), (False, False), ("true", True), ("false", False)]
)
def test_boolean_from_json_and_xml_text(value: object, expected: bool) -> None:
    st = state()
    assert boolean(value, st) is expected
    assert st.diagnostics == []


@pytest.mark.parametrize("value", ["yes", "True", "1", 1])
def test_boolean_other_values_are_dropped_and_diagnosed(value: object) -> None:
    st = state()
    assert boolean(value, st) is None
    assert [d["code"] for d in st.diagnostics] == ["unparsed-boolean"]


def test_boolean_absent_is_silent() -> None:
    st = state()
    assert boolean(None, st) is None
    assert st.diagnostics == []


def test_coding_keeps_system_code_display_and_diagnoses_incomplete() -> None:
    st = state()
    full = {"system": "http://snomed.info/sct", "code": "422650009", "display": "Social isolation"}
    assert coding({**full, "version": "x"}, st) == full
    assert coding({"system": "http://snomed.info/sct", "code": "73595000"}, st) == {
        "system": "http://snomed.info/sct",
        "code": "73595000",
    }
    assert coding({"code": "73595000"}, st) is None
    assert coding("73595000", st) is None
    assert [d["code"] for d in st.diagnostics] == ["incomplete-coding"]


def test_concept_text_and_human_name() -> None:
    st = state()
    assert concept_text({"text": "Welsh", "coding": [{"display": "Cymraeg"}]}, st) == "Welsh"
    assert concept_text({"coding": [{"code": "cy"}, {"display": "Cymraeg"}]}, st) == "Cymraeg"
    assert concept_text({"coding": []}, st) is None
    name = {"prefix": ["Dr"], "given": ["Amara", " "], "family": "Mensah"}
    assert human_name(name, st) == "Dr Amara Mensah"
    assert human_name({**name, "text": "Dr A. Mensah"}, st) == "Dr A. Mensah"
    assert human_name({}, st) is None


def test_collection_texts() -> None:
    st = state()
    assert given_names(["Margaret", " Joan ", ""], st) == "Margaret Joan"
    assert given_names([], st) is None
    assert joined_text(["Lives alone.", "  ", "Dog at home."], st) == "Lives alone.\n\nDog at home."
    assert joined_text([], st) is None


def test_small_text_transforms() -> None:
    st = state()
    assert ods_code(" b99002 ", st) == "B99002"
    assert ods_code("", st) is None
    assert plain_text("  Ellis ", st) == "Ellis"
    assert plain_text({"a": 1}, st) is None
    assert plain_text(0, st) == "0"
    assert lower("URGENT", st) == "urgent"
    assert st.diagnostics == []


@pytest.mark.parametrize(
    "stamp", ["20261314153000", "20260732153000", "20260714253000", "20260714153000+2500"]
)
def test_v2_datetime_out_of_range_is_a_domain_error_naming_the_field(stamp: str) -> None:
    from gateway.mapping.transforms_v2 import v2_datetime

    with pytest.raises(InvalidContent, match="not a valid HL7 date-time") as info:
        v2_datetime(stamp, state("PV1.45"))
    assert info.value.expression == "PV1.45"


def test_v2_datetime_in_range_still_converts() -> None:
    from gateway.mapping.transforms_v2 import v2_datetime

    assert v2_datetime("20260714153000", state()) == "2026-07-14T15:30:00+01:00"
    assert v2_datetime("20260714153000+0000", state()) == "2026-07-14T15:30:00+00:00"
