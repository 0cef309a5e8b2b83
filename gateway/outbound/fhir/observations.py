"""The outcome's own resources: an Observation per assessment, the Procedure, the summary.

Assessments are coded in SNOMED CT where a code exists (WEMWBS 718426000, SWEMWBS 718466001),
otherwise in the project's ``MEASURE_SYSTEM``; the Procedure records the social prescribing
activity; the DocumentReference carries a plain-text summary for GP systems that file letters.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, NamedTuple

from gateway.outbound.fhir.names import (
    DOCUMENT_SYSTEM,
    DOCUMENT_TYPE,
    MEASURE_SYSTEM,
    OBSERVATION_CATEGORY,
    OBSERVATION_SYSTEM,
    PROCEDURE_SYSTEM,
    SNOMED,
    UCUM,
    Part,
    business_identifier,
    fhir_datetime,
    full_url,
    organisation,
)
from gateway.record.outcome import INSTRUMENTS


class Measure(NamedTuple):
    """How a known instrument is named and coded, and how to read its score."""

    name: str
    snomed: tuple[str, str] | None
    reading: str


#: The instruments of gateway.record.outcome.INSTRUMENTS (ranges come from there).
MEASURES: dict[str, Measure] = {
    "wemwbs": Measure(
        "Warwick-Edinburgh Mental Well-being Scale (WEMWBS)",
        ("718426000", "Warwick-Edinburgh Mental Well-being Scale score"),
        "higher is better",
    ),
    "swemwbs": Measure(
        "Short Warwick-Edinburgh Mental Well-being Scale (SWEMWBS)",
        ("718466001", "Short Warwick-Edinburgh Mental Well-being Scale score"),
        "higher is better",
    ),
    "ons4-life-satisfaction": Measure("ONS4 life satisfaction", None, "higher is better"),
    "ons4-worthwhile": Measure("ONS4 things done in life are worthwhile", None, "higher is better"),
    "ons4-happiness": Measure("ONS4 happiness yesterday", None, "higher is better"),
    "ons4-anxiety": Measure("ONS4 anxiety yesterday", None, "0 = not at all anxious"),
    "ucla3": Measure("UCLA loneliness scale, 3 items (UCLA-3)", None, "higher is lonelier"),
}

#: (code, display) of the Procedure each kind of activity records.
REFERRED = ("871731000000106", "Referral to social prescribing service")
SEEN = ("1362931000000106", "Seen by social prescribing link worker")
CLOSED = ("1362721000000106", "Social prescribing case closed")


def _measure_code(assessment: dict[str, Any]) -> dict[str, Any]:
    """Observation.code: SNOMED CT where it exists, else the project's code; plus a given coding."""
    instrument = assessment["instrument"]
    measure = MEASURES.get(instrument)
    codings: list[dict[str, str]] = []
    if measure is not None:
        if measure.snomed:
            codings.append(
                {"system": SNOMED, "code": measure.snomed[0], "display": measure.snomed[1]}
            )
        else:
            codings.append({"system": MEASURE_SYSTEM, "code": instrument, "display": measure.name})
    given = assessment.get("coding")
    if given and all((c["system"], c["code"]) != (given["system"], given["code"]) for c in codings):
        codings.append({k: given[k] for k in ("system", "code", "display") if given.get(k)})
    return {"coding": codings, "text": measure.name if measure else instrument}


def observation_parts(payload: dict[str, Any], subject: dict[str, Any]) -> list[Part]:
    """An Observation per assessment, each keyed by referral, outcome and instrument."""
    referral_id = payload["referral"]["id"]
    outcome = payload["outcome"]
    parts: list[Part] = []
    seen: dict[str, int] = {}
    for assessment in outcome.get("assessments") or ():
        instrument = assessment["instrument"]
        seen[instrument] = seen.get(instrument, 0) + 1
        value = f"{referral_id}-{outcome['outcome_id']}-{instrument}"
        if seen[instrument] > 1:  # the same instrument twice in one outcome
            value = f"{value}-{seen[instrument]}"
        resource = {
            "resourceType": "Observation",
            "identifier": [business_identifier(OBSERVATION_SYSTEM, value)],
            "status": "final",
            "category": [
                {
                    "coding": [
                        {"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}
                    ]
                }
            ],
            "code": _measure_code(assessment),
            "subject": subject,
            "effectiveDateTime": assessment["date"],
            "valueQuantity": {
                "value": assessment["score"],
                "unit": "{score}",
                "system": UCUM,
                "code": "{score}",
            },
        }
        parts.append(Part(full_url(OBSERVATION_SYSTEM, value), resource, OBSERVATION_SYSTEM, value))
    return parts


def procedure_code(outcome: dict[str, Any]) -> tuple[str, str] | None:
    """The SNOMED CT activity this outcome records, or None (rejected, cancelled before contact)."""
    status = outcome["status"]
    if status == "entered-in-error":
        return None
    if status == "completed" or outcome.get("closure"):
        return CLOSED
    if status == "in-progress" or outcome.get("contacts"):
        return SEEN
    if status == "accepted":
        return REFERRED
    return None


def procedure_part(
    payload: dict[str, Any], subject: dict[str, Any], occurred: str, based_on: dict[str, Any]
) -> Part | None:
    """The Procedure for this outcome's social prescribing activity, if it reports one."""
    outcome = payload["outcome"]
    code = procedure_code(outcome)
    if code is None:
        return None
    value = f"{payload['referral']['id']}-{outcome['outcome_id']}"
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "identifier": [business_identifier(PROCEDURE_SYSTEM, value)],
        "basedOn": [based_on],
        "status": "in-progress" if outcome["status"] == "in-progress" else "completed",
        "code": {"coding": [{"system": SNOMED, "code": code[0], "display": code[1]}]},
        "subject": subject,
        "performedDateTime": occurred,
    }
    service = organisation(payload["referral"]["record"]["referral"].get("referral_to"))
    if service is not None:
        resource["performer"] = [{"actor": service}]
    return Part(full_url(PROCEDURE_SYSTEM, value), resource, PROCEDURE_SYSTEM, value)


