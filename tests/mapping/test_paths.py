"""The FHIRPath subset: roots, where/ofType/resolve/first/last/exists/extension, ``|``, errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.mapping import reference
from gateway.mapping.parse import PathSyntaxError, compile_path
from gateway.mapping.runtime import Env, ResourceIndex
from gateway.nhs_number import synthetic

NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
INTERPRETER = "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired"
PATIENT_ID = "7fb1339e-e766-5c73-bf12-ad15e46b8c91"


def bundle() -> dict[str, Any]:
    """A small referral Bundle (synthetic data) using every kind of reference."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{PATIENT_ID}",
                "resource": {
                    "resourceType": "Patient",
                    "id": PATIENT_ID,
                    "extension": [
                        {"url": "https://example.org/other", "valueString": "ignored"},
                        {"url": INTERPRETER, "valueBoolean": True},
                    ],
                    "identifier": [
                        {"system": "https://example.org/mrn", "value": "MRN-1"},
                        {"system": NHS, "value": synthetic(0)},
                    ],
                    "name": [
                        {"use": "old", "family": "Brown", "given": ["Maggie"]},
                        {"use": "official", "family": "Ellis", "given": ["Margaret", "Joan"]},
                        {"family": "Nameless-use"},
                    ],
                    "communication": [
                        {"language": {"text": "Welsh"}},
                        {"language": {"text": "English"}, "preferred": True},
                    ],
                    "generalPractitioner": [{"reference": "Organization/gp1"}],
                    "contained": [{"resourceType": "Organization", "id": "c1", "name": "Inner"}],
                    "managingOrganization": {"reference": "#c1"},
                },
            },
            {
                "fullUrl": "http://example.org/fhir/Organization/gp1",
                "resource": {
                    "resourceType": "Organization",
                    "id": "gp1",
                    "identifier": [{"system": ODS, "value": "B99002"}],
                    "name": "Riverside Medical Practice",
                },
            },
            {
                "fullUrl": "urn:uuid:0c7d2d64-4f7b-4b5e-9a0b-000000000002",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "subject": {"reference": f"urn:uuid:{PATIENT_ID}"},
                    "performer": [
                        {"reference": "http://example.org/fhir/Organization/gp1/_history/3"}
                    ],
                    "requester": {"reference": "Organization/gp1/_history/2"},
                    "supportingInfo": [
                        {"reference": "Patient/" + PATIENT_ID},
                        {"reference": "urn:uuid:00000000-0000-4000-8000-00000000dead"},
                        {"display": "no reference at all"},
                    ],
                },
            },
        ],
    }


def run(text: str, root: dict[str, Any] | None = None, **contexts: Any) -> list[Any]:
    """Evaluate absolute path ``text`` over ``root`` (the bundle by default)."""
    doc = bundle() if root is None else root
    env = Env(root=doc, index=ResourceIndex(doc))
    env.contexts.update({k: v if isinstance(v, list) else [v] for k, v in contexts.items()})
    return reference.evaluate(compile_path(text), env)


def patient() -> dict[str, Any]:
    """The bundle's Patient."""
    return bundle()["entry"][0]["resource"]  # type: ignore[no-any-return]


def test_type_root_matches_only_its_own_type() -> None:
    assert run("Bundle.type") == ["transaction"]
    assert run("Patient.id") == []  # the root is a Bundle
    assert run("Patient.id", root=patient()) == [PATIENT_ID]


def test_elements_flatten_lists_as_collections() -> None:
    assert run("Bundle.entry.resource.name.given") == ["Maggie", "Margaret", "Joan"]
    assert run("Bundle.entry.resource.nosuch") == []


def test_context_root() -> None:
    assert run("%p.name.family", p=patient()) == ["Brown", "Ellis", "Nameless-use"]
    assert run("%missing.name") == []


@pytest.mark.parametrize(
    "where, families",
    [
        ("use = 'official'", ["Ellis"]),
        ("use != 'old'", ["Ellis", "Nameless-use"]),  # an absent use is not 'old'
        ("use != 'old' and family != 'Ellis'", ["Nameless-use"]),
        ("use = 'official' and given = 'Joan'", ["Ellis"]),  # any given name matches
        ("use = 'official' and given = 'Maggie'", []),
        ("given.exists()", ["Brown", "Ellis"]),
        ("use.exists() and use != 'official'", ["Brown"]),
    ],
)
def test_where_with_and_and_not_equal(where: str, families: list[str]) -> None:
    assert run(f"%p.name.where({where}).family", p=patient()) == families


