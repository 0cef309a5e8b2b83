"""Invariants over every fixture: valid records, synthetic NHS numbers, traceable values."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from support import FIXTURES

from gateway import nhs_number
from gateway.config import ROOT
from gateway.fhir.body import decode_body
from gateway.golden import Fixture, content_type_for, fixtures
from gateway.mapping.compile import Rule
from gateway.mapping.engine import load_mappings
from gateway.mapping.paths import ResourceIndex
from gateway.record import ReferralRecord
from gateway.record_schema import validate_record

ALL = list(fixtures(FIXTURES))
WITH_RECORD = [f for f in ALL if str(f.expected()).endswith(".record.json")]
MAPPINGS = load_mappings(ROOT / "mappings")
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
#: Record items that may be empty: an empty risk list (with no_known_risks) and no diagnostics.
MAY_BE_EMPTY = {("risks", "items"), ("diagnostics",)}
#: Record items that describe the message rather than carry its content.
NOT_CONTENT = {"provenance", "diagnostics"}


def ids(fixture: Fixture) -> str:
    """A readable test id."""
    return f"{fixture.source}/{fixture.path.name}"


def message(fixture: Fixture) -> dict[str, Any]:
    """The input message, decoded (JSON or XML) into FHIR JSON shape."""
    return decode_body(fixture.path.read_bytes(), content_type_for(fixture.path))


def record(fixture: Fixture) -> dict[str, Any]:
    """The golden record."""
    path = fixture.expected()
    assert path is not None and path.name.endswith(".record.json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def walk(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) in a JSON document, containers included, parents first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


def test_every_source_has_fixtures_and_every_fixture_a_golden_file() -> None:
    assert {f.source for f in ALL} == set(MAPPINGS)
    assert all(f.expected() is not None for f in ALL)
    assert any(f.path.suffix == ".xml" for f in ALL)


@pytest.mark.parametrize("fixture", WITH_RECORD, ids=ids)
def test_record_is_valid_for_marshmallow_and_the_fast_validator(fixture: Fixture) -> None:
    golden = record(fixture)
    ReferralRecord().load(golden)
    validate_record(golden)
    stored = copy.deepcopy(golden)
    stored["provenance"]["received_at"] = "2026-11-02T10:16:01.123456+00:00"
    ReferralRecord().load(stored)
    validate_record(stored)


@pytest.mark.parametrize("fixture", WITH_RECORD, ids=ids)
def test_record_has_no_empty_values(fixture: Fixture) -> None:
    for path, value in walk(record(fixture)):
        if value is None or value in ("", [], {}):
            assert tuple(p for p in path if not isinstance(p, int)) in MAY_BE_EMPTY, path
        if isinstance(value, str):
            assert value == value.strip(), path


# Ten digits standing alone (not inside a UUID, a longer code or a decimal).
_TEN_DIGITS = re.compile(r"(?<![\w.])(\d{10}|\d{3} \d{3} \d{4})(?![\w.])")


@pytest.mark.parametrize("fixture", ALL, ids=ids)
def test_every_nhs_number_is_synthetic_and_valid(fixture: Fixture) -> None:
    def check(number: str) -> None:
        digits = nhs_number.normalise(number)
        assert digits.startswith("999"), number
        assert nhs_number.is_valid(digits), number

    doc = message(fixture)
    marked = [
        value["value"]
        for _, value in walk(doc)
        if isinstance(value, dict) and value.get("system") == NHS_SYSTEM and "value" in value
    ]
    assert marked, "every fixture's patient has an NHS number"
    for number in marked:
        check(number)
    # Numbers that look like NHS numbers anywhere else in the message text, too.
    for number in _TEN_DIGITS.findall(fixture.path.read_text(encoding="utf-8")):
        check(number)
    if str(fixture.expected()).endswith(".record.json"):
        person = record(fixture)["person"]
        check(person["nhs_number"])
        assert person["nhs_number"] in {nhs_number.normalise(n) for n in marked}


def _rules(rules: tuple[Rule, ...]) -> Iterator[Rule]:
    for rule in rules:
        yield rule
        yield from _rules(rule.fields)


def constants(source: str) -> list[Any]:
    """Values a mapping writes itself: rule values and defaults, code map results."""
    out: list[Any] = []
    for rule in _rules(MAPPINGS[source].compiled.rules):
        out += [v for v in (rule.value, rule.default) if v not in (None, [], {})]
        if rule.codemap is not None:
            out += list(rule.codemap.entries.values())
            if rule.codemap.default is not None:
                out.append(rule.codemap.default)
    return out


def _same_moment(value: str, sent: str) -> bool:
    """``value`` is ``sent`` as a date-time given an offset (the source's zone, or Z)."""
    try:
        mapped = datetime.fromisoformat(value)
        original = datetime.fromisoformat(sent.replace("Z", "+00:00"))
    except ValueError:
        return False
    if mapped.tzinfo is None or (original.tzinfo is not None and mapped != original):
        return False
    return mapped.replace(tzinfo=None) == original.replace(tzinfo=None)


class Traces:
    """The texts of one input message, and whether a record text can come from them."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.texts = {v.strip() for _, v in walk(doc) if isinstance(v, str) and v.strip()}
        self.folded = {t.casefold() for t in self.texts}

    def whole(self, text: str) -> bool:
        """One input text, allowing for upper-casing (ODS codes, postcodes) and offsets."""
        return text.casefold() in self.folded or any(_same_moment(text, t) for t in self.texts)

    def joined(self, text: str) -> bool:
        """Input texts joined by spaces (given names, prefix given family)."""
        words = text.split(" ")
        reachable = [True] + [False] * len(words)
        for end in range(1, len(words) + 1):
            reachable[end] = any(
                reachable[start] and " ".join(words[start:end]).casefold() in self.folded
                for start in range(end)
            )
        return reachable[-1]

    def found(self, text: str) -> bool:
        """Whether ``text`` comes from the input."""
        if text.endswith("…"):  # cut to PRSB's 150 characters at a word
            kept = text[:-1]
            return any(t.startswith(kept) for t in self.texts)
        parts = text.split("\n\n")  # notes joined by blank lines
        return all(self.whole(p) or self.joined(p) for p in parts)


@pytest.mark.parametrize("fixture", WITH_RECORD, ids=ids)
def test_every_record_text_traces_to_the_input(fixture: Fixture) -> None:
    traces = Traces(message(fixture))
    written = constants(fixture.source)
    skipped: set[tuple[Any, ...]] = set()
    checked = 0
    for path, value in walk(record(fixture)):
        if not path or path[0] in NOT_CONTENT:
            continue
        if any(path[: len(s)] == s for s in skipped):
            continue
        if value in written:  # e.g. referral.method, a code-mapped coding
            skipped.add(path)
            continue
        if isinstance(value, str):
            assert traces.found(value), f"{'.'.join(map(str, path))}: {value!r} not in the input"
            checked += 1
    assert checked >= 15


def test_traces_refuse_invented_text() -> None:
    traces = Traces({"name": [{"given": ["Margaret", "Joan"], "family": "Ellis"}]})
    assert traces.found("Margaret Joan")
    assert traces.found("ELLIS")
    assert not traces.found("Margaret Jones")
    assert not traces.found("Joan Margaret Smith")


@pytest.mark.parametrize("fixture", ALL, ids=ids)
def test_every_reference_resolves(fixture: Fixture) -> None:
    doc = message(fixture)
    index = ResourceIndex(doc)
    references = [
        (path, value["reference"])
        for path, value in walk(doc)
        if isinstance(value, dict) and isinstance(value.get("reference"), str)
    ]
    assert references
    for path, reference in references:
        assert index.resolve(reference) is not None, (path, reference)


XML = FIXTURES / "uk-core" / "08-xml-message.xml"
JSON_TWIN = FIXTURES / "uk-core" / "01-new-referral.json"


def test_xml_fixture_is_the_json_referral_with_new_identifiers() -> None:
    xml_doc = decode_body(XML.read_bytes(), "application/fhir+xml")
    json_doc = json.loads(JSON_TWIN.read_text(encoding="utf-8"))
    changed = {
        path
        for path, value in walk(xml_doc)
        if not isinstance(value, dict | list) and _get(json_doc, path) != value
    }
    position = next(
        i
        for i, e in enumerate(json_doc["entry"])
        if e["resource"]["resourceType"] == "ServiceRequest"
    )
    assert changed == {
        ("id",),
        ("identifier", "value"),
        ("entry", 0, "fullUrl"),
        ("entry", 0, "resource", "id"),
        ("entry", position, "resource", "identifier", 0, "value"),
    }
    # The same elements (XML has FHIR element order; JSON key order is free).
    assert sorted(map(str, (p for p, _ in walk(xml_doc)))) == sorted(
        map(str, (p for p, _ in walk(json_doc)))
    )


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def test_xml_fixture_record_equals_the_json_record_but_for_identifiers() -> None:
    from_xml = json.loads(XML.with_name("08-xml-message.record.json").read_text(encoding="utf-8"))
    from_json = json.loads(JSON_TWIN.with_name("01-new-referral.record.json").read_text())
    header_id = decode_body(XML.read_bytes(), "application/fhir+xml")["entry"][0]["resource"]["id"]
    assert from_xml["referral"]["identifier"] == "1008"
    assert from_xml["provenance"]["source_message_id"] == header_id
    expected = copy.deepcopy(from_json)
    expected["referral"]["identifier"] = "1008"
    expected["provenance"]["source_message_id"] = header_id
    assert from_xml == expected
