"""A small FHIRPath subset, compiled once at load into chains of Python closures.

Supported: ``%context`` and ``ResourceType`` roots, relative paths (from ``$this``), element
steps, ``where(a.b = 'x' and c != 'y')``, ``ofType(Type)``, ``resolve()``, ``first()``,
``last()``, ``exists()``, ``extension('url')``, and ``A | B`` (union, so a single-valued rule
takes the first non-empty alternative). Every value is a collection, as in FHIRPath, so JSON
and XML input (where repetition is not visible) evaluate the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Collection = list[Any]


class PathSyntaxError(ValueError):
    """The path text is not in the supported FHIRPath subset."""


@dataclass
class Env:
    """What a path sees while one message is mapped."""

    root: dict[str, Any]
    index: ResourceIndex
    contexts: dict[str, Collection] = field(default_factory=dict)
    this: Any = None
    touched: set[int] = field(default_factory=set)
    memo: dict[str, Collection] = field(default_factory=dict)


class ResourceIndex:
    """Finds the resource a Reference points at: bundle fullUrl, Type/id, or #contained.

    A ``#id`` reference names a resource contained in the same resource as the reference.
    When only one container in the message has that id (the usual case) it is found
    directly; otherwise the containers are searched for the reference itself.
    """

    def __init__(self, root: dict[str, Any]) -> None:
        self.by_key: dict[str, dict[str, Any]] = {}
        #: (position in Bundle.entry, resource) of every entry holding a resource.
        self.entries: list[tuple[int, dict[str, Any]]] = []
        self.contained: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        if root.get("resourceType") != "Bundle":
            self._add(root, None)
            return
        by_key, listed = self.by_key, self.entries.append
        for position, entry in enumerate(_as_list(root.get("entry"))):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue
            listed((position, resource))
            full_url = entry.get("fullUrl")
            if type(full_url) is str and full_url not in by_key:
                by_key[full_url] = resource
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if type(rtype) is str and type(rid) is str:
                by_key.setdefault(f"{rtype}/{rid}", resource)
            if "contained" in resource:
                self._add_contained(resource)

    def _add(self, resource: dict[str, Any], full_url: Any) -> None:
        """Index one resource by its fullUrl and Type/id, and its contained resources by #id."""
        if isinstance(full_url, str):
            self.by_key.setdefault(full_url, resource)
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(rtype, str) and isinstance(rid, str):
            self.by_key.setdefault(f"{rtype}/{rid}", resource)
        self._add_contained(resource)

    def _add_contained(self, resource: dict[str, Any]) -> None:
        """Index the resources contained in ``resource`` by #id."""
        for inner in _as_list(resource.get("contained")):
            if isinstance(inner, dict) and isinstance(inner.get("id"), str):
                self.contained.setdefault("#" + inner["id"], []).append((resource, inner))

    def resolve(self, reference: str, holder: Any = None) -> dict[str, Any] | None:
        """The resource a reference string names, or None; ``holder`` is the Reference."""
        if reference.startswith("#"):
            candidates = self.contained.get(reference)
            if not candidates:
                return None
            if len(candidates) == 1 or holder is None:
                return candidates[0][1]
            for container, inner in candidates:
                if _holds_node(container, holder):
                    return inner
            return None
        found = self.by_key.get(reference)
        if found is None and "/" in reference and not reference.startswith("urn:"):
            parts = reference.rstrip("/").split("/")
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            found = self.by_key.get("/".join(parts[-2:]))
        return found


def _holds_node(tree: Any, node: Any) -> bool:
    """Whether ``node`` (by identity) is inside ``tree``."""
    if tree is node:
        return True
    if isinstance(tree, dict):
        return any(_holds_node(v, node) for v in tree.values())
    if isinstance(tree, list):
        return any(_holds_node(v, node) for v in tree)
    return False


