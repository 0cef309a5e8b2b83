"""A source's whole mapping compiled into one generated Python function.

The function computes the contexts, then every rule in file order, and builds the record's
sections directly, with the meaning the reference interpreter (``interpret``) gives the
rules. Paths are written out by ``emit_paths``; constants are bound by the ``Emitter``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gateway.mapping.compile import Compiled, Rule
from gateway.mapping.compile import Condition as When
from gateway.mapping.emit_paths import collection, first_value
from gateway.mapping.emitter import Emitter, key_uses
from gateway.mapping.runtime import Env
from gateway.mapping.syntax import CompiledPath
from gateway.mapping.transforms import MapState

#: The generated function: (message, env, state) -> record sections in schema order.
Program = Callable[[dict[str, Any], Env, MapState], dict[str, Any]]


def _holds(em: Emitter, when: When, this: str) -> str:
    """An expression: whether a rule's ``when`` holds."""
    values = collection(em, when.path, this)
    if when.present is not None:
        return f"bool({values}) == {when.present!r}"
    if when.one_of is not None:
        options = em.const(when.one_of, "o")
        return f"any(x in {options} for x in {values})"
    return f"{em.const(when.equals, 'q')} in {values}"


def _put(em: Emitter, target: str, parts: tuple[str, ...], value: str) -> None:
    """Set a dotted target in the dict in local ``target``."""
    node = target
    if target == "record" and parts[0] in em.sections:
        node, parts = em.sections[parts[0]], parts[1:]
    for part in parts[:-1]:
        node = f"{node}.setdefault({part!r}, {{}})"
    em.emit(f"{node}[{parts[-1]!r}] = {value}")


def _apply_one(em: Emitter, rule: Rule, value: str, *, present: bool = False) -> None:
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


def _simple_rule(em: Emitter, rule: Rule) -> str:
    """A single-valued ``from`` rule: first value, transformed, code-mapped, defaulted.

    Returns the local holding the result (the first value's own local without a default).
    """
    assert rule.source is not None
    value = first_value(em, rule.source, "None")
    if rule.transform is not None or rule.codemap is not None:
        with em.block(f"if {value} is not None:"):
            em.emit(f"state.where = {em.const(rule.source.text, 'p')}")
            _apply_one(em, rule, value, present=True)
    if rule.default is None:
        return value
    out = em.var("v")
    em.emit(f"{out} = {_defaulted(em, rule, value)}")
    return out


def _defaulted(em: Emitter, rule: Rule, value: str) -> str:
    """An expression: the value in local ``value``, or the rule's default when it is None."""
    if rule.default is None:
        return value
    return f"{value} if {value} is not None else {em.const(rule.default, 'd')}"


def _general_rule(em: Emitter, rule: Rule, out: str, this: str) -> None:
    """Any rule (``when``, lists, each), as the reference interpreter evaluates it."""
    default = em.const(rule.default, "d")
    em.emit(f"{out} = None")
    if rule.when is not None:
        holds = _holds(em, rule.when, this)
        with em.block(f"if {holds}:"):
            _rule_body(em, rule, out, this, default)
    else:
        _rule_body(em, rule, out, this, default)


def _rule_body(em: Emitter, rule: Rule, out: str, this: str, default: str) -> None:
    path = rule.source or rule.each
    em.emit(f"state.where = {em.const(path.text if path else '', 'p')}")
    transform = rule.transform
    if rule.source is not None and not rule.many and rule.each is None:
        value = first_value(em, rule.source, this)
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
        em.emit(f"{values} = {collection(em, rule.source, this)}")
    else:
        em.emit(f"{values} = [{em.const(rule.value, 'c')}]")
    _apply_all(em, rule, values)
    if rule.many and not (transform is not None and transform.collection):
        em.emit(f"{out} = list({values}) or {default}")
    else:
        em.emit(f"{out} = {values}[0] if {values} else {default}")


def _apply_all(em: Emitter, rule: Rule, values: str) -> None:
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


