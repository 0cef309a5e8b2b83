"""The bundled ``uk-core`` mapping reads referrals as UK systems send them, one class of
variation per test: BaRS message shapes, requesters, identifier-only and display-only
references, national Flag, Consent, NHS number and interpreter encodings, About me, scores,
the referral identifier and whether the referral is for social prescribing at all.

Each test starts from a fixture under fixtures/uk-core/ and changes one thing."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest

from gateway.config import ROOT
from gateway.errors import GatewayError
from gateway.fhir.outcome import from_error
from gateway.intake.fhir import translate_message
from gateway.mapping.engine import load_mappings

MAPPINGS = load_mappings(ROOT / "mappings")
FIXTURES = ROOT / "fixtures" / "uk-core"
SCT = "http://snomed.info/sct"


def load(name: str) -> dict[str, Any]:
    """A uk-core fixture as FHIR JSON."""
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def record(doc: dict[str, Any]) -> dict[str, Any]:
    """The record ``uk-core`` gives for ``doc``."""
    return translate_message(MAPPINGS, "uk-core", orjson.dumps(doc), "application/fhir+json")[1]


def refusal(doc: dict[str, Any]) -> tuple[int, str, str]:
    """(status, text, expression) of the refusal ``uk-core`` gives for ``doc``."""
    with pytest.raises(GatewayError) as caught:
        record(doc)
    issue = from_error(caught.value)["issue"][0]
    return caught.value.status, issue["details"]["text"], (issue.get("expression") or [""])[0]


def resource(doc: dict[str, Any], kind: str, index: int = 0) -> dict[str, Any]:
    """The ``index``-th resource of type ``kind`` in a Bundle."""
    found = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == kind]
    return found[index]  # type: ignore[no-any-return]


BARS = "10-bars-message-practitioner-requester.json"
STANDALONE = "12-uk-core-standalone-servicerequest.json"
TRANSACTION = "13-transaction-conditional-create.json"
REFERENCES = "18-display-and-identifier-only-references.json"


def test_bars_practitioner_requester_takes_the_organisation_from_the_sender() -> None:
    out = record(load(BARS))["referral"]
    assert out["referrer"]["name"] == "Dr Samuel Ofori"
    assert (out["referrer"]["service"], out["referrer"]["ods_code"]) == (
        "Marsh Lane Surgery",
        "B99040",
    )
    # With no sender, a Practitioner requester has no organisation: not stated, not guessed.
    doc = load(BARS)
    del resource(doc, "MessageHeader")["sender"]
    referrer = record(doc)["referral"]["referrer"]
    assert "service" not in referrer and "ods_code" not in referrer


def test_practitioner_role_requester_organisation_through_the_role_or_its_identifier() -> None:
    doc = load(TRANSACTION)
    referrer = record(doc)["referral"]["referrer"]
    assert (referrer["service"], referrer["ods_code"]) == ("Northumbria Community Nursing", "RTF")
    assert referrer["name"] == "Gwen Pryce" and referrer["role"] == "Nurse practitioner"
    # The role's organisation as a resolved resource instead of an identifier-only reference.
    role = resource(doc, "PractitionerRole")
    role["organization"] = {"reference": "urn:uuid:org-ncn"}
    doc["entry"].append(
        {
            "fullUrl": "urn:uuid:org-ncn",
            "resource": {
                "resourceType": "Organization",
                "identifier": [
                    {"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "RTG"}
                ],
                "name": "Tynedale Community Nursing",
            },
            "request": {"method": "POST", "url": "Organization"},
        }
    )
    referrer = record(doc)["referral"]["referrer"]
    assert (referrer["service"], referrer["ods_code"]) == ("Tynedale Community Nursing", "RTG")


def test_identifier_only_and_display_only_references() -> None:
    out = record(load(REFERENCES))
    assert out["gp_practice"] == {
        "ods_code": "B99048",
        "name": "Castle View Surgery",
        "practitioner_code": "G8480042",
        "practitioner_name": "Dr Imran Siddiqui",
    }
    assert out["referral"]["referral_to"] == {"name": "Castle View Befriending Scheme"}
    assert out["referral"]["referrer"]["name"] == "Dr Imran Siddiqui, Castle View Surgery"
    assert out["referral"]["return_response_to"] == {
        "name": "Castle View Surgery",
        "ods_code": "B99048",
    }
    # A GP named through a PractitionerRole: the practice from the role, the GMC code from
    # its practitioner (fixture 11 in JSON form, built here from 13's Bundle).
    doc = load(TRANSACTION)
    patient = resource(doc, "Patient")
    patient["generalPractitioner"] = [{"reference": "urn:uuid:gp-role"}]
    doc["entry"] += [
        {
            "fullUrl": "urn:uuid:gp-role",
            "resource": {
                "resourceType": "PractitionerRole",
                "practitioner": {"reference": "urn:uuid:gp"},
                "organization": {
                    "identifier": {
                        "system": "https://fhir.nhs.uk/id/ods-organization-code",
                        "value": "b99043",
                    },
                    "display": "Quarry Surgery",
                },
            },
            "request": {"method": "POST", "url": "PractitionerRole"},
        },
        {
            "fullUrl": "urn:uuid:gp",
            "resource": {
                "resourceType": "Practitioner",
                "identifier": [
                    {"system": "https://fhir.nhs.uk/Id/gmc-number", "value": "C4300111"}
                ],
                "name": [{"family": "Oduya", "given": ["Femi"], "prefix": ["Dr"]}],
            },
            "request": {"method": "POST", "url": "Practitioner"},
        },
    ]
    gp = record(doc)["gp_practice"]
    assert gp["practitioner_code"] == "C4300111" and gp["practitioner_name"] == "Dr Femi Oduya"


def test_absent_priority_is_routine_and_a_stated_one_is_kept() -> None:
    doc = load(BARS)
    assert "priority" not in resource(doc, "ServiceRequest")
    assert record(doc)["referral"]["priority"] == "routine"
    resource(doc, "ServiceRequest")["priority"] = "asap"
    assert record(doc)["referral"]["priority"] == "asap"


def test_both_nhs_number_verification_code_systems_give_the_same_text() -> None:
    retired = load(BARS)
    england = copy.deepcopy(retired)
    coding = resource(england, "Patient")["identifier"][0]["extension"][0]["valueCodeableConcept"]
    coding["coding"] = [
        {
            "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland",
            "code": "01",
        }
    ]
    assert record(retired)["person"]["nhs_number_verification"] == "Number present and verified"
    assert record(england)["person"] == record(retired)["person"]


def test_interpreter_core_extension_retired_extension_and_none_needed() -> None:
    standalone = load(STANDALONE)  # retired NHSCommunication: Somali needs an interpreter
    needs = record(standalone)["individual_requirements"]
    assert needs == {"interpreter_needed": True, "interpreter_language": "Somali"}
    # The retired extension saying no interpreter for any language: no language either.
    patient = standalone["contained"][0]
    patient["extension"][1]["extension"][2]["valueBoolean"] = False
    assert record(standalone).get("individual_requirements") == {"interpreter_needed": False}
    # The core extension false beside a preferred language: none needed, no language.
    transaction = record(load(TRANSACTION))["individual_requirements"]
    assert transaction["interpreter_needed"] is False
    assert "interpreter_language" not in transaction
    # The core extension true: the preferred language is the interpreter's.
    doc = load(TRANSACTION)
    resource(doc, "Patient")["extension"][0]["valueBoolean"] = True
    needs = record(doc)["individual_requirements"]
    assert needs["interpreter_language"] == "English (United Kingdom)"


def test_known_as_and_the_legal_name() -> None:
    bars = record(load(BARS))["person"]
    assert (bars["given_name"], bars["known_as"]) == ("Helena Rose", "Lena")
    # A known-as name first in the list does not become the person's name.
    doc = load(TRANSACTION)
    names = resource(doc, "Patient")["name"]
    names[1].pop("use")
    person = record(doc)["person"]
    assert (person["given_name"], person["known_as"]) == ("William Arthur", "Bill Thornton")


def test_sms_and_the_preferred_contact() -> None:
    person = record(load(STANDALONE))["person"]
    assert person["contact"] == {
        "sms": "07700 900424",
        "phone": "0161 496 0424",
        "preferred": "sms",
    }
    # The UK Core contact preference extension names the method: it wins over the rank.
    doc = load(STANDALONE)
    doc["contained"][0]["extension"].append(
        {
            "url": "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-ContactPreference",
            "extension": [
                {
                    "url": "PreferredContactMethod",
                    "valueCodeableConcept": {
                        "coding": [
                            {
                                "system": "https://fhir.hl7.org.uk/CodeSystem/UKCore-PreferredContactMethod",
                                "code": "1",
                            }
                        ]
                    },
                }
            ],
        }
    )
    assert record(doc)["person"]["contact"]["preferred"] == "letter"


def test_hl7_flag_categories_and_bars_flags_become_risks_and_safeguarding() -> None:
    out = record(load(BARS))
    assert [r["coding"]["code"] for r in out["risks"]["items"]] == ["129839007"]
    assert out["risks"]["no_known_risks"] is False
    assert out["safeguarding"]["concerns"] == "Adult safeguarding concern (finding)"
    # An uncategorised Flag coded with a known risk finding is a risk too.
    doc = load(BARS)
    resource(doc, "Flag")["category"] = []
    assert [r["text"] for r in record(doc)["risks"]["items"]] == [
        "Two falls at home since the summer; uses a stick outdoors"
    ]
    # A Flag of another category (an administrative one) is not a risk: risks not stated.
    resource(doc, "Flag")["category"] = [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "admin"}
            ]
        }
    ]
    resource(doc, "Flag")["code"]["coding"][0]["code"] = "413350009"
    out = record(doc)
    assert "risks" not in out
    assert "risks" in {q["item"] for q in out["data_quality"]}


def test_nothing_about_risks_is_not_stated_and_the_project_code_states_none() -> None:
    out = record(load(TRANSACTION))
    assert "risks" not in out
    assert {"item": "risks", "state": "not-stated", "severity": "M"}.items() <= next(
        q for q in out["data_quality"] if q["item"] == "risks"
    ).items()
    assert record(load(REFERENCES))["risks"] == {"no_known_risks": True, "items": []}


def test_reasonable_adjustments_by_code_or_by_category() -> None:
    needs = record(load(TRANSACTION))["individual_requirements"]
    assert needs["reasonable_adjustment_codes"] == [{"system": SCT, "code": "1108111000000107"}]
    assert needs["reasonable_adjustments"].startswith("Hard of hearing")
    # The same Flag coded below 1108111000000107 is recognised by the NRAF category.
    doc = load(TRANSACTION)
    flag = resource(doc, "Flag")
    flag["code"]["coding"] = [
        {"system": SCT, "code": "796161000000101", "display": "Requires information in Easyread"}
    ]
    assert "reasonable_adjustment_codes" not in record(doc).get("individual_requirements", {})
    flag["category"] = [
        {
            "coding": [
                {"system": "https://fhir.nhs.uk/CodeSystem/PatientFlagCategory", "code": "NRAF"}
            ]
        }
    ]
    assert record(doc)["individual_requirements"]["reasonable_adjustment_codes"][0]["code"] == (
        "796161000000101"
    )


def test_consent_by_policy_rule_provision_or_status() -> None:
    assert record(load(BARS))["consent"] == {
        "information_sharing": "given",
        "date": "2026-11-09",
        "recorded_by": "Dr Samuel Ofori",
    }
    doc = load(BARS)
    consent = resource(doc, "Consent")
    consent["policyRule"]["coding"][0]["code"] = "OPTOUT"
    assert record(doc)["consent"]["information_sharing"] == "refused"
    consent["provision"] = {"type": "permit"}  # provision.type comes first
    assert record(doc)["consent"]["information_sharing"] == "given"
    assert record(load(TRANSACTION))["consent"]["information_sharing"] == "given"  # status
    # A Consent whose state is unknown is not guessed: consent not stated, with a diagnostic.
    del consent["provision"]
    consent["policyRule"]["coding"][0]["code"] = "NOPP"
    out = record(doc)
    assert "consent" not in out
    assert any(d["code"] == "unmapped-code" for d in out["diagnostics"])


def test_about_me_from_a_labelled_note_or_a_questionnaire() -> None:
    assert record(load(BARS))["about_me"]["what_matters_to_me"].startswith(
        "What matters to me: singing"
    )
    doc = load(BARS)
    resource(doc, "ServiceRequest")["note"][0]["text"] = "Singing with the choir."
    out = record(doc)
    assert "about_me" not in out  # an unlabelled note is only a note
    assert out["referral"]["notes"].startswith("Singing with the choir.")
    about = record(load(STANDALONE))["about_me"]
    assert about == {
        "what_matters_to_me": (
            "Finding an English class near home and making friends for my children"
        ),
        "people_important_to_me": "My sister Amina, who lives in Leeds",
    }
    # Questionnaire items inside a group are found too.
    doc = load(STANDALONE)
    answers = doc["contained"][3]
    answers["item"] = [{"linkId": "about-me", "item": answers["item"]}]
    assert record(doc)["about_me"] == about


def test_about_me_by_the_prsb_heading_without_any_project_code() -> None:
    # PRSB names no SNOMED CT concept for these items: a sender labels them with the heading,
    # as a questionnaire item's text or an Observation's code.text.
    doc = load(STANDALONE)
    answers = doc["contained"][3]
    answers["item"] += [
        {"linkId": "q7", "text": "Please do", "answer": [{"valueString": "Speak slowly"}]},
        {"linkId": "q8", "text": "Please don't", "answer": [{"valueString": "Phone early"}]},
    ]
    doc["contained"].append(
        {
            "resourceType": "Observation",
            "id": "communicate",
            "status": "final",
            "code": {"text": "How I communicate"},
            "subject": doc["subject"],
            "valueString": "Text messages are best",
        }
    )
    doc.setdefault("supportingInfo", []).append({"reference": "#communicate"})
    about = record(doc)["about_me"]
    assert about["please_do"] == "Speak slowly"
    assert about["please_dont"] == "Phone early"
    assert about["how_i_communicate"] == "Text messages are best"


def test_snomed_coded_scores_become_assessments() -> None:
    assert record(load(STANDALONE))["assessments"] == [
        {
            "coding": {
                "system": SCT,
                "code": "718426000",
                "display": "Warwick-Edinburgh Mental Well-being Scale score",
            },
            "value": 38,
            "date": "2026-11-11",
        }
    ]
    doc = load(STANDALONE)
    doc["contained"][2]["code"]["coding"][0]["system"] = "http://example.org/local"
    assert "assessments" not in record(doc)


def test_referral_identifier_ubrn_first_then_any_system_then_the_bars_focus() -> None:
    doc = load(TRANSACTION)
    out = record(doc)["referral"]
    assert (out["identifier"], out["identifier_system"]) == (
        "NCN-43-0091",
        "https://northumbria-community.example.net/Id/referral",
    )
    resource(doc, "ServiceRequest")["identifier"].append(
        {"system": "https://fhir.nhs.uk/Id/UBRN", "value": "000043000910"}
    )
    out = record(doc)["referral"]
    assert (out["identifier"], out["identifier_system"]) == (
        "000043000910",
        "https://fhir.nhs.uk/Id/UBRN",
    )
    bars = load(BARS)
    out = record(bars)["referral"]
    focus = resource(bars, "MessageHeader")["focus"][0]["reference"]
    assert (out["identifier"], out["identifier_system"]) == (focus, "urn:ietf:rfc:3986")
    # A standalone ServiceRequest with no identifier at all: its id, with no system claimed.
    standalone = load(STANDALONE)
    del standalone["identifier"]
    out = record(standalone)["referral"]
    assert out["identifier"] == "sr-4200113" and "identifier_system" not in out


@pytest.mark.parametrize(
    ("code", "accepted"),
    [
        ("871731000000106", True),
        ("1084281000000109", True),
        ("515721000000104", True),
        ("306181004", False),
    ],
)
def test_only_social_prescribing_codes_are_accepted(code: str, accepted: bool) -> None:
    doc = load(TRANSACTION)
    resource(doc, "ServiceRequest")["code"]["coding"][0]["code"] = code
    if accepted:
        assert record(doc)["referral"]["type"]["code"] == code
        return
    status, text, expression = refusal(doc)
    assert status == 422 and code in text
    assert expression.startswith("Bundle.entry[5].resource.code.coding")


def test_no_code_and_no_use_case_is_not_checked_and_a_foreign_use_case_is_refused() -> None:
    doc = load(BARS)
    request = resource(doc, "ServiceRequest")
    request["category"][0]["coding"] = request["category"][0]["coding"][:1]
    assert "type" not in record(doc)["referral"]
    request["category"][0]["coding"].append(
        {"system": "https://fhir.nhs.uk/CodeSystem/usecases-categories-bars", "code": "a5t1"}
    )
    status, text, _ = refusal(doc)
    assert status == 422 and "'a5t1'" in text
