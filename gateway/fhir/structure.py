"""Structural check of FHIR JSON resources against the generated R4 element table."""

from __future__ import annotations

from typing import Any

from gateway.errors import BrokenInvariant, InvalidMessage
from gateway.fhir.elements import (
    COMPLEX,
    EXTENSION,
    NESTED,
    PRIMITIVE,
    PRIMITIVE_EXT,
    RESOURCE,
    STRING_TYPES,
    Elements,
    FastMap,
    Spec,
    element_table,
)


class _Fail(Exception):
    """Internal: a structure problem, with its path collected in reverse while unwinding."""

    def __init__(self, message: str, segment: str | None = None, invariant: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = [] if segment is None else [segment]
        self.invariant = invariant


def check_resource(resource: dict[str, Any]) -> None:
    """Raise InvalidMessage if a FHIR JSON resource breaks the R4 element structure."""
    table = element_table()
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


def _fits(obj: dict[str, Any], fast: FastMap) -> bool:
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
            if kind == PRIMITIVE:
                if type(value) not in arg:
                    return False
            elif kind == NESTED:
                if not _fits_resource(value):
                    return False
            elif type(value) is not dict or not _fits(value, arg):
                return False
        elif type(value) is not list:
            return False
        elif kind == PRIMITIVE:
            for item in value:
                if type(item) not in arg and item is not None:
                    return False
        elif kind == COMPLEX:
            for item in value:
                if type(item) is not dict or not _fits(item, arg):
                    return False
        elif kind == NESTED:
            for item in value:
                if not _fits_resource(item):
                    return False
        elif kind == EXTENSION:
            for item in value:
                if type(item) is not dict or not _fits(item, arg) or _extension_fault(item):
                    return False
        else:  # PRIMITIVE_EXT
            for item in value:
                if item is not None and (type(item) is not dict or not _fits(item, arg)):
                    return False
    return True


def _fits_resource(value: Any) -> bool:
    """Whether a nested resource surely fits (one extra call, as ``_walk_resource``)."""
    if type(value) is not dict:
        return False
    resource_type = value.get("resourceType")
    fast = element_table().fast.get(resource_type) if type(resource_type) is str else None
    # Only resource types have fast maps, so a datatype name is left to ``_walk``.
    return fast is not None and _fits(value, fast)


def _walk(obj: dict[str, Any], elements: Elements) -> None:
    """Check every key of one JSON object against its type's element map (the hot path)."""
    for key, value in obj.items():
        spec = elements.get(key)
        if spec is None:
            raise _Fail(f"Unknown element '{key}'", key)
        kind, repeats, arg, _ = spec
        if repeats:
            if type(value) is not list:
                raise _Fail(_describe(key, spec, value, False), key)
            if kind == PRIMITIVE:
                for index, item in enumerate(value):
                    if type(item) not in arg and item is not None:
                        raise _Fail(_describe(key, spec, item, True), f"{key}[{index}]")
            elif kind == COMPLEX:
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
            elif kind == RESOURCE:
                for index, item in enumerate(value):
                    try:
                        _walk_resource(item, key)
                    except _Fail as fail:
                        fail.path.append(f"{key}[{index}]")
                        raise
            else:  # PRIMITIVE_EXT
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
        elif kind == PRIMITIVE:
            if type(value) not in arg:
                raise _Fail(_describe(key, spec, value, False), key)
        elif kind in (COMPLEX, PRIMITIVE_EXT):
            if type(value) is not dict:
                raise _Fail(_describe(key, spec, value, False), key)
            try:
                _walk(value, arg)
            except _Fail as fail:
                fail.path.append(key)
                raise
        elif kind == RESOURCE:
            try:
                _walk_resource(value, key)
            except _Fail as fail:
                fail.path.append(key)
                raise
        # RESOURCE_TYPE: validated by whoever chose this element map


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
    table = element_table()
    if type(resource_type) is not str or resource_type not in table.resources:
        message = (
            f"Unknown resourceType {resource_type!r}"
            if isinstance(resource_type, str)
            else f"Element '{key}' holds a resource without a string 'resourceType'"
        )
        raise _Fail(message, "resourceType")
    _walk(value, table.compiled[resource_type])


def _describe(key: str, spec: Spec, value: Any, in_array: bool) -> str:
    """Explain why ``value`` does not fit ``spec`` (slow path, only on failure)."""
    kind, repeats, _, type_name = spec
    if repeats and not in_array:
        return f"Element '{key}' must be an array"
    if value is None:
        return f"Element '{key}' must not be null"
    if isinstance(value, list):
        return f"Element '{key}' must not be an array"
    if kind == PRIMITIVE:
        if isinstance(value, dict):
            return f"Element '{key}' is a primitive ({type_name}), not an object"
        wanted = {"boolean": "a JSON boolean", "decimal": "a JSON number"}.get(
            type_name, "a JSON string" if spec[2] is STRING_TYPES else "a JSON integer"
        )
        return f"Element '{key}' must be {wanted} ({type_name})"
    return f"Element '{key}' must be a JSON object ({type_name}), not a primitive value"
