"""Safe parsing of FHIR XML into the same dict shape as FHIR JSON."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from lxml import etree

from gateway.errors import InvalidMessage
from gateway.fhir.elements import elements_of, is_resource_type

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"

_FHIR_PREFIX = "{" + FHIR_NS + "}"
_FHIR_PREFIX_LEN = len(_FHIR_PREFIX)
_FHIR_EXTENSION = _FHIR_PREFIX + "extension"
_XHTML_DIV = "{" + XHTML_NS + "}div"

_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
_COERCED = _INTEGER_TYPES | {"boolean", "decimal"}
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")

_local = threading.local()


def _parser() -> etree.XMLParser:
    """Return this thread's hardened parser (lxml parsers must not be shared across threads)."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        _local.parser = parser
    return parser


def parse_fhir_xml(raw: bytes) -> dict[str, Any]:
    """Parse an untrusted FHIR XML document into a FHIR JSON-shaped dict."""
    # Cheap early refusal; the check on the parsed tree below is the one that counts
    # (it also catches a DOCTYPE in a UTF-16 document, which this byte search misses).
    if b"<!DOCTYPE" in raw:
        raise InvalidMessage("DTDs are not allowed in FHIR XML")
    root = _parse_document(raw)
    if not isinstance(root.tag, str):
        raise InvalidMessage("The XML document has no root element")
    namespace, name = _split(root.tag)
    if namespace != FHIR_NS:
        raise InvalidMessage(
            f"The root element must be in the FHIR namespace {FHIR_NS}, not {namespace or 'none'}",
            expression="resourceType",
        )
    try:
        return _resource(root, name, name)
    except RecursionError:
        raise InvalidMessage("The XML document is nested too deeply") from None


def _parse_document(raw: bytes) -> Any:
    """Parse bytes with the hardened parser and refuse any DTD or non-UTF-8 document."""
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno is not None else "?"
        raise InvalidMessage(f"Malformed XML at line {line}: {exc.msg}") from None
    except (ValueError, TypeError) as exc:  # e.g. a str with an encoding declaration
        raise InvalidMessage(f"Malformed XML: {exc}") from None
    if root is None:
        raise InvalidMessage("The XML document is empty")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise InvalidMessage("DTDs are not allowed in FHIR XML")
    encoding = (docinfo.encoding or "UTF-8").upper()
    if encoding not in ("UTF-8", "UTF8"):
        raise InvalidMessage(f"FHIR XML must be encoded in UTF-8, not {docinfo.encoding}")
    return root


def _split(tag: str) -> tuple[str, str]:
    """Split a Clark-notation tag ``{ns}local`` into (namespace, local name)."""
    if tag[:1] == "{":
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _check_no_text(text: str | None, path: str) -> None:
    """Refuse character data where FHIR XML allows only elements."""
    if text is not None and not text.isspace():
        raise InvalidMessage("Unexpected text content in FHIR XML", expression=path)


def _attributes(elem: Any, allowed: tuple[str, ...], path: str) -> dict[str, str]:
    """Return the element's un-namespaced attributes, refusing any not in ``allowed``."""
    found: dict[str, str] = {}
    for attr_name, attr_value in elem.attrib.items():
        if attr_name[:1] == "{":
            continue  # e.g. xsi:schemaLocation: carries no FHIR content
        if attr_name not in allowed:
            raise InvalidMessage(f"Unexpected attribute '{attr_name}'", expression=path)
        found[attr_name] = str(attr_value)
    return found


def _where(path: str, name: str, index: int | None) -> str:
    """Build the FHIRPath-style location of a child (only needed when reporting an error)."""
    return f"{path}.{name}" if index is None else f"{path}.{name}[{index}]"


def _resource(elem: Any, name: str, path: str) -> dict[str, Any]:
    """Convert a resource element (root or nested) whose local name is its type."""
    _check_no_text(elem.text, path)
    if elem.keys():
        _attributes(elem, (), path)
    result: dict[str, Any] = {"resourceType": name}
    elements = elements_of(name) if is_resource_type(name) else None
    _children(elem, name, elements, result, path, is_resource=True)
    return result


