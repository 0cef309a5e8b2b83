"""Decoding of an untrusted HTTP body into a FHIR JSON-shaped dict."""

from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.errors import InvalidMessage, PayloadTooLarge, UnsupportedMediaType
from gateway.fhir.xml import parse_fhir_xml

JSON_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json"})
XML_MEDIA_TYPES = frozenset({"application/fhir+xml", "application/xml", "text/xml"})
_UTF8_NAMES = frozenset({"utf-8", "utf8"})
_BOM = b"\xef\xbb\xbf"


def decode_body(
    raw: bytes, content_type: str | None, *, max_bytes: int | None = None
) -> dict[str, Any]:
    """Decode a FHIR JSON or XML body into a dict whose top level has a string resourceType."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise PayloadTooLarge(f"The body is {len(raw)} bytes; the limit is {max_bytes}")
    media_type = media_type_of(content_type)
    if media_type is None:
        probe = raw.removeprefix(_BOM).lstrip()
        if not probe:
            raise InvalidMessage("The body is empty")
        is_xml = probe[:1] == b"<"
    elif media_type in JSON_MEDIA_TYPES:
        is_xml = False
    else:
        is_xml = True
    resource = parse_fhir_xml(raw) if is_xml else _parse_json(raw)
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise InvalidMessage(
            "The resource must have a string 'resourceType'", expression="resourceType"
        )
    return resource


def media_type_of(content_type: str | None) -> str | None:
    """Return the accepted media type named by a Content-Type header, or None if it is absent."""
    if content_type is None or not content_type.strip():
        return None
    head, *params = content_type.split(";")
    media_type = head.strip().lower()
    if media_type not in JSON_MEDIA_TYPES and media_type not in XML_MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type '{media_type}' is not supported; send application/fhir+json "
            "or application/fhir+xml"
        )
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').strip().lower()
            if charset not in _UTF8_NAMES:
                raise UnsupportedMediaType(
                    f"Charset '{charset}' is not supported; FHIR bodies must be UTF-8"
                )
    return media_type


def _parse_json(raw: bytes) -> dict[str, Any]:
    """Parse a JSON body with orjson and require a top-level object."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _json_error(raw, exc) from None
    except RecursionError:  # orjson has its own depth limit; this is belt and braces
        raise InvalidMessage("The JSON body is nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidMessage(
            f"The body must be a JSON object holding a resource, not a JSON {json_kind(value)}",
            expression="resourceType",
        )
    escaped = raw.find(b"\\") >= 0  # memchr: most bodies have no escape at all
    if escaped and b"\\u0000" in raw:  # cheap pre-filter: only such bodies are walked
        where = _nul_location(value)
        if where is not None:
            raise InvalidMessage(
                "FHIR strings must not contain the NUL character (U+0000)", expression=where
            )
    if not _surely_unique_keys(raw, value, escaped):
        repeated = _repeated_key(raw)
        if repeated is not None:
            where, key = repeated
            raise InvalidMessage(
                f"Property '{key}' is given more than once in one JSON object; "
                "a FHIR JSON object must not repeat a property",
                expression=where,
            )
    return value


def _surely_unique_keys(raw: bytes, value: dict[str, Any], escaped: bool) -> bool:
    """True when no JSON object in ``raw`` can repeat a key (False: look properly).

    orjson keeps the last of repeated keys, so the parsed value has as many keys as the text
    only when none repeats. Every key in the text is followed by a colon, and so is every key
    orjson writes back; the other colons are inside strings, the same in both except for
    colons the text escaped (``\\u003a``), counted here from above. So the text holds at
    least as many colons as the value written back, and exactly as many only when no key
    repeats and no repeated key's value was dropped.
    """
    try:
        written = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # cannot happen for parsed JSON; look properly
        return False
    in_text = _colons(raw)
    if escaped:
        in_text += raw.count(b"\\u003a") + raw.count(b"\\u003A")
    return in_text == _colons(written)


def _colons(data: bytes) -> int:
    """How many colons ``data`` holds (``replace`` finds them with memchr; ``count`` of one
    byte walks every byte, about twice the cost for a FHIR body)."""
    return len(data) - len(data.replace(b":", b""))


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs in text order, repeats kept (slow path only)."""


def _repeated_key(raw: bytes) -> tuple[str, str] | None:
    """(FHIRPath, key) of the first property repeated within one JSON object, or None."""
    try:
        tree = json.loads(raw, object_pairs_hook=_Pairs)
    except RecursionError:
        raise InvalidMessage("The JSON body is nested too deeply") from None
    except ValueError as exc:  # orjson read it; the standard library is stricter on numbers
        raise InvalidMessage(f"The JSON body could not be read: {exc}") from None
    if not isinstance(tree, _Pairs):
        return None
    root = next((v for k, v in reversed(tree) if k == "resourceType"), None)
    stack: list[tuple[Any, str]] = [(tree, root if isinstance(root, str) else "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Pairs):
            seen: set[str] = set()
            for key, _ in node:
                if key in seen:
                    return (f"{path}.{key}" if path else key), key
                seen.add(key)
            stack.extend((item, f"{path}.{key}" if path else key) for key, item in reversed(node))
        elif isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(node))))
    return None


def _nul_location(value: dict[str, Any]) -> str | None:
    """The location of the first key or string holding U+0000, FHIRPath style, or None."""
    root = value.get("resourceType")
    stack: list[tuple[Any, str]] = [(value, root if isinstance(root, str) else "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return path
        elif isinstance(node, dict):
            for key in node:
                if "\x00" in key:
                    return f"{path}.{key}"
            stack.extend((item, f"{path}.{key}") for key, item in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(node))))
    return None


def _json_error(raw: bytes, exc: orjson.JSONDecodeError) -> InvalidMessage:
    """Explain an orjson failure: bad UTF-8 (with byte offset), too deep, or malformed JSON."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return InvalidMessage(f"The body is not valid UTF-8 (invalid byte at offset {bad.start})")
    if "depth" in exc.msg or "recursion" in exc.msg.lower():
        return InvalidMessage(
            f"The JSON body is nested too deeply (at line {exc.lineno}, column {exc.colno})"
        )
    return InvalidMessage(
        f"Malformed JSON at line {exc.lineno}, column {exc.colno} (character {exc.pos}): {exc.msg}"
    )


def json_kind(value: Any) -> str:
    """Name the JSON kind of a parsed value, for messages."""
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
