"""Regenerate profiles/fhir-r4-elements.json, the element table behind gateway.fhir.structure.

Usage (from the repository root, with the project virtualenv)::

    python profiles/build_elements.py            # rewrites profiles/fhir-r4-elements.json
    python profiles/build_elements.py --check    # exits 1 if the file is out of date

The table is read from the pydantic models of the installed ``fhir.resources`` package,
subpackage ``fhir.resources.R4B`` (FHIR 4.3.0, the release the package ships closest to R4;
R4B only adds resources and elements to R4 for the ones the gateway handles). For every
model class (resource, datatype, and backbone element, the latter named after its model
class, e.g. ``BundleEntry``) each pydantic field flagged ``element_property`` in its
``json_schema_extra`` gives:

* the JSON name: the field's alias (choice elements such as ``valueString`` are separate
  fields already; the ``__ext`` companion fields for ``_name`` are skipped, since the
  checker derives ``_name`` from the element being primitive);
* whether the element repeats: the annotation is ``List[...]`` (inside ``Optional``);
* the FHIR type: for a primitive, the fhir_core metadata class inside ``Annotated[...]``
  looked up in ``fhir_core.constraints.FHIR_PRIMITIVES_MAPS`` (``bool`` is ``boolean``,
  pydantic's UUID is ``uuid``); for a complex type, the ``FhirBase`` subclass whose
  ``_model_klass`` names the model (its class name is the type name, ``Resource`` for a
  nested resource such as ``contained`` or ``Bundle.entry.resource``).

Output, compact JSON::

    {"fhirVersion": "4.3.0",
     "primitives": ["base64Binary", ...],
     "resources": ["Account", ...],                 # concrete resource types
     "types": {"Patient": {"name": ["HumanName", 1], "active": ["boolean", 0], ...}, ...}}

Every element a type has, inherited ones included, is listed under that type.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import types
import typing
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "fhir-r4-elements.json"
PACKAGE = "fhir.resources.R4B"


def _strip_optional(annotation: Any) -> Any:
    """Return the annotation without a ``None`` member of a union."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _type_name(annotation: Any, primitives_map: dict[Any, str], fhir_base: type) -> str:
    """Return the FHIR type name for a field annotation already stripped of Optional/List."""
    if annotation is bool:
        return "boolean"
    if typing.get_origin(annotation) is typing.Annotated:
        _base, *metadata = typing.get_args(annotation)
        for item in metadata:
            name = primitives_map.get(type(item))
            if name is not None:
                return name
            if type(item).__name__ == "UuidVersion":
                return "uuid"
        raise ValueError(f"no FHIR primitive in {annotation!r}")
    if isinstance(annotation, type) and issubclass(annotation, fhir_base):
        model_klass: str = annotation._model_klass  # type: ignore[attr-defined]
        return model_klass.rsplit(".", 1)[1]
    raise ValueError(f"unrecognised annotation {annotation!r}")


def _field_entry(annotation: Any, primitives_map: dict[Any, str], fhir_base: type) -> list[Any]:
    """Return ``[type_name, is_list]`` for one element field."""
    inner = _strip_optional(annotation)
    is_list = 0
    if typing.get_origin(inner) in (list, typing.List):  # noqa: UP006
        (inner,) = typing.get_args(inner)
        inner = _strip_optional(inner)
        is_list = 1
    return [_type_name(inner, primitives_map, fhir_base), is_list]


def build_table() -> dict[str, Any]:
    """Build the element table from the installed fhir.resources R4B models."""
    from fhir_core.constraints import FHIR_PRIMITIVES_MAPS
    from fhir_core.fhirabstractmodel import FHIRAbstractModel
    from fhir_core.types import FhirBase

    package = importlib.import_module(PACKAGE)
    resource_base = importlib.import_module(f"{PACKAGE}.resource").Resource
    abstract = {"Resource", "DomainResource"}

    models: dict[str, type[FHIRAbstractModel]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name in ("fhirtypes", "fhirtypesvalidators") or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{PACKAGE}.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, FHIRAbstractModel)
                and value.__module__ == module.__name__
            ):
                if value.__name__ in models and models[value.__name__] is not value:
                    raise SystemExit(f"two models named {value.__name__}")
                models[value.__name__] = value

    table: dict[str, dict[str, list[Any]]] = {}
    primitives: set[str] = set()
    resources: list[str] = []
    for name in sorted(models):
        model = models[name]
        if issubclass(model, resource_base) and name not in abstract:
            resources.append(name)
        elements: dict[str, list[Any]] = {}
        for field in model.model_fields.values():
            extra = field.json_schema_extra
            if not isinstance(extra, dict) or not extra.get("element_property"):
                continue
            entry = _field_entry(field.annotation, FHIR_PRIMITIVES_MAPS, FhirBase)
            if entry[0][0].islower():
                primitives.add(entry[0])
            elements[field.alias or ""] = entry
        table[name] = elements

    missing = {
        entry[0]
        for elements in table.values()
        for entry in elements.values()
        if entry[0] not in table and entry[0] not in primitives
    }
    if missing:
        raise SystemExit(f"types referenced but not generated: {sorted(missing)}")
    clash = set(resources) & primitives
    if clash:
        raise SystemExit(f"resource names that are also primitives: {sorted(clash)}")
    return {
        "fhirVersion": getattr(package, "__fhir_version__", "4.3.0"),
        "primitives": sorted(primitives),
        "resources": resources,
        "types": table,
    }


def render(table: dict[str, Any]) -> str:
    """Serialise the table as compact, stable JSON."""
    return json.dumps(table, separators=(",", ":"), sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, verify) the element table file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render(build_table())
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run profiles/build_elements.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(text.encode())} bytes, {len(table_types(text))} types)")
    return 0


def table_types(text: str) -> dict[str, Any]:
    """Return the ``types`` mapping of a rendered table (for the summary line)."""
    types_: dict[str, Any] = json.loads(text)["types"]
    return types_


if __name__ == "__main__":
    raise SystemExit(main())
