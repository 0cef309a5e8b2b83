"""A fast checker for a subset of FHIR R4B, compiled from fhir.resources' own pydantic schemas.

fhir.resources validates every element with a pydantic model whose Python validators (nulls
in lists, required primitives, value[x] choices, the nested model's class) run per element;
for a write-back Bundle of about 50 elements that is about 95 % of the time. This module
takes the same models apart once (about 0.1 s) and compiles one pydantic-core validator of
plain typed dicts for the elements a caller names:

- every primitive element keeps the very core schema its fhir.resources model uses (regex,
  length, the dateTime/date/decimal/url/base64Binary validators), so a primitive value passes
  here exactly when it passes there;
- a complex element refers to the compiled checker of its model class, when that class is in
  the subset; elements of other classes (extensions, narrative, contained resources, ...) are
  left out, so a dict carrying one is refused here;
- unknown keys are refused (the models forbid them too); an element is required when its
  model requires it (pydantic, the required primitives of ``get_required_fields``, a
  required value[x] choice), and a class that requires an element of a class outside the
  subset is refused whole; at most one value[x] of a choice is given;
- a null passes only where the model's own schema takes one (an optional element, an item
  of a primitive list), never for a required primitive nor in a list of complex elements
  (where fhir_core's validators refuse it), nor for a required complex element (which
  fhir.resources lets through);
- ``Bundle.entry.resource`` (and any other Resource-typed element) accepts the resource
  classes of the subset, told apart by ``resourceType``, which every resource must carry.

So the checker is never more lenient than fhir.resources for the subset: it accepts a
subset of what the models accept. What it refuses may still be valid FHIR (an extension, a
model object, a field given by its Python name): the caller then asks fhir.resources, which
stays the judge and names the failing element. Compilation checks that each model's schema
has the shape this relies on (the fhir_core validators, nothing else), so an upgrade of
fhir.resources that adds a validator fails to compile instead of checking less.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic_core import CoreSchema, SchemaValidator, ValidationError, core_schema

__all__ = ["SubsetChecker", "compile_subset"]

ModelClass = type[FHIRAbstractModel]

#: The qualified name of the validator fhir_core wraps around every complex element.
_COMPLEX_VALIDATOR = "FhirBase.__get_pydantic_core_schema__.<locals>._validate"


class SubsetChecker:
    """A compiled checker: ``accepts(value)`` is True only if fhir.resources accepts it too."""

    def __init__(self, validator: SchemaValidator, classes: Mapping[str, ModelClass]) -> None:
        """Wrap a compiled validator and remember which model classes it covers."""
        self._validate = validator.validate_python
        self.classes = dict(classes)

    def accepts(self, value: Any) -> bool:
        """Whether the value passes the compiled checks (False: ask fhir.resources)."""
        try:
            self._validate(value)
        except Exception:  # any failure (a validator's own bug too): ask the models
            return False
        return True

    def errors(self, value: Any) -> list[Any]:
        """The compiled checker's own findings for the value (empty when it accepts it)."""
        try:
            self._validate(value)
        except ValidationError as exc:
            return list(exc.errors())
        return []


def compile_subset(
    root: ModelClass,
    resources: Iterable[ModelClass],
    datatypes: Iterable[ModelClass],
) -> SubsetChecker:
    """Compile the checker for ``root`` over these resources and datatypes (and their backbones).

    A backbone element (BundleEntry, TaskOutput, ...) belongs to the subset when the
    resource whose module defines it does.
    """
    resource_list = [root, *resources]
    by_type = {cls.__resource_type__: cls for cls in resource_list}
    allowed = {cls.__resource_type__: cls for cls in datatypes} | by_type
    resource_modules = {cls.__module__ for cls in resource_list}
    definitions: dict[str, CoreSchema] = {}
    pending: list[ModelClass] = list(resource_list)

    def include(cls: ModelClass) -> bool:
        """Whether the class is in the subset (queued for compilation if not yet seen)."""
        name = cls.__resource_type__
        if allowed.get(name) is not cls and cls.__module__ not in resource_modules:
            return False
        allowed[name] = cls
        if name not in definitions and cls not in pending:
            pending.append(cls)
        return True

    while pending:
        cls = pending.pop()
        definitions[cls.__resource_type__] = _compile_model(cls, include, by_type)
    schema = core_schema.definitions_schema(
        core_schema.definition_reference_schema(root.__resource_type__),
        list(definitions.values()),
    )
    return SubsetChecker(SchemaValidator(schema), allowed)


