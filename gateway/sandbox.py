"""Sending a fixture referral to a FHIR server, to try a pull source end to end.

The default target is the HAPI public sandbox: shared, purged, often down, and never for
real data. Only synthetic fixtures are sent, and a Patient whose NHS number is not in the
synthetic 999 range stops the push before anything leaves.

A message Bundle (BaRS) becomes a transaction: the MessageHeader goes, every other entry is
POSTed, conditionally (``ifNoneExist``) on its first identifier when it has one, so pushing
the same fixture twice makes no second Patient or ServiceRequest (resources without an
identifier are created again).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import requests

from gateway.fhir.body import decode_body

HAPI_SANDBOX = "https://hapi.fhir.org/baseR4"
FHIR_JSON = "application/fhir+json"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"


class PushError(Exception):
    """The push failed: the server refused it, or could not be reached."""


@dataclass(frozen=True)
class Pushed:
    """One entry of the server's transaction-response."""

    status: str
    location: str | None


def load_fixture(path: Path) -> dict[str, Any]:
    """A fixture file (FHIR JSON or XML) as a resource."""
    content_type = "application/fhir+xml" if path.suffix.lower() == ".xml" else FHIR_JSON
    return decode_body(path.read_bytes(), content_type)


def _search_escape(value: str) -> str:
    """A token value escaped for a FHIR search (``\\``, ``|``, ``,`` and ``$``)."""
    for char in ("\\", "|", ",", "$"):
        value = value.replace(char, "\\" + char)
    return value


def if_none_exist(resource: dict[str, Any]) -> str | None:
    """``identifier=system|value`` for the resource's first full identifier, else None."""
    for identifier in resource.get("identifier") or []:
        if not isinstance(identifier, dict):
            continue
        system, value = identifier.get("system"), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and system and value:
            return urlencode({"identifier": f"{_search_escape(system)}|{_search_escape(value)}"})
    return None


def to_transaction(resource: dict[str, Any]) -> dict[str, Any]:
    """The fixture as a transaction Bundle a FHIR server takes."""
    if resource.get("resourceType") != "Bundle":
        resource = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource}],
        }
    bundle = copy.deepcopy(resource)
    entries = []
    for entry in bundle.get("entry") or []:
        item = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(item, dict) or item.get("resourceType") == "MessageHeader":
            continue
        rtype = str(item.get("resourceType"))
        request = dict(entry.get("request") or {"method": "POST", "url": rtype})
        if request.get("method") == "POST":
            item.pop("id", None)  # the server assigns ids on create
            condition = if_none_exist(item)
            if condition and not request.get("ifNoneExist"):
                request["ifNoneExist"] = condition
        entries.append(
            {
                "fullUrl": entry.get("fullUrl") or f"urn:uuid:{uuid.uuid4()}",
                "resource": item,
                "request": request,
            }
        )
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return out


def real_nhs_numbers(bundle: dict[str, Any]) -> list[str]:
    """NHS numbers outside the synthetic 999 range (there must be none)."""
    found = []
    for entry in bundle.get("entry") or []:
        item = entry.get("resource") or {}
        if item.get("resourceType") != "Patient":
            continue
        for identifier in item.get("identifier") or []:
            value = str(identifier.get("value") or "")
            if identifier.get("system") == NHS_NUMBER and not value.startswith("999"):
                found.append(value)
    return found


def push(
    base: str,
    bundle: dict[str, Any],
    *,
    token: str | None = None,
    timeout: float = 30.0,
    session: requests.Session | None = None,
) -> list[Pushed]:
    """POST the transaction to ``base``; the entries' statuses and Locations, or PushError."""
    real = real_nhs_numbers(bundle)
    if real:
        raise PushError(f"refusing to send NHS numbers outside the 999 test range: {real}")
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    http = session or requests.Session()
    try:
        response = http.post(
            base.rstrip("/"), data=orjson.dumps(bundle), headers=headers, timeout=timeout
        )
    except requests.RequestException as exc:
        raise PushError(f"{base} could not be reached: {type(exc).__name__}: {exc}") from exc
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if response.status_code >= 300 or not isinstance(body, dict):
        raise PushError(f"{response.status_code} {_diagnostics(body) or response.reason}")
    if body.get("resourceType") != "Bundle":
        raise PushError(f"{response.status_code}: the answer is a {body.get('resourceType')}")
    results = []
    for entry in body.get("entry") or []:
        answer = entry.get("response") or {}
        results.append(Pushed(str(answer.get("status", "?")), answer.get("location")))
        if str(answer.get("status", "")).strip()[:1] in ("4", "5"):
            raise PushError(f"{answer.get('status')} {_diagnostics(answer.get('outcome'))}")
    return results


def _diagnostics(outcome: Any) -> str:
    """An OperationOutcome's diagnostics (HAPI puts its HAPI-nnnn code there)."""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return ""
    return "; ".join(
        str(i.get("diagnostics") or (i.get("details") or {}).get("text") or i.get("code"))
        for i in outcome.get("issue") or []
        if isinstance(i, dict)
    )
