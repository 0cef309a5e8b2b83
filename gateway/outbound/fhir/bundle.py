"""An outcome as a FHIR R4 transaction Bundle (or BaRS message) for the referral's source server.

One outcome becomes:

- the referral's Task (identifier ``referral-task`` = the gateway referral id; one Task per
  referral, updated over time): status, statusReason, focus = the original ServiceRequest by
  identifier, for = the patient by NHS number, owner = the social prescribing service, output
  -> the Observations and the Procedure;
- an Observation per assessment (SNOMED CT where a code exists: WEMWBS 718426000, SWEMWBS
  718466001; otherwise the project's own code system ``MEASURE_SYSTEM`` with the instrument
  code, for the ONS4 items and UCLA-3; an unknown instrument keeps the coding it came with),
  value in UCUM ``{score}``;
- a Procedure for the social prescribing activity (referral accepted / seen by a link worker /
  case closed), when the outcome reports one;
- a DocumentReference with a plain-text summary for GP systems that file letters.

Every entry is a conditional create on its business identifier, so a resend makes HAPI answer
200 instead of a duplicate; the Task is a conditional create the first time and a PUT with
If-Match once the deliverer has read it. Every fullUrl is a urn:uuid derived (uuid5) from the
entry's identifier, so building the same payload twice gives the same bytes.

Naive ``occurred_at`` values are read as UK local time (Europe/London).

Validation: gateway/outbound/fhir/validation.py.
"""

from __future__ import annotations

from typing import Any

from gateway.outbound.fhir.names import (
    BARS_EVENTS,
    BARS_REASONS,
    GATEWAY,
    GATEWAY_ENDPOINT,
    fhir_datetime,
    full_url,
    search_identifier,
)
from gateway.outbound.fhir.task import outcome_parts


def build_transaction(
    payload: dict[str, Any],
    task_version: str | None = None,
    task_id: str | None = None,
    *,
    earlier_outputs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The transaction Bundle for one outcome (PUT Task/<task_id> with If-Match when given)."""
    entries = []
    for part in outcome_parts(payload, task_id, earlier_outputs):
        kind = part.resource["resourceType"]
        if kind == "Task" and task_id is not None:
            request: dict[str, str] = {"method": "PUT", "url": f"Task/{task_id}"}
            if task_version is not None:
                request["ifMatch"] = f'W/"{task_version}"'
        else:
            request = {
                "method": "POST",
                "url": kind,
                "ifNoneExist": f"identifier={search_identifier(part.system, part.value)}",
            }
        entries.append({"fullUrl": part.full_url, "resource": part.resource, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def build_message(payload: dict[str, Any], destination: str) -> dict[str, Any]:
    """The BaRS message Bundle (servicerequest-response, reason update) for one outcome."""
    parts = outcome_parts(payload)
    referral = payload["referral"]
    key = f"{referral['id']}|{payload['outcome']['outcome_id']}"
    header_url = full_url(f"{GATEWAY}/fhir/Id/outcome-message-header", key)
    header = {
        "resourceType": "MessageHeader",
        "id": header_url.removeprefix("urn:uuid:"),
        "eventCoding": {"system": BARS_EVENTS, "code": "servicerequest-response"},
        "destination": [{"endpoint": destination}],
        "source": {"name": "Social prescribing gateway", "endpoint": GATEWAY_ENDPOINT},
        "reason": {"coding": [{"system": BARS_REASONS, "code": "update"}]},
        "focus": [{"reference": parts[0].full_url}],
    }
    entries: list[dict[str, Any]] = [{"fullUrl": header_url, "resource": header}]
    for part in parts:
        resource = {"resourceType": part.resource["resourceType"]}
        resource["id"] = part.full_url.removeprefix("urn:uuid:")
        resource.update((k, v) for k, v in part.resource.items() if k != "resourceType")
        entries.append({"fullUrl": part.full_url, "resource": resource})
    return {
        "resourceType": "Bundle",
        "id": full_url(f"{GATEWAY}/fhir/Id/outcome-message", key).removeprefix("urn:uuid:"),
        "type": "message",
        "timestamp": fhir_datetime(payload["outcome"]["occurred_at"]),
        "entry": entries,
    }
