"""Randomly damaged fixtures never crash the pipeline: a record or a domain error, nothing else."""

from __future__ import annotations

import copy
import random
from typing import Any

import orjson
import pytest
from support import FIXTURES

from gateway.errors import GatewayError
from gateway.golden import fixtures
from gateway.intake.fhir import translate_message
from gateway.mapping.engine import load_mappings

MAPPINGS = load_mappings(FIXTURES.parent / "mappings")
REPLACEMENTS: list[Any] = [None, "", "x", 0, -1, 1.5, True, [], {}, [None], {"a": 1}, "ü" * 300]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON document."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.append((*prefix, index))
            out += _paths(value, (*prefix, index))
    return out


def _mutate(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Delete or replace a few random elements."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        paths = _paths(doc)
        if not paths:
            break
        path = rng.choice(paths)
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if rng.random() < 0.4:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(REPLACEMENTS))
    return doc


@pytest.mark.parametrize(
    "fixture",
    [f for f in fixtures(FIXTURES) if f.path.suffix == ".json"],
    ids=lambda f: f"{f.source}/{f.path.name}",
)
def test_damaged_messages_give_record_or_domain_error(fixture: Any) -> None:
    rng = random.Random(fixture.path.name + fixture.source)
    original = orjson.loads(fixture.path.read_bytes())
    for _ in range(60):
        body = orjson.dumps(_mutate(original, rng))
        try:
            translate_message(MAPPINGS, fixture.source, body, "application/fhir+json")
        except GatewayError as exc:
            assert 400 <= exc.status < 500, exc
