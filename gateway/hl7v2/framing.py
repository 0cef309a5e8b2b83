"""MLLP framing: ``0x0B <message> 0x1C 0x0D``, and what is read from ACK bytes without parsing.

Nothing here touches a socket (``gateway.hl7v2.mllp`` does).
"""

from __future__ import annotations

import time
import uuid

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
TRAILER = b"\x1c\x0d"
_MAX_CONTROL_ID = 199


def minimal_ack(message: bytes | None = None) -> bytes:
    """A hard-coded AR for when nothing else could build an ACK; never raises."""
    control_id = ""
    try:
        if message:
            control_id = _control_id(message)
    except Exception:  # pragma: no cover - _control_id is defensive already
        control_id = ""
    stamp = time.strftime("%Y%m%d%H%M%S+0000", time.gmtime())
    return (
        f"MSH|^~\\&|SPGW|SP-GATEWAY|||{stamp}||ACK|{uuid.uuid4().hex[:20]}|P|2.5.1\r"
        f"MSA|AR|{control_id}\r"
    ).encode("ascii")


def _control_id(message: bytes) -> str:
    """MSH-10 read from raw bytes when it is plain printable ASCII, else ''."""
    start = message.find(b"MSH")
    if start < 0 or len(message) < start + 8:
        return ""
    first = message[start:].split(b"\r", 1)[0].split(b"\n", 1)[0]
    sep = first[3:4]
    fields = first.split(sep)
    if len(fields) < 10:
        return ""
    value = fields[9].split(first[4:5])[0] if first[4:5] else fields[9]
    if len(value) > _MAX_CONTROL_ID or not value.isascii():
        return ""
    text = value.decode("ascii")
    if not text.isprintable() or any(c in text for c in "|^~\\&"):
        return ""
    return text


def msa_code(ack: bytes) -> str:
    """MSA-1 of an ACK ('?' when there is none); reads nothing else of the ACK."""
    sep = ack[3:4] if ack.startswith(b"MSH") and len(ack) > 3 else b"|"
    for segment in ack.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA" + sep):
            code = segment.split(sep, 2)[1][:2]
            return code.decode("ascii", "replace") if code else "?"
    return "?"


def frame(ack: bytes) -> bytes:
    """Wrap an ACK in MLLP framing, blanking framing bytes that would break the stream."""
    if START_BLOCK in ack or END_BLOCK in ack:
        ack = ack.replace(START_BLOCK, b" ").replace(END_BLOCK, b" ")
    return START_BLOCK + ack + TRAILER


def first_frame(buf: bytes | bytearray) -> bytes | None:
    """The content of the first complete frame in ``buf``, else None."""
    start = buf.find(START_BLOCK)
    if start < 0:
        return None
    end = buf.find(TRAILER, start + 1)
    return None if end < 0 else bytes(buf[start + 1 : end])


def readable_partial(partial: bytes) -> bytes | None:
    """An unfinished frame cut after its last whole segment; None before MSH has ended.

    Only then is MSH-10 known whole, and an ACK can echo it.
    """
    start = partial.find(b"MSH")
    end = max(partial.rfind(b"\r"), partial.rfind(b"\n"))
    return partial[: end + 1] if 0 <= start < end else None
