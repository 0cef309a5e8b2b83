"""``gateway translate --explain``: which rule filled each record item, from which element.

The explanation comes from the reference interpreter (``interpret``), not from the
generated program; a test holds the two to the same record on every fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.golden import translate_file
from gateway.mapping.engine import Mapping
from gateway.mapping.interpret import Placement

#: Diagnostics that name something in the message no rule placed.
UNPLACED_CODES = ("unused-resource", "unused-element", "unused-segment", "unused-field")


@dataclass(frozen=True)
class Explanation:
    """A translation by the reference interpreter: ("record"|"outcome", document), how."""

    kind: str
    document: Any
    placements: tuple[Placement, ...]

    @property
    def unplaced(self) -> list[dict[str, str]]:
        """The message's resources, elements, segments and fields no rule placed."""
        if self.kind != "record":
            return []
        return [d for d in self.document.get("diagnostics", []) if d["code"] in UNPLACED_CODES]


def explain_file(mappings: dict[str, Mapping], source: str, path: Path) -> Explanation:
    """Translate one message file for ``source`` with the reference interpreter."""
    placements: list[Placement] = []
    explaining = dict(mappings)
    explaining[source] = mappings[source].explaining(placements)
    kind, document = translate_file(explaining, source, path)
    return Explanation(kind, document, tuple(placements))


def _short(where: str) -> str:
    """A rule's ``file:line`` with the file relative to the working folder when inside it."""
    file, _, line = where.rpartition(":")
    try:
        return f"{Path(file).resolve().relative_to(Path.cwd())}:{line}"
    except ValueError:
        return where


def render_explanation(explanation: Explanation) -> str:
    """The explanation as text: one line per record item, then what was left unplaced."""
    lines = ["record items (item <- element, rule):"]
    width = max((len(p.item) for p in explanation.placements), default=0)
    for placed in explanation.placements:
        lines.append(f"  {placed.item:<{width}}  <- {placed.element}  ({_short(placed.rule)})")
    if explanation.kind == "outcome":
        issue = explanation.document["outcome"].get("issue", [{}])[0]
        lines.append(f"refused: {issue.get('code', '')}: {issue.get('diagnostics', '')}")
        return "\n".join(lines) + "\n"
    unplaced = explanation.unplaced
    lines.append(f"unplaced ({len(unplaced)}):")
    for item in unplaced:
        lines.append(f"  {item['location']}  ({item['code']}: {item['message']})")
    return "\n".join(lines) + "\n"
