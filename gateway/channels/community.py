"""Community referrals: ``POST /community/referrals``, one JSON object from a partner.

Housing officers, schools, voluntary organisations and councils have no ODS code and no
FHIR system; each organisation gets its own source key for the ``community`` source
(``gateway keys create --source community --label "Leeds Housing Trust"``) and posts the
JSON shape of docs/community.md. Refusals are OperationOutcomes naming the JSON element.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, Response, g, request, url_for

from gateway.auth import authenticate_source
from gateway.channels.http import json_response, read_body, too_large
from gateway.errors import Forbidden
from gateway.intake.community import DocumentIntake, reference_of
from gateway.services import current_services
from gateway.store.referrals import Stored

bp = Blueprint("community", __name__, url_prefix="/community")

#: The source only the /refer form sends as: no key may post as the public.
SELF_REFERRAL = "self-referral"


def intake() -> DocumentIntake:
    """The JSON intake over the app's one pipeline."""
    return DocumentIntake(current_services().intake.pipeline)


def answer_of(stored: Stored) -> dict[str, Any]:
    """What a partner is told: the record, its version and status, the reference to quote,
    and what the mapping could not place (the same for a resend of the same body)."""
    return {
        "id": stored.referral_id,
        "reference": reference_of(stored.referral_id),
        "version": stored.version,
        "status": stored.status,
        "diagnostics": stored.record.get("diagnostics") or [],
    }


@bp.post("/referrals")
def referrals() -> Response:
    """Take one community referral: 201 with the record id and reference (200 if held)."""
    source = authenticate_source()
    mapping = current_services().mappings.get(source)
    if mapping is None or mapping.compiled.format != "json" or source == SELF_REFERRAL:
        raise Forbidden(f"source {source} does not send community referrals (JSON) here")
    body, over = read_body()
    request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
    g.echo_headers = {"X-Request-Id": request_id}  # refusals carry it too (see gateway.app)
    stored = intake().receive(
        source,
        body,
        request.content_type,
        channel="community",
        request_id=request_id,
        over_limit=too_large() if over else None,
    )
    response = json_response(answer_of(stored), 201 if stored.created else 200)
    response.headers["X-Request-Id"] = request_id
    response.headers["Location"] = url_for("records.get_record", record_id=stored.referral_id)
    response.headers["X-Record-Id"] = stored.referral_id
    response.headers["X-Record-Version"] = str(stored.version)
    return response
