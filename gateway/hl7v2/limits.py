"""The configured limits of an HL7 v2 message, checked while parsing before anything is split."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import OverLimit
from gateway.hl7v2.message import SEGMENT_NAME, V2Message

_LINES = re.compile(r"\r\n|\r|\n")
_LINE = re.compile(r"[^\r\n]+")


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


def segment_lines(text: str, limits: Limits, header: V2Message) -> list[str]:
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


def check_field(name: str, number: int, value: str, limits: Limits, header: V2Message) -> None:
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
