"""HL7 v2 batches: FHS/BHS ... BTS/FTS around messages, each message answered on its own.

A batch file is ``[FHS] {[BHS] {MSH ...} [BTS]} [FTS]``. Each message is cut out of the file
byte for byte and handed to the handler (the intake) like a message sent alone, so it is
kept, refused or stored independently, and a resent batch is answered from what each
message got before (nothing is stored twice). The answer is a batch acknowledgement: FHS
(when the sender sent one), then per batch a BHS, one ACK per message in the order sent, and
a BTS counting them, then FTS. Bytes in a batch that are not a batch segment and not inside
a message (a segment before the first MSH) are handed over as a message of their own, and
refused as not HL7 v2: nothing in a batch goes unanswered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.hl7v2.ack import build_batch_ack
from gateway.hl7v2.message import Encoding

_LINE = re.compile(rb"[^\r\n]+")
_BATCH = frozenset((b"FHS", b"BHS", b"BTS", b"FTS"))
#: (application, facility, control id) of a header the sender did not send.
_NO_HEADER = ("", "", "")


@dataclass
class Batch:
    """One batch of a file: the sender's BHS facts and the messages, as sent."""

    header: tuple[str, str, str] = _NO_HEADER
    messages: list[bytes] = field(default_factory=list)


@dataclass
class BatchFile:
    """A parsed batch file: its FHS facts (None without an FHS), encoding and batches."""

    header: tuple[str, str, str] | None
    encoding: Encoding
    batches: list[Batch]


def _segment_name(line: bytes) -> bytes:
    """The name of a batch segment line (b'' when the line is not one)."""
    name = line[:3]
    if name in _BATCH and (len(line) == 3 or not line[3:4].isalnum()):
        return name
    return b""


def _header(line: bytes) -> tuple[tuple[str, str, str], Encoding]:
    """(application, facility, control id) of an FHS or BHS line, and its encoding."""
    text = line.decode("utf-8", "replace")
    sep = text[3:4] or "|"
    fields = text.split(sep)
    chars = fields[1] if len(fields) > 1 else ""
    enc = Encoding()
    if len(chars) >= 4 and not sep.isalnum() and len(set(sep + chars[:4])) == 5:
        enc = Encoding(sep, chars[0], chars[1], chars[2], chars[3])

    def value(number: int) -> str:
        # FHS-1 is the separator itself, so FHS-n is fields[n - 1].
        raw = fields[number - 1] if len(fields) >= number else ""
        return raw.split(enc.component)[0][:199]

    return (value(3), value(4), value(11)), enc


def split(raw: bytes) -> BatchFile:
    """The batches and messages of a batch file, each message's bytes exactly as sent."""
    file_header: tuple[str, str, str] | None = None
    encoding: Encoding | None = None
    batches: list[Batch] = []
    current: Batch | None = None
    start: int | None = None  # where the message being read began

    def close_message(end: int) -> None:
        nonlocal start, current
        if start is None:
            return
        if current is None:
            current = Batch()
            batches.append(current)
        current.messages.append(raw[start:end])
        start = None

    for match in _LINE.finditer(raw):
        line = match.group()
        if not line.strip():
            continue
        name = _segment_name(line)
        if name:
            close_message(match.start())
            if name in (b"FHS", b"BHS"):
                facts, enc = _header(line)
                encoding = encoding or enc
                if name == b"FHS" and file_header is None and not batches:
                    file_header = facts
                else:
                    current = Batch(facts if name == b"BHS" else _NO_HEADER)
                    batches.append(current)
            elif name == b"BTS":
                current = None
            continue
        if line.startswith(b"MSH"):
            close_message(match.start())
        if start is None:
            start = match.start()
    close_message(len(raw))
    return BatchFile(file_header, encoding or Encoding(), batches)


def answer(handle: Callable[[bytes], bytes], raw: bytes) -> bytes:
    """The batch acknowledgement for ``raw``, each message answered by ``handle``."""
    parsed = split(raw)
    answered: list[tuple[tuple[str, str, str], list[bytes]]] = []
    for batch in parsed.batches:
        acks = []
        for message in batch.messages:
            ack = handle(message)
            acks.append(ack if ack.endswith(b"\r") else ack + b"\r")
        answered.append((batch.header, acks))
    if not answered:
        answered.append((_NO_HEADER, []))
    return build_batch_ack(parsed.encoding, parsed.header, answered)
