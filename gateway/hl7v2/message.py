"""A parsed HL7 v2 message: its segment tree, its encoding characters and its header facts.

A message is ``{"MSH": [segment], "PID": [segment], ...}``: each segment name maps to its
occurrences in order. A segment is ``{"1": [repetition, ...], "2": ...}`` keyed by field
number; a repetition is ``{"1": component, ...}`` keyed by component number; a component is
text, or ``{"1": text, ...}`` when it has sub-components (``gateway.hl7v2.er7`` builds it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

SEGMENT_NAME = re.compile(r"^[A-Z][A-Z0-9]{2}$")
#: Position of each segment in the message, kept beside its fields (not a field).
ORDER_KEY = "_seq"
#: For NTE segments: the name of the segment the note follows (mapping paths: _after).
AFTER_KEY = "_after"


#: The HL7 null: "no value" (on an update, "remove the value").
NULL = '""'


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