def _each_value(em: Emitter, values: str, func: str) -> None:
    """Replace local ``values`` by a new list of ``func`` of each value, Nones dropped."""
    done, item, got = em.var("vs"), em.var("x"), em.var("y")
    em.emit(f"{done} = []")
    with em.block(f"for {item} in {values}:"):
        em.emit(f"{got} = {func}({item}, state)")
        with em.block(f"if {got} is not None:"):
            em.emit(f"{done}.append({got})")
    em.emit(f"{values} = {done}")


def _each(em: Emitter, rule: Rule, values: str, this: str) -> None:
    """Objects built by ``fields`` for every item that ``each`` selects."""
    assert rule.each is not None
    items = collection(em, rule.each, this)
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


def _contexts(em: Emitter, compiled: Compiled, required: Callable[[str, Env], None]) -> None:
    em.emit("ctx = env.contexts")
    fail = em.const(required, "req")
    for context in compiled.contexts:
        if context.all:  # a named collection: every resource found, and no single node
            found = collection(em, context.path, "None")
            em.emit(f"ctx[{context.name!r}] = [_v for _v in {found} if isinstance(_v, dict)]")
            if context.required:
                with em.block(f"if not ctx[{context.name!r}]:"):
                    em.emit(f"{fail}({context.name!r}, env)")
            continue
        found = first_value(em, context.path, "None")
        em.emit(f"ctx[{context.name!r}] = [{found}] if isinstance({found}, dict) else []")
        if context.required:
            with em.block(f"if not ctx[{context.name!r}]:"):
                em.emit(f"{fail}({context.name!r}, env)")
        # Element steps read the node directly (as they would: only a plain dict has elements).
        node = em.var("n")
        em.emit(f"{node} = {found} if type({found}) is dict else None")
        em.nodes[context.name] = node


def _sections(em: Emitter, compiled: Compiled, order: tuple[str, ...]) -> None:
    """A local dict per record section that rules only fill below its top level.

    A section is in the record when a rule put something in it, so when its dict is not
    empty; other top-level targets go through the ``record`` dict.
    """
    whole = {rule.target[0] for rule in compiled.rules if len(rule.target) == 1}
    filled = {rule.target[0] for rule in compiled.rules}
    for name in order:
        if name in filled and name not in whole:
            em.sections[name] = local = em.var("s")
            em.emit(f"{local} = {{}}")


def _assemble(em: Emitter, order: tuple[str, ...]) -> None:
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
    em = Emitter()
    em.uses = key_uses(compiled)
    _contexts(em, compiled, required)
    em.emit("record = {}")
    _sections(em, compiled, order)
    for rule in compiled.rules:
        general = rule.each is not None or rule.many or rule.when is not None
        collected = rule.transform is not None and rule.transform.collection
        if general or rule.source is None or collected:
            value = em.var("v")
            _general_rule(em, rule, value, "None")
        else:
            value = _simple_rule(em, rule)
        with em.block(f"if {value} is not None:"):
            _put(em, "record", rule.target, value)
    _assemble(em, order)
    program: Program = em.function("root, env, state", f"<mapping {compiled.source}>")
    return program


def path_function(
    path: CompiledPath, contexts: Iterable[str], *, first: bool = False
) -> Callable[..., Any]:
    """``run(root, env, this)``: what the generated code selects for ``path`` (for tests);
    with ``first``, its first value, as a rule reads it when no other rule shares the path.

    ``contexts`` are read from ``env.contexts``, as the mapping function leaves them.
    """
    em = Emitter()
    for alt in path.alternatives if first else ():
        for key in alt.keys if alt.memo else ():
            em.uses[key] = em.uses.get(key, 0) + 1
    em.emit("ctx = env.contexts")
    for name in contexts:
        node, col = em.var("n"), em.var("r")
        em.emit(f"{col} = ctx.get({name!r}) or [None]")
        em.emit(f"{node} = {col}[0] if type({col}[0]) is dict else None")
        em.nodes[name] = node
    result = first_value(em, path, "this") if first else collection(em, path, "this")
    em.emit(f"return {result}")
    return em.function("root, env, this", f"<path {path.text}>")
