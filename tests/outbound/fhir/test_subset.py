"""The compiled FHIR checker against fhir.resources itself: never more lenient, same verdicts.

The write-back Bundles of every fixture referral and many outcomes pass both; thousands of
mutated Bundles (wrong types, bad dates and codes, missing required elements, unknown
elements, nulls, two value[x] choices, ...) are judged by both: the checker never accepts
what fhir.resources refuses, and refuses what fhir.resources accepts only for an element
outside the gateway's element set (or a null for an element the model requires).
``validate`` (checker, then fhir.resources on refusal) gives fhir.resources' verdict on all.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.coding import Coding
from fhir.resources.R4B.observation import Observation
from pydantic import model_validator
from support import FIXTURES, walk

from gateway.fhir.r4b_subset import compile_subset
from gateway.outbound.fhir.bundle import build_message, build_transaction
from gateway.outbound.fhir.validation import checker, validate
from gateway.record.states import STATES

#: FHIR_SUBSET_FUZZ=full: every element of every Bundle with every value (about 56,000 Bundles).
FULL = os.environ.get("FHIR_SUBSET_FUZZ") == "full"
RECORDS = sorted(FIXTURES.glob("*/*.record.json"))
REFERRAL_ID = "3f6c1a52-8d0e-4b7a-9c2d-5e4f3a2b1c0d"
CONTACT = {"date": "2026-11-05T10:00:00+00:00", "mechanism": "telephone", "outcome": "attended"}
ASSESSMENTS = [
    {"instrument": "wemwbs", "score": 41, "date": "2026-11-05"},
    {"instrument": "swemwbs", "score": 21.5, "date": "2026-11-05"},
    {"instrument": "ons4-anxiety", "score": 6, "date": "2026-11-05"},
    {"instrument": "ucla3", "score": 7, "date": "2026-11-05"},
    {"instrument": "wemwbs", "score": 44, "date": "2026-11-19"},
    {
        "instrument": "my scale&x",
        "coding": {"system": "http://example.org/scales", "code": "my-scale", "display": "Mine"},
        "score": 3.25,
        "date": "2026-11-05",
    },
]
#: Values put in place of every element of a mutated Bundle.
VALUES: list[Any] = [
    *(None, 12, 1.5, True, 0, -1, 10**30, float("nan")),
    *("", " ", "x y", " lead", "a  b", "a\tb", "41", "1e3", "-", "a" * 70, "Task"),
    *("not a date", "2026-13-45", "2026-02-30", "2026-11-20T14:00:00", "2026", "12:00:00"),
    *("2026-11-20T25:00:00+00:00", "aGVsbG8=", "abc=", "http://x y", "urn:uuid:1"),
    *([], {}, [None], [{}], {"x": 1}, ["a"], [1], b"bytes"),
]
#: Elements added to every object of a mutated Bundle (unknown, a second value[x], ...).
ADDED: list[tuple[str, Any]] = [
    ("unknownElement", 1),
    ("id", "abc"),
    ("id", "a b"),
    ("valueString", "s"),
    ("valueBoolean", True),
    ("valueQuantity", {"value": 1}),
    ("effectivePeriod", {"start": "2026"}),
    ("performedString", "x"),
    ("display", None),
    ("text", "t"),
    ("status", "final"),
    ("resourceType", "Coding"),
    ("extension", [{"url": "http://example.org/x", "valueString": "y"}]),
    ("fhir_comments", "a comment"),
    ("_status", {"extension": [{"url": "http://example.org/x", "valueString": "y"}]}),
    ("meta", {"versionId": "1"}),
]
#: Additions outside the gateway's element set: the checker refuses them, fhir.resources may not.
OUTSIDE = {"extension", "fhir_comments", "_status", "meta", "resourceType"}


def outcomes() -> Iterator[dict[str, Any]]:
    """Outcomes in every status, with and without contacts, scores, activities and closure."""
    for status in STATES:
        outcome: dict[str, Any] = {
            "outcome_id": f"o-{status}",
            "status": status,
            "occurred_at": "2026-11-20T14:00:00+00:00",
        }
        if status in ("rejected", "cancelled", "on-hold", "failed"):
            outcome["status_reason"] = f"{status}: the person asked to stop"
        yield outcome
        yield {
            **outcome,
            "occurred_at": "2026-07-01T09:15:00",  # naive: UK local time
            "link_worker": "Sam Okafor",
            "contacts": [CONTACT, {**CONTACT, "mechanism": "face-to-face", "location_type": "GP"}],
            "assessments": ASSESSMENTS,
            "activities": [{"description": "Walking group", "status": "started"}],
            "clinical_summary": "Agreed goals: weekly walking group, back to the lunch club.",
        }
    yield {
        "outcome_id": "o-closed",
        "status": "completed",
        "occurred_at": "2026-12-01T12:00:00Z",
        "closure": {"date": "2026-12-01", "reason": "Goals met"},
    }


def payload(record: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """A write-back queue payload for this record and outcome."""
    referral = record.get("referral") or {}
    return {
        "referral": {
            "id": REFERRAL_ID,
            "source": "fixture",
            "identifier": referral.get("identifier") or "1001",
            "version": 1,
            "record": record,
        },
        "outcome": outcome,
        "outcome_seq": 2,
    }


def bundles_of(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The first transaction, a later one (PUT, earlier outputs) and the BaRS message."""
    first = build_transaction(payload)
    earlier = [
        {
            "type": {"text": "Observation"},
            "valueReference": {
                "reference": "Observation/41",
                "identifier": {"system": "https://example.org/obs", "value": "older"},
            },
        }
    ]
    later = build_transaction(payload, "7", "task-1", earlier_outputs=earlier)
    return [first, later, build_message(payload, "https://gp.example/fhir")]


