"""An outcome as a FHIR R4 transaction Bundle or BaRS message: content, determinism, validity."""

from __future__ import annotations

import base64
import copy
import uuid
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from support import FIXTURES

from gateway.outbound.fhir import names as fhir_names
from gateway.outbound.fhir import validation as fhir_validation
from gateway.outbound.fhir.bundle import build_message, build_transaction
from gateway.outbound.fhir.names import (
    DOCUMENT_SYSTEM,
    MEASURE_SYSTEM,
    NHS_NUMBER,
    OBSERVATION_SYSTEM,
    ODS_CODE,
    PROCEDURE_SYSTEM,
    SNOMED,
    SOURCE_REFERRAL_SYSTEM,
    TASK_SYSTEM,
    full_url,
)
from gateway.outbound.fhir.observations import summary_text
from gateway.outbound.fhir.validation import validate

REFERRAL_ID = "3f6c1a52-8d0e-4b7a-9c2d-5e4f3a2b1c0d"
RECORD = orjson.loads((FIXTURES / "emis-web" / "01-new-referral.record.json").read_bytes())


def make_payload(**outcome: Any) -> dict[str, Any]:
    """A write-back queue payload for the emis-web fixture referral and the given outcome."""
    body: dict[str, Any] = {
        "outcome_id": "o-2",
        "status": "in-progress",
        "occurred_at": "2026-11-20T14:00:00+00:00",
        "link_worker": "Sam Okafor",
        "contacts": [
            {
                "date": "2026-11-05T10:00:00+00:00",
                "mechanism": "face-to-face",
                "location_type": "community centre",
                "outcome": "attended",
            },
            {"date": "2026-11-12T09:30:00+00:00", "mechanism": "telephone", "outcome": "attended"},
        ],
        "assessments": [
            {"instrument": "wemwbs", "score": 41, "date": "2026-11-05"},
            {"instrument": "swemwbs", "score": 21.5, "date": "2026-11-05"},
            {"instrument": "ons4-anxiety", "score": 6, "date": "2026-11-05"},
            {"instrument": "ucla3", "score": 7, "date": "2026-11-05"},
        ],
        "activities": [
            {
                "description": "Walking for health group",
                "provider": "Leeds Parks",
                "status": "started",
                "start": "2026-11-10",
            },
            {"description": "Church lunch club", "status": "planned"},
        ],
        "clinical_summary": "Agreed goals: weekly walking group, back to the lunch club.",
    }
    body.update(outcome)
    return {
        "referral": {
            "id": REFERRAL_ID,
            "source": "emis-web",
            "identifier": RECORD["referral"]["identifier"],
            "version": 1,
            "record": copy.deepcopy(RECORD),
        },
        "outcome": {k: v for k, v in body.items() if v is not None},
        "outcome_seq": 3,
    }


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def entries(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def text_of(bundle: dict[str, Any]) -> str:
    (document,) = resources(bundle, "DocumentReference")
    attachment = document["content"][0]["attachment"]
    assert attachment["contentType"] == "text/plain; charset=utf-8"
    return base64.b64decode(attachment["data"]).decode("utf-8")


def test_the_transaction_validates_with_fhir_resources_r4b() -> None:
    bundle = build_transaction(make_payload())
    validate(bundle)
    parsed = Bundle.model_validate(bundle)
    assert parsed.type == "transaction"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == ["Task", *["Observation"] * 4, "Procedure", "DocumentReference"]


def test_two_builds_of_the_same_payload_are_byte_identical() -> None:
    first = orjson.dumps(build_transaction(make_payload()))
    second = orjson.dumps(build_transaction(make_payload()))
    assert first == second
    put = orjson.dumps(build_transaction(make_payload(), "3", "task-1"))
    assert put == orjson.dumps(build_transaction(make_payload(), "3", "task-1"))
    message = orjson.dumps(build_message(make_payload(), "https://gp.example/fhir"))
    assert message == orjson.dumps(build_message(make_payload(), "https://gp.example/fhir"))


def test_full_urls_are_uuid5_of_the_business_identifier() -> None:
    bundle = build_transaction(make_payload())
    for entry in bundle["entry"]:
        (identifier,) = entry["resource"]["identifier"]
        expected = uuid.uuid5(
            fhir_names._NAMESPACE, f"{identifier['system']}|{identifier['value']}"
        )
        assert entry["fullUrl"] == f"urn:uuid:{expected}"
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])


