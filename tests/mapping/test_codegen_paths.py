"""Generated path code against the path interpreter (paths.py), on damaged fixtures.

Every path of every mapping (contexts, rule sources, ``each``, ``when``, and the relative
paths of ``fields``) is evaluated both ways on many randomly damaged copies of each
fixture: the same values (by identity), the same resources marked used, the same errors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from functools import partial
from random import Random
from typing import Any

import orjson
import pytest
from support import FIXTURES

from gateway.hl7v2.er7 import parse
from gateway.mapping import reference
from gateway.mapping.codegen import path_function
from gateway.mapping.compile import Compiled, Rule
from gateway.mapping.engine import load_mappings
from gateway.mapping.runtime import Env, ResourceIndex
from gateway.mapping.syntax import CompiledPath

MAPPINGS = load_mappings(FIXTURES.parent / "mappings")
_VALUES: list[Any] = [
    None,
    "",
    "x",
    "1",
    1,
    True,
    [],
    {},
    ["x"],
    [None],
    [{}],
    {"1": "a"},
    {"1": {"1": "b"}},
    {"reference": "#x"},
    [{"url": "x"}],
]


def _rule_paths(rules: tuple[Rule, ...], parent: CompiledPath | None) -> Iterator[Any]:
    for rule in rules:
        for path in (rule.source, rule.each, rule.when.path if rule.when else None):
            if path is not None:
                yield path, parent
        if rule.each is not None and rule.fields and parent is None:
            yield from _rule_paths(rule.fields, rule.each)


def _paths(compiled: Compiled) -> list[tuple[CompiledPath, CompiledPath | None]]:
    """(path, the ``each`` whose items are its $this, or None) for every path."""
    out: list[tuple[CompiledPath, CompiledPath | None]] = [
        (c.path, None) for c in compiled.contexts
    ]
    out += list(_rule_paths(compiled.rules, None))
    return out


def _messages(source: str) -> list[dict[str, Any]]:
    out = []
    for file in sorted((FIXTURES / source).iterdir()):
        if file.suffix == ".json" and ".record" not in file.name and ".outcome" not in file.name:
            doc = orjson.loads(file.read_bytes())
            json_source = MAPPINGS[source].compiled.format == "json"
            if isinstance(doc, dict) and ("resourceType" in doc or json_source):
                out.append(doc)
        elif file.suffix == ".hl7":
            try:
                out.append(parse(file.read_bytes()).tree)
            except Exception:
                continue
    return out


def _damage(message: dict[str, Any], rng: Random) -> dict[str, Any]:
    """A copy with a few values replaced or removed somewhere in the tree."""
    message = copy.deepcopy(message)
    for _ in range(rng.randrange(1, 4)):
        node: Any = message
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = rng.choice(keys)
            child = node[key]
            if isinstance(child, dict | list) and child and rng.random() < 0.75:
                node = child
                continue
            if isinstance(node, dict) and rng.random() < 0.25:
                del node[key]
            else:
                node[key] = copy.deepcopy(rng.choice(_VALUES))
            break
    return message


def _outcome(run: Callable[[Env], list[Any]], env: Env) -> tuple[Any, ...]:
    try:
        values = run(env)
    except Exception as exc:  # the interpreter's error must be the generated code's too
        return ("raised", type(exc))
    return ("values", [id(v) for v in values], sorted(env.touched))


def _env(message: dict[str, Any], contexts: dict[str, list[Any]], this: Any) -> Env:
    env = Env(root=message, index=ResourceIndex(message), contexts=dict(contexts))
    env.this = this
    return env


def _first_outcome(run: Callable[[Env], Any], env: Env) -> tuple[Any, ...]:
    try:
        value = run(env)
    except Exception as exc:
        return ("raised", type(exc))
    return ("value", id(value), sorted(env.touched))


def _compare(
    compiled: Compiled, message: dict[str, Any], generated: dict[int, Any], *, first: bool = False
) -> int:
    """Compare every path on one message; returns how many evaluations were compared."""
    contexts: dict[str, list[Any]] = {}
    env = _env(message, contexts, None)
    for context in compiled.contexts:
        found = reference.first(context.path, env)
        env.contexts[context.name] = [found] if isinstance(found, dict) else []
    contexts = env.contexts
    compared = 0
    for path, parent in _paths(compiled):
        items: list[Any] = [None]
        if parent is not None:
            try:
                items = reference.evaluate(parent, _env(message, contexts, None)) or [None]
            except Exception:
                continue
        for this in items:
            run = generated[id(path)]

            def call(e: Env, run: Any = run, this: Any = this) -> Any:
                return run(e.root, e, this)

            if first:
                want = _first_outcome(partial(reference.first, path), _env(message, contexts, this))
                got = _first_outcome(call, _env(message, contexts, this))
            else:
                want = _outcome(partial(reference.evaluate, path), _env(message, contexts, this))
                got = _outcome(call, _env(message, contexts, this))
            assert got == want, (compiled.source, path.text)
            compared += 1
    return compared


@pytest.mark.parametrize("source", sorted(MAPPINGS))
def test_generated_paths_select_what_the_interpreter_selects(source: str) -> None:
    compiled = MAPPINGS[source].compiled
    names = [c.name for c in compiled.contexts]
    generated = {id(p): path_function(p, names) for p, _ in _paths(compiled)}
    rng = Random(source)
    compared = 0
    for message in _messages(source):
        compared += _compare(compiled, message, generated)
        for _ in range(60):
            compared += _compare(compiled, _damage(message, rng), generated)
    assert compared > 1000


@pytest.mark.parametrize("source", sorted(MAPPINGS))
def test_generated_first_values_are_the_interpreters(source: str) -> None:
    """A rule's first value, read without building the last collection when the path is
    its own (a null in a JSON array is still a first value of None, not skipped)."""
    compiled = MAPPINGS[source].compiled
    names = [c.name for c in compiled.contexts]
    generated = {id(p): path_function(p, names, first=True) for p, _ in _paths(compiled)}
    rng = Random(source + " first")
    compared = 0
    for message in _messages(source):
        compared += _compare(compiled, message, generated, first=True)
        for _ in range(60):
            compared += _compare(compiled, _damage(message, rng), generated, first=True)
    assert compared > 1000
