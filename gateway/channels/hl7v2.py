"""HL7 v2 over HTTP: POST /hl7v2 with an ER7 message or batch, answered with its ACK."""

from __future__ import annotations

from flask import Blueprint, Response, request

from gateway.auth import authenticate_source
from gateway.channels.http import read_body, too_large
from gateway.errors import GatewayError, UnsupportedMediaType
from gateway.hl7v2.er7 import envelope
from gateway.intake.hl7v2 import MEDIA_TYPE
from gateway.services import current_services

bp = Blueprint("hl7v2", __name__)
CHANNEL = "hl7v2-http"


def _ack_response(ack: bytes, status: int = 200) -> Response:
    return Response(ack, status=status, mimetype=MEDIA_TYPE)


@bp.post("/hl7v2")
def receive() -> Response:
    """Take one ER7 message or batch; the body of the answer is its ACK (AA, AE or AR).

    200 whenever the intake answered, whatever the ACK code; 400 (with an AR) when the body is
    not HL7 v2 at all (no MSH); 413 and 415 before the body is looked at.
    """
    source = authenticate_source()
    intake = current_services().v2intake
    media = (request.mimetype or "").lower()
    body, over = read_body()
    refusal: GatewayError | None = None
    if over:
        refusal = too_large()
    elif media not in (MEDIA_TYPE, "application/hl7-v2"):
        refusal = UnsupportedMediaType(f"send {MEDIA_TYPE}, not {media or 'no Content-Type'}")
    if refusal is not None:
        ack = intake.refuse_unread(
            source, body, request.content_type, channel=CHANNEL, error=refusal, truncated=over
        )
        return _ack_response(ack, refusal.status)
    status = 200 if envelope(body) else 400
    return _ack_response(intake.receive(source, body, CHANNEL), status)
