"""Rule targets and ``require`` entries checked against the record schema at load."""

from __future__ import annotations

from typing import Any

from gateway.errors import MappingError
from gateway.record.schema import record_json_schema


def record_properties() -> dict[str, Any]:
    """The record schema's property tree, to check rule targets."""
    return record_json_schema()["properties"]  # type: ignore[no-any-return]


def check_target(target: str, props: dict[str, Any], fail: Any) -> dict[str, Any]:
    """The record schema node ``target`` names; fails unless it is a field of the record."""
    node: dict[str, Any] = {"properties": props}
    for part in target.split("."):
        children = node.get("properties") or node.get("items", {}).get("properties")
        if not children or part not in children:
            fail(f"rule target {target!r} is not a record field ({part!r} unknown)")
        node = children[part]
    return node


def fail_require(message: str, file: str, doc: Any) -> None:
    """Stop start-up for a ``require`` entry that names no record item."""
    raise MappingError(
        message.replace("rule target", "require"), file=file, line=doc.lines.get("require")
    )


def check_fields(target: str, spec: Any, node: dict[str, Any], fail: Any) -> None:
    """Fail unless every name under ``fields`` is a field of the target's list items."""
    if not isinstance(spec, dict) or "fields" not in spec:
        return
    item_props = node.get("items", {}).get("properties")
    if not item_props:
        fail(f"rule target {target!r} is not a list of objects, so it cannot take fields")
    for name in spec["fields"]:
        check_target(name, item_props, fail)
