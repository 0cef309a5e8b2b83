"""HL7 v2 ER7 (pipe-and-hat) parsing into the nested dicts that mapping paths read.

A message becomes ``{"MSH": [segment], "PID": [segment], ...}``: each segment name maps to its
occurrences in order. A segment is ``{"1": [repetition, ...], "2": ...}`` keyed by field
number; a repetition is ``{"1": component, ...}`` keyed by component number; a component is
text, or ``{"1": text, ...}`` when it has sub-components. Empty fields and components are
left out, and so is the HL7 null ``""`` (a field, repetition, component or sub-component whose
whole content is two double quotes means "no value", never the two characters). Escape
sequences are decoded here, never in mappings. The message's own encoding characters (MSH-1
and MSH-2) are used, so senders with unusual separators parse correctly. The configured limits
(segments, repetitions per field, field length) are checked while parsing, before anything
over them is split.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidMessage, NotSupported

SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_CHARSETS = {
    "": "utf-8",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
}
#: Position of each segment in the message, kept beside its fields (not a field).
ORDER_KEY = "_seq"
#: For NTE segments: the name of the segment the note follows (mapping paths: _after).
AFTER_KEY = "_after"


#: The HL7 null: "no value" (on an update, "remove the value").
NULL = '""'


@dataclass(frozen=True)
class Limits:
    """The most a message may hold: segments, repetitions of one field, characters in a field."""

    segments: int = 1000
    repetitions: int = 100
    field_length: int = 64 * 1024

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Limits:
        """The limits a gateway configuration sets (V2_MAX_SEGMENTS and the others)."""
        return cls(
            segments=int(config.get("V2_MAX_SEGMENTS", cls.segments)),
            repetitions=int(config.get("V2_MAX_REPETITIONS", cls.repetitions)),
            field_length=int(config.get("V2_MAX_FIELD_LENGTH", cls.field_length)),
        )


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Encoding:
    """The separators and escape character a message declares in MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


@dataclass
class V2Message:
    """A parsed message: the segment tree plus the header facts the gateway needs."""

    tree: dict[str, Any]
    encoding: Encoding
    segments: list[tuple[str, dict[str, Any]]]

    def value(self, segment: str, field: int, component: int = 1, occurrence: int = 0) -> str:
        """One component's text ('' when absent), from the first repetition."""
        found = self.tree.get(segment)
        if not found or occurrence >= len(found):
            return ""
        reps = found[occurrence].get(str(field)) or [{}]
        comp = reps[0].get(str(component), "")
        if isinstance(comp, dict):
            comp = comp.get("1", "")
        return str(comp)

    @property
    def control_id(self) -> str:
        """MSH-10, the sender's message control id."""
        return self.value("MSH", 10)

    @property
    def message_type(self) -> str:
        """MSH-9 as CODE^TRIGGER (e.g. REF^I12)."""
        return f"{self.value('MSH', 9, 1)}^{self.value('MSH', 9, 2)}"

    @property
    def version(self) -> str:
        """MSH-12, the declared HL7 version."""
        return self.value("MSH", 12)


class NotAnHl7Message(InvalidMessage):
    """The text does not start with an MSH segment: there is no HL7 v2 message to answer."""


class V2ParseError(InvalidMessage):
    """A message whose MSH was read but whose text breaks ER7; ``header`` holds that MSH."""

    def __init__(self, message: str, *, expression: str, header: V2Message | None) -> None:
        super().__init__(message, expression=expression)
        self.header = header


class OverLimit(V2ParseError):
    """A message over a configured limit: too many segments or repetitions, a field too long."""


def _charset(raw: bytes) -> str:
    """The Python codec for MSH-18, read from the raw bytes (ASCII-compatible)."""
    first = raw.split(b"\r", 1)[0].split(b"\n", 1)[0]
    if len(first) < 4:
        return "utf-8"
    fields = first.split(first[3:4])
    name = fields[17].decode("ascii", "replace").strip() if len(fields) > 17 else ""
    name = name.split(first[4:5].decode("ascii", "replace") or "^")[0] if name else ""
    return _CHARSETS.get(name.upper(), "utf-8")


def decode_text(raw: bytes, codec: str | None = None) -> str:
    """The message text, in the character set MSH-18 declares (UTF-8 when none)."""
    codec = codec or _charset(raw)
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise InvalidMessage(
            f"the message is not valid {codec} (byte {exc.start}); declare MSH-18",
            expression="MSH.18",
        ) from None


def _unescape(text: str, enc: Encoding, codec: str) -> str:
    """Decode \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\; drop \\H\\ \\N\\ (highlighting)."""
    esc = enc.escape
    out: list[str] = []
    pos = 0
    while True:
        start = text.find(esc, pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        end = text.find(esc, start + 1)
        if end < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:start])
        code = text[start + 1 : end]
        simple = {
            "F": enc.field,
            "S": enc.component,
            "T": enc.subcomponent,
            "R": enc.repetition,
            "E": esc,
            ".br": "\n",
            "H": "",
            "N": "",
        }
        if code in simple:
            out.append(simple[code])
        elif code.startswith("X") and len(code) > 1 and len(code) % 2 == 1:
            try:
                out.append(bytes.fromhex(code[1:]).decode(codec))
            except (ValueError, UnicodeDecodeError):
                out.append(text[start : end + 1])
        elif code.startswith(".sp"):
            out.append("\n")
        else:
            out.append(text[start : end + 1])  # unknown: kept as sent
        pos = end + 1


