"""A source's whole mapping compiled into one generated Python function.

The function computes the contexts, then every rule in file order, and builds the record's
sections directly. Path prefixes that several rules share (``%referral.supportingInfo
.resolve()``) are computed once per message into local variables, in the order the rules
first need them, and union alternatives stay lazy, so what is evaluated (and so which
resources count as used) is exactly what the rule-by-rule evaluation would do.
Generated code is built from fixed templates; every name or value from a mapping file
travels as a bound constant or as the ``repr`` of an identifier-like element name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from gateway.errors import RequiredMissing
from gateway.mapping.compile import Compiled, Rule
from gateway.mapping.compile import Condition as When
from gateway.mapping.paths import (
    Alternative,
    CompiledPath,
    Env,
    Term,
    _many,
    _message_root,
    _resolve,
    _term_test,
)
from gateway.mapping.transforms import MapState

#: The generated function: (message, env, state) -> record sections in schema order.
Program = Callable[[dict[str, Any], Env, MapState], dict[str, Any]]
_MISSING = object()


class _Emitter:
    """Collects generated lines and constants; tracks which memo locals are surely set."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"_many": _many, "_MISSING": _MISSING}
        self.depth = 1
        self.counter = 0
        self.memo: dict[str, str] = {}
        self.assigned: set[str] = set()  # memo locals set somewhere earlier in the code
        self.tested: set[str] = set()  # memo locals read before surely set: start as None
        self.defined: set[str] = set()  # memo locals surely set at this point
        self.functions: list[str] = []  # helper functions generated beside ``run``
        self.nodes: dict[str, str] = {}  # context name -> local holding its dict (or None)
        self.sections: dict[str, str] = {}  # record section -> local holding its dict
        self.used: set[str] = set()  # env helpers the code uses, bound once per message
        #: How many alternatives (in all of the mapping's paths) reach each memo key.
        self.uses: dict[str, int] = {}

    def emit(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    def var(self, stem: str = "v") -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def const(self, value: Any, stem: str = "k") -> str:
        name = f"_{stem}{len(self.names)}"
        self.names[name] = value
        return name

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """A conditional or loop body: memo locals it sets are not surely set after it."""
        self.emit(header)
        self.depth += 1
        outer = set(self.defined)
        try:
            yield
        finally:
            if self.lines[-1].strip().endswith(":"):
                self.emit("pass")
            self.depth -= 1
            self.defined = outer


def _element_step(em: _Emitter, col: str, name: str, out: str | None = None) -> str:
    """Inline code for element ``name`` of every node in ``col``; returns the result's local.

    ``_i`` and ``_e`` are scratch locals, dead after each step (fewer locals in the frame).
    """
    out, item, value = out or em.var("c"), "_i", "_e"
    key = repr(name)
    em.emit(f"if len({col}) == 1:")
    em.emit(f"    {item} = {col}[0]")
    em.emit(f"    {value} = {item}.get({key}) if type({item}) is dict else None")
    em.emit(
        f"    {out} = [] if {value} is None else ({value} if type({value}) is list else [{value}])"
    )
    em.emit(f"elif {col}:")
    em.emit(f"    {out} = _many({col}, {key})")
    em.emit("else:")
    em.emit(f"    {out} = []")
    return out


def _part_one_step(em: _Emitter, col: str, step: Any, out: str | None = None) -> str:
    """HL7 v2 part 1 of one node inline (plain text is its own part 1); else the step."""
    out, item, value = out or em.var("c"), "_i", "_e"
    em.emit(f"if len({col}) == 1:")
    em.emit(f"    {item} = {col}[0]")
    em.emit(f"    if type({item}) is str:")
    em.emit(f"        {out} = [{item}]")
    em.emit("    else:")
    em.emit(f"        {value} = {item}.get('1') if type({item}) is dict else None")
    em.emit(
        f"        {out} = [] if {value} is None else "
        f"({value} if type({value}) is list else [{value}])"
    )
    em.emit("else:")
    em.emit(f"    {out} = {em.const(step, 's')}({col}, env)")
    return out


def _term_expr(em: _Emitter, term: Term, item: str) -> str:
    """A where() term as a Python expression over the local ``item``."""
    literal = term.literal
    if "1" in term.names and term.op == "exists":
        return f"{em.const(_term_test(term), 't')}({item}, env)"  # HL7 v2 numbered part 1
    if term.op == "exists":
        return f"{_term_function(em, term)}({item})"
    if isinstance(literal, bool):
        # XML carries booleans as text: match both forms.
        forms = em.const((literal, "true" if literal else "false"), "l")
        found = f"{_term_function(em, term, forms)}({item})"
    elif len(term.names) == 1 and term.names[0] != "1":
        lit, value = em.const(literal, "l"), "_w"
        key = repr(term.names[0])
        found = (
            f"(type({item}) is dict and ({lit} in {value} if type({value} := {item}.get({key}))"
            f" is list else {value} == {lit}))"
        )
    else:
        found = f"{_term_function(em, term, em.const((literal,), 'l'))}({item})"
    return found if term.op in ("=", "exists") else f"(not {found})"


def _term_function(em: _Emitter, term: Term, forms: str | None = None) -> str:
    """A generated test: does any value at ``term.names`` below an item equal one of ``forms``
    (or, without ``forms``, is there any value at all)?

    The values are those the element steps would collect (lists flattened, None skipped);
    the loops stop at the first match. An HL7 v2 part 1 of plain text is the text itself.
    """
    name = em.var("_term")
    lines = [f"def {name}(x0):"]
    depth = 1
    for level, element in enumerate(term.names):
        pad = "    " * depth
        node, value = f"x{level}", f"v{level}"
        if element == "1":
            lines += [
                f"{pad}if type({node}) is str:",
                f"{pad}    {value} = {node}",
                f"{pad}elif type({node}) is dict:",
                f"{pad}    {value} = {node}.get('1')",
                f"{pad}else:",
                f"{pad}    {value} = None",
                f"{pad}if True:",
            ]
        else:
            lines += [
                f"{pad}if type({node}) is dict:",
                f"{pad}    {value} = {node}.get({element!r})",
            ]
        pad += "    "
        if level == len(term.names) - 1:
            if forms is None:
                lines += [
                    f"{pad}if {value} is not None and ({value} or type({value}) is not list):",
                    f"{pad}    return True",
                ]
            else:
                lines += [
                    f"{pad}if type({value}) is list:",
                    f"{pad}    for y in {value}:",
                    f"{pad}        if y in {forms}:",
                    f"{pad}            return True",
                    f"{pad}elif {value} is not None and {value} in {forms}:",
                    f"{pad}    return True",
                ]
            break
        following = f"x{level + 1}"
        lines += [
            f"{pad}if {value} is not None:",
            f"{pad}    for {following} in ({value} if type({value}) is list else ({value},)):",
        ]
        depth += 3
    lines.append("    return False")
    em.functions.append("\n".join(lines))
    return name


def _where_expr(em: _Emitter, cond: tuple[tuple[Term, ...], ...], item: str) -> str:
    """A where() condition as one Python expression; ``a='x' or a='y'`` is one test."""
    groups = [
        " and ".join(_term_expr(em, t, item) for t in group)
        if len(literals) < 2
        else _any_of(em, group[0].names, literals, item)
        for group, literals in _merged_equalities(cond)
    ]
    if len(groups) == 1:
        return groups[0]
    return " or ".join(f"({g})" for g in groups)


def _equality(group: tuple[Term, ...]) -> Term | None:
    """The group's one ``=`` term against a non-boolean literal, if that is all it is."""
    if len(group) != 1:
        return None
    term = group[0]
    return term if term.op == "=" and not isinstance(term.literal, bool) else None


def _merged_equalities(
    cond: tuple[tuple[Term, ...], ...],
) -> list[tuple[tuple[Term, ...], list[Any]]]:
    """The groups of ``cond``, neighbouring equalities on the same names joined: each with
    the literals it accepts (``or`` is short-circuit and the tests are pure, so joining
    neighbours keeps the meaning)."""
    out: list[tuple[tuple[Term, ...], list[Any]]] = []
    for group in cond:
        term = _equality(group)
        if term is not None and out:
            previous = _equality(out[-1][0])
            if previous is not None and previous.names == term.names:
                out[-1][1].append(term.literal)
                continue
        out.append((group, [term.literal] if term is not None else []))
    return out


def _any_of(em: _Emitter, names: tuple[str, ...], literals: list[Any], item: str) -> str:
    """Does any value at ``names`` below ``item`` equal one of ``literals``?"""
    forms = em.const(tuple(literals), "l")
    if len(names) == 1 and names[0] != "1":
        value, each = "_w", "_y"
        return (
            f"(type({item}) is dict and (({value} := {item}.get({names[0]!r})) in {forms}"
            f" or (type({value}) is list and any({each} in {forms} for {each} in {value}))))"
        )
    return f"{_term_function(em, Term(names, '=', literals[0]), forms)}({item})"


def _step(em: _Emitter, col: str, step: Any, out: str | None = None) -> str:
    """Code for one step applied to the collection in local ``col``, into local ``out``
    (a new local when None); returns the local holding the result."""
    element = getattr(step, "element", None)
    if element is not None:
        return _element_step(em, col, element, out)
    numbered = getattr(step, "numbered", None)
    if numbered is not None and numbered != "1":
        return _element_step(em, col, numbered, out)
    if numbered == "1":
        return _part_one_step(em, col, step, out)
    cond = getattr(step, "condition", None)
    out = out or em.var("c")
    if step is _resolve or hasattr(step, "of_type") or hasattr(step, "extension_url"):
        _inline_step(em, col, step, out)
        return out
    if cond is not None:
        # A loop in the function itself: no comprehension object, and the where() test's
        # scratch locals stay plain locals (a comprehension would make them cells).
        test = _where_expr(em, cond, "_i")
        em.emit(f"{out} = []")
        with em.block(f"for _i in {col}:"), em.block(f"if {test}:"):
            em.emit(f"{out}.append(_i)")
        return out
    em.emit(f"{out} = {em.const(step, 's')}({col}, env)")
    return out


def _inline_step(em: _Emitter, col: str, step: Any, out: str) -> None:
    """resolve(), ofType() and extension() written out (as ``paths`` evaluates them)."""
    item, value = "_i", "_e"
    em.emit(f"{out} = []")
    with em.block(f"for {item} in {col}:"):
        if step is _resolve:
            em.used.add("resolve")
            em.emit(f"{value} = {item}.get('reference') if isinstance({item}, dict) else None")
            with em.block(f"if isinstance({value}, str):"):
                em.emit(f"{value} = _resolve_ref({value}, {item})")
                with em.block(f"if {value} is not None:"):
                    em.emit(f"_touch(id({value}))")
                    em.emit(f"{out}.append({value})")
        elif hasattr(step, "of_type"):
            em.used.add("touch")
            rtype = em.const(step.of_type, "t")
            test = f"isinstance({item}, dict) and {item}.get('resourceType') == {rtype}"
            with em.block(f"if {test}:"):
                em.emit(f"_touch(id({item}))")
                em.emit(f"{out}.append({item})")
        else:
            url, each = em.const(step.extension_url, "u"), "_x"
            with em.block(f"if isinstance({item}, dict):"):
                em.emit(f"{value} = {item}.get('extension')")
                with em.block(f"if {value} is not None:"):
                    listed = f"({value} if isinstance({value}, list) else [{value}])"
                    with (
                        em.block(f"for {each} in {listed}:"),
                        em.block(f"if {each}.get('url') == {url}:"),
                    ):
                        em.emit(f"{out}.append({each})")


def _root(em: _Emitter, alt: Alternative, this: str) -> str:
    """Code for an alternative's starting collection."""
    root = alt.root
    out = em.var("r")
    if hasattr(root, "context"):
        em.emit(f"{out} = ctx[{root.context!r}]")
    elif hasattr(root, "rtype"):
        em.emit(f"{out} = [root] if root.get('resourceType') == {root.rtype!r} else []")
    elif root is _message_root:
        em.emit(f"{out} = [root]")
    else:  # $this
        em.emit(f"{out} = [{this}] if {this} is not None else []")
    return out


def _element_name(step: Any) -> str | None:
    """The element an element step reads (a v2 numbered step other than 1), else None."""
    element = getattr(step, "element", None)
    if element is not None:
        return str(element)
    numbered = getattr(step, "numbered", None)
    return None if numbered is None or numbered == "1" else str(numbered)


def _from_context(em: _Emitter, alt: Alternative, out: str | None = None) -> str | None:
    """Code for an element of a context's node or of the message (one dict or none).

    None when the path does not start so. On a dict, HL7 v2 part 1 is an element too.
    """
    step = alt.steps[0]
    name = _element_name(step) or getattr(step, "numbered", None)
    node = em.nodes.get(getattr(alt.root, "context", None) or "")
    if name is None:
        return None
    if node is not None:
        read = f"{node}.get({name!r}) if {node} is not None else None"
    elif alt.root is _message_root:
        read = f"root.get({name!r}) if type(root) is dict else None"
    else:
        return None
    out, value = out or em.var("c"), "_e"
    em.emit(f"{value} = {read}")
    em.emit(f"{out} = [] if {value} is None else ({value} if type({value}) is list else [{value}])")
    return out


def _first_step(
    em: _Emitter, alt: Alternative, upto: int, this: str, out: str | None = None
) -> str:
    """Code applying step ``upto`` to the prefix before it, into ``out`` when given."""
    if upto == 0:
        direct = _from_context(em, alt, out)
        if direct is not None:
            return direct
    return _step(em, _prefix(em, alt, upto - 1, this), alt.steps[upto], out)


def _prefix(em: _Emitter, alt: Alternative, upto: int, this: str) -> str:
    """The local holding ``alt`` evaluated through step ``upto`` (-1: the root)."""
    if upto < 0:
        return _root(em, alt, this)
    if not alt.memo:
        return _first_step(em, alt, upto, this)
    key = alt.keys[upto]
    name = em.memo.get(key)
    if name is None:
        name = em.memo[key] = f"m{len(em.memo)}"
    if name in em.defined:
        return name
    if name in em.assigned:
        em.tested.add(name)
        with em.block(f"if {name} is None:"):
            _first_step(em, alt, upto, this, name)
    else:
        _first_step(em, alt, upto, this, name)
    em.assigned.add(name)
    em.defined.add(name)
    return name


def _alternative(em: _Emitter, alt: Alternative, this: str) -> str:
    return _prefix(em, alt, len(alt.steps) - 1, this)


def _collection(em: _Emitter, path: CompiledPath, this: str) -> str:
    """Code for ``path.evaluate``: the first alternative that selects anything."""
    alts = path.alternatives
    if len(alts) == 1:
        return _alternative(em, alts[0], this)
    out = em.var("u")
    _lazy_union(em, alts, this, out, first=False)
    return out


def _first(em: _Emitter, path: CompiledPath, this: str) -> str:
    """Code for ``path.first``: the first value of the first non-empty alternative, or None."""
    out = em.var("f")
    _lazy_union(em, path.alternatives, this, out, first=True)
    return out


def _shared(em: _Emitter, alt: Alternative) -> bool:
    """Whether another alternative may read this memoised alternative's whole collection."""
    return alt.memo and em.uses.get(alt.keys[-1], 0) != 1


def _first_element(em: _Emitter, alt: Alternative, this: str, out: str) -> bool:
    """Code for the first value of an alternative ending in an element step, without
    building its last collection (False: not such an alternative, nothing emitted).

    Only for an alternative no other one shares the whole of; the first value of
    ``[] if e is None else (e if type(e) is list else [e])`` is written out directly.
    """
    last = len(alt.steps) - 1
    name = _element_name(alt.steps[last]) if alt.steps else None
    if name is None or _shared(em, alt):
        return False
    key, value = repr(name), "_e"
    direct = f"{out} = ({value}[0] if {value} else None) if type({value}) is list else {value}"
    node = em.nodes.get(getattr(alt.root, "context", None) or "") if last == 0 else None
    if node is not None:
        em.emit(f"{value} = {node}.get({key}) if {node} is not None else None")
        em.emit(direct)
        return True
    if last == 0 and alt.root is _message_root:
        return False
    col = _prefix(em, alt, last - 1, this)
    em.emit(f"if len({col}) == 1:")
    em.emit(f"    _i = {col}[0]")
    em.emit(f"    {value} = _i.get({key}) if type(_i) is dict else None")
    em.emit(f"    {direct}")
    em.emit(f"elif {col}:")
    em.emit(f"    {value} = _many({col}, {key})")
    em.emit(f"    {out} = {value}[0] if {value} else None")
    em.emit("else:")
    em.emit(f"    {out} = None")
    return True


def _lazy_union(
    em: _Emitter, alts: tuple[Alternative, ...], this: str, out: str, *, first: bool
) -> None:
    """Try each alternative in turn, evaluating a later one only when the earlier are empty.

    The first value of the last alternative may skip its collection: nothing follows it,
    so a first value of None (a null in a JSON array) cannot be told from an empty one.
    """
    if first and len(alts) == 1 and _first_element(em, alts[0], this, out):
        return
    col = _alternative(em, alts[0], this)
    taken = f"{col}[0]" if first else col
    if len(alts) == 1:
        em.emit(f"{out} = {taken} if {col} else {'None' if first else '[]'}")
        return
    with em.block(f"if {col}:"):
        em.emit(f"{out} = {taken}")
    with em.block("else:"):
        _lazy_union(em, alts[1:], this, out, first=first)


def _holds(em: _Emitter, when: When, this: str) -> str:
    """An expression: whether a rule's ``when`` holds."""
    values = _collection(em, when.path, this)
    if when.present is not None:
        return f"bool({values}) == {when.present!r}"
    if when.one_of is not None:
        options = em.const(when.one_of, "o")
        return f"any(x in {options} for x in {values})"
    return f"{em.const(when.equals, 'q')} in {values}"


def _put(em: _Emitter, target: str, parts: tuple[str, ...], value: str) -> None:
    """Set a dotted target in the dict in local ``target`` (as the engine's _put did)."""
    node = target
    if target == "record" and parts[0] in em.sections:
        node, parts = em.sections[parts[0]], parts[1:]
    for part in parts[:-1]:
        node = f"{node}.setdefault({part!r}, {{}})"
    em.emit(f"{node}[{parts[-1]!r}] = {value}")


def _apply_one(em: _Emitter, rule: Rule, value: str, *, present: bool = False) -> None:
    """Transform, then code map, one value in local ``value`` (None drops it).

    ``present``: the value is known not to be None here.
    """
    if rule.transform is not None:
        func = em.const(rule.transform.func, "x")
        if present:
            em.emit(f"{value} = {func}({value}, state)")
        else:
            with em.block(f"if {value} is not None:"):
                em.emit(f"{value} = {func}({value}, state)")
    if rule.codemap is not None:
        entries = em.const(rule.codemap.entries, "m")
        apply = em.const(rule.codemap.apply, "a")
        with em.block(f"if {value} is not None:"):
            if rule.codemap.system is None:
                hit = em.var("h")
                em.emit(
                    f"{hit} = {entries}.get({value}, _MISSING) "
                    f"if type({value}) is str else _MISSING"
                )
                em.emit(f"{value} = {apply}({value}, state) if {hit} is _MISSING else {hit}")
            else:
                em.emit(f"{value} = {apply}({value}, state)")


def _simple_rule(em: _Emitter, rule: Rule) -> str:
    """A single-valued ``from`` rule: first value, transformed, code-mapped, defaulted.

    Returns the local holding the result (the first value's own local without a default).
    """
    assert rule.source is not None
    value = _first(em, rule.source, "None")
    if rule.transform is not None or rule.codemap is not None:
        with em.block(f"if {value} is not None:"):
            em.emit(f"state.where = {em.const(rule.source.text, 'p')}")
            _apply_one(em, rule, value, present=True)
    if rule.default is None:
        return value
    out = em.var("v")
    em.emit(f"{out} = {_defaulted(em, rule, value)}")
    return out


def _defaulted(em: _Emitter, rule: Rule, value: str) -> str:
    """An expression: the value in local ``value``, or the rule's default when it is None."""
    if rule.default is None:
        return value
    return f"{value} if {value} is not None else {em.const(rule.default, 'd')}"


def _general_rule(em: _Emitter, rule: Rule, out: str, this: str) -> None:
    """Any rule, exactly as the rule-by-rule engine evaluated it (``when``, lists, each)."""
    default = em.const(rule.default, "d")
    em.emit(f"{out} = None")
    if rule.when is not None:
        holds = _holds(em, rule.when, this)
        with em.block(f"if {holds}:"):
            _rule_body(em, rule, out, this, default)
    else:
        _rule_body(em, rule, out, this, default)


def _rule_body(em: _Emitter, rule: Rule, out: str, this: str, default: str) -> None:
    path = rule.source or rule.each
    em.emit(f"state.where = {em.const(path.text if path else '', 'p')}")
    transform = rule.transform
    if rule.source is not None and not rule.many and rule.each is None:
        value = _first(em, rule.source, this)
        if transform is None and rule.codemap is None:
            em.emit(f"{out} = {_defaulted(em, rule, value)}")
            return
        if transform is not None and transform.collection:
            values = em.var("vs")
            em.emit(f"{values} = [] if {value} is None else [{value}]")
            _apply_all(em, rule, values)
            em.emit(f"{out} = {values}[0] if {values} else {default}")
            return
        _apply_one(em, rule, value)
        em.emit(f"{out} = {_defaulted(em, rule, value)}")
        return
    values = em.var("vs")
    if rule.each is not None:
        _each(em, rule, values, this)
    elif rule.source is not None:
        em.emit(f"{values} = {_collection(em, rule.source, this)}")
    else:
        em.emit(f"{values} = [{em.const(rule.value, 'c')}]")
    _apply_all(em, rule, values)
    if rule.many and not (transform is not None and transform.collection):
        em.emit(f"{out} = list({values}) or {default}")
    else:
        em.emit(f"{out} = {values}[0] if {values} else {default}")


def _apply_all(em: _Emitter, rule: Rule, values: str) -> None:
    """Transform and code-map every value in local ``values`` (a new list each time)."""
    transform = rule.transform
    if transform is not None:
        func = em.const(transform.func, "x")
        if transform.collection:
            got = em.var("g")
            em.emit(f"{got} = {func}({values}, state)")
            em.emit(f"{values} = [] if {got} is None else [{got}]")
        else:
            _each_value(em, values, func)
    if rule.codemap is not None:
        _each_value(em, values, em.const(rule.codemap.apply, "a"))


def _each_value(em: _Emitter, values: str, func: str) -> None:
    """Replace local ``values`` by a new list of ``func`` of each value, Nones dropped."""
    done, item, got = em.var("vs"), em.var("x"), em.var("y")
    em.emit(f"{done} = []")
    with em.block(f"for {item} in {values}:"):
        em.emit(f"{got} = {func}({item}, state)")
        with em.block(f"if {got} is not None:"):
            em.emit(f"{done}.append({got})")
    em.emit(f"{values} = {done}")


def _each(em: _Emitter, rule: Rule, values: str, this: str) -> None:
    """Objects built by ``fields`` for every item that ``each`` selects."""
    assert rule.each is not None
    items = _collection(em, rule.each, this)
    if not rule.fields:
        em.emit(f"{values} = {items}")
        return
    em.emit(f"{values} = []")
    item = em.var("it")
    with em.block(f"for {item} in {items}:"):
        built = em.var("b")
        em.emit(f"{built} = {{}}")
        for field in rule.fields:
            value = em.var("fv")
            _general_rule(em, field, value, item)
            with em.block(f"if {value} is not None:"):
                _put(em, built, field.target, value)
        with em.block(f"if {built}:"):
            em.emit(f"{values}.append({built})")


def _contexts(em: _Emitter, compiled: Compiled, required: Callable[[str, Env], None]) -> None:
    em.emit("ctx = env.contexts")
    fail = em.const(required, "req")
    for context in compiled.contexts:
        found = _first(em, context.path, "None")
        em.emit(f"ctx[{context.name!r}] = [{found}] if isinstance({found}, dict) else []")
        if context.required:
            with em.block(f"if not ctx[{context.name!r}]:"):
                em.emit(f"{fail}({context.name!r}, env)")
        # Element steps read the node directly (as they would: only a plain dict has elements).
        node = em.var("n")
        em.emit(f"{node} = {found} if type({found}) is dict else None")
        em.nodes[context.name] = node


def _sections(em: _Emitter, compiled: Compiled, order: tuple[str, ...]) -> None:
    """A local dict per record section that rules only fill below its top level.

    A section is in the record when a rule put something in it, so when its dict is not
    empty; other top-level targets go through the ``record`` dict, as before.
    """
    whole = {rule.target[0] for rule in compiled.rules if len(rule.target) == 1}
    filled = {rule.target[0] for rule in compiled.rules}
    for name in order:
        if name in filled and name not in whole:
            em.sections[name] = local = em.var("s")
            em.emit(f"{local} = {{}}")


def _assemble(em: _Emitter, order: tuple[str, ...]) -> None:
    """Return the record's sections in ``order``, leaving out targets outside it."""
    em.emit("out = {}")
    for name in order:
        local = em.sections.get(name)
        if local is not None:
            with em.block(f"if {local}:"):
                em.emit(f"out[{name!r}] = {local}")
        else:
            with em.block(f"if {name!r} in record:"):
                em.emit(f"out[{name!r}] = record[{name!r}]")
    em.emit("return out")


def generate(
    compiled: Compiled, required: Callable[[str, Env], None], order: tuple[str, ...]
) -> Program:
    """The generated function for ``compiled``; ``required`` raises for a missing context.

    The record it returns has only the top-level sections in ``order``, in that order.
    """
    em = _Emitter()
    em.uses = _key_uses(compiled)
    _contexts(em, compiled, required)
    em.emit("record = {}")
    _sections(em, compiled, order)
    for rule in compiled.rules:
        general = rule.each is not None or rule.many or rule.when is not None
        collection = rule.transform is not None and rule.transform.collection
        if general or rule.source is None or collection:
            value = em.var("v")
            _general_rule(em, rule, value, "None")
        else:
            value = _simple_rule(em, rule)
        with em.block(f"if {value} is not None:"):
            _put(em, "record", rule.target, value)
    _assemble(em, order)
    program: Program = _function(em, "root, env, state", f"<mapping {compiled.source}>")
    return program


def _key_uses(compiled: Compiled) -> dict[str, int]:
    """How many memoised alternatives of the mapping's paths reach each prefix key."""
    uses: dict[str, int] = {}

    def count(path: CompiledPath | None) -> None:
        for alt in path.alternatives if path is not None else ():
            if alt.memo:
                for key in alt.keys:
                    uses[key] = uses.get(key, 0) + 1

    def rule(each: Rule) -> None:
        count(each.source)
        count(each.each)
        count(each.when.path if each.when is not None else None)
        for field in each.fields:
            rule(field)

    for context in compiled.contexts:
        count(context.path)
    for each in compiled.rules:
        rule(each)
    return uses


def _function(em: _Emitter, signature: str, filename: str) -> Callable[..., Any]:
    """Compile the emitted lines as ``run(signature)``, its helpers beside it."""
    head = [f"def run({signature}):"]
    if em.used:
        head.append("    _touch = env.touched.add")
    if "resolve" in em.used:
        head.append("    _resolve_ref = env.index.resolve")
    if em.tested:
        head.append("    " + " = ".join(n for n in em.memo.values() if n in em.tested) + " = None")
    source = "\n\n".join([*em.functions, "\n".join(head + em.lines)])
    exec(compile(source, filename, "exec"), em.names)
    run: Callable[..., Any] = em.names["run"]
    run.source = source  # type: ignore[attr-defined]
    return run


def path_function(
    path: CompiledPath, contexts: Iterable[str], *, first: bool = False
) -> Callable[..., Any]:
    """``run(root, env, this)``: what the generated code selects for ``path`` (for tests);
    with ``first``, its first value, as a rule reads it when no other rule shares the path.

    ``contexts`` are read from ``env.contexts``, as the mapping function leaves them.
    """
    em = _Emitter()
    for alt in path.alternatives if first else ():
        for key in alt.keys if alt.memo else ():
            em.uses[key] = em.uses.get(key, 0) + 1
    em.emit("ctx = env.contexts")
    for name in contexts:
        node, col = em.var("n"), em.var("r")
        em.emit(f"{col} = ctx.get({name!r}) or [None]")
        em.emit(f"{node} = {col}[0] if type({col}[0]) is dict else None")
        em.nodes[name] = node
    em.emit(f"return {_first(em, path, 'this') if first else _collection(em, path, 'this')}")
    return _function(em, "root, env, this", f"<path {path.text}>")


def missing_context(name: str, where: str) -> RequiredMissing:
    """The error for a required context the message does not have."""
    return RequiredMissing(f"the message has no {name} ({where})", expression=where)