def _compile_model(
    cls: ModelClass,
    include: Callable[[ModelClass], bool],
    resources: Mapping[str, ModelClass],
) -> CoreSchema:
    """The typed-dict schema of one model class, with its required-element and value[x] check."""
    fields_schema = _model_fields(cls)
    required_primitives = {name for name, _ext in cls.get_required_fields(None)}  # type: ignore[arg-type]
    fields: dict[str, core_schema.TypedDictField] = {}
    aliases: dict[str, str] = {}
    present: list[str] = []  # required primitives: the key must be there and not null
    for name, field in fields_schema["fields"].items():
        alias = field.get("validation_alias", name)
        if not isinstance(alias, str):
            raise TypeError(f"{cls.__name__}.{name}: unexpected alias {alias!r}")
        aliases[name] = alias
        if name == "fhir_comments" or alias.startswith("_"):
            continue  # comments and primitive extensions are left to fhir.resources
        schema = field["schema"]
        optional = schema["type"] == "default"
        if optional:
            schema = typing.cast(core_schema.WithDefaultSchema, schema)["schema"]
        inner = _element_schema(cls, name, schema, include, resources)
        if inner is None:
            if not optional:  # every instance needs an element this checker refuses
                return _refused(cls, f"{alias} is of a class outside the subset")
            continue
        if name in required_primitives:
            present.append(alias)
        required = not optional or name in required_primitives
        fields[alias] = core_schema.typed_dict_field(inner, required=required)
    if cls.__resource_type__ in resources:
        fields["resourceType"] = core_schema.typed_dict_field(
            core_schema.literal_schema([cls.__resource_type__]), required=True
        )
    schema = core_schema.typed_dict_schema(fields, extra_behavior="forbid", strict=True)
    choices = []
    for group, members in cls.get_one_of_many_fields(None).items():  # type: ignore[arg-type]
        info = cls.model_fields[members[0]].json_schema_extra
        required = isinstance(info, dict) and info.get("one_of_many_required") is True
        keys = tuple(aliases[m] for m in members if aliases[m] in fields)
        if required and not keys:
            return _refused(cls, f"no {group}[x] of the subset can be given")
        choices.append((group, keys, required))
    if choices or present:
        check = _presence_check(tuple(present), choices)
        schema = core_schema.no_info_after_validator_function(check, schema)
    schema["ref"] = cls.__resource_type__
    return schema


def _refused(cls: ModelClass, why: str) -> CoreSchema:
    """The schema of a class no instance of which the subset can hold: always refused."""
    message = f"{cls.__name__}: {why} (left to fhir.resources)"

    def refuse(value: Any) -> Any:
        raise ValueError(message)

    schema = core_schema.no_info_plain_validator_function(refuse)
    schema["ref"] = cls.__resource_type__
    return schema


