"""A fast yes/no check of a record against its JSON Schema, generated as one Python function.

The check is conservative: it answers True only for records the full validator (fastjsonschema)
accepts, so a True skips the full validator and a False leaves it to find and word the error.
Its tests are narrower than JSON Schema's where that is simpler (``type(x) is str`` rather
than isinstance); the only place it must be exact is the condition of an ``if``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_IGNORED = frozenset({"$schema", "$id", "description", "title"})
_TYPES = {
    "string": "type({v}) is str",
    "null": "{v} is None",
    "boolean": "type({v}) is bool",
    "integer": "type({v}) is int",
    "number": "type({v}) in (int, float)",
    "object": "isinstance({v}, dict)",  # code map values are YAML mappings (dict subclasses)
    "array": "type({v}) is list",
}


class Unsupported(ValueError):
    """The schema uses a keyword the fast check does not handle."""


def is_date(value: str) -> bool:
    """Whether ``value`` is a real calendar date written YYYY-MM-DD."""
    if not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


class _Generator:
    """Writes the check's source; each schema node becomes nested statements."""

    def __init__(self) -> None:
        self.names: dict[str, Any] = {"_is_date": is_date, "_MISSING": object()}
        self.functions: list[str] = []
        self.count = 0

    def const(self, value: Any) -> str:
        name = f"_c{len(self.names)}"
        self.names[name] = value
        return name

    def function(self, schema: dict[str, Any], exact: bool) -> str:
        """A generated function ``f(x) -> bool`` for one schema; returns its name."""
        self.count += 1
        name = f"_f{self.count}"
        body = self.node(schema, "x", 1, exact)
        self.functions.append("\n".join([f"def {name}(x):", *body, "    return True"]))
        return name

    def node(
        self, schema: dict[str, Any], v: str, depth: int, exact: bool, present: bool = False
    ) -> list[str]:
        """Statements that return False unless the value in local ``v`` fits ``schema``.

        ``present``: the value is known not to be None.
        """
        pad = "    " * depth
        unknown = set(schema) - _IGNORED - _HANDLED
        if unknown:
            raise Unsupported(f"schema keywords {sorted(unknown)}")
        lines: list[str] = []
        types = schema.get("type")
        known = None  # the one JSON type the value surely has past the type test
        if types is not None:
            if exact:
                raise Unsupported("type inside an if")
            names = [types] if isinstance(types, str) else list(types)
            if present:
                names = [t for t in names if t != "null"]
            if names == ["string"] and {"minLength", "maxLength"} & set(schema):
                return self.short_string(schema, v, depth)
            tests = " or ".join(_TYPES[t].format(v=v) for t in names) or "False"
            lines.append(f"{pad}if not ({tests}):")
            lines.append(f"{pad}    return False")
            known = names[0] if len(names) == 1 else None
        if "enum" in schema:
            lines += [
                f"{pad}if {v} not in {self.const(list(schema['enum']))}:",
                f"{pad}    return False",
            ]
        if "const" in schema:
            if not isinstance(schema["const"], bool):
                raise Unsupported("const other than true or false")
            # As fastjsonschema tests a boolean const: a bool, and that very one.
            test = f"isinstance({v}, bool) and {v} is {schema['const']!r}"
            lines += [f"{pad}if not ({test}):", f"{pad}    return False"]
        lines += self.string(schema, v, depth, exact, known == "string")
        lines += self.array(schema, v, depth, exact, known == "array")
        lines += self.object(schema, v, depth, exact, known == "object")
        if "anyOf" in schema:
            if exact:
                raise Unsupported("anyOf inside an if")
            calls = " or ".join(f"{self.function(b, False)}({v})" for b in schema["anyOf"])
            lines += [f"{pad}if not ({calls}):", f"{pad}    return False"]
        if "if" in schema:
            if exact:
                raise Unsupported("if inside an if")
            test = self.function(schema["if"], True)
            then = self.function(schema.get("then", {}), False)
            otherwise = self.function(schema.get("else", {}), False)
            lines += [
                f"{pad}if not ({then}({v}) if {test}({v}) else {otherwise}({v})):",
                f"{pad}    return False",
            ]
        return lines

    def short_string(self, schema: dict[str, Any], v: str, depth: int) -> list[str]:
        """A string with only length limits (and perhaps an enum): one test."""
        if set(schema) - _IGNORED - {"type", "minLength", "maxLength", "enum"}:
            rest = {k: w for k, w in schema.items() if k != "type"}
            return [
                *self.short_string({"type": "string"}, v, depth),
                *self.node(rest, v, depth, False),
            ]
        pad = "    " * depth
        tests = [f"type({v}) is not str"]
        if "minLength" in schema:
            tests.append(_too_short(v, int(schema["minLength"])))
        if "maxLength" in schema:
            tests.append(f"len({v}) > {int(schema['maxLength'])}")
        if "enum" in schema:
            tests.append(f"{v} not in {self.const(list(schema['enum']))}")
        return [f"{pad}if {' or '.join(tests)}:", f"{pad}    return False"]

    def string(
        self, schema: dict[str, Any], v: str, depth: int, exact: bool, known: bool = False
    ) -> list[str]:
        """Tests of a string's length, pattern and format (``known``: surely a string)."""
        keys = {"minLength", "maxLength", "pattern", "format"} & set(schema)
        if not keys:
            return []
        if exact:
            raise Unsupported("string keywords inside an if")
        pad = "    " * depth
        tests = []
        if "minLength" in schema:
            tests.append(_too_short(v, int(schema["minLength"])))
        if "maxLength" in schema:
            tests.append(f"len({v}) > {int(schema['maxLength'])}")
        if "pattern" in schema:
            pattern = schema["pattern"]
            if pattern.endswith("$") and not pattern.endswith("\\$"):
                pattern = pattern[:-1] + r"\Z"
            tests.append(f"{self.const(re.compile(pattern).search)}({v}) is None")
            tests.append(f"'\\n' in {v}")
        if "format" in schema:
            if schema["format"] != "date":
                raise Unsupported(f"format {schema['format']}")
            tests.append(f"not _is_date({v})")
        guard = "" if known else f"type({v}) is str and "
        return [f"{pad}if {guard}({' or '.join(tests)}):", f"{pad}    return False"]

    def array(
        self, schema: dict[str, Any], v: str, depth: int, exact: bool, known: bool = False
    ) -> list[str]:
        """Tests of an array's length and items (``known``: surely a list)."""
        keys = {"items", "minItems", "maxItems"} & set(schema)
        if not keys:
            return []
        if exact:
            raise Unsupported("array keywords inside an if")
        pad = "    " * depth
        lines = [f"{pad}if {'True' if known else f'type({v}) is list'}:"]
        if "minItems" in schema:
            lines += [
                f"{pad}    if len({v}) < {int(schema['minItems'])}:",
                f"{pad}        return False",
            ]
        if "maxItems" in schema:
            lines += [
                f"{pad}    if len({v}) > {int(schema['maxItems'])}:",
                f"{pad}        return False",
            ]
        if "items" in schema:
            item = f"{v}_i"
            inner = self.node(schema["items"], item, depth + 2, exact)
            if inner:
                lines += [f"{pad}    for {item} in {v}:", *inner]
        lines.append(f"{pad}    pass")
        return lines

    def object(
        self, schema: dict[str, Any], v: str, depth: int, exact: bool, known: bool = False
    ) -> list[str]:
        """Tests of an object's keys and properties (``known``: surely a dict)."""
        props: dict[str, Any] = schema.get("properties", {})
        required = schema.get("required", [])
        closed = schema.get("additionalProperties", True)
        if not props and not required and closed is True:
            return []
        if closed not in (True, False) or (closed is False and exact):
            raise Unsupported("additionalProperties")
        pad = "    " * depth
        lines = [f"{pad}if {'True' if known else f'isinstance({v}, dict)'}:"]
        if closed is False:
            allowed = self.const(frozenset(props))
            lines += [f"{pad}    if not {allowed}.issuperset({v}):", f"{pad}        return False"]
        for key in required:
            lines += [f"{pad}    if {key!r} not in {v}:", f"{pad}        return False"]
        for index, (key, sub) in enumerate(props.items()):
            child = f"{v}_{index}"
            inner = self.node(sub, child, depth + 2, exact, present=True)
            if exact:
                inner = self.node(sub, child, depth + 2, exact)
                if inner:
                    lines.append(f"{pad}    {child} = {v}.get({key!r}, _MISSING)")
                    lines.append(f"{pad}    if {child} is not _MISSING:")
                    lines += inner
                continue
            if not inner and _accepts_none(sub):
                continue
            lines.append(f"{pad}    {child} = {v}.get({key!r})")
            lines.append(f"{pad}    if {child} is not None:")
            lines += inner or [f"{pad}        pass"]
            if not _accepts_none(sub):
                lines += [f"{pad}    elif {key!r} in {v}:", f"{pad}        return False"]
        lines.append(f"{pad}    pass")
        return lines


def _too_short(v: str, least: int) -> str:
    """A test that the string in local ``v`` is shorter than ``least`` (empty, for one)."""
    return f"not {v}" if least == 1 else f"len({v}) < {least}"


def _accepts_none(schema: dict[str, Any]) -> bool:
    """Whether a JSON null surely fits ``schema`` (False when unsure)."""
    if set(schema) & {"anyOf", "if", "const"}:
        return False
    types = schema.get("type")
    if types is not None and "null" not in ([types] if isinstance(types, str) else types):
        return False
    return "enum" not in schema or None in schema["enum"]


_HANDLED = frozenset(
    {
        "type",
        "enum",
        "const",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "additionalProperties",
        "anyOf",
        "if",
        "then",
        "else",
    }
)


def fast_check(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """The generated check for ``schema``; a check that always says False if it is unusual."""
    generator = _Generator()
    try:
        name = generator.function(schema, False)
    except Unsupported:
        return lambda record: False
    source = "\n\n".join(generator.functions)
    exec(compile(source, "<record check>", "exec"), generator.names)
    check: Callable[[Any], bool] = generator.names[name]
    return check
