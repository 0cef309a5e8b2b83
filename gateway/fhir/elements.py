"""The generated FHIR R4 element table: what each type's elements are, compiled for the check.

``gateway.fhir.structure`` checks resources against it; the lookups here serve the XML reader.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

ELEMENTS_FILE = Path(__file__).resolve().parents[2] / "profiles" / "fhir-r4-elements.json"

# Kinds of element in the compiled table.
PRIMITIVE = 0  # a FHIR primitive: a JSON string, number or boolean
COMPLEX = 1  # a datatype or backbone element: a JSON object
RESOURCE = 2  # a nested resource (contained, Bundle.entry.resource, ...)
PRIMITIVE_EXT = 3  # the ``_name`` companion of a primitive: a JSON object (Element)
RESOURCE_TYPE = 4  # the ``resourceType`` key of a resource, checked by the caller

# JSON value types each primitive accepts (exact ``type()`` match, so True is not an integer).
_JSON_TYPES: dict[str, frozenset[type]] = {
    "boolean": frozenset({bool}),
    "integer": frozenset({int}),
    "integer64": frozenset({str}),
    "positiveInt": frozenset({int}),
    "unsignedInt": frozenset({int}),
    "decimal": frozenset({int, float}),
}
STRING_TYPES: frozenset[type] = frozenset({str})

# (kind, is_list, child element map or allowed JSON types, FHIR type name)
Spec = tuple[int, bool, Any, str]
Elements = dict[str, Spec]


class ElementTable:
    """The element table, raw (for lookups) and compiled (for the checker)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.raw: dict[str, dict[str, list[Any]]] = data["types"]
        self.resources: frozenset[str] = frozenset(data["resources"])
        self.primitives: frozenset[str] = frozenset(data["primitives"])
        compiled: dict[str, Elements] = {name: {} for name in self.raw}
        element_map = compiled.get("Element", {})
        for name, elements in self.raw.items():
            target = compiled[name]
            if name in self.resources:
                target["resourceType"] = (RESOURCE_TYPE, False, None, "string")
            for element, (type_name, is_list) in elements.items():
                repeats = bool(is_list)
                if type_name in self.primitives:
                    allowed = _JSON_TYPES.get(type_name, STRING_TYPES)
                    target[element] = (PRIMITIVE, repeats, allowed, type_name)
                    target["_" + element] = (PRIMITIVE_EXT, repeats, element_map, "Element")
                elif type_name == "Resource":
                    target[element] = (RESOURCE, repeats, None, type_name)
                else:
                    target[element] = (COMPLEX, repeats, compiled[type_name], type_name)
        self.compiled = compiled
        fast = fast_maps(compiled)
        self.fast = {name: fast[name] for name in self.resources}
        self.by_type: dict[str, dict[str, tuple[str, bool]]] = {
            name: {element: (str(t), bool(r)) for element, (t, r) in elements.items()}
            for name, elements in self.raw.items()
        }


@functools.cache
def element_table() -> ElementTable:
    """Load and compile the element table once, on first use."""
    return ElementTable(orjson.loads(ELEMENTS_FILE.read_bytes()))


def preload() -> None:
    """Load the element table now, so the first request does not pay for it (~50 ms)."""
    element_table()


def is_resource_type(name: str) -> bool:
    """Return True if ``name`` is a concrete FHIR resource type."""
    return name in element_table().resources


def is_primitive_type(type_name: str) -> bool:
    """Return True if ``type_name`` is a FHIR primitive type (string, boolean, ...)."""
    return type_name in element_table().primitives


def element_type(type_name: str, element: str) -> str | None:
    """Return the FHIR type of ``type_name.element`` ("Resource" for a nested resource), or None."""
    entry = element_table().raw.get(type_name, {}).get(element)
    return None if entry is None else str(entry[0])


def is_list(type_name: str, element: str) -> bool:
    """Return True if ``type_name.element`` repeats (also True when either is unknown)."""
    entry = element_table().raw.get(type_name, {}).get(element)
    return True if entry is None else bool(entry[1])


def elements_of(type_name: str) -> Mapping[str, tuple[str, bool]] | None:
    """Return the read-only {element: (type, is_list)} map of a type name, or None if unknown."""
    return element_table().by_type.get(type_name)


# The fast check's view of one element map: keys holding a single JSON string (the most
# common case, a plain type test), and every other key with its check.
FastMap = tuple[frozenset[str], dict[str, tuple[int, bool, Any]]]
NESTED = 5  # a nested resource: a JSON object whose resourceType picks its map
EXTENSION = 6  # an Extension (always a list): also checked for url and a single value


def fast_maps(compiled: dict[str, Elements]) -> dict[str, FastMap]:
    """The fast check's maps, built from the compiled element table (children shared)."""
    out: dict[str, FastMap] = {}
    for name, elements in compiled.items():
        strings = frozenset(
            key
            for key, (kind, repeats, arg, _) in elements.items()
            if kind == RESOURCE_TYPE or (kind == PRIMITIVE and not repeats and arg is STRING_TYPES)
        )
        out[name] = (strings, {})
    by_id = {id(elements): out[name] for name, elements in compiled.items()}
    for name, elements in compiled.items():
        strings, other = out[name]
        for key, (kind, repeats, arg, type_name) in elements.items():
            if key in strings:
                continue
            if kind == COMPLEX and repeats and type_name == "Extension":
                other[key] = (EXTENSION, repeats, by_id[id(arg)])
            elif kind in (COMPLEX, PRIMITIVE_EXT):
                other[key] = (kind, repeats, by_id[id(arg)])
            elif kind == RESOURCE:
                other[key] = (NESTED, repeats, None)
            else:
                other[key] = (kind, repeats, arg)
    return out
