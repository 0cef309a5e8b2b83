"""The reference interpreter of a compiled mapping: contexts, then each rule, plainly.

It gives the rules (``each``, ``fields``, ``list``, ``default``, transform then code map,
contexts, ``required``, ``when``) their meaning over the path tree, one rule after another,
with no generated code. The generated program must build the very same record; this is
the oracle for that, and it can note which rule placed each record item from where.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.mapping.compile import Compiled, Rule
from gateway.mapping.compile import Condition as When
from gateway.mapping.reference import evaluate, first, select
from gateway.mapping.runtime import Collection, Env
from gateway.mapping.syntax import CompiledPath
from gateway.mapping.transforms import MapState


@dataclass(frozen=True)
class Placement:
    """One record item a rule filled: the item, the rule (file:line) and the element read."""

    item: str
    rule: str
    element: str


class _Run:
    """One message through the rules; ``placements`` (when not None) notes each item."""

    def __init__(self, env: Env, state: MapState, placements: list[Placement] | None) -> None:
        self.env = env
        self.state = state
        self.placements = placements
        self.chosen = ""  # the alternative the current rule's path took, as written
        self.within = ""  # inside ``fields``: the item of the ``each`` they read, described

    def select(self, path: CompiledPath) -> Collection:
        """What ``path`` selects; notes the alternative taken when explaining."""
        if self.placements is None:
            return evaluate(path, self.env)
        position, col = select(path, self.env)
        if position >= 0:
            self.chosen = path.alternatives[position].text or path.text
        return col

    def place(self, item: str, rule: Rule) -> None:
        """Note that ``rule`` filled ``item`` from the element its path last selected."""
        if self.placements is not None:
            path = rule.source or rule.each
            if path is None:
                element = f"value {rule.value!r}"
            elif self.chosen and self.within:
                element = f"{self.within}.{self.chosen}"
            elif self.chosen:
                element = self.state.describe(self.chosen)
            else:
                element = f"default {rule.default!r}"
            self.placements.append(Placement(item, rule.where, element))

    def rule(self, rule: Rule, item: str) -> Any:
        """The value one rule gives (None: nothing), as the generated code computes it."""
        self.chosen = ""
        if rule.when is not None and not self.holds(rule.when):
            return None
        path = rule.source or rule.each
        state = self.state
        state.where = path.text if path is not None else ""
        transform = rule.transform
        collected = transform is not None and transform.collection
        if rule.source is not None and not rule.many and rule.each is None:
            col = self.select(rule.source)
            value = col[0] if col else None
            if collected:
                values = self.convert(rule, [] if value is None else [value])
                return values[0] if values else rule.default
            if value is not None and transform is not None:
                value = transform.func(value, state)
            if value is not None and rule.codemap is not None:
                value = rule.codemap.apply(value, state)
            return value if value is not None else rule.default
        if rule.each is not None:
            values = self.each(rule, item)
        elif rule.source is not None:
            values = self.select(rule.source)
        else:
            values = [rule.value]
        values = self.convert(rule, values)
        if rule.many and not collected:
            return list(values) or rule.default
        return values[0] if values else rule.default

    def holds(self, when: When) -> bool:
        """Whether a rule's ``when`` holds."""
        values = evaluate(when.path, self.env)
        if when.present is not None:
            return bool(values) == when.present
        if when.one_of is not None:
            return any(x in when.one_of for x in values)
        return when.equals in values

    def convert(self, rule: Rule, values: Collection) -> Collection:
        """Transform, then code-map, every value; values that become None are dropped."""
        state = self.state
        transform = rule.transform
        if transform is not None and transform.collection:
            got = transform.func(values, state)
            values = [] if got is None else [got]
        elif transform is not None:
            values = [y for y in (transform.func(x, state) for x in values) if y is not None]
        if rule.codemap is not None:
            apply = rule.codemap.apply
            values = [y for y in (apply(x, state) for x in values) if y is not None]
        return values

    def each(self, rule: Rule, item: str) -> Collection:
        """The objects ``fields`` build for every item ``each`` selects (items if no fields)."""
        assert rule.each is not None
        items = self.select(rule.each)
        if not rule.fields:
            return items
        chosen, within, env, outer = self.chosen, self.within, self.env, self.env.this
        described = ""
        if self.placements is not None:
            described = f"{within}.{chosen}" if within else self.state.describe(chosen)
        built_all: Collection = []
        for position, node in enumerate(items):
            env.this = node
            self.within = f"{described}[{position}]"
            built: dict[str, Any] = {}
            for field in rule.fields:
                name = f"{item}[{len(built_all)}].{'.'.join(field.target)}"
                value = self.rule(field, name)
                if value is not None:
                    put(built, field.target, value)
                    self.place(name, field)
            if built:
                built_all.append(built)
        env.this = outer
        self.chosen, self.within = chosen, within
        return built_all


def put(node: dict[str, Any], target: tuple[str, ...], value: Any) -> None:
    """Set a dotted target in a dict, making the dicts on the way."""
    for part in target[:-1]:
        node = node.setdefault(part, {})
    node[target[-1]] = value


def interpret(
    compiled: Compiled,
    root: dict[str, Any],
    env: Env,
    state: MapState,
    *,
    required: Callable[[str, Env], None],
    order: tuple[str, ...],
    placements: list[Placement] | None = None,
) -> dict[str, Any]:
    """The record sections in ``order`` that the mapping gives ``root``; ``required`` raises
    for a missing required context; each filled item is noted in ``placements``."""
    run = _Run(env, state, placements)
    contexts = env.contexts
    for context in compiled.contexts:
        if context.all:
            contexts[context.name] = [v for v in evaluate(context.path, env) if isinstance(v, dict)]
        else:
            found = first(context.path, env)
            contexts[context.name] = [found] if isinstance(found, dict) else []
        if context.required and not contexts[context.name]:
            required(context.name, env)
    record: dict[str, Any] = {}
    for rule in compiled.rules:
        item = ".".join(rule.target)
        value = run.rule(rule, item)
        if value is not None:
            put(record, rule.target, value)
            run.place(item, rule)
    return {name: record[name] for name in order if name in record}
