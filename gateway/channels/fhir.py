"""FHIR R4 intake: $process-message (BaRS), transaction/batch Bundles, ServiceRequest create."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, g, request, url_for

from gateway.auth import authenticate_source
from gateway.channels.http import fhir_response, read_body, too_large
from gateway.fhir.capability import capability_statement
from gateway.fhir.outcome import from_diagnostics
from gateway.intake.fhir import BARS_EVENTS, Received, ReferralIntake, source_message_id
from gateway.services import current_services

bp = Blueprint("fhir", __name__, url_prefix="/fhir")


def _intake() -> ReferralIntake:
    return current_services().intake


def _receive(
    channel: str, expected: tuple[str, ...], success: int
) -> tuple[Received, dict[str, str]]:
    """Authenticate, read within the limit and take the message; returns headers to echo."""
    source = authenticate_source()
    body, over = read_body()
    request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
    correlation_id = request.headers.get("X-Correlation-Id")
    echo = {"X-Request-Id": request_id}
    if correlation_id:
        echo["X-Correlation-Id"] = correlation_id
    g.echo_headers = echo  # refusals carry them too (see gateway.app)
    received = _intake().receive(
        source,
        body,
        request.content_type,
        channel=channel,
        expected=expected,
        success_status=success,
        request_id=request_id,
        correlation_id=correlation_id,
        over_limit=too_large() if over else None,
    )
    return received, echo


def _summary(received: Received) -> dict[str, Any]:
    """The informational OperationOutcome describing what was stored."""
    stored = received.stored
    what = "stored as version" if stored.created else "already held as version"
    return from_diagnostics(
        stored.record.get("diagnostics") or [],
        f"referral record {stored.referral_id} {what} {stored.version} ({stored.status})",
    )


def _record_headers(received: Received) -> dict[str, str]:
    stored = received.stored
    return {
        "Location": url_for("records.get_record", record_id=stored.referral_id, _external=False),
        "X-Record-Id": stored.referral_id,
        "X-Record-Version": str(stored.version),
    }


@bp.post("/$process-message")
def process_message() -> Response:
    """BaRS-style messaging: a message Bundle in, a response message Bundle out."""
    received, echo = _receive("fhir-message", ("message",), 200)
    header_id = str(uuid.uuid4())
    outcome_id = str(uuid.uuid4())
    # response.identifier is the MessageHeader.id of the request (FHIR R4), not the Bundle id.
    original = source_message_id(received.resource) or ""
    reply = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "message",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{header_id}",
                "resource": {
                    "resourceType": "MessageHeader",
                    "id": header_id,
                    "eventCoding": {"system": BARS_EVENTS, "code": "servicerequest-response"},
                    "source": {"endpoint": request.url_root.rstrip("/") + "/fhir"},
                    "response": {"identifier": original, "code": "ok"},
                    "focus": [{"reference": f"urn:uuid:{outcome_id}"}],
                },
            },
            {
                "fullUrl": f"urn:uuid:{outcome_id}",
                "resource": {**_summary(received), "id": outcome_id},
            },
        ],
    }
    return fhir_response(reply, 200, {**echo, **_record_headers(received)})


@bp.post("")
@bp.post("/")
def bundle() -> Response:
    """A transaction or batch Bundle holding one referral."""
    received, echo = _receive("fhir-bundle", ("transaction", "batch"), 201)
    stored = received.stored
    code = "201 Created" if stored.created else "200 OK"
    location = _record_headers(received)["Location"]
    entries: list[dict[str, Any]] = []
    for entry in received.resource.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "ServiceRequest":
            response = {"status": code, "location": location, "outcome": _summary(received)}
        else:
            # Supporting resources are part of the referral record, not stored on their own.
            response = {"status": "200 OK"}
        entries.append({"response": response})
    reply = {"resourceType": "Bundle", "type": f"{received.shape}-response", "entry": entries}
    return fhir_response(
        reply, 201 if stored.created else 200, {**echo, **_record_headers(received)}
    )


@bp.post("/ServiceRequest")
def service_request() -> Response:
    """Create (or update, by identifier) a referral from one ServiceRequest."""
    received, echo = _receive("fhir-servicerequest", ("ServiceRequest",), 201)
    status = 201 if received.stored.created else 200
    return fhir_response(_summary(received), status, {**echo, **_record_headers(received)})


@bp.get("/metadata")
def metadata() -> Response:
    """The gateway's CapabilityStatement."""
    return fhir_response(capability_statement(request.url_root.rstrip("/") + "/fhir"))
