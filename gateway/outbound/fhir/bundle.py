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

Construction: plain dicts, validated once at the end (``validate``), chosen by measurement
(bench/writeback.py, section 5 of bench/run.py: the realistic outcome of 3 assessments, 2
contacts, 2 activities and a summary, a new referral and patient every call, pinned to one
core of this shared 2-CPU machine, load average 1.2-1.9 during the runs). Outcomes per
second, mean over three 5 s runs (best 0.1 s window):

- dicts + ``validate`` (shipped):                  4,307-4,873/s (6,938-7,364/s)
- dicts + ``validate_full`` (fhir.resources only):    574-645/s (984-1,043/s)
- dicts + plain ``Bundle.model_validate``:            455-532/s (800-822/s)
- fhir.resources model objects + ``model_dump_json``: 166-194/s (264-293/s)
- ``build_transaction`` alone, no validation:    12,861-15,365/s

The shipped ``validate`` before this checker was today's ``validate_full``: 546-688/s in
the same session (about 1,850 µs of CPU per outcome against about 275 µs now, of which
about 80 µs is building). fhir.resources runs Python validators for every element (about
50 per Bundle; a Task.output alone costs about 60 µs, as its value[x] choice has about 50
fields), which was about 95 % of the time. ``validate`` first runs a checker compiled, on
first use (about 0.1 s), from the fhir.resources models themselves (gateway.fhir.r4b_subset:
their own primitive schemas, their required elements and choices, as one pydantic-core
validator of typed dicts for ``SUBSET_RESOURCES`` and ``SUBSET_DATATYPES``); it accepts
only what fhir.resources accepts (tests/writeback/test_fhir_subset.py compares the two on
every fixture's outcomes and on mutated Bundles), and whatever it refuses goes to
fhir.resources (``validate_full``), which decides and names the failing element. Model
objects lose because serialising them (``model_dump_json``, about 4 ms for this Bundle)
costs more than building and validating together; orjson on the dicts takes about 6 µs.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import uuid
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.messageheader import MessageHeader
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

from gateway.fhir.r4b_subset import SubsetChecker, compile_subset
from gateway.record.outcome import INSTRUMENTS

GATEWAY = "https://sp-gateway.example.org"
GATEWAY_ENDPOINT = f"{GATEWAY}/fhir"
TASK_SYSTEM = f"{GATEWAY}/fhir/Id/referral-task"
OBSERVATION_SYSTEM = f"{GATEWAY}/fhir/Id/outcome-observation"
PROCEDURE_SYSTEM = f"{GATEWAY}/fhir/Id/outcome-procedure"
DOCUMENT_SYSTEM = f"{GATEWAY}/fhir/Id/outcome-document"
SOURCE_REFERRAL_SYSTEM = f"{GATEWAY}/fhir/Id/source-referral"
#: The project's own code system for wellbeing measures that have no national code.
MEASURE_SYSTEM = f"{GATEWAY}/fhir/CodeSystem/wellbeing-measure"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS_CODE = "https://fhir.nhs.uk/Id/ods-organization-code"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
BARS_EVENTS = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
BARS_REASONS = "https://fhir.nhs.uk/CodeSystem/message-reason-bars"
DOCUMENT_TYPE = "Social prescribing update"

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, GATEWAY)
_NAMESPACE_BYTES = _NAMESPACE.bytes
_UK = ZoneInfo("Europe/London")
#: Per resource type, the elements whose values repeat within a Bundle or across Bundles.
_REUSABLE: dict[str, dict[str, Any]] = {
    "Task": {
        "code": CodeableConcept,
        "focus": Reference,
        "for": Reference,
        "requester": Reference,
        "owner": Reference,
    },
    "Observation": {"category": CodeableConcept, "code": CodeableConcept, "subject": Reference},
    "Procedure": {"basedOn": Reference, "code": CodeableConcept, "subject": Reference},
    "DocumentReference": {"type": CodeableConcept, "subject": Reference, "author": Reference},
}
_SEEN: dict[tuple[Any, bytes], Any] = {}
_SEEN_MAX = 4096
#: The element set of the Bundles built here: the resources, and the datatypes they use
#: (their backbone elements, such as BundleEntry and TaskOutput, come with the resources).
SUBSET_RESOURCES = (Task, Observation, Procedure, DocumentReference, MessageHeader)
SUBSET_DATATYPES = (Identifier, Reference, CodeableConcept, Coding, Quantity, Attachment)


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


