"""JSON sources: the document schema a mapping names, checked before any rule runs.

A JSON mapping (``format: json``) may name a JSON Schema file beside its mapping.yaml
(``schema: referral.schema.json``). Every document is checked against it first, so a
partner who sends a number where text belongs, or leaves out the person, is told which
element is wrong (``$.person.nhs_number must be text``) instead of getting a record with the
item silently left out. Elements are named in JSONPath (``$.person.nhs_number``), as every
location in a JSON document is. The nearest layer that names a schema decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from gateway.errors import GatewayError, InvalidContent, MappingError, RequiredMissing
from gateway.mapping.files import LineDict

#: How a JSON type is named in a refusal.
_KINDS = {
    "string": "text",
    "object": "a JSON object",
    "array": "a JSON array",
    "boolean": "true or false",
    "number": "a number",
    "integer": "a whole number",
    "null": "null",
}


@dataclass(frozen=True)
class DocumentSchema:
    """A compiled document schema and the file it came from."""

    file: str
    check: Callable[[Any], Any]

    def validate(self, document: Any) -> None:
        """Refuse a document that does not pass the schema, naming the element."""
        try:
            self.check(document)
        except fastjsonschema.JsonSchemaValueException as exc:
            raise refusal(exc) from None


def element_of(name: str) -> str:
    """fastjsonschema's ``data.person.nhs_number`` as JSONPath: ``$.person.nhs_number``."""
    return "$" + name.removeprefix("data")


def _kind(definition: Any) -> str:
    """A schema ``type`` (one or a list) in words."""
    kinds = definition if isinstance(definition, list) else [definition]
    return " or ".join(_KINDS.get(str(k), str(k)) for k in kinds)


def refusal(exc: fastjsonschema.JsonSchemaValueException) -> GatewayError:
    """The refusal of a document that failed its schema, at the element that failed."""
    where = element_of(exc.name or "data")
    shown = where if where != "$" else "the document"
    rule = exc.rule
    if rule == "required":
        present = exc.value if isinstance(exc.value, dict) else {}
        missing = next((n for n in exc.rule_definition or [] if n not in present), "")
        item = f"{where}.{missing}"
        return RequiredMissing(f"{item} is required and is missing", expression=item)
    if rule == "type":
        message = f"{shown} must be {_kind(exc.rule_definition)}"
    elif rule == "enum":
        options = ", ".join(orjson.dumps(o).decode() for o in exc.rule_definition or [])
        message = f"{shown} must be one of {options}"
    else:
        definition = getattr(exc, "definition", None) or {}
        hint = definition.get("description") if isinstance(definition, dict) else None
        message = f"{shown} is not in the expected form" + (f": {hint}" if hint else "")
    return InvalidContent(message, expression=where)


def document_schema(
    layers: list[tuple[Path, LineDict]], message_format: str
) -> DocumentSchema | None:
    """The schema the nearest layer names (JSON mappings only), compiled, or None."""
    named = [(file, doc) for file, doc in layers if "schema" in doc]
    for file, doc in named:
        if message_format != "json":
            raise MappingError(
                "schema is for JSON mappings (format: json) only",
                file=str(file),
                line=doc.lines.get("schema"),
            )
    if not named:
        return None
    file, doc = named[-1]
    path = file.parent / doc["schema"]
    try:
        definition = orjson.loads(path.read_bytes())
        check = fastjsonschema.compile(definition)
    except OSError as exc:
        raise MappingError(
            f"schema: cannot read {path.name}: {exc.strerror}", file=str(file)
        ) from None
    except orjson.JSONDecodeError as exc:
        raise MappingError(f"schema {path.name} is not JSON: {exc}", file=str(file)) from None
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise MappingError(
            f"schema {path.name} is not a JSON Schema: {exc}", file=str(file)
        ) from None
    return DocumentSchema(str(path), check)
