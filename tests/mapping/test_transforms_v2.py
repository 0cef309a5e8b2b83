"""HL7 v2 transforms: telecoms with SMS and preference order, coding system names and OIDs."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from gateway.mapping.transforms import MapState
from gateway.mapping.transforms_v2 import v2_coding, v2_telecom

LONDON = ZoneInfo("Europe/London")


def state() -> MapState:
    """A fresh MapState in UK time."""
    return MapState(LONDON, where="PID.13", describe=lambda text: text)


def xtn(**parts: str) -> dict[str, str]:
    """An XTN repetition from numbered components (c1=..., c18=...)."""
    return {name[1:]: value for name, value in parts.items()}


def test_telecom_kinds_first_of_each_and_no_preference_unless_sent() -> None:
    values = [
        xtn(c1="01632 960001", c2="PRN", c3="PH"),
        xtn(c1="07700 900001", c2="PRN", c3="CP"),
        xtn(c1="07700 900002", c2="ORN", c3="CP"),
        xtn(c2="NET", c3="Internet", c4="a@mail.example.net"),
    ]
    assert v2_telecom(values, state()) == {
        "phone": "01632 960001",
        "mobile": "07700 900001",
        "email": "a@mail.example.net",
    }


@pytest.mark.parametrize(
    "marked",
    [xtn(c1="07700 900003", c2="PRN", c3="SMS"), xtn(c1="07700 900003", c3="CP", c9="SMS only")],
)
def test_a_number_marked_for_texts_is_sms_and_a_mobile(marked: dict[str, str]) -> None:
    out = v2_telecom([xtn(c1="01632 960001", c3="PH"), marked], state())
    assert out == {"phone": "01632 960001", "sms": "07700 900003", "mobile": "07700 900003"}


def test_preference_order_names_the_preferred_method() -> None:
    values = [
        xtn(c1="01632 960001", c3="PH", c18="3"),
        xtn(c2="NET", c3="Internet", c4="b@mail.example.net", c18="1"),
        xtn(c1="07700 900004", c3="CP", c18="2"),
    ]
    assert v2_telecom(values, state())["preferred"] == "email"
    values[2]["18"] = "0"
    assert v2_telecom(values, state())["preferred"] == "mobile"
    values[2]["18"] = "first"  # not a number: no preference from it
    assert v2_telecom(values, state())["preferred"] == "email"


def test_v28_unformatted_number_in_component_12() -> None:
    assert v2_telecom([xtn(c2="PRN", c3="PH", c12="01632 960734")], state()) == {
        "phone": "01632 960734"
    }


@pytest.mark.parametrize(
    ("system", "url"),
    [
        ("SCT", "http://snomed.info/sct"),
        ("SNOMED", "http://snomed.info/sct"),
        ("2.16.840.1.113883.6.96", "http://snomed.info/sct"),
        ("2.16.840.1.113883.6.1", "http://loinc.org"),
        ("HL70281", "urn:sp-gateway:hl7v2-local:HL70281"),
    ],
)
def test_coding_system_names_and_oids(system: str, url: str) -> None:
    coded = v2_coding({"1": "871731000000106", "2": "Referral", "3": system}, state())
    assert coded == {"system": url, "code": "871731000000106", "display": "Referral"}
