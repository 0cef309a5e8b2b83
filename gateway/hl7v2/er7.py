"""HL7 v2 ER7 (pipe-and-hat) parsing into the nested dicts that mapping paths read.

The tree's shape is described in ``gateway.hl7v2.message``; field values are decoded by
``gateway.hl7v2.values``. The message's own encoding characters (MSH-1 and MSH-2) are used,
so senders with unusual separators parse correctly. The configured limits
(``gateway.hl7v2.limits``) are checked while parsing, before anything over them is split.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import InvalidMessage, NotAnHl7Message, NotSupported, V2ParseError
from gateway.hl7v2.limits import DEFAULT_LIMITS, Limits, check_field, segment_lines
from gateway.hl7v2.message import AFTER_KEY, NULL, ORDER_KEY, SEGMENT_NAME, Encoding, V2Message
from gateway.hl7v2.values import NUMBER_KEYS, NUMBERS, declared_codec, decode_text, split_field

_FRAMING = "\r\n\x0b\x1c \t\ufeff"
_START = re.compile(rb"[\r\n\x0b\x1c \t]*(?:\xef\xbb\xbf)?(MSH|FHS|BHS)")


def envelope(raw: bytes) -> str:
    """What ``raw`` starts with: 'message' (MSH), 'batch' (FHS or BHS) or '' (not HL7 v2)."""
    match = _START.match(raw)
    if match is None:
        return ""
    return "message" if match.group(1) == b"MSH" else "batch"


def _not_a_message(text: str) -> NotAnHl7Message:
    """The refusal for text that does not start with MSH, naming what it starts with."""
    if not text:
        return NotAnHl7Message("the message is empty: there is no MSH segment", expression="MSH")
    first = text[:3]
    if first in ("FHS", "BHS"):
        return NotAnHl7Message(
            f"this is an HL7 batch ({first}), not one message: send it as a batch",
            expression="MSH",
        )
    if SEGMENT_NAME.match(first):
        return NotAnHl7Message(
            f"the message starts with {first}, not MSH: an HL7 v2 message starts with an MSH "
            "segment",
            expression="MSH",
        )
    return NotAnHl7Message(
        "the message has no MSH segment: this is not an HL7 v2 message", expression="MSH"
    )


def parse(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> V2Message:
    """Parse one ER7 message; InvalidMessage names the segment when the text is not HL7 v2."""
    start = _START.match(raw)
    if start is None or start.group(1) != b"MSH":
        raise _not_a_message(raw[:64].decode("utf-8", "replace").strip(_FRAMING))
    codec = declared_codec(raw[start.start(1) :] if start.start(1) else raw)
    text = decode_text(raw, codec).strip(_FRAMING)
    sep = text[3] if len(text) > 3 else ""
    enc_chars = text[4 : text.index(sep, 4)] if sep and sep in text[4:] else ""
    if len(enc_chars) < 4 or sep.isalnum() or len(set(sep + enc_chars[:4])) != 5:
        raise InvalidMessage(
            "MSH-1 and MSH-2 do not declare encoding characters", expression="MSH.2"
        )
    enc = Encoding(sep, enc_chars[0], enc_chars[1], enc_chars[2], enc_chars[3])
    # A field holding none of these is plain text: one repetition, one component.
    comp_sep, rep_sep, esc, sub_sep = enc.component, enc.repetition, enc.escape, enc.subcomponent
    tree: dict[str, Any] = {}
    segments: list[tuple[str, dict[str, Any]]] = []
    # Filled as segments are read: an error after the MSH carries it (for the ACK's MSA-2).
    message = V2Message(tree, enc, segments)
    number_keys = NUMBER_KEYS
    max_reps, max_length = limits.repetitions, limits.field_length
    for seq, line in enumerate(segment_lines(text, limits, message)):
        name = line[:3]
        if not SEGMENT_NAME.match(name) or (len(line) > 3 and line[3] != sep):
            raise V2ParseError(
                f"segment {seq + 1} is not an HL7 v2 segment",
                expression=f"segment[{seq + 1}]",
                header=message,
            )
        parts = line.split(sep)
        segment: dict[str, Any] = {ORDER_KEY: seq}
        if name == "MSH":
            segment["1"] = [{"1": sep}]
            segment["2"] = [{"1": enc_chars}]
            first = 3
            parts = parts[2:]
            rest = line[len(enc_chars) + 5 :]  # MSH-3 on: MSH-2 holds every separator
        else:
            first = 1
            parts = parts[1:]
            rest = line
        if len(line) > max_length:
            for number, value in enumerate(parts, first):
                check_field(name, number, value, limits, message)
        # Most segments hold no repetition, escape, sub-component or null: one test for all.
        special = rep_sep in rest or esc in rest or sub_sep in rest or NULL in rest
        for number, value in enumerate(parts, first):
            if not value:
                continue
            key = number_keys[number] if number < NUMBERS else str(number)
            if special and (rep_sep in value or esc in value or sub_sep in value or NULL in value):
                if rep_sep in value and value.count(rep_sep) >= max_reps:
                    check_field(name, number, value, limits, message)
                reps = split_field(value, enc, codec)
                if reps:
                    segment[key] = reps
            elif comp_sep in value:
                # One repetition of plain components (what _field makes of it, done here).
                components = value.split(comp_sep)
                if len(components) >= NUMBERS:
                    reps = split_field(value, enc, codec)
                    if reps:
                        segment[key] = reps
                    continue
                comps = {}
                index = 0  # a plain counter: measurably faster here than enumerate()
                for component in components:
                    index += 1  # noqa: SIM113
                    if component:
                        comps[number_keys[index]] = component
                if comps:
                    segment[key] = [comps]
            else:
                segment[key] = [{"1": value}]
        if name == "NTE":
            # Which segment a note belongs to (OBX, OBR, PRD, or the message itself).
            segment[AFTER_KEY] = next((n for n, _ in reversed(segments) if n != "NTE"), "MSH")
        tree.setdefault(name, []).append(segment)
        segments.append((name, segment))
    if not message.value("MSH", 9, 1):
        raise V2ParseError("MSH-9 (message type) is missing", expression="MSH.9", header=message)
    return message


def require_type(message: V2Message, accepted: tuple[str, ...]) -> None:
    """Fail with NotSupported unless MSH-9 is one of ``accepted`` (CODE^TRIGGER)."""
    if message.message_type not in accepted:
        raise NotSupported(
            f"message type {message.message_type} is not accepted; send {', '.join(accepted)}",
            expression="MSH.9",
        )


def read_header(raw: bytes) -> V2Message | None:
    """The MSH alone of ``raw`` (its first line), to answer a message that cannot be read whole
    (too large, unfinished); None when it has no readable MSH."""
    match = _START.match(raw)
    if match is None or match.group(1) != b"MSH":
        return None
    start = match.start(1)
    end = len(raw)
    for stop in (raw.find(b"\r", start), raw.find(b"\n", start)):
        if stop >= 0:
            end = min(end, stop)
    try:
        return parse(raw[start:end])
    except InvalidMessage:
        return None
