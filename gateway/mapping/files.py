"""Reading mapping files: YAML with line numbers, checked against the mapping file schema."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml

from gateway.errors import MappingError
from gateway.mapping.codemaps import POLICIES

_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"}
_PATH = {"type": "string", "minLength": 1}
_WHEN = {
    "type": "object",
    "additionalProperties": False,
    "required": ["path"],
    "properties": {
        "path": _PATH,
        "equals": {},
        "in": {"type": "array"},
        "present": {"type": "boolean"},
    },
}
_RULE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "from": _PATH,
        "value": {},
        "each": _PATH,
        "fields": {
            "type": "object",
            "additionalProperties": {"$ref": "#/definitions/rule_or_path"},
        },
        "transform": {"type": "string"},
        "codemap": {"type": "string"},
        "default": {},
        "list": {"type": "boolean"},
        "when": _WHEN,
    },
}
MAPPING_FILE_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "definitions": {
        "rule": _RULE,
        "rule_or_path": {"anyOf": [_PATH, {"$ref": "#/definitions/rule"}]},
    },
    "type": "object",
    "additionalProperties": False,
    "required": ["source", "version"],
    "properties": {
        "source": _NAME,
        "version": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "abstract": {"type": "boolean"},
        "extends": _NAME,
        "format": {"enum": ["fhir", "hl7v2", "json"]},
        # JSON only: a JSON Schema file beside mapping.yaml that every document must pass.
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*\.json$"},
        "strict": {"type": "boolean"},
        "accepts": {
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    {"enum": ["message", "transaction", "batch", "ServiceRequest", "object"]},
                    {"type": "string", "pattern": "^[A-Z0-9]{3}\\^[A-Z0-9]{3}$"},
                ]
            },
        },
        "timezone": {"type": "string"},
        "contexts": {
            "type": "object",
            "additionalProperties": {
                "anyOf": [
                    _PATH,
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["from"],
                        "properties": {
                            "from": _PATH,
                            "required": {"type": "boolean"},
                            "all": {"type": "boolean"},
                        },
                    },
                ]
            },
        },
        "rules": {
            "type": "object",
            "additionalProperties": {
                "anyOf": [{"type": "null"}, {"$ref": "#/definitions/rule_or_path"}]
            },
        },
        "ignore": {
            "type": "array",
            # FHIR ``Type.element``, HL7 v2 ``SEG`` or ``SEG.N``, JSON ``key`` or ``object.key``.
            "items": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_]*(\.\w+)*$"},
        },
        # Record items this source's referrals must state (stricter policy as data).
        "require": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[a-z_]+(\.[a-z_]+)*$"},
        },
    },
}
CODEMAP_FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["codemaps"],
    "properties": {
        "codemaps": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["unknown", "map"],
                "properties": {
                    "description": {"type": "string"},
                    "system": {"type": "string"},
                    "unknown": {"enum": list(POLICIES)},
                    "default": {},
                    "map": {"type": "object"},
                },
            },
        }
    },
}
_check_mapping = fastjsonschema.compile(MAPPING_FILE_SCHEMA)
_check_codemaps = fastjsonschema.compile(CODEMAP_FILE_SCHEMA)


class LineDict(dict[str, Any]):
    """A YAML mapping that remembers the line of each key."""

    lines: dict[str, int]
    line: int


class _LineConstructor(yaml.constructor.SafeConstructor):
    """Mappings that record the line numbers of their keys and refuse duplicates."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        out = LineDict()
        out.line = node.start_mark.line + 1
        out.lines = {}
        for key_node, value_node in node.value:
            key = str(self.construct_object(key_node, deep=True))
            if key in out:
                raise yaml.MarkedYAMLError(
                    problem=f"{key!r} is given twice", problem_mark=key_node.start_mark
                )
            out[key] = self.construct_object(value_node, deep=True)
            out.lines[key] = key_node.start_mark.line + 1
        return out


class _LineLoader(_LineConstructor, yaml.SafeLoader):
    """The pure-Python SafeLoader with line numbers: it refuses tabs as YAML says."""


#: libyaml's loader when PyYAML was built with it (PyPI's wheels are), else the pure one.
_FastBase: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _FastLineLoader(_LineConstructor, _FastBase):  # type: ignore[misc]
    """libyaml's parser with line numbers (several times faster, but lenient about tabs)."""


def _line_map(loader: _LineLoader | _FastLineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    return loader.construct_mapping(node)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _line_map)
_FastLineLoader.add_constructor("tag:yaml.org,2002:map", _line_map)


def line_of(doc: Any, path: list[Any]) -> int | None:
    """The line of the deepest key in ``path`` that the document records.

    Error paths split keys on dots, so a dotted key (a rule target such as
    ``referral.priority``) is found by joining the following parts until a key matches.
    """
    line = getattr(doc, "line", None)
    node = doc
    parts = list(path)
    while parts:
        key = parts.pop(0)
        if isinstance(node, LineDict):
            joined = str(key)
            while joined not in node and parts:
                joined = f"{joined}.{parts.pop(0)}"
            if joined not in node:
                break
            line = node.lines.get(joined, line)
            node = node[joined]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
            line = getattr(node, "line", line)
        else:
            break
    return line


_NOT_ALLOWED = re.compile(r"must not contain \{'([^']+)'")


def read_yaml(path: Path) -> Any:
    """Parse one YAML file, naming file and line on a syntax error."""
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.load(text, Loader=_LineLoader if "\t" in text else _FastLineLoader)
    except yaml.MarkedYAMLError as exc:
        # An unclosed bracket is reported where the parser gave up; name where it opened.
        mark = exc.context_mark if exc.context and "flow" in exc.context else exc.problem_mark
        line = mark.line + 1 if mark else None
        raise MappingError(f"YAML syntax: {exc.problem}", file=str(path), line=line) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(f"cannot read: {exc}", file=str(path)) from None


def read_checked(path: Path, check: Any, empty: Any = None) -> Any:
    """A YAML file that passed ``check`` (a compiled schema; ``empty`` stands for an empty
    file), else a MappingError naming the element and its line."""
    doc = read_yaml(path)
    if doc is None and empty is not None:
        doc = empty
    try:
        check(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        where: list[Any] = [
            int(p) if str(p).isdigit() else p for p in exc.path or [] if p != "data"
        ]
        unknown = _NOT_ALLOWED.search(exc.message)
        if exc.rule == "additionalProperties" and unknown:
            where.append(unknown.group(1))
        message = exc.message.replace("data.", "").replace("data ", "file ")
        raise MappingError(
            f"{'.'.join(map(str, where)) or 'file'}: {message}",
            file=str(path),
            line=line_of(doc, where),
        ) from None
    return doc


def read_mapping_file(path: Path) -> LineDict:
    """A mapping.yaml checked against the mapping file schema."""
    doc: LineDict = read_checked(path, _check_mapping)
    return doc


def read_codemap_file(path: Path) -> LineDict:
    """A codemaps.yaml checked against the code map file schema."""
    doc: LineDict = read_checked(path, _check_codemaps)
    return doc
