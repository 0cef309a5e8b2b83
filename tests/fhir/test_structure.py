"""Tests for gateway.fhir.structure: the element table and the structural checker."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import BrokenInvariant, InvalidMessage
from gateway.fhir.elements import (
    ELEMENTS_FILE,
    element_type,
    is_list,
    is_primitive_type,
    is_resource_type,
    preload,
)
from gateway.fhir.structure import check_resource

REPO = Path(__file__).resolve().parents[2]


def referral_bundle() -> dict[str, Any]:
    """A six-resource referral Bundle in FHIR JSON form (synthetic data)."""
    return {
        "resourceType": "Bundle",
        "id": "referral-1",
        "meta": {"lastUpdated": "2024-05-01T10:00:00Z"},
        "type": "transaction",
        "timestamp": "2024-05-01T10:00:00Z",
        "entry": [
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "id": "sr1",
                    "meta": {"profile": ["https://example.org/fhir/StructureDefinition/referral"]},
                    "identifier": [{"system": "https://example.org/referral-id", "value": "R-1"}],
                    "status": "active",
                    "intent": "order",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://snomed.info/sct",
                                    "code": "306206005",
                                    "display": "Referral to service",
                                }
                            ]
                        }
                    ],
                    "priority": "routine",
                    "code": {
                        "coding": [
                            {
                                "system": "http://snomed.info/sct",
                                "code": "871731000000106",
                                "display": "Referral to social prescribing service",
                            }
                        ]
                    },
                    "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000002"},
                    "authoredOn": "2024-05-01T09:30:00+01:00",
                    "requester": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000004"},
                    "performer": [{"reference": "urn:uuid:00000000-0000-4000-8000-000000000005"}],
                    "reasonReference": [
                        {"reference": "urn:uuid:00000000-0000-4000-8000-000000000006"}
                    ],
                    "note": [{"text": "Prefers a phone call first"}],
                },
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Patient",
                    "id": "pat1",
                    "identifier": [
                        {"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}
                    ],
                    "name": [{"use": "official", "family": "Patient", "given": ["Test", "A"]}],
                    "_active": {"extension": [{"url": "https://example.org/x", "valueCode": "y"}]},
                    "telecom": [{"system": "phone", "value": "01632 960000", "use": "mobile"}],
                    "gender": "female",
                    "birthDate": "1970-01-01",
                    "address": [{"line": ["1 Example Street"], "postalCode": "LS1 1AA"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "Practitioner",
                    "id": "prac1",
                    "identifier": [
                        {"system": "https://fhir.nhs.uk/Id/sds-user-id", "value": "999999999999"}
                    ],
                    "name": [{"family": "Doctor", "given": ["Example"], "prefix": ["Dr"]}],
                },
                "request": {"method": "POST", "url": "Practitioner"},
            },
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000004",
                "resource": {
                    "resourceType": "PractitionerRole",
                    "id": "role1",
                    "active": True,
                    "practitioner": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000003"},
                    "organization": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000005"},
                    "code": [{"text": "General practitioner"}],
                },
                "request": {"method": "POST", "url": "PractitionerRole"},
            },
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000005",
                "resource": {
                    "resourceType": "Organization",
                    "id": "org1",
                    "identifier": [
                        {
                            "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                            "value": "X99999",
                        }
                    ],
                    "active": True,
                    "name": "Example Surgery",
                },
                "request": {"method": "POST", "url": "Organization"},
            },
            {
                "fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000006",
                "resource": {
                    "resourceType": "Condition",
                    "id": "cond1",
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                "code": "active",
                            }
                        ]
                    },
                    "code": {"text": "Social isolation"},
                    "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000002"},
                    "onsetAge": {"value": 52.5, "unit": "a"},
                },
                "request": {"method": "POST", "url": "Condition"},
            },
        ],
    }


def _error(resource: dict[str, Any]) -> InvalidMessage:
    """Assert check_resource refuses ``resource`` and return the error."""
    with pytest.raises(InvalidMessage) as info:
        check_resource(resource)
    return info.value


def test_valid_bundle_passes() -> None:
    check_resource(referral_bundle())


def test_unknown_resource_type() -> None:
    error = _error({"resourceType": "Patiant"})
    assert error.expression == "resourceType"
    assert "Patiant" in error.message


@pytest.mark.parametrize("resource_type", ["Resource", "DomainResource", "HumanName", "string"])
def test_abstract_and_datatype_names_are_not_resource_types(resource_type: str) -> None:
    assert _error({"resourceType": resource_type}).expression == "resourceType"


def test_unknown_element_deep_in_bundle() -> None:
    bundle = referral_bundle()
    bundle["entry"][1]["resource"]["name"][0]["foo"] = "x"
    bundle["entry"][0]["resource"]["subject"]["foo"] = 1
    error = _error(bundle)
    assert error.message == "Unknown element 'foo'"
    assert error.expression == "Bundle.entry[0].resource.subject.foo"


def test_unknown_element_location_in_second_entry() -> None:
    bundle = referral_bundle()
    bundle["entry"][1]["resource"]["name"][0]["nickname"] = "x"
    error = _error(bundle)
    assert error.message == "Unknown element 'nickname'"
    assert error.expression == "Bundle.entry[1].resource.name[0].nickname"


def test_array_where_single_value_expected() -> None:
    bundle = referral_bundle()
    bundle["entry"][1]["resource"]["gender"] = ["female"]
    error = _error(bundle)
    assert error.expression == "Bundle.entry[1].resource.gender"
    assert "must not be an array" in error.message


def test_single_value_where_array_expected() -> None:
    bundle = referral_bundle()
    bundle["entry"][1]["resource"]["name"] = {"family": "Patient"}
    error = _error(bundle)
    assert error.expression == "Bundle.entry[1].resource.name"
    assert "must be an array" in error.message


def test_primitive_where_object_expected() -> None:
    bundle = referral_bundle()
    bundle["entry"][0]["resource"]["subject"] = "Patient/pat1"
    error = _error(bundle)
    assert error.expression == "Bundle.entry[0].resource.subject"
    assert "must be a JSON object" in error.message


def test_object_where_primitive_expected() -> None:
    error = _error({"resourceType": "Patient", "birthDate": {"value": "1970-01-01"}})
    assert error.expression == "Patient.birthDate"
    assert "primitive" in error.message


def test_primitive_item_in_object_array() -> None:
    error = _error({"resourceType": "Patient", "name": [{"family": "A"}, "B"]})
    assert error.expression == "Patient.name[1]"


@pytest.mark.parametrize(
    ("element", "value", "wanted"),
    [
        ("active", "true", "boolean"),
        ("multipleBirthInteger", True, "integer"),
        ("multipleBirthInteger", 1.5, "integer"),
        ("gender", 1, "string"),
        ("birthDate", None, "null"),
    ],
)
def test_primitive_json_types(element: str, value: Any, wanted: str) -> None:
    error = _error({"resourceType": "Patient", element: value})
    assert error.expression == f"Patient.{element}"
    assert wanted in error.message


def test_decimal_accepts_int_and_float() -> None:
    check_resource(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueQuantity": {"value": 3},
        }
    )
    check_resource(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "valueQuantity": {"value": 3.25},
        }
    )


def test_underscore_companion_of_primitive_allowed() -> None:
    check_resource(
        {
            "resourceType": "Patient",
            "_birthDate": {"id": "b", "extension": [{"url": "u", "valueString": "s"}]},
            "name": [{"given": ["A", None], "_given": [None, {"extension": [{"url": "u"}]}]}],
        }
    )


def test_underscore_companion_of_complex_element_refused() -> None:
    assert _error({"resourceType": "Patient", "_name": {}}).message == "Unknown element '_name'"


def test_underscore_companion_contents_checked() -> None:
    error = _error({"resourceType": "Patient", "_birthDate": {"foo": 1}})
    assert error.expression == "Patient._birthDate.foo"
    error = _error({"resourceType": "Patient", "name": [{"_given": ["x"]}]})
    assert error.expression == "Patient.name[0]._given[0]"


def test_contained_resources_are_checked() -> None:
    resource = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "#p"},
        "contained": [{"resourceType": "Organization"}, {"resourceType": "Patient", "bad": 1}],
    }
    assert _error(resource).expression == "ServiceRequest.contained[1].bad"


def test_nested_unknown_resource_type() -> None:
    bundle = referral_bundle()
    bundle["entry"][2]["resource"]["resourceType"] = "Doctor"
    error = _error(bundle)
    assert error.expression == "Bundle.entry[2].resource.resourceType"
    assert "Doctor" in error.message


def test_nested_resource_must_be_an_object() -> None:
    bundle = referral_bundle()
    bundle["entry"][2]["resource"] = "Practitioner/1"
    assert _error(bundle).expression == "Bundle.entry[2].resource"


def test_parameters_resource_is_checked() -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "a", "valueString": "b"},
            {"name": "r", "resource": {"resourceType": "Patient", "oops": True}},
        ],
    }
    assert _error(parameters).expression == "Parameters.parameter[1].resource.oops"


def test_outcome_in_bundle_response_is_checked() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {
                "response": {
                    "status": "400",
                    "outcome": {"resourceType": "OperationOutcome", "issue": {"severity": "error"}},
                }
            }
        ],
    }
    error = _error(bundle)
    assert error.expression == "Bundle.entry[0].response.outcome.issue"


def test_deeply_nested_extensions_do_not_raise_recursion_error() -> None:
    extension: dict[str, Any] = {"url": "u"}
    for _ in range(3000):
        extension = {"url": "u", "extension": [extension]}
    with pytest.raises(InvalidMessage, match="nested too deeply"):
        check_resource({"resourceType": "Patient", "extension": [extension]})


def test_check_does_not_modify_input() -> None:
    bundle = referral_bundle()
    before = copy.deepcopy(bundle)
    check_resource(bundle)
    assert bundle == before


def test_lookups() -> None:
    preload()
    assert is_list("Patient", "name") is True
    assert is_list("Patient", "gender") is False
    assert is_list("Unknown", "x") is True
    assert element_type("Patient", "name") == "HumanName"
    assert element_type("Patient", "birthDate") == "date"
    assert element_type("Bundle", "entry") == "BundleEntry"
    assert element_type("BundleEntry", "resource") == "Resource"
    assert element_type("Extension", "url") == "uri"
    assert element_type("Narrative", "div") == "xhtml"
    assert element_type("Patient", "nope") is None
    assert is_resource_type("ServiceRequest") and not is_resource_type("BundleEntry")
    assert is_primitive_type("positiveInt") and not is_primitive_type("Quantity")


def test_element_table_is_small() -> None:
    assert ELEMENTS_FILE.stat().st_size < 400_000


def test_element_table_matches_installed_fhir_resources() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "profiles" / "build_elements.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_datatype_name_is_not_a_nested_resource_type() -> None:
    bundle = referral_bundle()
    bundle["entry"][0]["resource"]["contained"] = [{"resourceType": "HumanName"}]
    with pytest.raises(InvalidMessage, match="Unknown resourceType 'HumanName'") as info:
        check_resource(bundle)
    assert info.value.expression == "Bundle.entry[0].resource.contained[0].resourceType"


def test_fast_check_and_full_walk_agree_on_damaged_bundles() -> None:
    from random import Random

    from gateway.fhir.elements import element_table
    from gateway.fhir.structure import _fits, _walk

    rng = Random(7)
    table = element_table()
    values: list[Any] = [None, "", 1, 1.5, True, [], {}, [None], [{}], {"a": 1}, ["x"]]
    for _ in range(400):
        bundle = referral_bundle()
        node: Any = bundle
        while isinstance(node, dict | list) and node and rng.random() < 0.8:
            key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
            if rng.random() < 0.3 or not isinstance(node[key], dict | list) or not node[key]:
                node[key] = copy.deepcopy(rng.choice(values))
                break
            node = node[key]
        try:
            _walk(bundle, table.compiled["Bundle"])
            walked = True
        except Exception:
            walked = False
        if _fits(bundle, table.fast["Bundle"]):
            assert walked, bundle


# ----------------------------------------------------------------------------- extensions

EXT = "https://example.org/fhir/StructureDefinition/test-extension"


def _with_extension(extension: Any, on_name: bool = False) -> dict[str, Any]:
    """The referral Bundle with one extension on its ServiceRequest (or a primitive's _ twin)."""
    bundle = referral_bundle()
    resource = bundle["entry"][0]["resource"]
    if on_name:
        resource["_status"] = {"extension": [extension]}
    else:
        resource["extension"] = [extension]
    return bundle


@pytest.mark.parametrize(
    "extension",
    [
        {"url": EXT, "valueString": "one value"},
        {"url": EXT, "extension": [{"url": "part", "valueCode": "a"}]},
        {"url": EXT, "valueString": "a", "_valueString": {"id": "v"}},
        {"url": EXT},  # neither value nor extensions: lenient, as real senders send them
    ],
)
def test_well_formed_extensions_pass(extension: dict[str, Any]) -> None:
    check_resource(_with_extension(extension))
    check_resource(_with_extension(extension, on_name=True))


@pytest.mark.parametrize(
    ("extension", "where", "text"),
    [
        ({"valueString": "no url"}, "extension[0]", "url"),
        ({"url": EXT, "valueString": "a", "valueCode": "b"}, "extension[0].valueCode", "one"),
        (
            {"url": EXT, "valueBoolean": True, "extension": [{"url": "p", "valueCode": "a"}]},
            "extension[0].extension",
            "not both",
        ),
        ({"url": EXT, "extension": [{"valueCode": "a"}]}, "extension[0].extension[0]", "url"),
    ],
)
def test_broken_extensions_are_refused_naming_the_element(
    extension: dict[str, Any], where: str, text: str
) -> None:
    for on_name, prefix in ((False, ""), (True, "_status.")):
        with pytest.raises(BrokenInvariant, match=text) as info:
            check_resource(_with_extension(copy.deepcopy(extension), on_name))
        assert info.value.expression == f"Bundle.entry[0].resource.{prefix}{where}"
        assert info.value.status == 400
        assert info.value.issue_code == "invariant"


def test_a_broken_extension_deep_in_a_datatype_is_found() -> None:
    bundle = referral_bundle()
    subject = bundle["entry"][0]["resource"]["subject"]
    subject["extension"] = [{"url": EXT, "valueString": "a", "valueInteger": 1}]
    with pytest.raises(BrokenInvariant) as info:
        check_resource(bundle)
    assert info.value.expression == "Bundle.entry[0].resource.subject.extension[0].valueInteger"
