"""What generated mapping code and the reference interpreter share at run time.

``Env`` is what a path sees while one message is mapped; ``ResourceIndex`` finds the
resource a Reference points at. The functions below are the only helpers the generated
code calls by name (it binds them as constants), so each is public and small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Collection = list[Any]
#: Marks "no entry" in a code map lookup (a code map may map a code to None).
MISSING = object()


@dataclass
class Env:
    """What a path sees while one message is mapped."""

    root: dict[str, Any]
    index: ResourceIndex
    contexts: dict[str, Collection] = field(default_factory=dict)
    this: Any = None
    touched: set[int] = field(default_factory=set)
    memo: dict[str, Collection] = field(default_factory=dict)


class ResourceIndex:
    """Finds the resource a Reference points at: bundle fullUrl, Type/id, or #contained.

    A ``#id`` reference names a resource contained in the same resource as the reference.
    When only one container in the message has that id (the usual case) it is found
    directly; otherwise the containers are searched for the reference itself.
    """

    def __init__(self, root: dict[str, Any]) -> None:
        self.by_key: dict[str, dict[str, Any]] = {}
        #: (position in Bundle.entry, resource) of every entry holding a resource.
        self.entries: list[tuple[int, dict[str, Any]]] = []
        self.contained: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
        if root.get("resourceType") != "Bundle":
            self._add(root, None)
            return
        by_key, listed = self.by_key, self.entries.append
        for position, entry in enumerate(as_list(root.get("entry"))):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue
            listed((position, resource))
            full_url = entry.get("fullUrl")
            if type(full_url) is str and full_url not in by_key:
                by_key[full_url] = resource
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if type(rtype) is str and type(rid) is str:
                by_key.setdefault(f"{rtype}/{rid}", resource)
            if "contained" in resource:
                self._add_contained(resource)

    def _add(self, resource: dict[str, Any], full_url: Any) -> None:
        """Index one resource by its fullUrl and Type/id, and its contained resources by #id."""
        if isinstance(full_url, str):
            self.by_key.setdefault(full_url, resource)
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(rtype, str) and isinstance(rid, str):
            self.by_key.setdefault(f"{rtype}/{rid}", resource)
        self._add_contained(resource)

    def _add_contained(self, resource: dict[str, Any]) -> None:
        """Index the resources contained in ``resource`` by #id."""
        for inner in as_list(resource.get("contained")):
            if isinstance(inner, dict) and isinstance(inner.get("id"), str):
                self.contained.setdefault("#" + inner["id"], []).append((resource, inner))

    def resolve(self, reference: str, holder: Any = None) -> dict[str, Any] | None:
        """The resource a reference string names, or None; ``holder`` is the Reference."""
        if reference.startswith("#"):
            candidates = self.contained.get(reference)
            if not candidates:
                return None
            if len(candidates) == 1 or holder is None:
                return candidates[0][1]
            for container, inner in candidates:
                if _holds_node(container, holder):
                    return inner
            return None
        found = self.by_key.get(reference)
        if found is None and "/" in reference and not reference.startswith("urn:"):
            parts = reference.rstrip("/").split("/")
            if "_history" in parts:
                parts = parts[: parts.index("_history")]
            found = self.by_key.get("/".join(parts[-2:]))
        return found


def _holds_node(tree: Any, node: Any) -> bool:
    """Whether ``node`` (by identity) is inside ``tree``."""
    if tree is node:
        return True
    if isinstance(tree, dict):
        return any(_holds_node(v, node) for v in tree.values())
    if isinstance(tree, list):
        return any(_holds_node(v, node) for v in tree)
    return False


def as_list(value: Any) -> Collection:
    """A FHIR JSON value as a collection."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def many(col: Collection, name: str) -> Collection:
    """Element ``name`` of every node in ``col``, flattened."""
    out: Collection = []
    for item in col:
        if type(item) is dict:
            value = item.get(name)
            if value is None:
                continue
            if type(value) is list:
                out.extend(value)
            else:
                out.append(value)
    return out


def part_one(col: Collection) -> Collection:
    """HL7 v2 part 1 of every node in ``col``: plain text with no parts is its own part 1."""
    if not any(type(item) is str for item in col):
        return many(col, "1")
    out: Collection = []
    for item in col:  # keep the order when plain text and parts are mixed
        out.extend([item] if type(item) is str else many([item], "1"))
    return out


def values_at(item: Any, names: Sequence[str]) -> Collection:
    """The values at ``names`` below one item (HL7 v2 part 1 of plain text is the text)."""
    col: Collection = [item]
    for name in names:
        col = part_one(col) if name == "1" else many(col, name)
    return col