def fhir_accepts(bundle: Any) -> bool:
    """Whether fhir.resources' Bundle model accepts it (any exception is a refusal)."""
    try:
        Bundle.model_validate(bundle)
    except Exception:  # fhir_core raises AttributeError for some inputs
        return False
    return True


def validate_accepts(bundle: Any) -> bool:
    """Whether ``validate`` accepts it (a ValueError naming the element otherwise)."""
    try:
        validate(bundle)
    except ValueError as exc:
        assert str(exc).startswith("the Bundle is not valid FHIR R4")
        return False
    return True


def changed(bundle: dict[str, Any], path: tuple[Any, ...], how: str, value: Any = None) -> Any:
    """A copy of the Bundle with the element at path set, deleted, added to or (un)wrapped."""
    copy = orjson.loads(orjson.dumps(bundle))
    if not path:
        node = copy
    else:
        parent = copy
        for step in path[:-1]:
            parent = parent[step]
        node = parent[path[-1]]
    if how == "set":
        parent[path[-1]] = value
    elif how == "delete":
        del parent[path[-1]]
    elif how == "wrap":
        parent[path[-1]] = [node]
    elif how == "unwrap":
        parent[path[-1]] = node[0]
    else:
        key, added = value
        node[key] = added
    return copy


def signature(bundle: dict[str, Any], path: tuple[Any, ...]) -> tuple[Any, ...]:
    """The path with entries named by resource type and list positions dropped (alike elements)."""
    out: list[Any] = []
    for i, step in enumerate(path):
        if isinstance(step, int):
            out.append(bundle["entry"][step]["resource"]["resourceType"] if i == 1 else "#")
        else:
            out.append(step)
    return tuple(out)


def mutants(bundles: list[dict[str, Any]], full: bool) -> Iterator[tuple[str, Any, Any]]:
    """(kind, path, mutated Bundle): each element changed in many ways.

    ``full``: every element of every Bundle, every value and addition; otherwise each kind
    of element once (the fourth Observation is like the first) with a seeded sample.
    """
    rng = random.Random(20261120)
    seen: set[tuple[Any, ...]] = set()
    for bundle in bundles:
        for path, node in list(walk(bundle)):
            key = signature(bundle, path)
            if not full and key in seen:
                continue
            seen.add(key)
            if path:
                for value in VALUES if full else rng.sample(VALUES, 3):
                    kind = "null" if value is None else "set"
                    yield kind, path, changed(bundle, path, "set", value)
                if isinstance(path[-1], str):
                    yield "delete", path, changed(bundle, path, "delete")
                yield "wrap", path, changed(bundle, path, "wrap")
                if isinstance(node, list) and node:
                    yield "unwrap", path, changed(bundle, path, "unwrap")
            if isinstance(node, dict):
                for key_value in ADDED if full else rng.sample(ADDED, 2):
                    yield f"+{key_value[0]}", path, changed(bundle, path, "add", key_value)


#: Elements the subset's models require; fhir.resources lets a null through, the checker not.
REQUIRED_COMPLEX = {
    field.alias or name
    for cls in checker().classes.values()
    for name, field in cls.model_fields.items()
    if field.is_required()
}


