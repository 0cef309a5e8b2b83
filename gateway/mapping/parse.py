"""Parsing mapping path text (a small FHIRPath subset) into the syntax tree of ``syntax``.

Supported: ``%context`` and ``ResourceType`` roots, relative paths (from ``$this``), element
steps, ``where(a.b = 'x' and c != 'y')``, ``ofType(Type)``, ``resolve()``, ``first()``,
``last()``, ``exists()``, ``extension('url')``, and ``A | B`` (union, so a single-valued rule
takes the first non-empty alternative). Every value is a collection, as in FHIRPath, so JSON
and XML input (where repetition is not visible) evaluate the same way.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache
from typing import Any

from gateway.mapping.syntax import (
    Alternative,
    CompiledPath,
    Condition,
    ContextRoot,
    Element,
    Exists,
    Extension,
    First,
    Last,
    MessageRoot,
    Numbered,
    OfType,
    Resolve,
    Root,
    Step,
    Term,
    ThisRoot,
    TypeRoot,
    Where,
)

#: What a JSON document's own keys are consumed under (``consumed`` of a top-level path).
DOCUMENT = "$"


class PathSyntaxError(ValueError):
    """The path text is not in the supported FHIRPath subset."""


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+)|(?P<op>!=|[.()|=,])"
    r"|(?P<var>%[A-Za-z_][A-Za-z0-9_]*)|(?P<this>\$this)|(?P<id>[A-Za-z_][A-Za-z0-9_]*))"
)
_SIMPLE: dict[str, Step] = {
    "resolve": Resolve(),
    "first": First(),
    "last": Last(),
    "exists": Exists(),
}


def _tokens(text: str) -> tuple[list[tuple[str, str]], list[int]]:
    """Split path text into (kind, value) tokens, with where each token ends in the text."""
    out: list[tuple[str, str]] = []
    ends: list[int] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise PathSyntaxError(f"unexpected {text[pos : pos + 10]!r} at column {pos + 1}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        ends.append(match.end())
        pos = match.end()
    return out, ends


class _Parser:
    """Recursive-descent parser producing the syntax tree and what the path reads."""

    def __init__(self, text: str, relative: bool, segments: bool, document: bool = False) -> None:
        self.text = text
        self.toks, self.ends = _tokens(text.strip())
        self.pos = 0
        self.relative = relative
        self.segments = segments
        #: JSON sources: a path starting with an element name reads the document itself.
        self.document = document
        # HL7 v2 paths name fields and components by number (PID.3.1).
        self.name_kinds: tuple[str, ...] = ("id", "num") if segments else ("id",)
        self.contexts: set[str] = set()
        self.consumed: set[tuple[str, str]] = set()
        self.term_names: list[str] = []
        self.whole_segments: set[str] = set()

    def element(self, name: str) -> Element | Numbered:
        """An element step; HL7 v2 numbered steps read a plain component as its part 1."""
        return Numbered(name) if self.segments and name.isdigit() else Element(name)

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            want = value or "more"
            raise PathSyntaxError(f"expected {want!r} in {self.text!r}")
        self.pos += 1
        return tok

    def union(self) -> CompiledPath:
        alternatives = [self.path()]
        while self.peek() == ("op", "|"):
            self.take("|")
            alternatives.append(self.path())
        if self.peek() is not None:
            raise PathSyntaxError(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return CompiledPath(
            self.text,
            tuple(alternatives),
            frozenset(self.contexts),
            frozenset(self.consumed),
            frozenset(self.whole_segments),
        )

    def path(self) -> Alternative:
        start = self.pos
        kind, value = self.take()
        steps: list[Step] = []
        root: Root
        context: str | None = None
        if kind == "var":
            context = value[1:]
            root = ContextRoot(context)
            self.contexts.add(context)
        elif kind == "this":
            root = ThisRoot()
        elif kind == "id" and value[0].isupper() and not self.relative and self.segments:
            # HL7 v2: a root names a segment of the message (PID, PRD, ZSP...).
            root = MessageRoot()
            steps.append(Element(value))
            context = "@" + value
        elif kind == "id" and self.document and not self.relative:
            # JSON: a top-level key of the document (person, referrer, needs...).
            root = MessageRoot()
            steps.append(Element(value))
            self.consumed.add((DOCUMENT, value))
        elif kind == "id" and value[0].isupper() and not self.relative:
            root = TypeRoot(value)
        elif kind in self.name_kinds:
            root = ThisRoot()
            steps.append(self.element(value))
        else:
            raise PathSyntaxError(f"a path cannot start with {value!r} in {self.text!r}")
        keys: list[str] = [value] if steps else []
        if isinstance(root, MessageRoot):
            keys = [("$" if self.document else "@") + value]
        named = False
        while self.peek() == ("op", "."):
            self.take(".")
            self.term_names = []
            step, name = self.step()
            segment = context is not None and context.startswith("@")
            if segment and not named:
                # where() on a segment reads the fields its terms name.
                self.consumed.update((context, n) for n in self.term_names)  # type: ignore[misc]
            if context is not None and name is not None and not named:
                # The first element step names what the path reads of its context.
                self.consumed.add((context, name))
                named = True
            steps.append(step)
            keys.append("".join(v for _, v in self.toks[start : self.pos]))
        if context is not None and context.startswith("@"):
            if len(steps) == 1:
                self.consumed.add((context, ""))  # the whole segment is read
            if not any(isinstance(s, Element | Numbered) for s in steps[1:]):
                self.whole_segments.add(context)
        elif self.relative and steps and isinstance(steps[0], Element | Numbered):
            self.consumed.add(("$this", steps[0].name))
        memo = kind in ("var", "id") and not (kind == "id" and isinstance(root, ThisRoot))
        begin = self.ends[start - 1] if start else 0
        source = self.text.strip()[begin : self.ends[self.pos - 1]].strip()
        return Alternative(root, tuple(steps), tuple(keys), memo, source)

    def step(self) -> tuple[Step, str | None]:
        kind, name = self.take()
        if kind not in self.name_kinds:
            raise PathSyntaxError(
                f"expected an element name after '.', got {name!r} in {self.text!r}"
            )
        if self.peek() != ("op", "("):
            return self.element(name), name
        self.take("(")
        if name == "where":
            cond = self.condition()
            self.take(")")
            return Where(cond), None
        if name == "ofType":
            _, rtype = self.take()
            self.take(")")
            return OfType(rtype), None
        if name == "extension":
            kind, url = self.take()
            if kind != "str":
                raise PathSyntaxError(f"extension() takes a quoted url in {self.text!r}")
            self.take(")")
            return Extension(url[1:-1]), "extension"
        self.take(")")
        if name not in _SIMPLE:
            raise PathSyntaxError(f"unknown function {name}() in {self.text!r}")
        return _SIMPLE[name], None

    def condition(self) -> Condition:
        """Terms joined by ``and``, groups of those joined by ``or`` (and binds tighter)."""
        groups = [self.conjunction()]
        while self.peek() == ("id", "or"):
            self.take("or")
            groups.append(self.conjunction())
        return tuple(groups)

    def conjunction(self) -> tuple[Term, ...]:
        terms = [self.term()]
        while self.peek() == ("id", "and"):
            self.take("and")
            terms.append(self.term())
        return tuple(terms)

    def term(self) -> Term:
        names: list[str] = [self.take()[1]]
        self.term_names.append(names[0])
        func: str | None = None
        while self.peek() == ("op", "."):
            self.take(".")
            name = self.take()[1]
            if self.peek() == ("op", "("):
                self.take("(")
                self.take(")")
                func = name
                break
            names.append(name)
        if func == "exists":
            return Term(tuple(names), "exists", None)
        if func is not None:
            raise PathSyntaxError(f"only exists() may end a where() term in {self.text!r}")
        _, op = self.take()
        if op not in ("=", "!="):
            raise PathSyntaxError(f"expected = or != in where() of {self.text!r}")
        return Term(tuple(names), op, self.literal())

    def literal(self) -> Any:
        kind, value = self.take()
        if kind == "str":
            return value[1:-1].replace("\\'", "'")
        if kind == "num":
            if self.peek() == ("op", ".") and self.pos + 1 < len(self.toks):
                self.take(".")
                return float(f"{value}.{self.take()[1]}")
            return int(value)
        if value in ("true", "false"):
            return value == "true"
        raise PathSyntaxError(f"expected a literal, got {value!r} in {self.text!r}")


def compile_path(
    text: str, *, relative: bool = False, segments: bool = False, document: bool = False
) -> CompiledPath:
    """Parse path text; ``relative`` paths start from ``$this`` (inside ``fields``).

    With ``segments`` (HL7 v2 sources) a capitalised root names a segment and steps may be
    field, component and sub-component numbers: ``PID.3.where(5 = 'NH').1``. With
    ``document`` (JSON sources) a top-level path starting with an element name reads that
    key of the document: ``person.nhs_number``.
    """
    if not isinstance(text, str) or not text.strip():
        raise PathSyntaxError("a path must be a non-empty string")
    # Layers shared by several sources repeat their paths: parse each text once. The tree
    # is immutable; each caller still gets its own CompiledPath object.
    return replace(_parsed(text, relative, segments, document))


@lru_cache(maxsize=4096)
def _parsed(text: str, relative: bool, segments: bool, document: bool) -> CompiledPath:
    """The parsed path (kept for the next identical text)."""
    return _Parser(text, relative, segments, document).union()
