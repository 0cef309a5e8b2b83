"""Generated code for paths: each step of the syntax tree written out inline.

Path prefixes that several rules share (``%referral.supportingInfo.resolve()``) are
computed once per message into local variables, in the order the rules first need them,
and union alternatives stay lazy, so what is evaluated (and so which resources count as
used) is exactly what the reference interpreter evaluates.
"""

from __future__ import annotations

from gateway.mapping.emit_where import where_expr
from gateway.mapping.emitter import Emitter
from gateway.mapping.syntax import (
    Alternative,
    CompiledPath,
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
    Step,
    ThisRoot,
    TypeRoot,
    Where,
    element_name,
)


def _element_step(em: Emitter, col: str, name: str, out: str | None = None) -> str:
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


def _part_one_step(em: Emitter, col: str, out: str | None = None) -> str:
    """HL7 v2 part 1 of one node inline (plain text is its own part 1); else the helper."""
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
    em.emit(f"    {out} = _part_one({col})")
    return out


def _step(em: Emitter, col: str, step: Step, out: str | None = None) -> str:
    """Code for one step applied to the collection in local ``col``, into local ``out``
    (a new local when None); returns the local holding the result."""
    match step:
        case Element(name):
            return _element_step(em, col, name, out)
        case Numbered("1"):
            return _part_one_step(em, col, out)
        case Numbered(name):
            return _element_step(em, col, name, out)
    out = out or em.var("c")
    match step:
        case Where(condition):
            # A loop in the function itself: no comprehension object, and the where()
            # test's scratch locals stay plain locals (a comprehension makes them cells).
            test = where_expr(em, condition, "_i")
            em.emit(f"{out} = []")
            with em.block(f"for _i in {col}:"), em.block(f"if {test}:"):
                em.emit(f"{out}.append(_i)")
        case Resolve():
            _resolve(em, col, out)
        case OfType(rtype):
            _of_type(em, col, rtype, out)
        case Extension(url):
            _extension(em, col, url, out)
        case First():
            em.emit(f"{out} = {col}[:1]")
        case Last():
            em.emit(f"{out} = {col}[-1:]")
        case Exists():
            em.emit(f"{out} = [bool({col})]")
    return out


def _resolve(em: Emitter, col: str, out: str) -> None:
    """resolve() written out: each Reference's resource, counted as used."""
    em.used.add("resolve")
    em.emit(f"{out} = []")
    with em.block(f"for _i in {col}:"):
        em.emit("_e = _i.get('reference') if isinstance(_i, dict) else None")
        with em.block("if isinstance(_e, str):"):
            em.emit("_e = _resolve_ref(_e, _i)")
            with em.block("if _e is not None:"):
                em.emit("_touch(id(_e))")
                em.emit(f"{out}.append(_e)")


def _of_type(em: Emitter, col: str, rtype: str, out: str) -> None:
    """ofType() written out: the resources of that type, counted as used."""
    em.used.add("touch")
    name = em.const(rtype, "t")
    em.emit(f"{out} = []")
    with (
        em.block(f"for _i in {col}:"),
        em.block(f"if isinstance(_i, dict) and _i.get('resourceType') == {name}:"),
    ):
        em.emit("_touch(id(_i))")
        em.emit(f"{out}.append(_i)")


def _extension(em: Emitter, col: str, url: str, out: str) -> None:
    """extension() written out: the extensions with that url."""
    name = em.const(url, "u")
    em.emit(f"{out} = []")
    with em.block(f"for _i in {col}:"), em.block("if isinstance(_i, dict):"):
        em.emit("_e = _i.get('extension')")
        with em.block("if _e is not None:"):
            listed = "(_e if isinstance(_e, list) else [_e])"
            with em.block(f"for _x in {listed}:"), em.block(f"if _x.get('url') == {name}:"):
                em.emit(f"{out}.append(_x)")


