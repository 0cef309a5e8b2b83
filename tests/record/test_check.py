"""The generated record check never accepts a record the full validator refuses."""

from __future__ import annotations

import copy
import random
from typing import Any

import fastjsonschema
import pytest
from support import FIXTURES

from gateway.golden import fixtures, translate_file
from gateway.mapping.engine import load_mappings
from gateway.record.check import fast_check, is_date
from gateway.record.schema import _compiled, _fast, record_json_schema

MAPPINGS = load_mappings(FIXTURES.parent / "mappings")
RECORDS = [
    document
    for kind, document in (translate_file(MAPPINGS, f.source, f.path) for f in fixtures(FIXTURES))
    if kind == "record"
]
VALUES: list[Any] = [
    None,
    "",
    "x",
    "x" * 201,
    "x" * 5001,
    0,
    1.5,
    True,
    False,
    [],
    {},
    [{}],
    {"system": "s", "code": "c"},
    "2024-02-30",
    "2024-02-29",
    "B99002",
    "b9",
    "1234567890",
    "1234567890\n",
    "routine",
    "given",
    "new",
    [None],
]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out += [(*prefix, key), *_paths(value, (*prefix, key))]
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += [(*prefix, index), *_paths(value, (*prefix, index))]
    return out


def _accepted(record: Any) -> bool:
    try:
        _compiled()(record)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def test_every_fixture_record_passes_the_fast_check() -> None:
    assert RECORDS
    assert all(_fast()(record) for record in RECORDS)


@pytest.mark.parametrize("seed", range(4))
def test_fast_check_is_never_more_lenient_than_fastjsonschema(seed: int) -> None:
    rng = random.Random(seed)
    refused = 0
    for _ in range(1500):
        record = copy.deepcopy(rng.choice(RECORDS))
        for _ in range(rng.randint(1, 2)):
            path = rng.choice(_paths(record))
            parent = record
            for step in path[:-1]:
                parent = parent[step]
            if rng.random() < 0.3:
                del parent[path[-1]]
            else:
                parent[path[-1]] = copy.deepcopy(rng.choice(VALUES))
        if _fast()(record):
            assert _accepted(record), record
        else:
            refused += 1
    assert refused  # the mutations do reach the refusing branches


def test_dates_are_real_calendar_dates() -> None:
    assert is_date("2024-02-29")
    assert not is_date("2023-02-29")
    assert not is_date("20240229")
    assert not is_date("2024-2-29")
    assert not is_date("٢٠٢٤-02-29")


def test_unusual_schemas_fall_back_to_the_full_validator() -> None:
    assert fast_check({"type": "object", "not": {}})({}) is False
    assert fast_check({"type": "string", "format": "email"})("a@b") is False
    schema = record_json_schema()
    assert fast_check(dict(schema))(RECORDS[0]) is True