def _presence_check(
    present: tuple[str, ...], choices: list[tuple[str, tuple[str, ...], bool]]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The check that required primitives are not null and at most one value[x] is given."""

    def check(value: dict[str, Any]) -> dict[str, Any]:
        for key in present:
            if value[key] is None:
                raise ValueError(f"{key} is required")
        for group, keys, required in choices:
            given = [k for k in keys if value.get(k) is not None]
            if len(given) > 1:
                raise ValueError(f"{group}[x]: only one of {given} may be given")
            if required and not given:
                raise ValueError(f"{group}[x] is required")
        return value

    return check


def _model_fields(cls: ModelClass) -> core_schema.ModelFieldsSchema:
    """The model-fields schema of a fhir.resources model, checking the validators around it."""
    for method in ("__init__", "_validate_one_of_many", "_validate_required_primitive_elements"):
        if getattr(cls, method) is not getattr(FHIRAbstractModel, method):
            raise TypeError(f"{cls.__name__}.{method} is overridden: not covered by the subset")
    schema: Any = cls.__pydantic_core_schema__
    if schema["type"] == "definitions":
        schema = schema["schema"]
    expected = [
        ("function-after", FHIRAbstractModel.validate_after_model_construction),
        ("model", None),
        ("function-before", FHIRAbstractModel.reject_null_complex_elements.__func__),
        ("model-fields", None),
    ]
    for step, function in expected:
        if schema["type"] != step:
            raise TypeError(f"{cls.__name__}: unexpected schema {schema['type']!r}")
        if function is not None:
            given = schema["function"]["function"]
            if getattr(given, "__func__", given) is not function:
                raise TypeError(f"{cls.__name__}: unexpected validator {given!r}")
        if step != "model-fields":
            schema = schema["schema"]
    return typing.cast(core_schema.ModelFieldsSchema, schema)


def _element_schema(
    cls: ModelClass,
    name: str,
    schema: CoreSchema,
    include: Callable[[ModelClass], bool],
    resources: Mapping[str, ModelClass],
) -> CoreSchema | None:
    """One field's schema: a primitive as the model has it, a complex one by reference.

    A null is allowed where the model's schema allows it. None when the field's elements
    are of a class outside the subset.
    """
    if schema["type"] == "nullable":
        inner = _element_schema(cls, name, schema["schema"], include, resources)
        return None if inner is None else core_schema.nullable_schema(inner)
    if schema["type"] == "list":
        items = _element_schema(cls, name, schema["items_schema"], include, resources)
        if items is None:
            return None
        return typing.cast(CoreSchema, {**schema, "items_schema": items})
    if not _is_complex(schema):
        _no_references(cls, name, schema)
        return schema
    target = _complex_class(cls, name)
    if target.__name__ == "Resource" and _any_resource(cls, name):
        # a Resource-typed element: the subset's resources, told apart by resourceType
        return core_schema.tagged_union_schema(
            {kind: core_schema.definition_reference_schema(kind) for kind in resources},
            discriminator="resourceType",
        )
    if not include(target):
        return None
    return core_schema.definition_reference_schema(target.__resource_type__)


def _is_complex(schema: CoreSchema) -> bool:
    """Whether this is fhir_core's wrapper around a complex element (model class by name)."""
    if schema["type"] != "function-wrap":
        return False
    function = typing.cast(core_schema.WrapValidatorFunctionSchema, schema)["function"]
    qualname = getattr(function["function"], "__qualname__", "")
    return bool(qualname == _COMPLEX_VALIDATOR)


def _no_references(cls: ModelClass, name: str, schema: Any) -> None:
    """Refuse a primitive schema that refers to definitions this checker does not carry."""
    if isinstance(schema, dict):
        if schema.get("type") in ("definition-ref", "definitions"):
            raise TypeError(f"{cls.__name__}.{name}: a primitive schema with definitions")
        for value in schema.values():
            _no_references(cls, name, value)
    elif isinstance(schema, list):
        for value in schema:
            _no_references(cls, name, value)


def _field_type(cls: ModelClass, name: str) -> type[FhirBase]:
    """The fhir_core type of a complex field's elements (its model class is named in it)."""
    annotation: Any = cls.model_fields[name].annotation
    while typing.get_origin(annotation) is not None:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{cls.__name__}.{name}: unexpected annotation {annotation!r}")
        annotation = args[0]
    if not (isinstance(annotation, type) and issubclass(annotation, FhirBase)):
        raise TypeError(f"{cls.__name__}.{name}: unexpected annotation {annotation!r}")
    return annotation


def _complex_class(cls: ModelClass, name: str) -> ModelClass:
    """The model class of a complex field (Resource or Element for a polymorphic one)."""
    return _field_type(cls, name).get_model_klass()


def _any_resource(cls: ModelClass, name: str) -> bool:
    """Whether the field takes any resource, chosen by its ``resourceType`` (Bundle.entry)."""
    return issubclass(_field_type(cls, name), FhirElementOrResourceBase)