def _root(em: Emitter, alt: Alternative, this: str) -> str:
    """Code for an alternative's starting collection."""
    out = em.var("r")
    match alt.root:
        case ContextRoot(name):
            em.emit(f"{out} = ctx[{name!r}]")
        case TypeRoot(rtype):
            em.emit(f"{out} = [root] if root.get('resourceType') == {rtype!r} else []")
        case MessageRoot():
            em.emit(f"{out} = [root]")
        case ThisRoot():
            em.emit(f"{out} = [{this}] if {this} is not None else []")
    return out


def _context_node(em: Emitter, alt: Alternative) -> str | None:
    """The local holding the dict of the context the alternative starts from, if any."""
    return em.nodes.get(alt.root.name) if isinstance(alt.root, ContextRoot) else None


def _from_context(em: Emitter, alt: Alternative, out: str | None = None) -> str | None:
    """Code for an element of a context's node or of the message (one dict or none).

    None when the path does not start so. On a dict, HL7 v2 part 1 is an element too.
    """
    step = alt.steps[0]
    name = step.name if isinstance(step, Element | Numbered) else None
    node = _context_node(em, alt)
    if name is None:
        return None
    if node is not None:
        read = f"{node}.get({name!r}) if {node} is not None else None"
    elif isinstance(alt.root, MessageRoot):
        read = f"root.get({name!r}) if type(root) is dict else None"
    else:
        return None
    out, value = out or em.var("c"), "_e"
    em.emit(f"{value} = {read}")
    em.emit(f"{out} = [] if {value} is None else ({value} if type({value}) is list else [{value}])")
    return out


def _first_step(em: Emitter, alt: Alternative, upto: int, this: str, out: str | None) -> str:
    """Code applying step ``upto`` to the prefix before it, into ``out`` when given."""
    if upto == 0:
        direct = _from_context(em, alt, out)
        if direct is not None:
            return direct
    return _step(em, _prefix(em, alt, upto - 1, this), alt.steps[upto], out)


def _prefix(em: Emitter, alt: Alternative, upto: int, this: str) -> str:
    """The local holding ``alt`` evaluated through step ``upto`` (-1: the root)."""
    if upto < 0:
        return _root(em, alt, this)
    if not alt.memo:
        return _first_step(em, alt, upto, this, None)
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


def _alternative(em: Emitter, alt: Alternative, this: str) -> str:
    return _prefix(em, alt, len(alt.steps) - 1, this)


def collection(em: Emitter, path: CompiledPath, this: str) -> str:
    """Code for every value of the first alternative that selects anything."""
    alts = path.alternatives
    if len(alts) == 1:
        return _alternative(em, alts[0], this)
    out = em.var("u")
    _lazy_union(em, alts, this, out, first=False)
    return out


def first_value(em: Emitter, path: CompiledPath, this: str) -> str:
    """Code for the first value of the first non-empty alternative, or None."""
    out = em.var("f")
    _lazy_union(em, path.alternatives, this, out, first=True)
    return out


def _shared(em: Emitter, alt: Alternative) -> bool:
    """Whether another alternative may read this memoised alternative's whole collection."""
    return alt.memo and em.uses.get(alt.keys[-1], 0) != 1


def _first_element(em: Emitter, alt: Alternative, this: str, out: str) -> bool:
    """Code for the first value of an alternative ending in an element step, without
    building its last collection (False: not such an alternative, nothing emitted).

    Only for an alternative no other one shares the whole of; the first value of
    ``[] if e is None else (e if type(e) is list else [e])`` is written out directly.
    """
    last = len(alt.steps) - 1
    name = element_name(alt.steps[last]) if alt.steps else None
    if name is None or _shared(em, alt):
        return False
    key, value = repr(name), "_e"
    direct = f"{out} = ({value}[0] if {value} else None) if type({value}) is list else {value}"
    node = _context_node(em, alt) if last == 0 else None
    if node is not None:
        em.emit(f"{value} = {node}.get({key}) if {node} is not None else None")
        em.emit(direct)
        return True
    if last == 0 and isinstance(alt.root, MessageRoot):
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
    em: Emitter, alts: tuple[Alternative, ...], this: str, out: str, *, first: bool
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