def _children(
    elem: Any,
    type_name: str,
    elements: Mapping[str, tuple[str, bool]] | None,
    out: dict[str, Any],
    path: str,
    *,
    is_resource: bool,
) -> None:
    """Convert the child elements of ``elem`` into ``out``; ``elements`` None means unknown type."""
    groups: dict[str, list[Any]] = {}
    for child in elem:
        tag = child.tag
        if type(tag) is not str:
            continue
        tail = child.tail
        if tail is not None and not tail.isspace():
            raise InvalidMessage("Unexpected text content in FHIR XML", expression=path)
        if tag.startswith(_FHIR_PREFIX):
            local = tag[_FHIR_PREFIX_LEN:]
        elif tag == _XHTML_DIV:
            local = "div"
        else:
            local = _split(tag)[1]
            raise InvalidMessage(
                f"Element '{local}' is not in the FHIR namespace", expression=f"{path}.{local}"
            )
        group = groups.get(local)
        if group is None:
            groups[local] = [child]
        else:
            group.append(child)

    for name, elems in groups.items():
        ctype: str | None
        if elements is None:
            ctype, repeats = None, True
        else:
            entry = elements.get(name)
            if entry is None or name[:1] == "_":
                raise InvalidMessage(f"Unknown element '{name}'", expression=f"{path}.{name}")
            ctype, repeats = entry
            if not repeats and len(elems) > 1:
                raise InvalidMessage(
                    f"Element '{name}' must not repeat", expression=f"{path}.{name}"
                )
            if not is_resource and (name == "id" or (name == "url" and type_name == "Extension")):
                raise InvalidMessage(
                    f"'{name}' must be an XML attribute here, not an element",
                    expression=f"{path}.{name}",
                )
        if ctype == "xhtml" or (ctype is None and name == "div"):
            if len(elems) != 1 or elems[0].tag != _XHTML_DIV:
                raise InvalidMessage(
                    "The narrative div must be one element in the XHTML namespace",
                    expression=f"{path}.{name}",
                )
            out[name] = _xhtml(elems[0])
        elif (ctype is not None and ctype[0].islower()) or (
            ctype is None and elems[0].get("value") is not None
        ):
            if repeats:
                values: list[Any] = []
                extras: list[dict[str, Any] | None] = []
                for index, child in enumerate(elems):
                    value, extra = _primitive(child, ctype, path, name, index)
                    values.append(value)
                    extras.append(extra)
                if values.count(None) != len(values):
                    out[name] = values
                if extras.count(None) != len(extras):
                    out["_" + name] = extras
            else:
                value, extra = _primitive(elems[0], ctype, path, name, None)
                if value is not None:
                    out[name] = value
                if extra is not None:
                    out["_" + name] = extra
        elif ctype == "Resource" or (ctype is None and _looks_like_container(elems[0])):
            if repeats:
                out[name] = [
                    _container(child, _where(path, name, index))
                    for index, child in enumerate(elems)
                ]
            else:
                out[name] = _container(elems[0], f"{path}.{name}")
        elif repeats:
            out[name] = [
                _complex(child, ctype, _where(path, name, index))
                for index, child in enumerate(elems)
            ]
        else:
            out[name] = _complex(elems[0], ctype, f"{path}.{name}")


def _looks_like_container(elem: Any) -> bool:
    """Return True if an element of unknown type wraps exactly one FHIR resource element."""
    kids = [c for c in elem if isinstance(c.tag, str)]
    if len(kids) != 1 or elem.keys():
        return False
    tag = kids[0].tag
    return bool(
        tag.startswith(_FHIR_PREFIX) and tag[_FHIR_PREFIX_LEN : _FHIR_PREFIX_LEN + 1].isupper()
    )