def _leaf(text: str, enc: Encoding, codec: str) -> str:
    return _unescape(text, enc, codec) if enc.escape in text else text


def _component(text: str, enc: Encoding, codec: str) -> Any:
    if enc.subcomponent not in text:
        return _leaf(text, enc, codec)
    subs = {
        str(i): _leaf(s, enc, codec)
        for i, s in enumerate(text.split(enc.subcomponent), 1)
        if s and s != NULL
    }
    return subs or None


def _field(text: str, enc: Encoding, codec: str) -> list[dict[str, Any]]:
    comp_sep, sub_sep, esc = enc.component, enc.subcomponent, enc.escape
    reps: list[dict[str, Any]] = []
    for rep in text.split(enc.repetition):
        if comp_sep in rep or sub_sep in rep:
            comps = {}
            for i, c in enumerate(rep.split(comp_sep), 1):
                if not c or c == NULL:
                    continue
                if sub_sep in c:
                    value = _component(c, enc, codec)
                elif esc in c:
                    value = _unescape(c, enc, codec)
                else:
                    value = c
                if value:
                    comps[_NUMBER[i] if i < _NUMBERS else str(i)] = value
        else:
            comps = {"1": _leaf(rep, enc, codec)} if rep and rep != NULL else {}
        reps.append(comps)
    return reps if any(reps) else []


#: Field and component numbers as the keys the tree uses ("1", "2", ...).
_NUMBERS = 100
_NUMBER = tuple(str(i) for i in range(_NUMBERS))
_LINES = re.compile(r"\r\n|\r|\n")
_LINE = re.compile(r"[^\r\n]+")
_FRAMING = "\r\n\x0b\x1c \t\ufeff"
_START = re.compile(rb"[\r\n\x0b\x1c \t]*(?:\xef\xbb\xbf)?(MSH|FHS|BHS)")
BATCH_SEGMENTS = ("FHS", "BHS", "BTS", "FTS")


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


def _lines(text: str, limits: Limits, header: V2Message) -> list[str]:
    """The message's non-blank lines; over the segment limit, OverLimit (nothing split)."""
    # Counted before splitting (a count allocates nothing); usually CR alone ends segments.
    if "\n" not in text:
        if text.count("\r") < limits.segments:
            return [s for s in text.split("\r") if s.strip()]
    elif text.count("\r") + text.count("\n") < limits.segments:
        return [s for s in _LINES.split(text) if s.strip()]
    lines: list[str] = []
    over: Iterator[re.Match[str]] = (m for m in _LINE.finditer(text) if m.group().strip())
    for match in over:
        if len(lines) == limits.segments:
            total = len(lines) + 1 + sum(1 for _ in over)
            name = match.group()[:3]
            where = name if SEGMENT_NAME.match(name) else f"segment[{limits.segments + 1}]"
            raise OverLimit(
                f"the message has {total} segments; at most {limits.segments} are accepted "
                f"(segment {limits.segments + 1} is {name!r})",
                expression=where,
                header=header,
            )
        lines.append(match.group())
    return lines


def _check_field(name: str, number: int, value: str, limits: Limits, header: V2Message) -> None:
    """OverLimit when a field has too many repetitions or too many characters."""
    reps = value.count(header.encoding.repetition) + 1
    if reps > limits.repetitions:
        raise OverLimit(
            f"{name}-{number} has {reps} repetitions; at most {limits.repetitions} are accepted",
            expression=f"{name}-{number}",
            header=header,
        )
    if len(value) > limits.field_length:
        raise OverLimit(
            f"{name}-{number} is {len(value)} characters long; at most "
            f"{limits.field_length} are accepted",
            expression=f"{name}-{number}",
            header=header,
        )


def parse(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> V2Message:
    """Parse one ER7 message; InvalidMessage names the segment when the text is not HL7 v2."""
    start = _START.match(raw)
    if start is None or start.group(1) != b"MSH":
        raise _not_a_message(raw[:64].decode("utf-8", "replace").strip(_FRAMING))
    codec = _charset(raw[start.start(1) :] if start.start(1) else raw)
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
    number_keys = _NUMBER
    max_reps, max_length = limits.repetitions, limits.field_length
    for seq, line in enumerate(_lines(text, limits, message)):
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
                _check_field(name, number, value, limits, message)
        # Most segments hold no repetition, escape, sub-component or null: one test for all.
        special = rep_sep in rest or esc in rest or sub_sep in rest or NULL in rest
        for number, value in enumerate(parts, first):
            if not value:
                continue
            key = number_keys[number] if number < _NUMBERS else str(number)
            if special and (rep_sep in value or esc in value or sub_sep in value or NULL in value):
                if rep_sep in value and value.count(rep_sep) >= max_reps:
                    _check_field(name, number, value, limits, message)
                reps = _field(value, enc, codec)
                if reps:
                    segment[key] = reps
            elif comp_sep in value:
                # One repetition of plain components (what _field makes of it, done here).
                components = value.split(comp_sep)
                if len(components) >= _NUMBERS:
                    reps = _field(value, enc, codec)
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
