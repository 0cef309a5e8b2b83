"""The reference interpreter and the generated program build the same whole records.

Every fixture, and damaged copies of each (elements dropped, list items duplicated,
values replaced), is translated both ways: the records (diagnostics and provenance
included) or the refusals must be the same. ``--explain`` output comes from the
reference interpreter, so its record must be the generated program's on every fixture.
"""

from __future__ import annotations

import copy
from random import Random
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from support import FIXTURES

from gateway.cli import main
from gateway.golden import Fixture, fixtures, translate_file
from gateway.hl7v2.er7 import parse
from gateway.mapping.engine import Mapping, load_mappings
from gateway.mapping.explain import explain_file

MAPPINGS = load_mappings(FIXTURES.parent / "mappings")
FIXTURE_LIST = [f for f in fixtures(FIXTURES) if f.source in MAPPINGS]
_VALUES: list[Any] = [None, "", "x", "1", 0, True, [], {}, [None], {"1": "a"}, {"reference": "#x"}]


def _message(fixture: Fixture) -> dict[str, Any] | None:
    """The parsed message a fixture holds (None when it is not JSON or ER7 that parses)."""
    data = fixture.path.read_bytes()
    try:
        if fixture.path.suffix == ".hl7":
            return parse(data).tree
        doc = orjson.loads(data) if fixture.path.suffix == ".json" else None
    except Exception:
        return None
    return doc if isinstance(doc, dict) else None


def _damage(message: dict[str, Any], rng: Random) -> dict[str, Any]:
    """A copy with a few elements dropped, list items duplicated or values replaced."""
    message = copy.deepcopy(message)
    for _ in range(rng.randrange(1, 4)):
        node: Any = message
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = rng.choice(keys)
            child = node[key]
            if isinstance(child, dict | list) and child and rng.random() < 0.7:
                node = child
                continue
            roll = rng.random()
            if isinstance(node, dict) and roll < 0.35:
                del node[key]
            elif isinstance(node, list) and roll < 0.5:
                node.insert(key, copy.deepcopy(child))
            else:
                node[key] = copy.deepcopy(rng.choice(_VALUES))
            break
    return message


def _outcome(mapping: Mapping, message: dict[str, Any]) -> tuple[Any, ...]:
    """The whole record, or the refusal (type, text, expression, record as mapped)."""
    try:
        record = mapping.translate(copy.deepcopy(message))
    except Exception as exc:
        partial = getattr(exc, "partial_record", None)
        where = getattr(exc, "expression", None)
        return ("refused", type(exc).__name__, str(exc), where, orjson.dumps(partial))
    return ("record", orjson.dumps(record))


@pytest.mark.parametrize("source", sorted(MAPPINGS))
def test_reference_and_generated_records_agree_on_damaged_fixtures(source: str) -> None:
    mapping = MAPPINGS[source]
    reference = mapping.explaining([])
    rng = Random(source)
    compared = 0
    for fixture in (f for f in FIXTURE_LIST if f.source == source):
        message = _message(fixture)
        if message is None:
            continue
        for damaged in [message] + [_damage(message, rng) for _ in range(40)]:
            assert _outcome(reference, damaged) == _outcome(mapping, damaged), fixture.name
            compared += 1
    assert compared > 40


@pytest.mark.parametrize("fixture", FIXTURE_LIST, ids=lambda f: f"{f.source}/{f.path.name}")
def test_explain_gives_the_generated_programs_record(fixture: Fixture) -> None:
    explanation = explain_file(MAPPINGS, fixture.source, fixture.path)
    generated = translate_file(MAPPINGS, fixture.source, fixture.path)
    assert (explanation.kind, explanation.document) == generated
    if explanation.kind == "record":
        assert explanation.placements


def test_translate_explain_names_rule_element_and_unplaced() -> None:
    path = FIXTURES / "emis-web" / "01-new-referral.json"
    result = CliRunner().invoke(main, ["translate", "--explain", "--source", "emis-web", str(path)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.strip().startswith("person.sex "))
    assert "<- Bundle.entry[" in line and "resource.gender" in line and "mapping.yaml:" in line
    assert "unplaced (" in result.output
