"""Structural check of FHIR JSON resources against the generated R4 element table."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import BrokenInvariant, InvalidMessage

ELEMENTS_FILE = Path(__file__).resolve().parents[2] / "profiles" / "fhir-r4-elements.json"

# Kinds of element in the compiled table.
_PRIMITIVE = 0  # a FHIR primitive: a JSON string, number or boolean
_COMPLEX = 1  # a datatype or backbone element: a JSON object
_RESOURCE = 2  # a nested resource (contained, Bundle.entry.resource, ...)
_PRIMITIVE_EXT = 3  # the ``_name`` companion of a primitive: a JSON object (Element)
_RESOURCE_TYPE = 4  # the ``resourceType`` key of a resource, checked by the caller

# JSON value types each primitive accepts (exact ``type()`` match, so True is not an integer).
_JSON_TYPES: dict[str, frozenset[type]] = {
    "boolean": frozenset({bool}),
    "integer": frozenset({int}),
    "integer64": frozenset({str}),
    "positiveInt": frozenset({int}),
    "unsignedInt": frozenset({int}),
    "decimal": frozenset({int, float}),
}
_STRING_TYPES: frozenset[type] = frozenset({str})

# (kind, is_list, child element map or allowed JSON types, FHIR type name)
_Spec = tuple[int, bool, Any, str]
_Elements = dict[str, _Spec]


class _Table:
    """The element table, raw (for lookups) and compiled (for the checker)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.raw: dict[str, dict[str, list[Any]]] = data["types"]
        self.resources: frozenset[str] = frozenset(data["resources"])
        self.primitives: frozenset[str] = frozenset(data["primitives"])
        compiled: dict[str, _Elements] = {name: {} for name in self.raw}
        element_map = compiled.get("Element", {})
        for name, elements in self.raw.items():
            target = compiled[name]
            if name in self.resources:
                target["resourceType"] = (_RESOURCE_TYPE, False, None, "string")
            for element, (type_name, is_list) in elements.items():
                repeats = bool(is_list)
                if type_name in self.primitives:
                    allowed = _JSON_TYPES.get(type_name, _STRING_TYPES)
                    target[element] = (_PRIMITIVE, repeats, allowed, type_name)
                    target["_" + element] = (_PRIMITIVE_EXT, repeats, element_map, "Element")
                elif type_name == "Resource":
                    target[element] = (_RESOURCE, repeats, None, type_name)
                else:
                    target[element] = (_COMPLEX, repeats, compiled[type_name], type_name)
        self.compiled = compiled
        fast = _fast_maps(compiled)
        self.fast = {name: fast[name] for name in self.resources}
        self.by_type: dict[str, dict[str, tuple[str, bool]]] = {
            name: {element: (str(t), bool(r)) for element, (t, r) in elements.items()}
            for name, elements in self.raw.items()
        }


@functools.cache
def _table() -> _Table:
    """Load and compile the element table once, on first use."""
    return _Table(orjson.loads(ELEMENTS_FILE.read_bytes()))


def preload() -> None:
    """Load the element table now, so the first request does not pay for it (~50 ms)."""
    _table()


def is_resource_type(name: str) -> bool:
    """Return True if ``name`` is a concrete FHIR resource type."""
    return name in _table().resources


def is_primitive_type(type_name: str) -> bool:
    """Return True if ``type_name`` is a FHIR primitive type (string, boolean, ...)."""
    return type_name in _table().primitives


def element_type(type_name: str, element: str) -> str | None:
    """Return the FHIR type of ``type_name.element`` ("Resource" for a nested resource), or None."""
    entry = _table().raw.get(type_name, {}).get(element)
    return None if entry is None else str(entry[0])


def is_list(type_name: str, element: str) -> bool:
    """Return True if ``type_name.element`` repeats (also True when either is unknown)."""
    entry = _table().raw.get(type_name, {}).get(element)
    return True if entry is None else bool(entry[1])


def elements_of(type_name: str) -> Mapping[str, tuple[str, bool]] | None:
    """Return the read-only {element: (type, is_list)} map of a type name, or None if unknown."""
    return _table().by_type.get(type_name)


