"""HL7 v2 acknowledgements: AA once stored, AE naming the field, AR for unsupported or transient.

Every choice of AA, AE or AR is made by ``ack_code``; the rest of this module only lays out
the MSH, MSA and ERR segments (and a batch's FHS/BHS ... BTS/FTS around several ACKs).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from gateway.errors import GatewayError, V2ParseError
from gateway.hl7v2.message import Encoding, V2Message
from gateway.refusals import ack_code as refusal_ack
from gateway.refusals import decide

APPLICATION = "SPGW"
FACILITY = "SP-GATEWAY"
# A mapping path (PID.3.where(...).1) or an HL7 location (PID-3, PID-3[2].1, OBX[2]-5).
_LOCATION = re.compile(
    r"^([A-Z][A-Z0-9]{2})(?:\[(\d+)\])?(?:[.-](\d+)(?:\[(\d+)\])?(?:\.(\d+))?)?(?![A-Za-z0-9])"
)


def ack_code(error: GatewayError | None) -> str:
    """AA for success; AR when the message was not taken up (not an HL7 v2 message, an
    unsupported type or media type, a fault the sender may retry); AE when the message itself
    is wrong (its content, or over a size limit: a resend unchanged cannot succeed).
    Decided, with every other refusal, in ``gateway.refusals``."""
    return refusal_ack(error)


def error_location(expression: str | None) -> tuple[str, str, str]:
    """(segment, field, component) from a mapping path such as PID.3.where(...), or from an
    HL7 location such as PID-3[2].1."""
    segment, _, field, _, component = _location(expression)
    return segment, field, component


def _location(expression: str | None) -> tuple[str, str, str, str, str]:
    """(segment, segment sequence, field, repetition, component); the sequence is 1 unless
    the location names another occurrence (OBX[2]-5)."""
    match = _LOCATION.match(expression or "")
    if not match:
        return "", "", "", "", ""
    segment, sequence, field, repetition, component = match.groups()
    return segment, sequence or "1", field or "", repetition or "", component or ""


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
    """The ACK for ``message`` (None when it could not be parsed: then the MSH the error
    read, if any, is echoed)."""
    if message is None and isinstance(error, V2ParseError):
        message = error.header
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
    segment, sequence, field, repetition, component = _location(error.expression)
    number = decide(error).v2_error  # HL7 table 0357
    text = _escape(error.message, enc)
    short = _escape(error.message[:80], enc)  # cut before escaping, never inside an escape
    if version < "2.5":
        location = c.join([segment, sequence, field, f"{number}{sub}{text}"])
        return s.join(["ERR", location])
    where = c.join([segment, sequence, field, repetition, component])
    severity = "E" if ack_code(error) == "AE" else "F"
    return s.join(
        ["ERR", "", where, c.join([number, short, "HL70357"]), severity, "", "", "", text]
    )


def _batch_header(name: str, enc: Encoding, their: tuple[str, str, str], now: str) -> str:
    """An FHS or BHS answering the sender's: their application, facility and control id."""
    app, facility, control_id = (_escape(value, enc) for value in their)
    encoding = f"{enc.component}{enc.repetition}{enc.escape}{enc.subcomponent}"
    fields = [name, encoding, APPLICATION, FACILITY, app, facility, now, "", "", ""]
    return enc.field.join([*fields, uuid.uuid4().hex[:20], control_id])


def build_batch_ack(
    enc: Encoding,
    file_header: tuple[str, str, str] | None,
    batches: list[tuple[tuple[str, str, str], list[bytes]]],
) -> bytes:
    """A batch acknowledgement: [FHS] then, per batch, BHS, one ACK per message, BTS; [FTS].

    ``file_header`` and each batch's header are the sender's (application, facility, control
    id) from FHS-3, FHS-4, FHS-11 (BHS-3, BHS-4, BHS-11); FHS-12 and BHS-12 echo the control
    ids. ``file_header`` is None when the sender sent no FHS (then no FHS or FTS is sent).
    """
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S%z")
    out: list[bytes] = []
    if file_header is not None:
        out.append(_batch_header("FHS", enc, file_header, now).encode("utf-8") + b"\r")
    for header, acks in batches:
        out.append(_batch_header("BHS", enc, header, now).encode("utf-8") + b"\r")
        out.extend(acks)
        out.append(enc.field.join(["BTS", str(len(acks))]).encode("utf-8") + b"\r")
    if file_header is not None:
        out.append(enc.field.join(["FTS", str(len(batches))]).encode("utf-8") + b"\r")
    return b"".join(out)
