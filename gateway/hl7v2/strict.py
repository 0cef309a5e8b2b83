"""Strict structure validation with hl7apy against the message's declared HL7 version.

hl7apy is the project's HL7 structure library, used when a source sets ``strict: true``.
It costs milliseconds per message (bench/run.py prints the figure), which is why the hot
path parses with gateway.hl7v2.er7 and this check is opt-in per source.
"""

from __future__ import annotations

import re

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException
from hl7apy.parser import parse_message

from gateway.errors import InvalidMessage
from gateway.hl7v2.message import V2Message

_FIELD = re.compile(r"\b([A-Z][A-Z0-9]{2})_(\d+)\b")
_SEGMENT = re.compile(r"\b([A-Z][A-Z0-9]{2})\b")
_STANDARD_SEGMENTS = frozenset(
    [
        "MSH",
        "SFT",
        "EVN",
        "PID",
        "PD1",
        "NK1",
        "PV1",
        "PV2",
        "ROL",
        "DB1",
        "OBX",
        "AL1",
        "DG1",
        "DRG",
        "PR1",
        "GT1",
        "IN1",
        "IN2",
        "IN3",
        "ACC",
        "UB1",
        "UB2",
        "PDA",
        "RF1",
        "AUT",
        "CTD",
        "PRD",
        "OBR",
        "NTE",
        "MSA",
        "ERR",
        "ORC",
        "TQ1",
        "SPM",
        "MRG",
    ]
)


def validate_structure(raw: bytes, message: V2Message) -> None:
    """Fail with InvalidMessage naming the segment when hl7apy finds the structure invalid."""
    text = raw.decode("utf-8", "replace").replace("\r\n", "\r").replace("\n", "\r").strip()
    try:
        parsed = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        parsed.validate()
    except (HL7apyException, ValueError, KeyError, IndexError) as exc:
        detail = str(exc) or type(exc).__name__
        # Words like "HL7" look like segment names; trust only real ones.
        known = set(message.tree) | _STANDARD_SEGMENTS
        field = [f for f in _FIELD.findall(detail) if f[0] in known]
        segments = [name for name in _SEGMENT.findall(detail) if name in known]
        where = f"{field[-1][0]}.{field[-1][1]}" if field else segments[-1] if segments else "MSH"
        raise InvalidMessage(
            f"not a valid {message.message_type} for HL7 {message.version}: {detail}",
            expression=where,
        ) from None
