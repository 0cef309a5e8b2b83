"""The bundled HL7 v2 sources read the national encodings UK senders use, one class of
variation per test: NHS number markers, RF1-1 and RF1-3, risks stated or not, PD1, names,
line endings and versions, and the suppliers' optional segments."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ROOT
from gateway.errors import GatewayError
from gateway.fhir.outcome import from_error
from gateway.intake.hl7v2 import translate_v2
from gateway.mapping.engine import load_mappings
from gateway.nhs_number import synthetic

MAPPINGS = load_mappings(ROOT / "mappings")
NHS = synthetic(260)
OTHER = synthetic(261)

REF = [
    "MSH|^~\\&|CMTY|RQQ01|SPGW|C99003|20261204091500||REF^I12^REF_I12|T0001|P|2.5.1",
    "RF1|P^Pending^HL70283|R^Routine^HL70280|871731000000106^Referral to social prescribing"
    " service^SCT|||T-REF-1^CMTY|20261204",
    "PRD|RP|Lund^Maja^^^Ms||^^^Moorside Nursing|01632 960100^WPN^PH||RQQ12^ODS",
    f"PID|1||RQQ1^^^RQQ^MR~{NHS}^^^NHS^NH||Hale^Agnes^^^Mrs^^L||19500101|F",
]
A03 = [
    "MSH|^~\\&|PAS|RXX01|SPGW|C99003|20261208154510||ADT^A03^ADT_A03|A0001|P|2.4",
    "EVN|A03|20261208154500",
    f"PID|1||RXA1^^^RXX01^MR~{NHS}^^^NHS^NH||Hale^Agnes^^^Mrs^^L||19500101|F",
    "PV1|1|I|WARD1^^^RXX01||||C1^Roe^Ann^^^Dr|||300|||||||||V0001" + "|" * 26 + "20261208150000",
]


def message(segments: list[str], sep: str = "\r") -> bytes:
    """ER7 bytes from segments."""
    return (sep.join(segments) + sep).encode()


def replace(segments: list[str], name: str, new: str | None) -> list[str]:
    """The segments with the one named ``name`` replaced (or removed, or added at the end)."""
    out = [s for s in segments if not s.startswith(name + "|")]
    if new is None:
        return out
    if len(out) == len(segments):
        return [*out, new]
    return [new if s.startswith(name + "|") else s for s in segments]


def record(source: str, segments: list[str], sep: str = "\r") -> dict[str, Any]:
    """The record the bundled ``source`` gives."""
    return translate_v2(MAPPINGS, source, message(segments, sep))[1]


def refusal(source: str, segments: list[str]) -> tuple[str, str]:
    """(text, expression) of the refusal the bundled ``source`` gives."""
    with pytest.raises(GatewayError) as caught:
        record(source, segments)
    issue = from_error(caught.value)["issue"][0]
    return issue["details"]["text"], issue.get("expression", [""])[0]


@pytest.mark.parametrize(
    "pid3",
    [
        f"{NHS}^^^NHS^NH",
        f"{NHS}^^^^NH",
        f"{NHS}^^^NHS",
        f"{NHS}^^^NHS&2.16.840.1.113883.2.1.4.1&ISO",
        f"{NHS}^^^&2.16.840.1.113883.2.1.4.1&ISO",
        f"LOCAL9^^^RQQ^MR~{NHS}^^^&2.16.840.1.113883.2.1.4.1&ISO^NH",
    ],
)
def test_the_nhs_number_by_type_authority_or_oid(pid3: str) -> None:
    pid = f"PID|1||{pid3}||Hale^Agnes^^^Mrs^^L||19500101|F"
    assert record("gp-v2", replace(REF, "PID", pid))["person"]["nhs_number"] == NHS


def test_a_local_identifier_alone_is_no_nhs_number() -> None:
    pid = f"PID|1||{OTHER}^^^RQQ^MR||Hale^Agnes^^^Mrs^^L||19500101|F"
    got = record("gp-v2", replace(REF, "PID", pid))
    assert "nhs_number" not in got["person"]
    assert "person.nhs_number" in [q["item"] for q in got["data_quality"]]


@pytest.mark.parametrize(
    ("rf1_1", "trigger", "status"),
    [("P^Pending^HL70283", "I12", "pending"), ("A", "I13", "active"), ("P", "I14", "revoked")],
)
def test_status_from_rf1_1_and_the_trigger(rf1_1: str, trigger: str, status: str) -> None:
    segments = [REF[0].replace("REF^I12^REF_I12", f"REF^{trigger}"), *REF[1:]]
    segments[1] = segments[1].replace("P^Pending^HL70283", rf1_1)
    assert record("gp-v2", segments)["referral"]["status"] == status


def test_an_rf1_1_outside_table_0283_leaves_the_trigger_to_decide() -> None:
    got = record("gp-v2", [REF[0], REF[1].replace("P^Pending^HL70283", "Q"), *REF[2:]])
    assert got["referral"]["status"] == "active"
    assert any("'Q'" in d["message"] for d in got["diagnostics"])


@pytest.mark.parametrize(
    ("rf1_3", "expected"),
    [
        ("871731000000106^Referral to social prescribing service^SCT", "871731000000106"),
        ("515721000000104^Social prescribing for mental health^SNOMED", "515721000000104"),
        ("SP^Social prescribing^L", "871731000000106"),
        ("", None),
    ],
)
def test_social_prescribing_types_and_no_type_are_taken(rf1_3: str, expected: str | None) -> None:
    rf1 = REF[1].replace("871731000000106^Referral to social prescribing service^SCT", rf1_3)
    referral = record("gp-v2", replace(REF, "RF1", rf1))["referral"]
    assert referral.get("type", {}).get("code") == expected


@pytest.mark.parametrize("rf1_3", ["Med^Medical^HL70281", "Psy^Psychiatric^HL70281", "Lab"])
def test_a_referral_for_something_else_is_refused_naming_rf1_3(rf1_3: str) -> None:
    rf1 = REF[1].replace("871731000000106^Referral to social prescribing service^SCT", rf1_3)
    text, where = refusal("gp-v2", replace(REF, "RF1", rf1))
    assert where == "RF1-3"
    assert "v2_referral_type" in text


def test_an_administrative_rf1_10_is_not_the_reason() -> None:
    rf1 = REF[1] + "|||O^Provider Ordered^HL70336"
    referral = record("gp-v2", replace(REF, "RF1", rf1))["referral"]
    assert "reason" not in referral and "reason_codes" not in referral
    rf1 = REF[1] + "|||LON^Lonely since moving^L"
    assert record("gp-v2", replace(REF, "RF1", rf1))["referral"]["reason"] == "Lonely since moving"


@pytest.mark.parametrize("source", ["gp-v2", "hospital-b"])
def test_risks_not_stated_stated_as_none_and_coded(source: str) -> None:
    base = REF if source == "gp-v2" else A03
    silent = record(source, base)
    assert "risks" not in silent
    assert "risks" in [q["item"] for q in silent["data_quality"]]
    none = record(source, [*base, "OBX|1|ST|NKR^No known risks^L||No known risks||||||F"])
    assert none["risks"] == {"no_known_risks": True, "items": []}
    coded = record(
        source,
        [*base, "OBX|1|CWE|281694009^Finding of at risk^SCT||129839007^At risk for falls^SCT"],
    )
    assert coded["risks"]["items"] == [
        {
            "coding": {
                "system": "http://snomed.info/sct",
                "code": "129839007",
                "display": "At risk for falls",
            }
        }
    ]
    assert coded["risks"]["no_known_risks"] is False
    text = record(source, [*base, "OBX|1|ST|RISK^Risk^L||Lives alone||||||F"])
    assert text["risks"]["items"] == [{"text": "Lives alone"}]


def test_a_known_as_name_is_never_the_legal_name() -> None:
    pid = f"PID|1||{NHS}^^^NHS^NH||^Aggie^^^^^N~Hale^Agnes^^^Mrs||19500101|F"
    person = record("gp-v2", replace(REF, "PID", pid))["person"]
    assert (person["given_name"], person["family_name"], person["known_as"]) == (
        "Agnes",
        "Hale",
        "Aggie",
    )


def test_pid_32_and_pid_15() -> None:
    pid = f"PID|1||{NHS}^^^NHS^NH||Hale^Agnes||19500101|F|||||||pa^Punjabi^ISO639" + "|" * 17 + "04"
    person = record("gp-v2", replace(REF, "PID", pid))["person"]
    assert person["preferred_language"] == "Punjabi"
    assert person["nhs_number_verification"].startswith("Trace attempted")


@pytest.mark.parametrize(
    ("pd1", "ods"),
    [
        ("PD1|||Ash Surgery^^B99061|G8111111^Byrne^Ola^^^Dr", "B99061"),  # v2.4 XON-3
        ("PD1|||Ash Surgery^^^^^^^^^B99062|G8111111^Byrne^Ola^^^Dr", "B99062"),  # v2.5 XON-10
        ("PD1|||^^b99063|G8111111", "B99063"),  # ODS code only, lower case
    ],
)
@pytest.mark.parametrize("source", ["hospital-a", "hospital-b"])
def test_registered_practice_and_gp_from_pd1(pd1: str, ods: str, source: str) -> None:
    segments = [*A03[:3], pd1, A03[3]]
    practice = record(source, segments)["gp_practice"]
    assert practice["ods_code"] == ods
    assert practice["practitioner_code"] == "G8111111"


def test_the_primary_care_provider_prd_is_the_gp_practice() -> None:
    pp = "PRD|PP|Byrne^Ola^^^Dr||^^^Ash Surgery|||G8111111^GMP~B99061^ODS"
    practice = record("gp-v2", [*REF[:3], pp, REF[3]])["gp_practice"]
    assert practice == {
        "ods_code": "B99061",
        "name": "Ash Surgery",
        "practitioner_code": "G8111111",
        "practitioner_name": "Dr Ola Byrne",
    }
    # Without PP or PD1 the sender is taken to be the practice (a GP system's message).
    assert record("gp-v2", REF)["gp_practice"]["ods_code"] == "RQQ01"


@pytest.mark.parametrize("source", ["gp-v2", "hospital-a", "hospital-b"])
def test_lf_and_crlf_line_endings_give_the_same_record(source: str) -> None:
    base = REF if source == "gp-v2" else A03
    expected = record(source, base)
    assert record(source, base, "\n") == expected
    assert record(source, base, "\r\n") == expected


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5", "2.8"])
@pytest.mark.parametrize("source", ["gp-v2", "hospital-a", "hospital-b"])
def test_every_version_is_read(version: str, source: str) -> None:
    base = REF if source == "gp-v2" else A03
    header = "|".join([*base[0].split("|")[:11], version])
    assert record(source, [header, *base[1:]])["person"]["nhs_number"] == NHS


def test_hospital_a_takes_a_discharge_without_its_zsp_segment() -> None:
    got = record("hospital-a", A03)
    assert got["referral"]["identifier"] == "V0001"
    assert {"consent", "risks", "about_me"} <= {q["item"] for q in got["data_quality"]}
    with_zsp = record("hospital-a", [*A03, "ZSP|N|20261208||||01632 960100^WPN^PH"])
    assert with_zsp["consent"] == {"information_sharing": "refused", "date": "2026-12-08"}


def pv1_36(segments: list[str], code: str) -> list[str]:
    """The A03 with PV1-36 and PV1-37 set."""
    fields = segments[3].split("|")
    fields[36:38] = [code, "19"]
    return [*segments[:3], "|".join(fields)]


@pytest.mark.parametrize(("code", "consent"), [("SPC", "given"), ("SPN", "refused"), ("1", None)])
def test_hospital_b_consent_only_from_its_local_dispositions(
    code: str, consent: str | None
) -> None:
    got = record("hospital-b", pv1_36(A03, code))
    assert got.get("consent", {}).get("information_sharing") == consent
    assert got["referral"]["discharge"]["destination"] == "Usual place of residence"


def test_hospital_a_discharge_method_and_destination_in_words() -> None:
    discharge = record("hospital-a", pv1_36(A03, "2"))["referral"]["discharge"]
    assert discharge["disposition"].startswith("Self-discharged")
    assert discharge["destination"] == "Usual place of residence"
