"""ER7 field values: the declared character set, escape sequences, repetitions and components.

Empty fields and components are left out, and so is the HL7 null ``""`` (a field, repetition,
component or sub-component whose whole content is two double quotes means "no value", never
the two characters). Escape sequences are decoded here, never in mappings.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidMessage
from gateway.hl7v2.message import NULL, Encoding

_CHARSETS = {
    "": "utf-8",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
}

#: Field and component numbers as the keys the tree uses ("1", "2", ...).
NUMBERS = 100
NUMBER_KEYS = tuple(str(i) for i in range(NUMBERS))


def declared_codec(raw: bytes) -> str:
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
    codec = codec or declared_codec(raw)
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as exc:
        raise InvalidMessage(
            f"the message is not valid {codec} (byte {exc.start}); declare MSH-18",
            expression="MSH.18",
        ) from None


def unescape(text: str, enc: Encoding, codec: str) -> str:
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
    return unescape(text, enc, codec) if enc.escape in text else text


def _component(text: str, enc: Encoding, codec: str) -> Any:
    if enc.subcomponent not in text:
        return _leaf(text, enc, codec)
    subs = {
        str(i): _leaf(s, enc, codec)
        for i, s in enumerate(text.split(enc.subcomponent), 1)
        if s and s != NULL
    }
    return subs or None


def split_field(text: str, enc: Encoding, codec: str) -> list[dict[str, Any]]:
    """One field's repetitions, each {component number: value}; [] when all are empty."""
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
                    value = unescape(c, enc, codec)
                else:
                    value = c
                if value:
                    comps[NUMBER_KEYS[i] if i < NUMBERS else str(i)] = value
        else:
            comps = {"1": _leaf(rep, enc, codec)} if rep and rep != NULL else {}
        reps.append(comps)
    return reps if any(reps) else []
