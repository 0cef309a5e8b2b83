"""What the API checks outside marshmallow fields, written into the OpenAPI document.

marshmallow's ``validates_schema`` rules (a reason for some statuses, a coding for an unknown
instrument, each known instrument's score range) do not reach apispec's output; without them
the document would promise that bodies the API refuses are fine. OpenAPI 3.1 schemas are
JSON Schema 2020-12, so each rule is an ``if``/``then`` under ``allOf``. A request body
checked by a JSON Schema file is marked ``{"x-json-schema-file": "<path under the project>"}``
in its operation and replaced here by that file, its definitions moved into the components.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.config import ROOT
from gateway.record.outcome import INSTRUMENTS, REASON_REQUIRED

FILE_MARK = "x-json-schema-file"


def _when(name: str, value: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """If property ``name`` is present and matches ``value``, then ``then`` holds."""
    return {"if": {"properties": {name: value}, "required": [name]}, "then": then}


def outcome_rules() -> dict[str, list[dict[str, Any]]]:
    """The ``allOf`` to add to each component, by component name."""
    ranges = [
        _when(
            "instrument",
            {"const": name},
            {"properties": {"score": {"minimum": low, "maximum": high}}},
        )
        for name, (low, high) in INSTRUMENTS.items()
    ]
    return {
        "OutcomeRecord": [
            _when("status", {"enum": sorted(REASON_REQUIRED)}, {"required": ["status_reason"]})
        ],
        "OutcomeAssessment": [
            _when("instrument", {"not": {"enum": list(INSTRUMENTS)}}, {"required": ["coding"]}),
            *ranges,
        ],
    }


def file_schema(relative: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema file as an OpenAPI schema; its definitions become ``schemas`` entries
    named after the file's folder (``mappings/community/...`` and ``date``: ``community_date``)."""
    prefix = Path(relative).parent.name
    loaded = json.loads((ROOT / relative).read_text(encoding="utf-8"))
    for key in ("$schema", "$id"):
        loaded.pop(key, None)
    definitions = loaded.pop("definitions", None) or loaded.pop("$defs", None) or {}
    text = json.dumps({"root": loaded, "defs": definitions})
    for old in ("#/definitions/", "#/$defs/"):
        text = text.replace(f'"{old}', f'"#/components/schemas/{prefix}_')
    rewritten = json.loads(text)
    for name, schema in rewritten["defs"].items():
        schemas[f"{prefix}_{name}"] = schema
    root: dict[str, Any] = rewritten["root"]
    return root


def _embed_files(document: dict[str, Any]) -> None:
    """Replace each request body marked with a JSON Schema file by the file (in place)."""
    schemas = document["components"]["schemas"]
    for item in document["paths"].values():
        for operation in item.values():
            content = (
                operation.get("requestBody", {}).get("content", {})
                if isinstance(operation, dict)
                else {}
            )
            for media in content.values():
                marked = media.get("schema", {}).get(FILE_MARK)
                if marked:
                    media["schema"] = file_schema(marked, schemas)


def add_rules(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the code-checked rules and the file schemas added (in place)."""
    schemas = document["components"]["schemas"]
    for name, rules in outcome_rules().items():
        if name in schemas:
            schemas[name]["allOf"] = [*schemas[name].get("allOf", []), *rules]
    _embed_files(document)
    return document
