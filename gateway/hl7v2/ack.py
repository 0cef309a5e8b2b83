"""HL7 v2 acknowledgements: AA once stored, AE naming the field, AR for unsupported or transient."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from gateway.errors import (
    GatewayError,
    NotSupported,
    PayloadTooLarge,
    StoreUnavailable,
    UnsupportedMediaType,
)
from gateway.hl7v2.er7 import Encoding, V2Message

APPLICATION = "SPGW"
FACILITY = "SP-GATEWAY"
_LOCATION = re.compile(r"^([A-Z][A-Z0-9]{2})(?:\.(\d+)(?:\.(\d+))?)?(?![A-Za-z0-9])")
# HL7 table 0357 error codes.
_ERROR_CODES = {
    "required": "101",
    "structure": "102",
    "invalid": "102",
    "value": "102",
    "code-invalid": "103",
    "not-supported": "200",
    "transient": "207",
    "exception": "207",
}


def ack_code(error: GatewayError | None) -> str:
    """AA for success; AR when the message was not taken up (unsupported type or media type,
    over the size limit, a fault the sender may retry); AE when its content is wrong."""
    if error is None:
        return "AA"
    refused = NotSupported | StoreUnavailable | UnsupportedMediaType | PayloadTooLarge
    if isinstance(error, refused) or error.status >= 500:
        return "AR"
    return "AE"


def error_location(expression: str | None) -> tuple[str, str, str]:
    """(segment, field, component) from a mapping path such as PID.3.where(...)."""
    match = _LOCATION.match(expression or "")
    if not match:
        return "", "", ""
    return match.group(1), match.group(2) or "", match.group(3) or ""


def _escape(text: str, enc: Encoding) -> str:
    """Escape separators in free text placed into the ACK."""
    out = text.replace(enc.escape, f"{enc.escape}E{enc.escape}")
    for char, code in (
        (enc.field, "F"),
        (enc.component, "S"),
        (enc.subcomponent, "T"),
        (enc.repetition, "R"),
    ):
        out = out.replace(char, f"{enc.escape}{code}{enc.escape}")
    return out.replace("\r", " ").replace("\n", " ")


def build_ack(
    message: V2Message | None, error: GatewayError | None = None, *, control_id: str | None = None
) -> bytes:
    """The ACK for ``message`` (None when it could not be parsed at all)."""
    enc = message.encoding if message else Encoding()
    s, c = enc.field, enc.component
    version = (message.version if message else "") or "2.5.1"
    trigger = message.value("MSH", 9, 2) if message else ""
    their_app = message.value("MSH", 3) if message else ""
    their_fac = message.value("MSH", 4) if message else ""
    original_id = control_id if control_id is not None else (message.control_id if message else "")
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S%z")
    code = ack_code(error)
    segments = [
        s.join(
            [
                "MSH",
                f"{c}{enc.repetition}{enc.escape}{enc.subcomponent}",
                APPLICATION,
                FACILITY,
                _escape(their_app, enc),
                _escape(their_fac, enc),
                now,
                "",
                f"ACK{c}{trigger}{c}ACK" if trigger else "ACK",
                uuid.uuid4().hex[:20],
                "P",
                version,
            ]
        ),
        s.join(["MSA", code, _escape(original_id, enc)]),
    ]
    if error is not None:
        segments.append(_err_segment(error, enc, version))
    return ("\r".join(segments) + "\r").encode("utf-8")


def _err_segment(error: GatewayError, enc: Encoding, version: str) -> str:
    """ERR naming the field: ERR-1 for v2.3/2.4 receivers, ERR-2..8 for v2.5 and later."""
    s, c, sub = enc.field, enc.component, enc.subcomponent
    segment, field, component = error_location(error.expression)
    number = _ERROR_CODES.get(error.issue_code, "207")
    text = _escape(error.message, enc)
    short = _escape(error.message[:80], enc)  # cut before escaping, never inside an escape
    if version < "2.5":
        location = c.join([segment, "1" if segment else "", field, f"{number}{sub}{text}"])
        return s.join(["ERR", location])
    where = c.join([segment, "1" if segment else "", field, "", component])
    severity = "E" if ack_code(error) == "AE" else "F"
    return s.join(
        ["ERR", "", where, c.join([number, short, "HL70357"]), severity, "", "", "", text]
    )