class Part(NamedTuple):
    """One resource of the Bundle with its fullUrl and the business identifier it is keyed by."""

    full_url: str
    resource: dict[str, Any]
    system: str
    value: str


def full_url(system: str, value: str) -> str:
    """The deterministic urn:uuid fullUrl of the resource with this business identifier.

    The same as ``uuid.uuid5(_NAMESPACE, "system|value")``, computed directly (a third of
    the Bundle's build time went on the uuid module's overhead).
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{system}|{value}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def search_identifier(system: str, value: str) -> str:
    """The ``identifier`` search value ``system|value``, the value percent-encoded."""
    return f"{system}|{quote(value, safe='')}"


def fhir_datetime(value: str) -> str:
    """An ISO date-time with its offset (a naive one is read as UK local time)."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UK)
    return moment.isoformat()


def _identifier(system: str, value: str) -> dict[str, str]:
    """An Identifier."""
    return {"system": system, "value": value}


def _organisation(org: dict[str, Any] | None) -> dict[str, Any] | None:
    """A logical reference to an organisation by ODS code, or None when the code is unknown."""
    if not org or not org.get("ods_code"):
        return None
    ref: dict[str, Any] = {
        "type": "Organization",
        "identifier": _identifier(ODS_CODE, org["ods_code"]),
    }
    if org.get("name"):
        ref["display"] = org["name"]
    return ref


def _patient(record: dict[str, Any]) -> dict[str, Any]:
    """A logical reference to the patient by NHS number."""
    nhs_number = (record.get("person") or {}).get("nhs_number")
    if not nhs_number:
        raise ValueError(
            "the referral record has no NHS number: the write-back cannot name the patient"
        )
    return {"type": "Patient", "identifier": _identifier(NHS_NUMBER, nhs_number)}


def _service_request(referral: dict[str, Any]) -> dict[str, Any]:
    """A logical reference to the source's ServiceRequest, by the identifier system the
    sender used (a UBRN, the supplier's own); the gateway's system when the sender gave none."""
    sent = ((referral.get("record") or {}).get("referral") or {}).get("identifier_system")
    return {
        "type": "ServiceRequest",
        "identifier": _identifier(sent or SOURCE_REFERRAL_SYSTEM, referral["identifier"]),
        "display": f"Referral {referral['identifier']} from {referral['source']}",
    }


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


def _observations(payload: dict[str, Any], subject: dict[str, Any]) -> list[Part]:
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
            "identifier": [_identifier(OBSERVATION_SYSTEM, value)],
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


def _procedure(
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
        "identifier": [_identifier(PROCEDURE_SYSTEM, value)],
        "basedOn": [based_on],
        "status": "in-progress" if outcome["status"] == "in-progress" else "completed",
        "code": {"coding": [{"system": SNOMED, "code": code[0], "display": code[1]}]},
        "subject": subject,
        "performedDateTime": occurred,
    }
    service = _organisation(payload["referral"]["record"]["referral"].get("referral_to"))
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


def _document(payload: dict[str, Any], subject: dict[str, Any], occurred: str) -> Part:
    """The DocumentReference carrying the readable summary."""
    outcome = payload["outcome"]
    value = f"{payload['referral']['id']}-{outcome['outcome_id']}"
    text = summary_text(payload)
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "identifier": [_identifier(DOCUMENT_SYSTEM, value)],
        "status": "current",
        "type": {"text": DOCUMENT_TYPE},
        "subject": subject,
        "date": occurred,
    }
    author = _organisation(payload["referral"]["record"]["referral"].get("referral_to"))
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


