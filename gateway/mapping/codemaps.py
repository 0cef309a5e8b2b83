"""Code maps: source codes to record codes, as data, with an explicit policy for unknown codes."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from gateway.errors import UnknownCode
from gateway.mapping.transforms import MapState

POLICIES = ("keep", "default", "reject")

_unmapped: Counter[tuple[str, str, str]] = Counter()
_unmapped_lock = threading.Lock()


def unmapped_counts() -> dict[tuple[str, str, str], int]:
    """How often each (source, code map, code) was not found; codes only, no patient data."""
    with _unmapped_lock:
        return dict(_unmapped)


@dataclass(frozen=True)
class CodeMap:
    """One code map.

    ``system`` limits the map to codings from one code system (others pass through unchanged);
    ``unknown`` is the policy for a code not in ``entries``: keep it as sent, use ``default``,
    or reject the message. Every keep or default is recorded as a diagnostic and counted.
    """

    name: str
    source: str
    entries: dict[str, Any]
    unknown: str
    default: Any = None
    system: str | None = None

    def apply(self, value: Any, state: MapState) -> Any:
        """Map one value: a plain code, or a {system, code, display} coding."""
        if isinstance(value, dict):
            if self.system is not None and value.get("system") != self.system:
                return value
            key = value.get("code")
        else:
            key = value
        if isinstance(key, str) and key in self.entries:
            return self.entries[key]
        with _unmapped_lock:
            _unmapped[(self.source, self.name, str(key))] += 1
        where = f" from {self.system}" if self.system else ""
        if self.unknown == "reject":
            raise UnknownCode(
                f"code {key!r}{where} is not in code map {self.name}", expression=state.location
            )
        if self.unknown == "default":
            state.diagnose(
                "unmapped-code",
                f"code {key!r}{where} is not in code map {self.name}; used the default",
            )
            return self.default
        state.diagnose(
            "unmapped-code", f"code {key!r}{where} is not in code map {self.name}; kept as sent"
        )
        return value
