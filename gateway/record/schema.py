"""JSON Schema for the record, generated from the marshmallow schemas, and a fast validator."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import fastjsonschema
from marshmallow import Schema, fields, validate

from gateway.errors import InvalidContent, RequiredMissing
from gateway.record.check import fast_check
from gateway.record.model import ReferralRecord

SCHEMA_ID = "https://sp-gateway.example/schema/referral-record.json"
_SIMPLE = {
    fields.String: "string",
    fields.Boolean: "boolean",
    fields.Integer: "integer",
    fields.Float: "number",
}


def _field_schema(field: fields.Field[Any]) -> dict[str, Any]:
    """The JSON Schema of one marshmallow field."""
    out: dict[str, Any]
    if isinstance(field, fields.Nested):
        nested = field.nested
        assert isinstance(nested, type) and issubclass(nested, Schema)
        out = _object_schema(nested())
    elif isinstance(field, fields.List):
        out = {"type": "array", "items": _field_schema(field.inner)}
    elif isinstance(field, fields.Date):
        out = {"type": "string", "format": "date"}
    else:
        out = {"type": next(t for cls, t in _SIMPLE.items() if isinstance(field, cls))}
    for rule in field.validators:
        if isinstance(rule, validate.Length):
            if rule.min is not None:
                out["minLength"] = rule.min
            if rule.max is not None:
                out["maxLength"] = rule.max
        elif isinstance(rule, validate.OneOf):
            out["enum"] = list(rule.choices)
        elif isinstance(rule, validate.Regexp):
            out["pattern"] = rule.regex.pattern
    if field.allow_none:
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        out["type"] = [out["type"], "null"]
    return out


def _object_schema(schema: Schema) -> dict[str, Any]:
    """The JSON Schema of one marshmallow schema (closed: no additional properties)."""
    out: dict[str, Any] = {
        "type": "object",
        "description": (type(schema).__doc__ or "").strip(),
        "properties": {f.data_key or name: _field_schema(f) for name, f in schema.fields.items()},
        "required": [f.data_key or name for name, f in schema.fields.items() if f.required],
        "additionalProperties": False,
    }
    out.update(getattr(type(schema), "json_schema_extra", {}))
    if not out["required"]:
        del out["required"]
    return out


@cache
def record_json_schema() -> dict[str, Any]:
    """The record's JSON Schema (draft 2020-12), generated once from ReferralRecord."""
    body = _object_schema(ReferralRecord())
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **body}


@cache
def _compiled() -> Callable[[Any], Any]:
    """The record schema compiled to Python by fastjsonschema (draft 7 semantics suffice)."""
    schema = dict(record_json_schema())
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return fastjsonschema.compile(schema)


def _location(error: fastjsonschema.JsonSchemaValueException) -> str:
    """A dotted record path for a validation error, e.g. person.given_name."""
    path = [str(p) for p in (error.path or []) if p != "data"]
    if error.rule == "required" and error.definition:
        missing = [r for r in error.definition.get("required", []) if r not in (error.value or {})]
        if missing:
            path.append(missing[0])
    return ".".join(path) or "record"


@cache
def _fast() -> Callable[[Any], bool]:
    """The generated yes/no check: True only for records the full validator accepts."""
    schema = dict(record_json_schema())
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return fast_check(schema)


def validate_record(record: dict[str, Any]) -> None:
    """Raise RequiredMissing or InvalidContent naming the record path when the record is invalid."""
    if _fast()(record):
        return
    try:
        _compiled()(record)
    except fastjsonschema.JsonSchemaValueException as exc:
        where = _location(exc)
        if exc.rule == "required":
            raise RequiredMissing(f"mandatory item {where} is missing", expression=where) from None
        message = exc.message.replace("data.", "", 1).replace("data ", "", 1)
        raise InvalidContent(f"{where}: {message}", expression=where) from None