def _output(part: Part) -> dict[str, Any]:
    """A Task.output pointing at a resource of the Bundle (reference and identifier both)."""
    kind = part.resource["resourceType"]
    return {
        "type": {"text": kind},
        "valueReference": {
            "reference": part.full_url,
            "type": kind,
            "identifier": _identifier(part.system, part.value),
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
    parts = _observations(payload, subject)
    procedure = _procedure(payload, subject, occurred, focus)
    if procedure is not None:
        parts.append(procedure)
    outputs = [_output(part) for part in parts]
    parts.append(_document(payload, subject, occurred))
    task: dict[str, Any] = {"resourceType": "Task"}
    if task_id is not None:
        task["id"] = task_id
    task["identifier"] = [_identifier(TASK_SYSTEM, referral["id"])]
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
    requester = _organisation(
        {"ods_code": referrer.get("ods_code"), "name": referrer.get("service")}
    )
    if requester is not None:
        task["requester"] = requester
    owner = _organisation(record["referral"].get("referral_to"))
    if owner is not None:
        task["owner"] = owner
    task["output"] = _kept_outputs(earlier_outputs, outputs) + outputs
    task_part = Part(full_url(TASK_SYSTEM, referral["id"]), task, TASK_SYSTEM, referral["id"])
    return [task_part, *parts]


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


def _where(bundle: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """A FHIRPath-like location, naming the entry's resource type (entry[2](Observation).code)."""
    out = "Bundle"
    for i, step in enumerate(loc):
        if isinstance(step, int):
            out += f"[{step}]"
            if i > 0 and loc[i - 1] == "entry":
                with contextlib.suppress(KeyError, IndexError, TypeError):
                    out += f"({bundle['entry'][step]['resource']['resourceType']})"
        else:
            out += f".{step}"
    return out


def _reusing(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle with its repeating datatype elements swapped for already-validated models."""
    if not isinstance(bundle["entry"], list):
        raise TypeError("Bundle.entry is not a list")
    entries = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        table = _REUSABLE.get(resource.get("resourceType"))
        if table is None:
            entries.append(entry)
            continue
        resource = dict(resource)
        for key, model in table.items():
            value = resource.get(key)
            if isinstance(value, dict):
                resource[key] = _validated(model, value)
            elif isinstance(value, list):
                resource[key] = [_validated(model, v) if isinstance(v, dict) else v for v in value]
        if isinstance(resource.get("output"), list):
            resource["output"] = [
                {**o, "type": _validated(CodeableConcept, o["type"])}
                if isinstance(o, dict) and isinstance(o.get("type"), dict)
                else o
                for o in resource["output"]
            ]
        entries.append({**entry, "resource": resource})
    return {**bundle, "entry": entries}


def _validated(model: Any, value: dict[str, Any]) -> Any:
    """``model.model_validate(value)``, remembered by content (the cache is bounded)."""
    key = (model, orjson.dumps(value))
    found = _SEEN.get(key)
    if found is None:
        found = model.model_validate(value)
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[key] = found
    return found


@functools.cache
def checker() -> SubsetChecker:
    """The checker compiled from fhir.resources for this module's element set (on first use)."""
    return compile_subset(Bundle, SUBSET_RESOURCES, SUBSET_DATATYPES)


def validate(bundle: dict[str, Any]) -> None:
    """Check the Bundle against FHIR R4 (fhir.resources R4B); ValueError names the element.

    The checker compiled from the fhir.resources models (gateway.fhir.r4b_subset) accepts
    only Bundles that fhir.resources accepts; whatever it refuses (an error, or an element
    outside this module's element set) goes to fhir.resources (``validate_full``), which
    decides and names the failing element.
    """
    if checker().accepts(bundle):
        return
    validate_full(bundle)


def validate_full(bundle: dict[str, Any]) -> None:
    """Validate with the fhir.resources models themselves; ValueError names the element.

    Datatype elements that repeat (codes, the patient, the service) are validated once and
    reused, which fhir.resources treats exactly as validating them in place: it validates
    every element on its own with ``model_validate``. On any failure the whole Bundle is
    validated again from the plain dicts, so the error names the element's place.
    """
    try:
        Bundle.model_validate(_reusing(bundle))
    except (ValidationError, AttributeError, KeyError, TypeError, orjson.JSONEncodeError):
        pass
    else:
        return
    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _where(bundle, tuple(first["loc"]))
        raise ValueError(f"the Bundle is not valid FHIR R4: {where}: {first['msg']}") from None
    except Exception as exc:  # fhir_core's own slips (an int url, an unknown resourceType)
        raise ValueError(f"the Bundle is not valid FHIR R4: {type(exc).__name__}: {exc}") from None