def _container(elem: Any, path: str) -> dict[str, Any]:
    """Convert a wrapper such as ``<resource><Patient>..</Patient></resource>``."""
    _check_no_text(elem.text, path)
    _attributes(elem, (), path)
    kids = [c for c in elem if isinstance(c.tag, str)]
    if len(kids) != 1:
        raise InvalidMessage("Expected exactly one resource element here", expression=path)
    _check_no_text(kids[0].tail, path)
    namespace, local = _split(kids[0].tag)
    if namespace != FHIR_NS or not local[:1].isupper():
        raise InvalidMessage(f"'{local}' is not a FHIR resource element", expression=path)
    return _resource(kids[0], local, path)


def _complex(elem: Any, type_name: str | None, path: str) -> dict[str, Any]:
    """Convert a datatype or backbone element: ``id``/``url`` attributes plus child elements."""
    _check_no_text(elem.text, path)
    result: dict[str, Any] = {}
    if elem.keys():
        allowed = ("id", "url") if type_name in (None, "Extension") else ("id",)
        result.update(_attributes(elem, allowed, path))
    if type_name is None:
        _children(elem, "", None, result, path, is_resource=False)
    else:
        _children(elem, type_name, elements_of(type_name), result, path, is_resource=False)
    return result


def _primitive(
    elem: Any, type_name: str | None, path: str, name: str, index: int | None
) -> tuple[Any, dict[str, Any] | None]:
    """Convert a primitive element to (JSON value or None, ``_name`` object or None)."""
    raw_value = elem.get("value")
    text = elem.text
    if text is not None and not text.isspace():
        raise InvalidMessage(
            "Unexpected text content in FHIR XML", expression=_where(path, name, index)
        )
    keys = elem.keys()
    if raw_value is not None and len(keys) == 1 and not len(elem):  # the common case
        if type_name in _COERCED:
            return _coerce(raw_value, type_name, _where(path, name, index)), None
        return raw_value, None
    where = _where(path, name, index)
    attrs = _attributes(elem, ("value", "id"), where)
    extra: dict[str, Any] = {}
    if "id" in attrs:
        extra["id"] = attrs["id"]
    extensions: list[dict[str, Any]] = []
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        _check_no_text(child.tail, where)
        if child.tag != _FHIR_EXTENSION:
            raise InvalidMessage(
                f"A primitive element may only contain extensions, not '{_split(child.tag)[1]}'",
                expression=where,
            )
        extensions.append(_complex(child, "Extension", f"{where}.extension[{len(extensions)}]"))
    if extensions:
        extra["extension"] = extensions
    if raw_value is None and not extra:
        raise InvalidMessage("A primitive element needs a value or an extension", expression=where)
    value = None if raw_value is None else _coerce(raw_value, type_name, where)
    return value, (extra or None)


def _coerce(text: str, type_name: str | None, path: str) -> Any:
    """Turn an XML value attribute into the JSON value FHIR JSON would carry."""
    if type_name == "boolean":
        if text == "true":
            return True
        if text == "false":
            return False
        raise InvalidMessage(f"'{text}' is not a boolean (true or false)", expression=path)
    if type_name in _INTEGER_TYPES:
        if not _INTEGER.fullmatch(text):
            raise InvalidMessage(f"'{text}' is not an integer", expression=path)
        return int(text)
    if type_name == "decimal":
        if _INTEGER.fullmatch(text):
            return int(text)
        if not _DECIMAL.fullmatch(text):
            raise InvalidMessage(f"'{text}' is not a decimal", expression=path)
        return float(text)
    return text


def _xhtml(div: Any) -> str:
    """Serialise the narrative div with only the XHTML namespace, as the default one."""
    clean = _copy_xhtml(div, None)
    return str(etree.tostring(clean, encoding="unicode", with_tail=False))


def _copy_xhtml(source: Any, parent: Any) -> Any:
    """Copy an XHTML subtree, dropping namespace declarations inherited from the FHIR document."""
    attrib = {str(k): str(v) for k, v in source.attrib.items()}
    if parent is None:
        node = etree.Element(source.tag, attrib, nsmap={None: XHTML_NS})
    else:
        node = etree.SubElement(parent, source.tag, attrib)
        node.tail = source.tail
    node.text = source.text
    for child in source:
        if isinstance(child.tag, str):
            _copy_xhtml(child, node)
    return node
