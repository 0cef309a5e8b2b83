"""The write-back's identifier systems and codes, its deterministic fullUrls and references.

Every fullUrl is a urn:uuid derived (uuid5) from the entry's business identifier, so building
the same payload twice gives the same bytes. Naive date-times are read as UK local time.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, NamedTuple
from urllib.parse import quote
from zoneinfo import ZoneInfo

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


def business_identifier(system: str, value: str) -> dict[str, str]:
    """An Identifier."""
    return {"system": system, "value": value}


def organisation(org: dict[str, Any] | None) -> dict[str, Any] | None:
    """A logical reference to an organisation by ODS code, or None when the code is unknown."""
    if not org or not org.get("ods_code"):
        return None
    ref: dict[str, Any] = {
        "type": "Organization",
        "identifier": business_identifier(ODS_CODE, org["ods_code"]),
    }
    if org.get("name"):
        ref["display"] = org["name"]
    return ref
