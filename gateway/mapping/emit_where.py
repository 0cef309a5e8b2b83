"""Generated code for where() conditions: one Python expression per condition."""

from __future__ import annotations

from typing import Any

from gateway.mapping.emitter import Emitter
from gateway.mapping.syntax import Condition, Term


def where_expr(em: Emitter, cond: Condition, item: str) -> str:
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


def _term_expr(em: Emitter, term: Term, item: str) -> str:
    """A where() term as a Python expression over the local ``item``."""
    literal = term.literal
    if "1" in term.names and term.op == "exists":
        # HL7 v2 numbered part 1 below the item.
        return f"bool(_values_at({item}, {em.const(term.names, 'n')}))"
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


def _term_function(em: Emitter, term: Term, forms: str | None = None) -> str:
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


def _equality(group: tuple[Term, ...]) -> Term | None:
    """The group's one ``=`` term against a non-boolean literal, if that is all it is."""
    if len(group) != 1:
        return None
    term = group[0]
    return term if term.op == "=" and not isinstance(term.literal, bool) else None


def _merged_equalities(cond: Condition) -> list[tuple[tuple[Term, ...], list[Any]]]:
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


def _any_of(em: Emitter, names: tuple[str, ...], literals: list[Any], item: str) -> str:
    """Does any value at ``names`` below ``item`` equal one of ``literals``?"""
    forms = em.const(tuple(literals), "l")
    if len(names) == 1 and names[0] != "1":
        value, each = "_w", "_y"
        return (
            f"(type({item}) is dict and (({value} := {item}.get({names[0]!r})) in {forms}"
            f" or (type({value}) is list and any({each} in {forms} for {each} in {value}))))"
        )
    return f"{_term_function(em, Term(names, '=', literals[0]), forms)}({item})"