def outside_the_subset(kind: str, path: tuple[Any, ...], mutant: Any) -> bool:
    """Whether a mutant fhir.resources accepts may be refused by the checker, and why not."""
    if kind.startswith("+") and kind[1:] in OUTSIDE:
        return True  # an element of a class outside the set, or a resourceType it drops
    if path == ("resourceType",) and kind in ("null", "delete"):
        return True  # fhir.resources reads a Bundle without resourceType as a Bundle
    if path and path[-1] == "resource":
        node = mutant
        for step in path:
            node = node[step]
        if node == {}:
            return True  # a bare Resource without resourceType
    return kind == "null" and isinstance(path[-1], str) and path[-1] in REQUIRED_COMPLEX


def realistic() -> list[dict[str, Any]]:
    """The write-back Bundles of the emis-web referral with a full in-progress outcome."""
    record = orjson.loads((FIXTURES / "emis-web" / "01-new-referral.record.json").read_bytes())
    full = next(o for o in outcomes() if o["status"] == "in-progress" and "assessments" in o)
    return bundles_of(payload(record, full))


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_outcome_of_every_fixture_passes_the_checker_and_fhir_resources(path: Any) -> None:
    record = orjson.loads(path.read_bytes())
    for outcome in outcomes():
        if not (record.get("person") or {}).get("nhs_number"):
            with pytest.raises(ValueError, match="no NHS number"):
                bundles_of(payload(record, outcome))
            continue
        for bundle in bundles_of(payload(record, outcome)):
            assert checker().errors(bundle) == []
            Bundle.model_validate(bundle)


def test_mutated_bundles_get_the_same_verdict_unless_outside_the_element_set() -> None:
    verdicts: dict[tuple[bool, bool], int] = {}
    for kind, path, mutant in mutants(realistic(), FULL):
        fast, slow = checker().accepts(mutant), fhir_accepts(mutant)
        verdicts[fast, slow] = verdicts.get((fast, slow), 0) + 1
        where = f"{kind} at {path}"
        assert not (fast and not slow), f"the checker accepts what fhir.resources refuses: {where}"
        if slow and not fast:
            assert outside_the_subset(kind, path, mutant), where
        assert validate_accepts(mutant) == slow, where
    # Both verdicts occur often, so the comparison above is not vacuous.
    assert verdicts[True, True] > 200 and verdicts[False, False] > 500, verdicts


def test_two_value_choices_and_null_list_items_are_refused_like_fhir_resources() -> None:
    bundle = realistic()[0]
    observation = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    index = bundle["entry"].index(observation)
    cases = [
        ("valueString", "high"),
        ("effectivePeriod", {"start": "2026-11-05"}),
        ("category", [None]),
        ("identifier", [{"system": "urn:x", "value": "1"}, None]),
    ]
    for key, value in cases:
        mutant = changed(bundle, ("entry", index, "resource"), "add", (key, value))
        assert not checker().accepts(mutant)
        assert not fhir_accepts(mutant)
        with pytest.raises(ValueError, match=rf"Bundle\.entry\[{index}\]\(Observation\)\.resource"):
            validate(mutant)


def test_an_element_outside_the_set_is_left_to_fhir_resources() -> None:
    bundle = realistic()[0]
    extension = [{"url": "https://example.org/ext", "valueString": "from a profile"}]
    bundle["entry"][0]["resource"]["extension"] = extension
    assert not checker().accepts(bundle)
    validate(bundle)  # fhir.resources accepts it
    bundle["entry"][0]["resource"]["extension"][0]["valueString"] = 3
    with pytest.raises(ValueError, match=r"entry\[0\]\(Task\)\.resource\.extension"):
        validate(bundle)


def test_a_model_with_a_validator_of_its_own_is_not_compiled() -> None:
    class CheckedObservation(Observation):
        @model_validator(mode="after")
        def _checked(self) -> CheckedObservation:
            return self

    with pytest.raises(TypeError, match="unexpected"):
        compile_subset(Bundle, [CheckedObservation], [Coding])


def test_a_class_needing_an_element_outside_the_set_is_refused_whole() -> None:
    from fhir.resources.R4B.identifier import Identifier
    from fhir.resources.R4B.reference import Reference
    from fhir.resources.R4B.task import Task

    narrow = compile_subset(Bundle, [Task], [Identifier, Reference, Coding])  # no CodeableConcept
    bundle = realistic()[0]
    task = bundle["entry"][0]["resource"]
    bundle["entry"] = [bundle["entry"][0]]
    for key in ("code", "statusReason"):
        task.pop(key, None)
    output = task["output"][0]
    task["output"] = [output]
    assert fhir_accepts(bundle)
    assert not narrow.accepts(bundle)  # TaskOutput needs its type, a CodeableConcept
    del output["type"]
    assert not fhir_accepts(bundle)
    assert not narrow.accepts(bundle)
    task["output"] = []
    assert fhir_accepts(bundle) and narrow.accepts(bundle)