def _as_list(value: Any) -> Collection:
    """A FHIR JSON value as a collection."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


Step = Callable[[Collection, Env], Collection]


@dataclass(frozen=True)
class Term:
    """One where() term: element names below the item, ``=``/``!=``/``exists``, a literal."""

    names: tuple[str, ...]
    op: str
    literal: Any


#: A where() condition: groups of terms joined by ``or``; the terms of a group by ``and``.
Condition = tuple[tuple[Term, ...], ...]


@dataclass(frozen=True)
class CompiledPath:
    """One compiled path or union of paths; ``text`` is kept for messages."""

    text: str
    alternatives: tuple[Alternative, ...]
    contexts: frozenset[str]
    consumed: frozenset[tuple[str, str]]
    #: HL7 v2 segments whose occurrences this path selects whole (OBX.where(...)).
    selects_segments: frozenset[str] = frozenset()

    evaluate: Callable[[Env], Collection] = field(init=False, repr=False, compare=False)
    first: Callable[[Env], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        runs = [alt.run for alt in self.alternatives]
        if len(runs) == 1:
            run = runs[0]

            def evaluate(env: Env) -> Collection:
                """Every value the path selects."""
                return run(env)

            def first(env: Env) -> Any:
                """The first value the path selects, or None."""
                col = run(env)
                return col[0] if col else None

        else:

            def evaluate(env: Env) -> Collection:
                """Every value of the first alternative that selects anything (a fallback)."""
                for each in runs:
                    col = each(env)
                    if col:
                        return col
                return []

            def first(env: Env) -> Any:
                """The first value of the first alternative that selects anything, or None."""
                for each in runs:
                    col = each(env)
                    if col:
                        return col[0]
                return None

        object.__setattr__(self, "evaluate", evaluate)
        object.__setattr__(self, "first", first)


@dataclass(frozen=True)
class Alternative:
    """One ``|`` alternative: a root and steps; ``keys`` name each prefix for the memo.

    Rules often share prefixes (``%referral.supportingInfo.resolve()``); absolute paths
    memoise each prefix's collection per message so that shared work is done once.
    Relative paths depend on ``$this`` and are never memoised. ``run`` is generated Python
    (element steps inlined), because path evaluation is most of the mapping hot path.
    """

    root: Callable[[Env], Collection]
    steps: tuple[Step, ...]
    keys: tuple[str, ...]
    memo: bool
    run: Callable[[Env], Collection] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run", _generate(self))


def _many(col: Collection, name: str) -> Collection:
    """Element ``name`` of every node in ``col``, flattened."""
    out: Collection = []
    for item in col:
        if type(item) is dict:
            value = item.get(name)
            if value is None:
                continue
            if type(value) is list:
                out.extend(value)
            else:
                out.append(value)
    return out


def _generate(alt: Alternative) -> Callable[[Env], Collection]:
    """Compile an alternative into one Python function (no per-step calls for elements)."""
    names: dict[str, Any] = {"_root": alt.root, "_many": _many}
    lines = ["def run(env):", "    col = _root(env)"]
    if alt.memo and len(alt.steps) > 1:
        lines.append("    cache = env.memo")
    last = len(alt.steps) - 1
    for i, step in enumerate(alt.steps):
        element = getattr(step, "element", None)
        names[f"_k{i}"] = alt.keys[i] if i < len(alt.keys) else ""
        if element is not None:
            names[f"_e{i}"] = element
            body = [
                "if len(col) == 1:",
                "    _i = col[0]",
                f"    _v = _i.get(_e{i}) if type(_i) is dict else None",
                "    c = [] if _v is None else (_v if type(_v) is list else [_v])",
                "else:",
                f"    c = _many(col, _e{i})",
            ]
        else:
            names[f"_s{i}"] = step
            body = [f"c = _s{i}(col, env)"]
        if alt.memo and i < last:
            lines.append(f"    c = cache.get(_k{i})")
            lines.append("    if c is None:")
            lines += ["        " + b for b in body]
            lines.append(f"        cache[_k{i}] = c")
        else:
            lines += ["    " + b for b in body]
        lines.append("    col = c")
    lines.append("    return col")
    # The source is built above from fixed templates; names travel as bound values.
    exec("\n".join(lines), names)
    return names["run"]  # type: ignore[no-any-return]


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+)|(?P<op>!=|[.()|=,])"
    r"|(?P<var>%[A-Za-z_][A-Za-z0-9_]*)|(?P<this>\$this)|(?P<id>[A-Za-z_][A-Za-z0-9_]*))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    """Split path text into (kind, value) tokens."""
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise PathSyntaxError(f"unexpected {text[pos : pos + 10]!r} at column {pos + 1}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    """Recursive-descent parser producing step closures."""

    def __init__(self, text: str, relative: bool, segments: bool) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.pos = 0
        self.relative = relative
        self.segments = segments
        # HL7 v2 paths name fields and components by number (PID.3.1).
        self.name_kinds: tuple[str, ...] = ("id", "num") if segments else ("id",)
        self.contexts: set[str] = set()
        self.consumed: set[tuple[str, str]] = set()
        self.term_names: list[str] = []
        self.whole_segments: set[str] = set()

    def element(self, name: str) -> Step:
        """An element step; HL7 v2 numbered steps read a plain component as its part 1."""
        return _numbered(name) if self.segments and name.isdigit() else _element(name)

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
        root: Callable[[Env], Collection]
        context: str | None = None
        if kind == "var":
            context = value[1:]
            root = _context_root(context)
            self.contexts.add(context)
        elif kind == "this":
            root = _this_root
        elif kind == "id" and value[0].isupper() and not self.relative and self.segments:
            # HL7 v2: a root names a segment of the message (PID, PRD, ZSP...).
            root = _message_root
            steps.append(_element(value))
            context = "@" + value
        elif kind == "id" and value[0].isupper() and not self.relative:
            root = _type_root(value)
        elif kind in self.name_kinds:
            root = _this_root
            steps.append(self.element(value))
        else:
            raise PathSyntaxError(f"a path cannot start with {value!r} in {self.text!r}")
        keys: list[str] = [value] if steps else []
        if root is _message_root:
            keys = ["@" + value]
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
            deeper = (
                getattr(step, "element", None) or getattr(step, "numbered", None)
                for step in steps[1:]
            )
            if not any(deeper):
                self.whole_segments.add(context)
        elif self.relative and steps:
            name = getattr(steps[0], "element", None) or getattr(steps[0], "numbered", None)
            if isinstance(name, str):
                self.consumed.add(("$this", name))
        memo = kind in ("var", "id") and not (kind == "id" and root is _this_root)
        return Alternative(root, tuple(steps), tuple(keys), memo)

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
            return _where(cond), None
        if name == "ofType":
            _, rtype = self.take()
            self.take(")")
            return _of_type(rtype), None
        if name == "extension":
            kind, url = self.take()
            if kind != "str":
                raise PathSyntaxError(f"extension() takes a quoted url in {self.text!r}")
            self.take(")")
            return _extension(url[1:-1]), "extension"
        self.take(")")
        simple = {"resolve": _resolve, "first": _first, "last": _last, "exists": _exists}
        if name not in simple:
            raise PathSyntaxError(f"unknown function {name}() in {self.text!r}")
        return simple[name], None

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


def _context_root(name: str) -> Callable[[Env], Collection]:
    def root(env: Env) -> Collection:
        return env.contexts.get(name, [])

    root.context = name  # type: ignore[attr-defined]
    return root


def _message_root(env: Env) -> Collection:
    return [env.root]


def _this_root(env: Env) -> Collection:
    return [env.this] if env.this is not None else []


def _type_root(rtype: str) -> Callable[[Env], Collection]:
    def root(env: Env) -> Collection:
        return [env.root] if env.root.get("resourceType") == rtype else []

    root.rtype = rtype  # type: ignore[attr-defined]
    return root


def _element(name: str) -> Step:
    """Element ``name`` of each node (generated code inlines this; relative paths call it)."""

    def step(col: Collection, env: Env) -> Collection:
        return _many(col, name)

    step.element = name  # type: ignore[attr-defined]
    return step


def _numbered(name: str) -> Step:
    """HL7 v2 field/component/sub-component ``name``: text with no parts is its own part 1."""

    def step(col: Collection, env: Env) -> Collection:
        if name != "1" or not any(type(item) is str for item in col):
            return _many(col, name)
        out: Collection = []
        for item in col:  # keep the order when plain text and parts are mixed
            out.extend([item] if type(item) is str else _many([item], name))
        return out

    step.numbered = name  # type: ignore[attr-defined]
    return step


def _relative_getter(names: Sequence[str]) -> Callable[[Any], Collection]:
    """Values at ``names`` below one item (a where() term's left side)."""
    if len(names) == 1 and not names[0].isdigit():
        name = names[0]

        def get_one(item: Any) -> Collection:
            value = item.get(name) if type(item) is dict else None
            if value is None:
                return []
            return value if type(value) is list else [value]

        return get_one
    steps = [_numbered(n) if n.isdigit() else _element(n) for n in names]

    def get(item: Any) -> Collection:
        col: Collection = [item]
        for step in steps:
            col = step(col, _NO_ENV)
        return col

    return get


_NO_ENV = Env(root={}, index=ResourceIndex({}))


def _term_test(term: Term) -> Callable[[Any, Env], bool]:
    """One where() term as a test of one item."""
    getter = _relative_getter(term.names)
    if term.op == "exists":
        return lambda item, env: bool(getter(item))
    literal = term.literal
    if isinstance(literal, bool):
        # XML carries booleans as text: match both forms.
        forms = (literal, "true" if literal else "false")
        if term.op == "=":
            return lambda item, env: any(f in forms for f in getter(item))
        return lambda item, env: not any(f in forms for f in getter(item))
    if term.op == "=":
        return lambda item, env: literal in getter(item)
    return lambda item, env: literal not in getter(item)


def _conjunction_test(terms: tuple[Term, ...]) -> Callable[[Any, Env], bool]:
    """Terms joined by ``and``."""
    tests = [_term_test(t) for t in terms]
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        one, two = tests
        return lambda item, env: one(item, env) and two(item, env)
    return lambda item, env: all(t(item, env) for t in tests)


def condition_test(cond: Condition) -> Callable[[Any, Env], bool]:
    """A where() condition as a test of one item: groups of terms joined by ``or``."""
    groups = [_conjunction_test(g) for g in cond]
    if len(groups) == 1:
        return groups[0]
    return lambda item, env: any(g(item, env) for g in groups)


def _where(cond: Condition) -> Step:
    test = condition_test(cond)

    def step(col: Collection, env: Env) -> Collection:
        return [item for item in col if test(item, env)]

    step.condition = cond  # type: ignore[attr-defined]
    return step


def _of_type(rtype: str) -> Step:
    def step(col: Collection, env: Env) -> Collection:
        out = [i for i in col if isinstance(i, dict) and i.get("resourceType") == rtype]
        env.touched.update(id(i) for i in out)
        return out

    step.of_type = rtype  # type: ignore[attr-defined]
    return step


def _extension(url: str) -> Step:
    def step(col: Collection, env: Env) -> Collection:
        out: Collection = []
        for item in col:
            if isinstance(item, dict):
                out.extend(e for e in _as_list(item.get("extension")) if e.get("url") == url)
        return out

    step.extension_url = url  # type: ignore[attr-defined]
    return step


def _resolve(col: Collection, env: Env) -> Collection:
    """The resources the References in ``col`` point at (generated code inlines this)."""
    out: Collection = []
    for item in col:
        ref = item.get("reference") if isinstance(item, dict) else None
        if isinstance(ref, str):
            found = env.index.resolve(ref, item)
            if found is not None:
                env.touched.add(id(found))
                out.append(found)
    return out


def _first(col: Collection, env: Env) -> Collection:
    return col[:1]


def _last(col: Collection, env: Env) -> Collection:
    return col[-1:]


def _exists(col: Collection, env: Env) -> Collection:
    return [bool(col)]


def compile_path(text: str, *, relative: bool = False, segments: bool = False) -> CompiledPath:
    """Compile path text; ``relative`` paths start from ``$this`` (inside ``fields``).

    With ``segments`` (HL7 v2 sources) a capitalised root names a segment and steps may be
    field, component and sub-component numbers: ``PID.3.where(5 = 'NH').1``.
    """
    if not isinstance(text, str) or not text.strip():
        raise PathSyntaxError("a path must be a non-empty string")
    return _Parser(text, relative, segments).union()
