"""The reference interpreter of mapping paths: the syntax tree evaluated step by step.

Plain Python over the tree of ``syntax`` (no generated code, no ``exec``). It is the
oracle the generated code is tested against, and what ``gateway translate --explain`` and
error messages use to say which alternative of a path selected something.
"""

from __future__ import annotations

from typing import Any

from gateway.mapping.runtime import Collection, Env, as_list, many, part_one, values_at
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


def select(path: CompiledPath, env: Env) -> tuple[int, Collection]:
    """The first alternative that selects anything: (its position, its values); (-1, [])."""
    for position, alternative in enumerate(path.alternatives):
        col = run_alternative(alternative, env)
        if col:
            return position, col
    return -1, []


def evaluate(path: CompiledPath, env: Env) -> Collection:
    """Every value of the first alternative that selects anything (a fallback)."""
    return select(path, env)[1]


def first(path: CompiledPath, env: Env) -> Any:
    """The first value of the first alternative that selects anything, or None."""
    col = select(path, env)[1]
    return col[0] if col else None


def run_alternative(alternative: Alternative, env: Env) -> Collection:
    """What one alternative selects: its root, then each step in turn."""
    col = _root(alternative.root, env)
    for step in alternative.steps:
        col = apply_step(step, col, env)
    return col


def _root(root: Root, env: Env) -> Collection:
    """The collection an alternative starts from."""
    match root:
        case ContextRoot(name):
            return env.contexts.get(name, [])
        case TypeRoot(rtype):
            return [env.root] if env.root.get("resourceType") == rtype else []
        case MessageRoot():
            return [env.root]
        case ThisRoot():
            return [env.this] if env.this is not None else []
    raise TypeError(f"not a path root: {root!r}")


def apply_step(step: Step, col: Collection, env: Env) -> Collection:
    """One step applied to a collection."""
    match step:
        case Element(name):
            return many(col, name)
        case Numbered(name):
            return part_one(col) if name == "1" else many(col, name)
        case Where(condition):
            return [item for item in col if holds(condition, item)]
        case OfType(rtype):
            out = [i for i in col if isinstance(i, dict) and i.get("resourceType") == rtype]
            env.touched.update(id(i) for i in out)
            return out
        case Extension(url):
            found: Collection = []
            for item in col:
                if isinstance(item, dict):
                    found += [e for e in as_list(item.get("extension")) if e.get("url") == url]
            return found
        case Resolve():
            return _resolve(col, env)
        case First():
            return col[:1]
        case Last():
            return col[-1:]
        case Exists():
            return [bool(col)]
    raise TypeError(f"not a path step: {step!r}")


def _resolve(col: Collection, env: Env) -> Collection:
    """The resources the References in ``col`` point at; each counts as used."""
    out: Collection = []
    for item in col:
        ref = item.get("reference") if isinstance(item, dict) else None
        if isinstance(ref, str):
            found = env.index.resolve(ref, item)
            if found is not None:
                env.touched.add(id(found))
                out.append(found)
    return out


def holds(condition: Condition, item: Any) -> bool:
    """Whether a where() condition holds for one item: any group whose terms all hold."""
    return any(all(term_holds(term, item) for term in group) for group in condition)


def term_holds(term: Term, item: Any) -> bool:
    """Whether one where() term holds for one item."""
    values = values_at(item, term.names)
    if term.op == "exists":
        return bool(values)
    literal = term.literal
    if isinstance(literal, bool):
        # XML carries booleans as text: match both forms.
        forms = (literal, "true" if literal else "false")
        found = any(f in forms for f in values)
    else:
        found = literal in values
    return found if term.op == "=" else not found
