"""The syntax tree of a mapping path: frozen dataclasses, produced by ``parse``.

A path is a union of alternatives (``A | B``: the first that selects anything); each
alternative is a root and a tuple of steps. The code generator and the reference
interpreter both read this tree with ``match``; nothing here runs a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ContextRoot:
    """``%name``: the resource a named context holds."""

    name: str


@dataclass(frozen=True, slots=True)
class TypeRoot:
    """``ResourceType``: the message itself when it is of that type."""

    rtype: str


@dataclass(frozen=True, slots=True)
class MessageRoot:
    """The whole message (an HL7 v2 path starting with a segment name)."""


@dataclass(frozen=True, slots=True)
class ThisRoot:
    """``$this``: the item a relative path (inside ``fields``) starts from."""


Root = ContextRoot | TypeRoot | MessageRoot | ThisRoot


@dataclass(frozen=True, slots=True)
class Element:
    """An element step: ``name`` of every node, lists flattened."""

    name: str


@dataclass(frozen=True, slots=True)
class Numbered:
    """An HL7 v2 field, component or sub-component number; part 1 of plain text is the text."""

    name: str


@dataclass(frozen=True, slots=True)
class Term:
    """One where() term: element names below the item, ``=``/``!=``/``exists``, a literal."""

    names: tuple[str, ...]
    op: str
    literal: Any


#: A where() condition: groups of terms joined by ``or``; the terms of a group by ``and``.
Condition = tuple[tuple[Term, ...], ...]


@dataclass(frozen=True, slots=True)
class Where:
    """``where(...)``: the items for which the condition holds."""

    condition: Condition


@dataclass(frozen=True, slots=True)
class OfType:
    """``ofType(Type)``: the resources of that type (they count as used)."""

    rtype: str


@dataclass(frozen=True, slots=True)
class Extension:
    """``extension('url')``: the extensions with that url."""

    url: str


@dataclass(frozen=True, slots=True)
class Resolve:
    """``resolve()``: the resources the References point at (they count as used)."""


@dataclass(frozen=True, slots=True)
class First:
    """``first()``."""


@dataclass(frozen=True, slots=True)
class Last:
    """``last()``."""


@dataclass(frozen=True, slots=True)
class Exists:
    """``exists()``: one boolean."""


Step = Element | Numbered | Where | OfType | Extension | Resolve | First | Last | Exists


@dataclass(frozen=True, slots=True)
class Alternative:
    """One ``|`` alternative: a root and steps; ``keys`` name each prefix.

    Rules often share prefixes (``%referral.supportingInfo.resolve()``); generated code
    computes each ``memo`` alternative's prefix once per message, keyed by its text.
    Relative paths depend on ``$this`` and are never shared.
    """

    root: Root
    steps: tuple[Step, ...]
    keys: tuple[str, ...]
    memo: bool
    #: The alternative as written (for messages and ``--explain``).
    text: str = ""


@dataclass(frozen=True, slots=True)
class CompiledPath:
    """One parsed path or union of paths; ``text`` is kept for messages."""

    text: str
    alternatives: tuple[Alternative, ...]
    contexts: frozenset[str]
    consumed: frozenset[tuple[str, str]]
    #: HL7 v2 segments whose occurrences this path selects whole (OBX.where(...)).
    selects_segments: frozenset[str] = frozenset()


def element_name(step: Step) -> str | None:
    """The element an element step reads (a v2 number other than 1 too), else None."""
    match step:
        case Element(name):
            return name
        case Numbered(name) if name != "1":
            return name
    return None
