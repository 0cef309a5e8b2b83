"""The generated mapping function: shared prefixes once, lazy unions, readable source."""

from __future__ import annotations

from pathlib import Path

import orjson
from support import FIXTURES

from gateway.mapping.engine import Mapping, load_mappings
from gateway.mapping.runtime import Env, ResourceIndex
from gateway.mapping.transforms import MapState

MAPPINGS = load_mappings(FIXTURES.parent / "mappings")


def _run(mapping: Mapping, message: dict[str, object]) -> Env:
    env = Env(root=message, index=ResourceIndex(message))
    mapping._program(message, env, MapState(mapping.compiled.timezone))
    return env


def test_every_source_compiles_to_one_function() -> None:
    for mapping in MAPPINGS.values():
        source = mapping._program.source  # type: ignore[attr-defined]
        assert source.count("def run(") == 1
        compile(source, "<check>", "exec")


def test_a_later_alternative_is_not_evaluated_when_an_earlier_one_selects() -> None:
    message = orjson.loads((FIXTURES / "emis-web" / "01-new-referral.json").read_bytes())
    env = _run(MAPPINGS["emis-web"], message)
    # The referral is the MessageHeader's focus, so the ofType(ServiceRequest) fallback of
    # the referral context never ran and touched nothing beyond what focus resolved.
    referral = env.contexts["referral"][0]
    assert referral["resourceType"] == "ServiceRequest"
    assert id(referral) in env.touched
    header_only = orjson.loads(orjson.dumps(message))
    header_only["entry"][0]["resource"].pop("focus")
    env = _run(MAPPINGS["emis-web"], header_only)
    assert env.contexts["referral"][0]["resourceType"] == "ServiceRequest"


def test_shared_prefixes_are_computed_once_per_message() -> None:
    source = MAPPINGS["emis-web"]._program.source  # type: ignore[attr-defined]
    # %referral.supportingInfo is read by many rules but resolved into one local.
    assert source.count("get('supportingInfo')") == 1


def test_generated_records_match_the_golden_files(tmp_path: Path) -> None:
    from gateway.golden import compare, fixtures

    problems = [compare(MAPPINGS, f) for f in fixtures(FIXTURES)]
    assert not [p for p in problems if p]
