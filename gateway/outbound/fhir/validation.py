"""Checking a write-back Bundle against FHIR R4 (fhir.resources R4B) quickly.

Bundles are built as plain dicts and validated once at the end (``validate``), chosen by
measurement (bench/README.md, "Write-back Bundles: how they are built and checked").
fhir.resources runs Python validators for every element, so ``validate`` first runs a
checker compiled, on first use, from the fhir.resources models themselves
(gateway.fhir.r4b_subset: their own primitive schemas, required elements and choices, as one
pydantic-core validator of typed dicts for ``SUBSET_RESOURCES`` and ``SUBSET_DATATYPES``); it
accepts only what fhir.resources accepts (tests/outbound/fhir/test_subset.py compares the two
on every fixture's outcomes and on mutated Bundles), and whatever it refuses goes to
fhir.resources (``validate_full``), which decides and names the failing element.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import orjson
from fhir.resources.R4B.attachment import Attachment
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.identifier import Identifier
from fhir.resources.R4B.messageheader import MessageHeader
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.quantity import Quantity
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

from gateway.fhir.r4b_subset import SubsetChecker, compile_subset

#: Per resource type, the elements whose values repeat within a Bundle or across Bundles.
_REUSABLE: dict[str, dict[str, Any]] = {
    "Task": {
        "code": CodeableConcept,
        "focus": Reference,
        "for": Reference,
        "requester": Reference,
        "owner": Reference,
    },
    "Observation": {"category": CodeableConcept, "code": CodeableConcept, "subject": Reference},
    "Procedure": {"basedOn": Reference, "code": CodeableConcept, "subject": Reference},
    "DocumentReference": {"type": CodeableConcept, "subject": Reference, "author": Reference},
}
_SEEN: dict[tuple[Any, bytes], Any] = {}
_SEEN_MAX = 4096
#: The element set of the Bundles built here: the resources, and the datatypes they use
#: (their backbone elements, such as BundleEntry and TaskOutput, come with the resources).
SUBSET_RESOURCES = (Task, Observation, Procedure, DocumentReference, MessageHeader)
SUBSET_DATATYPES = (Identifier, Reference, CodeableConcept, Coding, Quantity, Attachment)


def _where(bundle: dict[str, Any], loc: tuple[int | str, ...]) -> str:
    """A FHIRPath-like location, naming the entry's resource type (entry[2](Observation).code)."""
    out = "Bundle"
    for i, step in enumerate(loc):
        if isinstance(step, int):
            out += f"[{step}]"
            if i > 0 and loc[i - 1] == "entry":
                with contextlib.suppress(KeyError, IndexError, TypeError):
                    out += f"({bundle['entry'][step]['resource']['resourceType']})"
        else:
            out += f".{step}"
    return out


def _reusing(bundle: dict[str, Any]) -> dict[str, Any]:
    """The Bundle with its repeating datatype elements swapped for already-validated models."""
    if not isinstance(bundle["entry"], list):
        raise TypeError("Bundle.entry is not a list")
    entries = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        table = _REUSABLE.get(resource.get("resourceType"))
        if table is None:
            entries.append(entry)
            continue
        resource = dict(resource)
        for key, model in table.items():
            value = resource.get(key)
            if isinstance(value, dict):
                resource[key] = _validated(model, value)
            elif isinstance(value, list):
                resource[key] = [_validated(model, v) if isinstance(v, dict) else v for v in value]
        if isinstance(resource.get("output"), list):
            resource["output"] = [
                {**o, "type": _validated(CodeableConcept, o["type"])}
                if isinstance(o, dict) and isinstance(o.get("type"), dict)
                else o
                for o in resource["output"]
            ]
        entries.append({**entry, "resource": resource})
    return {**bundle, "entry": entries}


def _validated(model: Any, value: dict[str, Any]) -> Any:
    """``model.model_validate(value)``, remembered by content (the cache is bounded)."""
    key = (model, orjson.dumps(value))
    found = _SEEN.get(key)
    if found is None:
        found = model.model_validate(value)
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[key] = found
    return found


@functools.cache
def checker() -> SubsetChecker:
    """The checker compiled from fhir.resources for this module's element set (on first use)."""
    return compile_subset(Bundle, SUBSET_RESOURCES, SUBSET_DATATYPES)


def validate(bundle: dict[str, Any]) -> None:
    """Check the Bundle against FHIR R4 (fhir.resources R4B); ValueError names the element.

    The checker compiled from the fhir.resources models (gateway.fhir.r4b_subset) accepts
    only Bundles that fhir.resources accepts; whatever it refuses (an error, or an element
    outside this module's element set) goes to fhir.resources (``validate_full``), which
    decides and names the failing element.
    """
    if checker().accepts(bundle):
        return
    validate_full(bundle)


def validate_full(bundle: dict[str, Any]) -> None:
    """Validate with the fhir.resources models themselves; ValueError names the element.

    Datatype elements that repeat (codes, the patient, the service) are validated once and
    reused, which fhir.resources treats exactly as validating them in place: it validates
    every element on its own with ``model_validate``. On any failure the whole Bundle is
    validated again from the plain dicts, so the error names the element's place.
    """
    try:
        Bundle.model_validate(_reusing(bundle))
    except (ValidationError, AttributeError, KeyError, TypeError, orjson.JSONEncodeError):
        pass
    else:
        return
    try:
        Bundle.model_validate(bundle)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _where(bundle, tuple(first["loc"]))
        raise ValueError(f"the Bundle is not valid FHIR R4: {where}: {first['msg']}") from None
    except Exception as exc:  # fhir_core's own slips (an int url, an unknown resourceType)
        raise ValueError(f"the Bundle is not valid FHIR R4: {type(exc).__name__}: {exc}") from None
