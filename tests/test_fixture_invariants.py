"""Invariants over every fixture: valid records, synthetic NHS numbers, traceable values.

FHIR fixtures are read as FHIR JSON; HL7 v2 fixtures (.hl7) as the parser's segment tree,
whose texts are already unescaped; JSON documents (``format: json`` sources) as they are.
Checks that only mean something for FHIR (references) run over the FHIR fixtures only.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from support import FIXTURES, walk

from gateway import nhs_number
from gateway.config import ROOT
from gateway.errors import GatewayError
from gateway.fhir.body import decode_body
from gateway.golden import Fixture, content_type_for, fixtures
from gateway.hl7v2.er7 import parse
from gateway.hl7v2.values import decode_text
from gateway.mapping.compile import Rule
from gateway.mapping.engine import load_mappings
from gateway.mapping.runtime import ResourceIndex
from gateway.mapping.transforms_v2 import CODE_SYSTEMS, LOCAL_SYSTEM
from gateway.record.model import ReferralRecord
from gateway.record.schema import validate_record

ALL = list(fixtures(FIXTURES))
WITH_RECORD = [f for f in ALL if str(f.expected()).endswith(".record.json")]
MAPPINGS = load_mappings(ROOT / "mappings")
JSON_SOURCES = {s for s, m in MAPPINGS.items() if m.compiled.format == "json"}
FHIR = [f for f in ALL if f.path.suffix != ".hl7" and f.source not in JSON_SOURCES]
V2 = [f for f in ALL if f.path.suffix == ".hl7"]
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
#: Record items that may be empty: an empty risk list (with no_known_risks) and no diagnostics.
MAY_BE_EMPTY = {("risks", "items"), ("diagnostics",)}
#: Record items that describe the message rather than carry its content.
NOT_CONTENT = {"provenance", "diagnostics", "data_quality"}


def ids(fixture: Fixture) -> str:
    """A readable test id."""
    return f"{fixture.source}/{fixture.path.name}"


def is_v2(fixture: Fixture) -> bool:
    return fixture.path.suffix == ".hl7"


def is_json(fixture: Fixture) -> bool:
    return fixture.source in JSON_SOURCES


def message(fixture: Fixture) -> dict[str, Any]:
    """The input message: FHIR JSON shape (from JSON or XML), an HL7 v2 segment tree, or a
    JSON document."""
    if is_v2(fixture):
        return parse(fixture.path.read_bytes()).tree
    if is_json(fixture):
        return json.loads(fixture.path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    return decode_body(fixture.path.read_bytes(), content_type_for(fixture.path))


def message_text(fixture: Fixture) -> str:
    """The input as text, in its declared character set (MSH-18 for HL7 v2)."""
    raw = fixture.path.read_bytes()
    return decode_text(raw) if is_v2(fixture) else raw.decode("utf-8")


def outcome(fixture: Fixture) -> dict[str, Any] | None:
    """The golden outcome, for fixtures that must be refused."""
    path = fixture.expected()
    if path is None or not path.name.endswith(".outcome.json"):
        return None
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def record(fixture: Fixture) -> dict[str, Any]:
    """The golden record."""
    path = fixture.expected()
    assert path is not None and path.name.endswith(".record.json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_every_source_has_fixtures_and_every_fixture_a_golden_file() -> None:
    assert {f.source for f in ALL} == set(MAPPINGS)
    assert all(f.expected() is not None for f in ALL)
    assert any(f.path.suffix == ".xml" for f in ALL)
    v2_sources = {s for s, m in MAPPINGS.items() if m.compiled.format == "hl7v2"}
    assert {f.source for f in V2} == v2_sources
    for source in v2_sources:
        assert len([f for f in V2 if f.source == source]) >= 6, source
    assert all(f.source not in v2_sources for f in FHIR)


@pytest.mark.parametrize("fixture", [f for f in ALL if outcome(f) is not None], ids=ids)
def test_only_v2_outcomes_carry_an_ack_code_and_it_is_a_refusal(fixture: Fixture) -> None:
    expected = outcome(fixture)
    assert expected is not None
    if is_v2(fixture):
        assert list(expected) == ["status", "ack", "outcome"]
        assert expected["ack"] in ("AE", "AR")
    else:
        assert "ack" not in expected


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


def marked_nhs_numbers(fixture: Fixture) -> list[str]:
    """The numbers the message itself marks as NHS numbers (FHIR system, PID-3 NH/NHS, or a
    JSON document's person.nhs_number)."""
    if is_json(fixture):
        number = (message(fixture).get("person") or {}).get("nhs_number")
        return [number] if isinstance(number, str) else []
    if not is_v2(fixture):
        return [
            value["value"]
            for _, value in walk(message(fixture))
            if isinstance(value, dict) and value.get("system") == NHS_SYSTEM and "value" in value
        ]
    try:
        tree = parse(fixture.path.read_bytes()).tree
    except GatewayError:
        return []
    numbers = []
    for pid in tree.get("PID", []):
        for rep in pid.get("3", []):
            authority = rep.get("4")
            if isinstance(authority, dict):
                authority = authority.get("1")
            if (rep.get("5") == "NH" or authority == "NHS") and isinstance(rep.get("1"), str):
                numbers.append(rep["1"])
    return numbers


@pytest.mark.parametrize("fixture", ALL, ids=ids)
def test_every_nhs_number_is_synthetic_and_valid(fixture: Fixture) -> None:
    refused = outcome(fixture)
    # A fixture refused for its NHS number has one that is synthetic but deliberately wrong.
    where = refused["outcome"]["issue"][0].get("expression", [""])[0] if refused else ""
    bad_on_purpose = where.startswith(("PID.3", "PID-3"))

    def check(number: str) -> None:
        digits = nhs_number.normalise(number)
        assert digits.startswith("999"), number
        assert nhs_number.is_valid(digits) != bad_on_purpose, number

    marked = marked_nhs_numbers(fixture)
    # Only an HL7 v2 message refused for having no patient or no NHS number may lack one, or
    # a JSON document (a community partner or the person may not know it).
    assert marked or (is_v2(fixture) and refused) or is_json(fixture), (
        "every fixture's patient has an NHS number"
    )
    for number in marked:
        check(number)
    # Numbers that look like NHS numbers anywhere else in the message text, too.
    for number in _TEN_DIGITS.findall(message_text(fixture)):
        check(number)
    if refused is None and marked:
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


_HL7_TS = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(?:\.\d+)?(?:([+-]\d{2})(\d{2}))?$"
)


def v2_readings(texts: set[str]) -> set[str]:
    """What HL7 v2 texts legitimately become in a record: an HL7 date or time as ISO 8601,
    a table 0396 coding system name as its URL (or the gateway's URN for a local one)."""
    out: set[str] = set()
    for text in texts:
        match = _HL7_TS.match(text)
        if match:
            year, month, day, hour, minute, second, zone_h, zone_m = match.groups()
            out.add(f"{year}-{month}-{day}")
            if hour:
                zone = f"{zone_h}:{zone_m}" if zone_h else ""
                out.add(f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{zone}")
        if text.upper() in CODE_SYSTEMS:
            out.add(CODE_SYSTEMS[text.upper()])
        out.add(f"{LOCAL_SYSTEM}{text}")
    return out


class Traces:
    """The texts of one input message, and whether a record text can come from them."""

    def __init__(self, doc: dict[str, Any], v2: bool = False) -> None:
        self.texts = {v.strip() for _, v in walk(doc) if isinstance(v, str) and v.strip()}
        if v2:
            self.texts |= v2_readings(self.texts)
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
    traces = Traces(message(fixture), v2=is_v2(fixture))
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


@pytest.mark.parametrize("fixture", FHIR, ids=ids)
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
