"""The referral's Task: one per referral, updated over time; the outcome's resources as output."""

from __future__ import annotations

from typing import Any

from gateway.outbound.fhir.names import (
    NHS_NUMBER,
    SOURCE_REFERRAL_SYSTEM,
    TASK_CODE,
    TASK_SYSTEM,
    Part,
    business_identifier,
    fhir_datetime,
    full_url,
    organisation,
)
from gateway.outbound.fhir.observations import document_part, observation_parts, procedure_part


def _patient(record: dict[str, Any]) -> dict[str, Any]:
    """A logical reference to the patient by NHS number."""
    nhs_number = (record.get("person") or {}).get("nhs_number")
    if not nhs_number:
        raise ValueError(
            "the referral record has no NHS number: the write-back cannot name the patient"
        )
    return {"type": "Patient", "identifier": business_identifier(NHS_NUMBER, nhs_number)}


def _service_request(referral: dict[str, Any]) -> dict[str, Any]:
    """A logical reference to the source's ServiceRequest, by the identifier system the
    sender used (a UBRN, the supplier's own); the gateway's system when the sender gave none."""
    sent = ((referral.get("record") or {}).get("referral") or {}).get("identifier_system")
    return {
        "type": "ServiceRequest",
        "identifier": business_identifier(sent or SOURCE_REFERRAL_SYSTEM, referral["identifier"]),
        "display": f"Referral {referral['identifier']} from {referral['source']}",
    }


def _output(part: Part) -> dict[str, Any]:
    """A Task.output pointing at a resource of the Bundle (reference and identifier both)."""
    kind = part.resource["resourceType"]
    return {
        "type": {"text": kind},
        "valueReference": {
            "reference": part.full_url,
            "type": kind,
            "identifier": business_identifier(part.system, part.value),
        },
    }


def _kept_outputs(
    earlier: list[dict[str, Any]] | None, new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Outputs of the stored Task that this outcome does not replace (matched by identifier)."""
    if not earlier:
        return []
    replaced = {
        (o["valueReference"]["identifier"]["system"], o["valueReference"]["identifier"]["value"])
        for o in new
    }
    kept = []
    for output in earlier:
        ref = output.get("valueReference")
        if not isinstance(ref, dict) or not ref.get("reference"):
            continue
        ident = ref.get("identifier") or {}
        if (ident.get("system"), ident.get("value")) in replaced:
            continue
        kept.append({"type": output.get("type") or {"text": "output"}, "valueReference": ref})
    return kept


def outcome_parts(
    payload: dict[str, Any],
    task_id: str | None = None,
    earlier_outputs: list[dict[str, Any]] | None = None,
) -> list[Part]:
    """The Task first, then the Observations, the Procedure and the DocumentReference."""
    referral = payload["referral"]
    record = referral["record"]
    outcome = payload["outcome"]
    subject = _patient(record)
    occurred = fhir_datetime(outcome["occurred_at"])
    focus = _service_request(referral)
    parts = observation_parts(payload, subject)
    procedure = procedure_part(payload, subject, occurred, focus)
    if procedure is not None:
        parts.append(procedure)
    outputs = [_output(part) for part in parts]
    parts.append(document_part(payload, subject, occurred))
    task: dict[str, Any] = {"resourceType": "Task"}
    if task_id is not None:
        task["id"] = task_id
    task["identifier"] = [business_identifier(TASK_SYSTEM, referral["id"])]
    task["status"] = outcome["status"]
    if outcome.get("status_reason"):
        task["statusReason"] = {"text": outcome["status_reason"]}
    task["intent"] = "order"
    task["code"] = {"coding": [{"system": TASK_CODE, "code": "fulfill"}]}
    task["focus"] = focus
    task["for"] = subject
    task["authoredOn"] = occurred
    task["lastModified"] = occurred
    referrer = record["referral"].get("referrer") or {}
    requester = organisation(
        {"ods_code": referrer.get("ods_code"), "name": referrer.get("service")}
    )
    if requester is not None:
        task["requester"] = requester
    owner = organisation(record["referral"].get("referral_to"))
    if owner is not None:
        task["owner"] = owner
    task["output"] = _kept_outputs(earlier_outputs, outputs) + outputs
    task_part = Part(full_url(TASK_SYSTEM, referral["id"]), task, TASK_SYSTEM, referral["id"])
    return [task_part, *parts]