def test_the_task_first_write_is_a_conditional_create() -> None:
    bundle = build_transaction(make_payload(status="on-hold", status_reason="Person in hospital"))
    (entry,) = entries(bundle, "Task")
    task = entry["resource"]
    assert entry["request"] == {
        "method": "POST",
        "url": "Task",
        "ifNoneExist": f"identifier={TASK_SYSTEM}|{REFERRAL_ID}",
    }
    assert "id" not in task
    assert task["identifier"] == [{"system": TASK_SYSTEM, "value": REFERRAL_ID}]
    assert task["status"] == "on-hold"
    assert task["statusReason"] == {"text": "Person in hospital"}
    assert task["intent"] == "order"
    assert task["code"]["coding"] == [
        {"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}
    ]
    # The focus names the referral by the identifier system its sender used.
    sent = RECORD["referral"]["identifier_system"]
    assert task["focus"]["identifier"] == {"system": sent, "value": "1001"}
    assert task["focus"]["type"] == "ServiceRequest"
    assert "1001" in task["focus"]["display"]
    assert task["for"]["identifier"] == {"system": NHS_NUMBER, "value": "9990000018"}
    assert task["owner"]["identifier"] == {"system": ODS_CODE, "value": "C99003"}
    assert task["requester"]["identifier"] == {"system": ODS_CODE, "value": "B99002"}
    assert task["requester"]["display"] == "Riverside Medical Practice"  # the service, not a person
    assert task["authoredOn"] == task["lastModified"] == "2026-11-20T14:00:00+00:00"


def test_task_output_references_the_procedure_and_observations_of_the_bundle() -> None:
    bundle = build_transaction(make_payload())
    (task,) = resources(bundle, "Task")
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    targets = [by_url[o["valueReference"]["reference"]] for o in task["output"]]
    assert [t["resourceType"] for t in targets] == ["Observation"] * 4 + ["Procedure"]
    for output, target in zip(task["output"], targets, strict=True):
        assert output["valueReference"]["identifier"] == target["identifier"][0]
        assert output["type"]["text"] == target["resourceType"]


def test_the_task_is_put_with_if_match_when_the_deliverer_read_it() -> None:
    bundle = build_transaction(make_payload(), task_version="4", task_id="123")
    (entry,) = entries(bundle, "Task")
    assert entry["request"] == {"method": "PUT", "url": "Task/123", "ifMatch": 'W/"4"'}
    assert entry["resource"]["id"] == "123"
    validate(bundle)
    # everything else is still a conditional create
    for other in bundle["entry"][1:]:
        assert other["request"]["method"] == "POST"
        assert other["request"]["ifNoneExist"].startswith("identifier=")


def test_earlier_outputs_are_kept_and_a_resend_replaces_its_own() -> None:
    first = build_transaction(make_payload())
    (task,) = resources(first, "Task")
    mine = copy.deepcopy(task["output"][0])
    mine["valueReference"]["reference"] = "Observation/45"  # as the server stored it
    other = {
        "type": {"text": "Procedure"},
        "valueReference": {
            "reference": "Procedure/7",
            "identifier": {"system": PROCEDURE_SYSTEM, "value": f"{REFERRAL_ID}-o-1"},
        },
    }
    bundle = build_transaction(make_payload(), "2", "123", earlier_outputs=[other, mine])
    (task,) = resources(bundle, "Task")
    references = [o["valueReference"]["reference"] for o in task["output"]]
    assert references[0] == "Procedure/7"
    assert "Observation/45" not in references  # the resend's own output is not doubled
    assert len(references) == 1 + 5
    validate(bundle)


def test_an_observation_per_assessment_with_snomed_where_it_exists() -> None:
    bundle = build_transaction(make_payload())
    observations = entries(bundle, "Observation")
    assert len(observations) == 4
    codes = [e["resource"]["code"]["coding"][0] for e in observations]
    assert (codes[0]["system"], codes[0]["code"]) == (SNOMED, "718426000")
    assert (codes[1]["system"], codes[1]["code"]) == (SNOMED, "718466001")
    assert (codes[2]["system"], codes[2]["code"]) == (MEASURE_SYSTEM, "ons4-anxiety")
    assert (codes[3]["system"], codes[3]["code"]) == (MEASURE_SYSTEM, "ucla3")
    for entry, score in zip(observations, (41, 21.5, 6, 7), strict=True):
        observation = entry["resource"]
        assert observation["status"] == "final"
        assert observation["category"][0]["coding"][0]["code"] == "survey"
        assert observation["valueQuantity"] == {
            "value": score,
            "unit": "{score}",
            "system": "http://unitsofmeasure.org",
            "code": "{score}",
        }
        assert observation["subject"]["identifier"] == {"system": NHS_NUMBER, "value": "9990000018"}
        assert observation["effectiveDateTime"] == "2026-11-05"
        (identifier,) = observation["identifier"]
        assert identifier["system"] == OBSERVATION_SYSTEM
        assert entry["request"] == {
            "method": "POST",
            "url": "Observation",
            "ifNoneExist": f"identifier={OBSERVATION_SYSTEM}|{identifier['value']}",
        }
    values = [e["resource"]["identifier"][0]["value"] for e in observations]
    assert values[0] == f"{REFERRAL_ID}-o-2-wemwbs"


def test_an_unknown_instrument_keeps_its_coding_and_repeats_get_distinct_identifiers() -> None:
    pam = {"system": "https://example.org/pam", "code": "pam-13", "display": "PAM-13 score"}
    payload = make_payload(
        assessments=[
            {"instrument": "pam13", "coding": pam, "score": 55, "date": "2026-11-05"},
            {"instrument": "wemwbs", "score": 40, "date": "2026-11-05"},
            {"instrument": "wemwbs", "score": 44, "date": "2026-11-19"},
        ]
    )
    bundle = build_transaction(payload)
    observations = resources(bundle, "Observation")
    assert observations[0]["code"] == {"coding": [pam], "text": "pam13"}
    values = [o["identifier"][0]["value"] for o in observations]
    assert len(set(values)) == 3
    assert values[2] == f"{REFERRAL_ID}-o-2-wemwbs-2"
    validate(bundle)
    assert "PAM-13 score: 55 on 2026-11-05" in text_of(bundle)


@pytest.mark.parametrize(
    ("outcome", "code", "status"),
    [
        ({"status": "accepted", "contacts": None}, "871731000000106", "completed"),
        ({"status": "accepted"}, "1362931000000106", "completed"),  # it has contacts
        ({"status": "in-progress", "contacts": None}, "1362931000000106", "in-progress"),
        ({"status": "in-progress"}, "1362931000000106", "in-progress"),
        (
            {"status": "completed", "closure": {"date": "2026-12-01", "reason": "Goals met"}},
            "1362721000000106",
            "completed",
        ),
        (
            {
                "status": "cancelled",
                "status_reason": "Moved away",
                "contacts": None,
                "closure": {"date": "2026-12-01", "reason": "Moved away"},
            },
            "1362721000000106",
            "completed",
        ),
        ({"status": "rejected", "status_reason": "Out of area", "contacts": None}, None, None),
    ],
)
def test_the_procedure_records_the_activity_of_the_outcome(
    outcome: dict[str, Any], code: str | None, status: str | None
) -> None:
    bundle = build_transaction(make_payload(**outcome))
    validate(bundle)
    procedures = entries(bundle, "Procedure")
    if code is None:
        assert procedures == []
        (task,) = resources(bundle, "Task")
        assert all(o["valueReference"]["type"] == "Observation" for o in task["output"])
        return
    (entry,) = procedures
    procedure = entry["resource"]
    assert procedure["code"]["coding"][0]["system"] == SNOMED
    assert procedure["code"]["coding"][0]["code"] == code
    assert procedure["status"] == status
    assert procedure["performedDateTime"] == "2026-11-20T14:00:00+00:00"
    assert procedure["subject"]["identifier"]["system"] == NHS_NUMBER
    assert procedure["identifier"] == [{"system": PROCEDURE_SYSTEM, "value": f"{REFERRAL_ID}-o-2"}]
    assert entry["request"]["ifNoneExist"] == f"identifier={PROCEDURE_SYSTEM}|{REFERRAL_ID}-o-2"


def test_the_document_is_a_readable_summary_with_the_score_ranges() -> None:
    payload = make_payload(
        status="completed",
        closure={"date": "2026-12-01", "reason": "Goals met, discharged"},
    )
    bundle = build_transaction(payload)
    (entry,) = entries(bundle, "DocumentReference")
    document = entry["resource"]
    assert document["status"] == "current"
    assert document["type"] == {"text": "Social prescribing update"}
    assert document["subject"]["identifier"] == {"system": NHS_NUMBER, "value": "9990000018"}
    assert document["date"] == "2026-11-20T14:00:00+00:00"
    assert document["identifier"] == [{"system": DOCUMENT_SYSTEM, "value": f"{REFERRAL_ID}-o-2"}]
    assert document["content"][0]["attachment"]["title"] == "Social prescribing update: completed"
    assert entry["request"]["ifNoneExist"] == f"identifier={DOCUMENT_SYSTEM}|{REFERRAL_ID}-o-2"
    text = text_of(bundle)
    assert "Status: completed" in text
    assert "Warwick-Edinburgh Mental Well-being Scale (WEMWBS): 41 on 2026-11-05" in text
    assert "(range 14 to 70; higher is better)" in text
    assert "SWEMWBS): 21.5 on 2026-11-05 (range 7 to 35" in text
    assert "ONS4 anxiety yesterday: 6 on 2026-11-05 (range 0 to 10; 0 = not at all anxious)" in text
    assert "(range 3 to 9; higher is lonelier)" in text
    assert "- 2026-11-05 10:00, face-to-face, community centre, attended" in text
    assert "- Walking for health group (Leeds Parks): started from 2026-11-10" in text
    assert "- Church lunch club: planned" in text
    assert "Agreed goals: weekly walking group" in text
    assert "Closed on 2026-12-01: Goals met, discharged" in text
    assert "Link worker: Sam Okafor" in text


def test_the_status_reason_is_in_the_text() -> None:
    text = summary_text(make_payload(status="on-hold", status_reason="Person in hospital"))
    assert "Status: on-hold\nReason: Person in hospital\n" in text


def test_a_naive_occurred_at_is_read_as_uk_local_time() -> None:
    bundle = build_transaction(make_payload(occurred_at="2026-07-01T09:00:00"))
    (task,) = resources(bundle, "Task")
    assert task["lastModified"] == "2026-07-01T09:00:00+01:00"
    winter = build_transaction(make_payload(occurred_at="2026-12-01T09:00:00"))
    assert resources(winter, "Task")[0]["lastModified"] == "2026-12-01T09:00:00+00:00"
    validate(bundle)


def test_no_owner_when_the_service_has_no_ods_code() -> None:
    payload = make_payload()
    payload["referral"]["record"]["referral"]["referral_to"] = {"name": "Northgate SP"}
    bundle = build_transaction(payload)
    (task,) = resources(bundle, "Task")
    assert "owner" not in task
    validate(bundle)


def test_a_record_without_nhs_number_cannot_be_written_back() -> None:
    payload = make_payload()
    payload["referral"]["record"]["person"]["nhs_number"] = None
    with pytest.raises(ValueError, match="no NHS number"):
        build_transaction(payload)


def test_identifier_values_are_percent_encoded_in_conditional_creates() -> None:
    coding = {"system": "https://example.org/m", "code": "x"}
    payload = make_payload(
        assessments=[
            {"instrument": "my scale&x", "coding": coding, "score": 1, "date": "2026-11-05"}
        ]
    )
    bundle = build_transaction(payload)
    (entry,) = entries(bundle, "Observation")
    assert entry["request"]["ifNoneExist"].endswith("-o-2-my%20scale%26x")
    assert entry["resource"]["identifier"][0]["value"].endswith("-o-2-my scale&x")


def test_validate_names_the_failing_element() -> None:
    bundle = build_transaction(make_payload())
    bundle["entry"][1]["resource"]["valueQuantity"]["value"] = "lots"
    with pytest.raises(ValueError, match=r"entry\[1\]\(Observation\)\.resource\.valueQuantity"):
        validate(bundle)
    bundle = build_transaction(make_payload())
    del bundle["entry"][0]["resource"]["status"]
    with pytest.raises(ValueError, match=r"entry\[0\]\(Task\)\.resource\.status"):
        validate(bundle)
    bundle = build_transaction(make_payload())
    bundle["entry"][0]["resource"]["for"]["identifier"]["value"] = 12  # a reused element
    with pytest.raises(ValueError, match=r"entry\[0\]\(Task\)\.resource\.for\.identifier\.value"):
        validate(bundle)


def test_validate_reusing_elements_agrees_with_plain_validation() -> None:
    bundle = build_transaction(make_payload(status="completed"))
    reused = Bundle.model_validate(fhir_validation._reusing(bundle))
    plain = Bundle.model_validate(bundle)
    assert reused.model_dump() == plain.model_dump()
    validate(bundle)
    validate(bundle)  # the second time from the cache


def test_a_changed_element_is_validated_again_not_taken_from_the_cache() -> None:
    bundle = build_transaction(make_payload())
    validate(bundle)
    bundle["entry"][0]["resource"]["code"]["coding"][0]["system"] = ["not", "a", "uri"]
    with pytest.raises(ValueError, match=r"Task\)\.resource\.code"):
        validate(bundle)


def test_the_message_mode_is_a_bars_message_bundle() -> None:
    bundle = build_message(make_payload(), "https://gp.example/fhir")
    validate(bundle)
    assert bundle["type"] == "message"
    assert bundle["timestamp"] == "2026-11-20T14:00:00+00:00"
    header = bundle["entry"][0]["resource"]
    assert header["resourceType"] == "MessageHeader"
    assert header["eventCoding"] == {
        "system": "https://fhir.nhs.uk/CodeSystem/message-events-bars",
        "code": "servicerequest-response",
    }
    assert header["reason"]["coding"] == [
        {"system": "https://fhir.nhs.uk/CodeSystem/message-reason-bars", "code": "update"}
    ]
    assert header["source"]["endpoint"] == "https://sp-gateway.example.org/fhir"
    assert header["destination"] == [{"endpoint": "https://gp.example/fhir"}]
    task_entry = bundle["entry"][1]
    assert task_entry["resource"]["resourceType"] == "Task"
    assert header["focus"] == [{"reference": task_entry["fullUrl"]}]
    assert all("request" not in e for e in bundle["entry"])
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds == [
        "MessageHeader",
        "Task",
        *["Observation"] * 4,
        "Procedure",
        "DocumentReference",
    ]
    assert bundle["entry"][1]["fullUrl"] == full_url(TASK_SYSTEM, REFERRAL_ID)


def test_a_referral_sent_without_an_identifier_system_is_named_by_the_gateways() -> None:
    payload = make_payload(status="on-hold", status_reason="Person in hospital")
    del payload["referral"]["record"]["referral"]["identifier_system"]
    (entry,) = entries(build_transaction(payload), "Task")
    assert entry["resource"]["focus"]["identifier"] == {
        "system": SOURCE_REFERRAL_SYSTEM,
        "value": "1001",
    }
