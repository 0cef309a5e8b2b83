"""er7.parse against a reference: every field read by ``split_field``, as before the fast path."""

from __future__ import annotations

from random import Random
from typing import Any

import pytest

from gateway.hl7v2 import er7, limits, values
from gateway.hl7v2.message import AFTER_KEY, ORDER_KEY, Encoding

_HEADER = "MSH|^~\\&|APP|FAC|GW|GWF|20260101120000||REF^I12^REF_I12|C1|P|2.5.1"
_PIECES = ["a", "B9", " x ", "^", "^^", "~", "&", "\\F\\", "\\.br\\", "\\X41\\", "\\Q\\", ""]


def _reference_tree(raw: bytes) -> dict[str, Any]:
    """The segment tree with each field parsed by ``values.split_field`` (no inlined cases)."""
    text = raw.decode("utf-8").strip("\r\n\x0b\x1c ")
    enc = Encoding()
    tree: dict[str, Any] = {}
    previous: list[str] = []
    lines = [s for s in limits._LINES.split(text) if s.strip()]
    for seq, line in enumerate(lines):
        name = line[:3]
        parts = line.split("|")
        segment: dict[str, Any] = {ORDER_KEY: seq}
        first = 1
        if name == "MSH":
            segment["1"] = [{"1": "|"}]
            segment["2"] = [{"1": "^~\\&"}]
            first, parts = 3, parts[2:]
        else:
            parts = parts[1:]
        for number, value in enumerate(parts, first):
            if value and any(sep in value for sep in "^~\\&"):
                reps = values.split_field(value, enc, "utf-8")
                if reps:
                    segment[str(number)] = reps
            elif value:
                segment[str(number)] = [{"1": value}]
        if name == "NTE":
            segment[AFTER_KEY] = next((n for n in reversed(previous) if n != "NTE"), "MSH")
        previous.append(name)
        tree.setdefault(name, []).append(segment)
    return tree


def _random_message(rng: Random) -> bytes:
    segments = [_HEADER]
    for _ in range(rng.randrange(1, 6)):
        name = rng.choice(["PID", "NTE", "OBX", "ZSP"])
        fields = []
        for _ in range(rng.randrange(0, 8)):
            fields.append("".join(rng.choice(_PIECES) for _ in range(rng.randrange(0, 6))))
        if rng.random() < 0.05:
            fields.append("^".join("c" for _ in range(rng.randrange(95, 130))))
        segments.append("|".join([name, *fields]))
    newline = rng.choice(["\r", "\r\n", "\n"])
    return newline.join(segments).encode("utf-8")


@pytest.mark.parametrize("seed", range(4))
def test_parse_matches_the_field_by_field_reference(seed: int) -> None:
    rng = Random(seed)
    for _ in range(300):
        raw = _random_message(rng)
        assert er7.parse(raw).tree == _reference_tree(raw), raw


def test_a_field_with_more_than_99_components_keeps_every_component() -> None:
    raw = (_HEADER + "\rPID|" + "^".join(str(i) for i in range(1, 121))).encode()
    reps = er7.parse(raw).tree["PID"][0]["1"]
    assert reps[0]["120"] == "120" and len(reps[0]) == 120
