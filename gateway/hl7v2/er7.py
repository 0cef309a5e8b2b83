"""HL7 v2 ER7 (pipe-and-hat) parsing into the nested dicts that mapping paths read.

A message becomes ``{"MSH": [segment], "PID": [segment], ...}``: each segment name maps to its
occurrences in order. A segment is ``{"1": [repetition, ...], "2": ...}`` keyed by field
number; a repetition is ``{"1": component, ...}`` keyed by component number; a component is
text, or ``{"1": text, ...}`` when it has sub-components. Empty fields and components are
left out. Escape sequences are decoded here, never in mappings. The message's own encoding
characters (MSH-1 and MSH-2) are used, so senders with unusual separators parse correctly.
"""

from __future__ import annotations

import re
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
        str(i): _leaf(s, enc, codec) for i, s in enumerate(text.split(enc.subcomponent), 1) if s
    }
    return subs or None


def _field(text: str, enc: Encoding, codec: str) -> list[dict[str, Any]]:
    comp_sep, sub_sep, esc = enc.component, enc.subcomponent, enc.escape
    reps: list[dict[str, Any]] = []
    for rep in text.split(enc.repetition):
        if comp_sep in rep or sub_sep in rep:
            comps = {}
            for i, c in enumerate(rep.split(comp_sep), 1):
                if not c:
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
            comps = {"1": _leaf(rep, enc, codec)} if rep else {}
        reps.append(comps)
    return reps if any(reps) else []


#: Field and component numbers as the keys the tree uses ("1", "2", ...).
_NUMBERS = 100
_NUMBER = tuple(str(i) for i in range(_NUMBERS))
_LINES = re.compile(r"\r\n|\r|\n")


def parse(raw: bytes) -> V2Message:
    """Parse one ER7 message; InvalidMessage names the segment when the text is not HL7 v2."""
    codec = _charset(raw)
    text = decode_text(raw, codec).strip("\r\n\x0b\x1c ")
    if not text:
        raise InvalidMessage("the message is empty", expression="MSH")
    if not text.startswith("MSH") or len(text) < 8:
        raise InvalidMessage("an HL7 v2 message starts with an MSH segment", expression="MSH")
    sep = text[3]
    enc_chars = text[4 : text.index(sep, 4)] if sep in text[4:] else ""
    if len(enc_chars) < 4 or sep.isalnum() or len(set(sep + enc_chars[:4])) != 5:
        raise InvalidMessage(
            "MSH-1 and MSH-2 do not declare encoding characters", expression="MSH.2"
        )
    enc = Encoding(sep, enc_chars[0], enc_chars[1], enc_chars[2], enc_chars[3])
    # A field holding none of these is plain text: one repetition, one component.
    comp_sep, rep_sep, esc, sub_sep = enc.component, enc.repetition, enc.escape, enc.subcomponent
    tree: dict[str, Any] = {}
    segments: list[tuple[str, dict[str, Any]]] = []
    number_keys = _NUMBER
    # Segments usually end in CR alone; then a plain split is the same as _LINES.split.
    split = text.split("\r") if "\n" not in text else _LINES.split(text)
    lines = [s for s in split if s.strip()]
    for seq, line in enumerate(lines):
        name = line[:3]
        if not SEGMENT_NAME.match(name) or (len(line) > 3 and line[3] != sep):
            raise InvalidMessage(
                f"segment {seq + 1} is not an HL7 v2 segment", expression=f"segment[{seq + 1}]"
            )
        parts = line.split(sep)
        segment: dict[str, Any] = {ORDER_KEY: seq}
        if name == "MSH":
            segment["1"] = [{"1": sep}]
            segment["2"] = [{"1": enc_chars}]
            first = 3
            parts = parts[2:]
        else:
            first = 1
            parts = parts[1:]
        for number, value in enumerate(parts, first):
            if not value:
                continue
            key = number_keys[number] if number < _NUMBERS else str(number)
            if rep_sep in value or esc in value or sub_sep in value:
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
    message = V2Message(tree, enc, segments)
    if not message.value("MSH", 9, 1):
        raise InvalidMessage("MSH-9 (message type) is missing", expression="MSH.9")
    return message


def require_type(message: V2Message, accepted: tuple[str, ...]) -> None:
    """Fail with NotSupported unless MSH-9 is one of ``accepted`` (CODE^TRIGGER)."""
    if message.message_type not in accepted:
        raise NotSupported(
            f"message type {message.message_type} is not accepted; send {', '.join(accepted)}",
            expression="MSH.9",
        )