class _Fail(Exception):
    """Internal: a structure problem, with its path collected in reverse while unwinding."""

    def __init__(self, message: str, segment: str | None = None, invariant: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = [] if segment is None else [segment]
        self.invariant = invariant


def check_resource(resource: dict[str, Any]) -> None:
    """Raise InvalidMessage if a FHIR JSON resource breaks the R4 element structure."""
    table = _table()
    resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(resource_type, str) or resource_type not in table.resources:
        raise InvalidMessage(
            f"Unknown resourceType {resource_type!r}"
            if isinstance(resource_type, str)
            else "The resource has no string 'resourceType'",
            expression="resourceType",
        )
    try:
        if _fits(resource, table.fast[resource_type]):
            return
    except RecursionError:
        pass  # the full walk below decides, and names the problem
    try:
        _walk(resource, table.compiled[resource_type])
    except _Fail as fail:
        fail.path.append(resource_type)
        error = BrokenInvariant if fail.invariant else InvalidMessage
        raise error(fail.message, expression=".".join(reversed(fail.path))) from None
    except RecursionError:
        raise InvalidMessage(
            "The resource is nested too deeply", expression=resource_type
        ) from None


# The fast check's view of one element map: keys holding a single JSON string (the most
# common case, a plain type test), and every other key with its check.
_FastMap = tuple[frozenset[str], dict[str, tuple[int, bool, Any]]]
_NESTED = 5  # a nested resource: a JSON object whose resourceType picks its map
_EXTENSION = 6  # an Extension (always a list): also checked for url and a single value


def _fast_maps(compiled: dict[str, _Elements]) -> dict[str, _FastMap]:
    """The fast check's maps, built from the compiled element table (children shared)."""
    out: dict[str, _FastMap] = {}
    for name, elements in compiled.items():
        strings = frozenset(
            key
            for key, (kind, repeats, arg, _) in elements.items()
            if kind == _RESOURCE_TYPE
            or (kind == _PRIMITIVE and not repeats and arg is _STRING_TYPES)
        )
        out[name] = (strings, {})
    by_id = {id(elements): out[name] for name, elements in compiled.items()}
    for name, elements in compiled.items():
        strings, other = out[name]
        for key, (kind, repeats, arg, type_name) in elements.items():
            if key in strings:
                continue
            if kind == _COMPLEX and repeats and type_name == "Extension":
                other[key] = (_EXTENSION, repeats, by_id[id(arg)])
            elif kind in (_COMPLEX, _PRIMITIVE_EXT):
                other[key] = (kind, repeats, by_id[id(arg)])
            elif kind == _RESOURCE:
                other[key] = (_NESTED, repeats, None)
            else:
                other[key] = (kind, repeats, arg)
    return out


def _fits(obj: dict[str, Any], fast: _FastMap) -> bool:
    """Whether one JSON object surely fits its element map (False: let ``_walk`` decide).

    The same rules as ``_walk``, without locating problems; one call per object, as there.
    """
    strings, other = fast
    for key, value in obj.items():
        if key in strings:
            if type(value) is not str:
                return False
            continue
        spec = other.get(key)
        if spec is None:
            return False
        kind, repeats, arg = spec
        if not repeats:
            if kind == _PRIMITIVE:
                if type(value) not in arg:
                    return False
            elif kind == _NESTED:
                if not _fits_resource(value):
                    return False
            elif type(value) is not dict or not _fits(value, arg):
                return False
        elif type(value) is not list:
            return False
        elif kind == _PRIMITIVE:
            for item in value:
                if type(item) not in arg and item is not None:
                    return False
        elif kind == _COMPLEX:
            for item in value:
                if type(item) is not dict or not _fits(item, arg):
                    return False
        elif kind == _NESTED:
            for item in value:
                if not _fits_resource(item):
                    return False
        elif kind == _EXTENSION:
            for item in value:
                if type(item) is not dict or not _fits(item, arg) or _extension_fault(item):
                    return False
        else:  # _PRIMITIVE_EXT
            for item in value:
                if item is not None and (type(item) is not dict or not _fits(item, arg)):
                    return False
    return True


def _fits_resource(value: Any) -> bool:
    """Whether a nested resource surely fits (one extra call, as ``_walk_resource``)."""
    if type(value) is not dict:
        return False
    resource_type = value.get("resourceType")
    fast = _table().fast.get(resource_type) if type(resource_type) is str else None
    # Only resource types have fast maps, so a datatype name is left to ``_walk``.
    return fast is not None and _fits(value, fast)


def _walk(obj: dict[str, Any], elements: _Elements) -> None:
    """Check every key of one JSON object against its type's element map (the hot path)."""
    for key, value in obj.items():
        spec = elements.get(key)
        if spec is None:
            raise _Fail(f"Unknown element '{key}'", key)
        kind, repeats, arg, _ = spec
        if repeats:
            if type(value) is not list:
                raise _Fail(_describe(key, spec, value, False), key)
            if kind == _PRIMITIVE:
                for index, item in enumerate(value):
                    if type(item) not in arg and item is not None:
                        raise _Fail(_describe(key, spec, item, True), f"{key}[{index}]")
            elif kind == _COMPLEX:
                index = 0
                try:
                    for item in value:
                        if type(item) is not dict:
                            raise _Fail(_describe(key, spec, item, True))
                        _walk(item, arg)
                        if spec[3] == "Extension":
                            _check_extension(item)
                        index += 1
                except _Fail as fail:
                    fail.path.append(f"{key}[{index}]")
                    raise
            elif kind == _RESOURCE:
                for index, item in enumerate(value):
                    try:
                        _walk_resource(item, key)
                    except _Fail as fail:
                        fail.path.append(f"{key}[{index}]")
                        raise
            else:  # _PRIMITIVE_EXT
                for index, item in enumerate(value):
                    if item is None:
                        continue
                    try:
                        if type(item) is not dict:
                            raise _Fail(_describe(key, spec, item, True))
                        _walk(item, arg)
                    except _Fail as fail:
                        fail.path.append(f"{key}[{index}]")
                        raise
        elif kind == _PRIMITIVE:
            if type(value) not in arg:
                raise _Fail(_describe(key, spec, value, False), key)
        elif kind in (_COMPLEX, _PRIMITIVE_EXT):
            if type(value) is not dict:
                raise _Fail(_describe(key, spec, value, False), key)
            try:
                _walk(value, arg)
            except _Fail as fail:
                fail.path.append(key)
                raise
        elif kind == _RESOURCE:
            try:
                _walk_resource(value, key)
            except _Fail as fail:
                fail.path.append(key)
                raise
        # _RESOURCE_TYPE: validated by whoever chose this element map


def _extension_fault(extension: dict[str, Any]) -> str | None:
    """What breaks FHIR's rules for an Extension (a url; a value or extensions, not both)."""
    if "url" not in extension:
        return "An extension must have a 'url'"
    values = [key for key in extension if key[:5] == "value"]
    if len(values) > 1:
        return f"An extension has one value[x], not {len(values)} ({', '.join(values)})"
    if values and extension.get("extension"):
        return f"An extension has either a value ({values[0]}) or nested extensions, not both"
    return None


def _check_extension(extension: dict[str, Any]) -> None:
    """Raise an invariant _Fail naming the url, or the second value, of a faulty Extension."""
    fault = _extension_fault(extension)
    if fault is None:
        return
    values = [key for key in extension if key[:5] == "value"]
    if "url" not in extension:
        raise _Fail(fault, invariant=True)
    raise _Fail(fault, values[1] if len(values) > 1 else "extension", invariant=True)


def _walk_resource(value: Any, key: str) -> None:
    """Check a nested resource: a JSON object whose resourceType picks its element map."""
    if type(value) is not dict:
        raise _Fail(f"Element '{key}' must be a JSON object holding a resource")
    resource_type = value.get("resourceType")
    table = _table()
    if type(resource_type) is not str or resource_type not in table.resources:
        message = (
            f"Unknown resourceType {resource_type!r}"
            if isinstance(resource_type, str)
            else f"Element '{key}' holds a resource without a string 'resourceType'"
        )
        raise _Fail(message, "resourceType")
    _walk(value, table.compiled[resource_type])


def _describe(key: str, spec: _Spec, value: Any, in_array: bool) -> str:
    """Explain why ``value`` does not fit ``spec`` (slow path, only on failure)."""
    kind, repeats, _, type_name = spec
    if repeats and not in_array:
        return f"Element '{key}' must be an array"
    if value is None:
        return f"Element '{key}' must not be null"
    if isinstance(value, list):
        return f"Element '{key}' must not be an array"
    if kind == _PRIMITIVE:
        if isinstance(value, dict):
            return f"Element '{key}' is a primitive ({type_name}), not an object"
        wanted = {"boolean": "a JSON boolean", "decimal": "a JSON number"}.get(
            type_name, "a JSON string" if spec[2] is _STRING_TYPES else "a JSON integer"
        )
        return f"Element '{key}' must be {wanted} ({type_name})"
    return f"Element '{key}' must be a JSON object ({type_name}), not a primitive value"
