"""Running a compiled mapping over one message to produce a social prescribing record."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError, MappingError, RequiredMissing
from gateway.mapping.compile import ALWAYS_IGNORED, Compiled, Condition, Rule, compile_source
from gateway.mapping.paths import Env, ResourceIndex
from gateway.mapping.transforms import MapState
from gateway.record import ReferralRecord
from gateway.record_schema import validate_record

_CONTEXT_REF = re.compile(r"%([A-Za-z_]\w*)")
#: Top-level sections in the record schema's order, so records read the same for every source.
_SECTIONS = tuple(ReferralRecord().fields)


class Mapping:
    """A source system's compiled mapping: ``translate`` turns a message into a record."""

    def __init__(self, compiled: Compiled) -> None:
        self.compiled = compiled
        self.source = compiled.source
        self.version = compiled.version
        self.accepts = compiled.accepts
        self._targets = {".".join(r.target): r for r in compiled.rules}
        self._contexts = {c.name: c for c in compiled.contexts}
        self._plan = tuple((r.target, self._rule_function(r)) for r in compiled.rules)

    def _rule_function(self, rule: Rule) -> Callable[[Env, MapState], Any]:
        """A function computing one rule's value, specialised for the common simple shapes.

        Rules run once per message each, so the shape is decided here, once, at load.
        """
        general = rule.each is not None or rule.many or rule.when is not None
        if general or rule.source is None:
            return lambda env, state: self._evaluate(rule, env, state)
        first, default, text = rule.source.first, rule.default, rule.source.text
        tf = rule.transform.func if rule.transform else None
        if rule.transform is not None and rule.transform.collection:
            return lambda env, state: self._evaluate(rule, env, state)
        cm = rule.codemap.apply if rule.codemap else None
        if tf is None and cm is None:
            if default is None:
                return lambda env, state: first(env)
            return lambda env, state: _or(first(env), default)

        def convert(env: Env, state: MapState) -> Any:
            value = first(env)
            if value is None:
                return default
            state.where = text
            if tf is not None:
                value = tf(value, state)
                if value is None:
                    return default
            if cm is not None:
                value = cm(value, state)
            return default if value is None else value

        return convert

    def translate(self, message: dict[str, Any]) -> dict[str, Any]:
        """The validated record for ``message`` (received_at left unset), or a domain error."""
        env = Env(root=message, index=ResourceIndex(message))
        state = MapState(self.compiled.timezone, describe=lambda t: self._describe(t, env))
        for ctx in self.compiled.contexts:
            found = ctx.path.first(env)
            env.contexts[ctx.name] = [found] if isinstance(found, dict) else []
            if ctx.required and not env.contexts[ctx.name]:
                where = self._describe(ctx.path.text, env)
                raise RequiredMissing(f"the message has no {ctx.name} ({where})", expression=where)
        record: dict[str, Any] = {}
        for target, compute in self._plan:
            value = compute(env, state)
            if value is not None:
                _put(record, target, value)
        record = {key: record[key] for key in _SECTIONS if key in record}
        provenance = record.setdefault("provenance", {})
        provenance["source_system"] = self.source
        provenance["mapping_version"] = self.version
        if self.compiled.format == "hl7v2":
            self._unused_segments(message, state)
        else:
            self._unused(env, state)
        record["diagnostics"] = state.diagnostics
        try:
            validate_record(record)
        except GatewayError as exc:
            raise self._located(exc, env) from None
        return record

    def _evaluate(self, rule: Rule, env: Env, state: MapState) -> Any:
        """One rule's value: selected, transformed, code-mapped, defaulted."""
        if rule.when is not None and not _holds(rule.when, env):
            return None
        path = rule.source or rule.each
        state.where = path.text if path else ""
        if rule.each is not None:
            values = self._each(rule, env, state)
        elif rule.source is not None:
            if rule.many:
                values = rule.source.evaluate(env)
            else:
                value = rule.source.first(env)
                if rule.transform is None and rule.codemap is None:
                    return rule.default if value is None else value
                values = [] if value is None else [value]
        else:
            values = [rule.value]
        transform = rule.transform
        if transform is not None:
            if transform.collection:
                converted = transform.func(values, state)
                values = [] if converted is None else [converted]
            else:
                values = [v for v in (transform.func(v, state) for v in values) if v is not None]
        if rule.codemap is not None:
            values = [v for v in (rule.codemap.apply(v, state) for v in values) if v is not None]
        if rule.many and not (transform is not None and transform.collection):
            return list(values) or rule.default
        return values[0] if values else rule.default

    def _each(self, rule: Rule, env: Env, state: MapState) -> list[Any]:
        """Objects built by ``fields`` for every item that ``each`` selects."""
        assert rule.each is not None
        items = rule.each.evaluate(env)
        if not rule.fields:
            return items
        out = []
        outer = env.this
        for item in items:
            env.this = item
            built: dict[str, Any] = {}
            for field in rule.fields:
                value = self._evaluate(field, env, state)
                if value is not None:
                    _put(built, field.target, value)
            if built:
                out.append(built)
        env.this = outer
        return out

    def _unused(self, env: Env, state: MapState) -> None:
        """Diagnose bundle entries no rule reached and context elements no rule reads."""
        bound = {id(c[0]) for c in env.contexts.values() if c}
        for where, resource in env.index.entries:
            key = id(resource)
            rtype = resource.get("resourceType")
            if key not in bound and key not in env.touched and rtype != "MessageHeader":
                state.diagnose(
                    "unused-resource", f"{rtype} resource not used by the mapping", where
                )
        # A resource bound to several contexts counts as read by any of them.
        resources: dict[int, tuple[dict[str, Any], set[str]]] = {}
        for name, col in env.contexts.items():
            bound_to = col[0] if col else None
            if not isinstance(bound_to, dict) or "resourceType" not in bound_to:
                continue
            entry = resources.setdefault(id(bound_to), (bound_to, set()))
            entry[1].update(self.compiled.consumed.get(name, ()))
        for resource, consumed in resources.values():
            rtype = resource["resourceType"]
            for element in resource:
                name = element[1:] if element.startswith("_") else element
                if name in consumed or name in ALWAYS_IGNORED:
                    continue
                if f"{rtype}.{name}" in self.compiled.ignore:
                    continue
                state.diagnose(
                    "unused-element", "element present but not mapped", f"{rtype}.{name}"
                )

    def _unused_segments(self, tree: dict[str, Any], state: MapState) -> None:
        """Diagnose segments no rule reads (Z-segments included) and fields no rule reads."""
        consumed = self.compiled.consumed
        ignore = self.compiled.ignore
        for name, occurrences in tree.items():
            fields = consumed.get("@" + name)
            if name in ignore:
                continue
            if fields is None:
                state.diagnose("unused-segment", "segment present but not mapped", name)
                continue
            if "" in fields:
                continue
            seen: set[str] = set()
            for segment in occurrences:
                for number in segment:
                    if number.isdigit() and number not in fields and number not in seen:
                        seen.add(number)
                        if f"{name}.{number}" not in ignore:
                            state.diagnose(
                                "unused-field", "field present but not mapped", f"{name}-{number}"
                            )

    def _describe(self, text: str, env: Env) -> str:
        """Path text with each %context replaced by the type of resource it found."""

        def swap(match: re.Match[str]) -> str:
            name = match.group(1)
            col = env.contexts.get(name)
            if col and isinstance(col[0], dict) and col[0].get("resourceType"):
                return str(col[0]["resourceType"])
            ctx = self._contexts.get(name)
            return self._describe(ctx.path.text, env) if ctx else match.group(0)

        first = text.split("|")[0].strip()
        return _CONTEXT_REF.sub(swap, first)

    def _located(self, exc: GatewayError, env: Env) -> GatewayError:
        """A record validation error re-pointed at the message element the rule reads."""
        target = exc.expression or ""
        rule = self._targets.get(target)
        while rule is None and "." in target:
            target = target.rsplit(".", 1)[0]
            rule = self._targets.get(target)
        if rule is not None and rule.source is not None:
            where = self._describe(rule.source.text, env)
            exc.message = f"{exc.message} (from {where})"
            exc.args = (exc.message,)
            exc.expression = where
        return exc


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _holds(cond: Condition, env: Env) -> bool:
    """Whether a rule's condition holds."""
    values = cond.path.evaluate(env)
    if cond.present is not None:
        return bool(values) == cond.present
    if cond.one_of is not None:
        return any(v in cond.one_of for v in values)
    return cond.equals in values


def _put(record: dict[str, Any], target: tuple[str, ...], value: Any) -> None:
    """Set a dotted target in the nested record."""
    node = record
    for part in target[:-1]:
        node = node.setdefault(part, {})
    node[target[-1]] = value


def load_mappings(directory: Path) -> dict[str, Mapping]:
    """Every source mapping under ``directory`` (abstract layers excluded), compiled."""
    if not directory.is_dir():
        raise MappingError("mappings folder not found", file=str(directory))
    out: dict[str, Mapping] = {}
    for folder in sorted(p for p in directory.iterdir() if (p / "mapping.yaml").is_file()):
        compiled = compile_source(directory, folder.name)
        if not compiled.abstract:
            out[folder.name] = Mapping(compiled)
    return out