def test_where_boolean_literal_matches_json_and_xml_forms() -> None:
    xml_like = copy.deepcopy(patient())
    xml_like["communication"][1]["preferred"] = "true"
    for subject in (patient(), xml_like):
        path = "%p.communication.where(preferred = true).language.text"
        assert run(path, p=subject) == ["English"]
        assert run("%p.communication.where(preferred != true).language.text", p=subject) == [
            "Welsh"
        ]


def test_where_numbers_and_escaped_quotes() -> None:
    doc = {"resourceType": "Basic", "item": [{"n": 2, "s": "it's"}, {"n": 2.5, "s": "x"}]}
    assert run("Basic.item.where(n = 2).s", root=doc) == ["it's"]
    assert run("Basic.item.where(n = 2.5).s", root=doc) == ["x"]
    assert run("Basic.item.where(s = 'it\\'s').n", root=doc) == [2]


def test_of_type_filters_resources() -> None:
    assert run("Bundle.entry.resource.ofType(Organization).name") == ["Riverside Medical Practice"]
    assert run("Bundle.entry.resource.ofType(Flag)") == []


def test_resolve_urn_uuid_type_id_contained_and_history() -> None:
    sr = "Bundle.entry.resource.ofType(ServiceRequest)"
    assert run(f"{sr}.subject.resolve().id") == [PATIENT_ID]  # urn:uuid fullUrl
    assert run(f"{sr}.requester.resolve().name") == ["Riverside Medical Practice"]  # Type/id/_h
    assert run(f"{sr}.performer.resolve().name") == ["Riverside Medical Practice"]  # abs + _h
    # Type/id, an unknown urn:uuid, and a Reference without a reference string.
    assert run(f"{sr}.supportingInfo.resolve().id") == [PATIENT_ID]
    gp = "Bundle.entry.resource.ofType(Patient).generalPractitioner.resolve().name"
    assert run(gp) == ["Riverside Medical Practice"]
    inner = "Bundle.entry.resource.ofType(Patient).managingOrganization.resolve().name"
    assert run(inner) == ["Inner"]


def test_resolve_in_a_lone_resource_finds_contained() -> None:
    sr = {
        "resourceType": "ServiceRequest",
        "contained": [{"resourceType": "Patient", "id": "p", "gender": "female"}],
        "subject": {"reference": "#p"},
    }
    assert run("ServiceRequest.subject.resolve().gender", root=sr) == ["female"]


def test_resource_index_lookups() -> None:
    doc = bundle()
    index = ResourceIndex(doc)
    org = doc["entry"][1]["resource"]
    assert index.resolve("http://example.org/fhir/Organization/gp1") is org
    assert index.resolve("Organization/gp1") is org
    assert index.resolve("https://elsewhere.example/fhir/Organization/gp1/_history/9") is org
    assert index.resolve("Organization/nope") is None
    assert index.resolve("urn:uuid:00000000-0000-4000-8000-00000000dead") is None
    assert [position for position, _ in index.entries] == [0, 1, 2]


def test_contained_references_resolve_within_their_own_resource() -> None:
    doc = bundle()
    referral = doc["entry"][2]["resource"]
    referral["contained"] = [{"resourceType": "Organization", "id": "c1", "name": "Referrer's"}]
    referral["performer"] = [{"reference": "#c1"}]
    assert run("Bundle.entry.resource.ofType(ServiceRequest).performer.resolve().name", doc) == [
        "Referrer's"
    ]


def test_first_last_exists() -> None:
    assert run("%p.name.family.first()", p=patient()) == ["Brown"]
    assert run("%p.name.family.last()", p=patient()) == ["Nameless-use"]
    assert run("%p.name.exists()", p=patient()) == [True]
    assert run("%p.photo.exists()", p=patient()) == [False]
    assert run("%p.photo.first()", p=patient()) == []


def test_extension_by_url() -> None:
    assert run(f"%p.extension('{INTERPRETER}').valueBoolean", p=patient()) == [True]
    assert run("%p.extension('https://example.org/none').valueBoolean", p=patient()) == []