def _score(score: Any) -> str:
    """A score as people write it (41, not 41.0)."""
    return f"{score:g}" if isinstance(score, float) else str(score)


def _when(value: str) -> str:
    """A date-time for reading: date, hours and minutes, in its own offset."""
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")


def summary_text(payload: dict[str, Any]) -> str:
    """The readable summary a GP system files as a letter: status, contacts, scores, plans."""
    referral = payload["referral"]
    record = referral["record"]
    outcome = payload["outcome"]
    service = record["referral"].get("referral_to") or {}
    lines = ["Social prescribing update", ""]
    if service:
        name = service.get("name") or "Social prescribing service"
        lines.append(
            f"Service: {name}" + (f" ({service['ods_code']})" if service.get("ods_code") else "")
        )
    lines.append(f"Referral: {referral['identifier']}")
    lines.append(f"Status: {outcome['status']}")
    if outcome.get("status_reason"):
        lines.append(f"Reason: {outcome['status_reason']}")
    lines.append(f"Updated: {_when(fhir_datetime(outcome['occurred_at']))}")
    if outcome.get("link_worker"):
        lines.append(f"Link worker: {outcome['link_worker']}")
    if outcome.get("contacts"):
        lines += ["", "Contacts with the link worker:"]
        for contact in outcome["contacts"]:
            bits = [_when(contact["date"]), contact["mechanism"]]
            bits += [contact[k] for k in ("location_type", "outcome") if contact.get(k)]
            lines.append("- " + ", ".join(bits))
    if outcome.get("assessments"):
        lines += ["", "Wellbeing scores:"]
        for assessment in outcome["assessments"]:
            instrument = assessment["instrument"]
            measure = MEASURES.get(instrument)
            bounds = INSTRUMENTS.get(instrument)
            name = measure.name if measure else (assessment.get("coding") or {}).get("display")
            line = f"- {name or instrument}: {_score(assessment['score'])} on {assessment['date']}"
            if bounds is not None:
                line += f" (range {bounds[0]:g} to {bounds[1]:g}"
                line += f"; {measure.reading})" if measure else ")"
            lines.append(line)
    if outcome.get("activities"):
        lines += ["", "Activities and services:"]
        for activity in outcome["activities"]:
            line = f"- {activity['description']}"
            if activity.get("provider"):
                line += f" ({activity['provider']})"
            line += f": {activity['status']}"
            if activity.get("start"):
                line += f" from {activity['start']}"
            lines.append(line)
    if outcome.get("clinical_summary"):
        lines += ["", "Clinical summary:", outcome["clinical_summary"]]
    if outcome.get("closure"):
        closure = outcome["closure"]
        lines += ["", f"Closed on {closure['date']}: {closure['reason']}"]
    return "\n".join(lines) + "\n"


def document_part(payload: dict[str, Any], subject: dict[str, Any], occurred: str) -> Part:
    """The DocumentReference carrying the readable summary."""
    outcome = payload["outcome"]
    value = f"{payload['referral']['id']}-{outcome['outcome_id']}"
    text = summary_text(payload)
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "identifier": [business_identifier(DOCUMENT_SYSTEM, value)],
        "status": "current",
        "type": {"text": DOCUMENT_TYPE},
        "subject": subject,
        "date": occurred,
    }
    author = organisation(payload["referral"]["record"]["referral"].get("referral_to"))
    if author is not None:
        resource["author"] = [author]
    resource["content"] = [
        {
            "attachment": {
                "contentType": "text/plain; charset=utf-8",
                "data": base64.b64encode(text.encode()).decode("ascii"),
                "title": f"{DOCUMENT_TYPE}: {outcome['status']}",
                "creation": occurred,
            }
        }
    ]
    return Part(full_url(DOCUMENT_SYSTEM, value), resource, DOCUMENT_SYSTEM, value)
