"""Who a referral is about: one NHS number, where identity items came from, no future births."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway import nhs_number
from gateway.config import ROOT
from gateway.errors import GatewayError, InvalidContent, RequiredMissing
from gateway.intake.fhir import translate_message
from gateway.intake.hl7v2 import translate_v2
from gateway.mapping.engine import Mapping, load_mappings

FIXTURES = ROOT / "fixtures"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


@pytest.fixture(scope="module")
def mappings() -> dict[str, Mapping]:
    """The bundled mappings."""
    return load_mappings(ROOT / "mappings")


def _bundle() -> dict[str, Any]:
    return orjson.loads((FIXTURES / "uk-core" / "01-new-referral.json").read_bytes())  # type: ignore[no-any-return]


def _patient(bundle: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    for position, entry in enumerate(bundle["entry"]):
        if entry["resource"]["resourceType"] == "Patient":
            return position, entry["resource"]
    raise AssertionError("no Patient")


def _translate(mappings: dict[str, Mapping], bundle: dict[str, Any]) -> dict[str, Any]:
    body = orjson.dumps(bundle)
    return translate_message(mappings, "uk-core", body, "application/fhir+json")[1]


def test_identity_elements_name_the_senders_elements(mappings: dict[str, Mapping]) -> None:
    bundle = _bundle()
    position, _ = _patient(bundle)
    elements = _translate(mappings, bundle)["provenance"]["elements"]
    assert elements["person.nhs_number"] == f"Bundle.entry[{position}].resource.identifier[0].value"
    assert elements["person.date_of_birth"] == f"Bundle.entry[{position}].resource.birthDate"
    assert elements["referral.identifier"].endswith(".identifier[0].value")


def test_two_different_nhs_numbers_are_refused_naming_both(mappings: dict[str, Mapping]) -> None:
    bundle = _bundle()
    position, patient = _patient(bundle)
    patient["identifier"].append({"system": NHS, "value": nhs_number.synthetic(300)})
    with pytest.raises(InvalidContent) as caught:
        _translate(mappings, bundle)
    base = f"Bundle.entry[{position}].resource"
    assert caught.value.expression == f"{base}.identifier[0].value | {base}.identifier[1].value"
    assert "two different NHS numbers" in caught.value.message


def test_the_same_nhs_number_twice_is_one_person(mappings: dict[str, Mapping]) -> None:
    bundle = _bundle()
    _, patient = _patient(bundle)
    number = patient["identifier"][0]["value"]
    patient["identifier"].append(
        {"system": NHS, "value": f"{number[:3]} {number[3:6]} {number[6:]}"}
    )
    assert _translate(mappings, bundle)["person"]["nhs_number"] == number


def test_a_superscript_digit_is_refused_naming_the_identifier(
    mappings: dict[str, Mapping],
) -> None:
    bundle = _bundle()
    position, patient = _patient(bundle)
    patient["identifier"][0]["value"] = "999000001²"
    with pytest.raises(InvalidContent) as caught:
        _translate(mappings, bundle)
    assert caught.value.expression == f"Bundle.entry[{position}].resource.identifier[0].value"


def test_a_birth_date_in_the_future_is_refused(mappings: dict[str, Mapping]) -> None:
    bundle = _bundle()
    position, patient = _patient(bundle)
    patient["birthDate"] = "2999-01-01"
    with pytest.raises(InvalidContent) as caught:
        _translate(mappings, bundle)
    assert caught.value.expression == f"Bundle.entry[{position}].resource.birthDate"


def test_a_refusal_carries_the_record_as_mapped(mappings: dict[str, Mapping]) -> None:
    bundle = _bundle()
    _, patient = _patient(bundle)
    del patient["birthDate"]
    with pytest.raises(RequiredMissing) as caught:
        _translate(mappings, bundle)
    partial = caught.value.partial_record  # type: ignore[attr-defined]
    assert partial["referral"]["identifier"]
    assert "date_of_birth" not in partial["person"]


def _v2(text: str) -> bytes:
    return text.replace("\n", "\r").encode()


def test_v2_two_nhs_numbers_are_refused_naming_both_repetitions(
    mappings: dict[str, Mapping],
) -> None:
    raw = (FIXTURES / "gp-v2" / "01-new-referral.hl7").read_bytes().decode()
    first = nhs_number.synthetic(0)
    assert first in raw
    other = nhs_number.synthetic(301)
    raw = raw.replace(f"{first}^^^NHS^NH", f"{first}^^^NHS^NH~{other}^^^NHS^NH", 1)
    with pytest.raises(GatewayError) as caught:
        translate_v2(mappings, "gp-v2", raw.encode())
    assert caught.value.expression == "PID-3[1].1 | PID-3[2].1"


def test_require_list_refuses_a_missing_item(tmp_path: Path) -> None:
    source = tmp_path / "strict-gp"
    source.mkdir()
    for layer in ("common",):
        (tmp_path / layer).symlink_to(ROOT / "mappings" / layer)
    (source / "mapping.yaml").write_text(
        "source: strict-gp\nversion: '1'\nextends: common\naccepts: [message]\n"
        "require: [safeguarding, gp_practice.ods_code]\n"
    )
    strict = load_mappings(tmp_path)
    bundle = _bundle()
    with pytest.raises(RequiredMissing) as caught:
        _translate(strict | {"uk-core": strict["strict-gp"]}, copy.deepcopy(bundle))
    assert "safeguarding is required by the strict-gp mapping" in caught.value.message
    assert caught.value.expression and caught.value.expression.startswith("Bundle.entry[")