def test_union_is_a_fallback_not_a_merge() -> None:
    p = patient()
    assert run("%p.name.where(use='official').family | %p.name.family", p=p) == ["Ellis"]
    assert run("%p.name.where(use='maiden').family | %p.name.family", p=p) == [
        "Brown",
        "Ellis",
        "Nameless-use",
    ]
    assert run("%p.photo | %p.birthDate", p=p) == []
    env = Env(root=bundle(), index=ResourceIndex(bundle()), contexts={"p": [p]})
    assert reference.first(compile_path("%p.photo | %p.name.given | %p.id"), env) == "Maggie"
    assert reference.first(compile_path("%p.photo | %p.link"), env) is None


def test_relative_paths_start_from_this() -> None:
    path = compile_path("code.coding.where(system='http://snomed.info/sct').code", relative=True)
    item = {"code": {"coding": [{"system": "http://snomed.info/sct", "code": "129839007"}]}}
    env = Env(root={}, index=ResourceIndex({}), this=item)
    assert reference.evaluate(path, env) == ["129839007"]
    env.this = {"code": {"text": "no coding"}}
    assert reference.evaluate(path, env) == []  # relative paths are not memoised
    assert reference.evaluate(
        compile_path("$this.text", relative=True),
        Env(root={}, index=ResourceIndex({}), this={"text": "t"}),
    ) == ["t"]
    # An upper-case first step is an element, not a type, in a relative path.
    assert reference.evaluate(
        compile_path("Text", relative=True),
        Env(root={}, index=ResourceIndex({}), this={"Text": "T"}),
    ) == ["T"]


def test_shared_prefixes_give_the_same_answers_as_fresh_evaluation() -> None:
    texts = [
        "%sr.supportingInfo.resolve().id",
        "%sr.supportingInfo.resolve().ofType(Patient).name.family",
        "%sr.supportingInfo.resolve().ofType(Patient).name.where(use='official').family",
        "%sr.supportingInfo.resolve()",
    ]
    doc = bundle()
    sr = doc["entry"][2]["resource"]
    shared = Env(root=doc, index=ResourceIndex(doc), contexts={"sr": [sr]})
    for text in texts + texts:
        fresh = Env(root=doc, index=ResourceIndex(doc), contexts={"sr": [sr]})
        assert reference.evaluate(compile_path(text), shared) == reference.evaluate(
            compile_path(text), fresh
        ), text


def test_compiled_path_records_contexts_and_consumed_elements() -> None:
    path = compile_path("%patient.name.given | %gp.name | Bundle.id")
    assert path.contexts == frozenset({"patient", "gp"})
    assert path.consumed == frozenset({("patient", "name"), ("gp", "name")})
    ext = compile_path(f"%patient.extension('{INTERPRETER}').valueBoolean")
    assert ext.consumed == frozenset({("patient", "extension")})
    assert compile_path("%patient.name.given").text == "%patient.name.given"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "%patient.name.given(",
        "%patient.name.where(use='official'",
        "%patient.name.where(use)",
        "%patient.name.where(use > 'x')",
        "%patient.name.where(use = )",
        "%patient.name.where(use.first() = 'x')",
        "%patient.name.where(use = official)",
        "%patient.nosuchfunction()",
        "%patient.extension(url)",
        "%patient.name |",
        "| %patient.name",
        "%patient.name %gp.name",
        "%patient..name",
        "%patient.name.",
        ".name",
        "%patient.name#",
        "'text'.length",
        "%patient.name.where(use = 'unterminated)",
    ],
)
def test_syntax_errors_raise_path_syntax_error(text: str) -> None:
    with pytest.raises(PathSyntaxError):
        compile_path(text)


def test_path_syntax_error_is_a_value_error_with_the_place() -> None:
    with pytest.raises(ValueError, match="column 9"):
        compile_path("%patient#name")


@pytest.mark.parametrize(
    "text", ["%patient.'birthDate'", "%patient.5", "%patient.(", "%patient.=", "%patient.%gp"]
)
def test_a_step_must_be_a_name(text: str) -> None:
    with pytest.raises(PathSyntaxError):
        compile_path(text)
