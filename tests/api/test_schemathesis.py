"""schemathesis against a live `gateway serve`: no 5xx, and no answer the OpenAPI document
does not describe (status code, media type or body), on every operation the document lists.

The store is seeded first (referrals, dead letters) and their ids are offered to the
generator alongside its own values, so answers past the 404 are reached too. Each operation
is called with the key its summary names ("(platform key)", "(admin or commissioner key)":
the first, "(community source key)": a key of that source). The run also fails when an
operation only ever saw 401/403 (``missing_auth``). Its ``validation_mismatch`` warning (most
bodies the document calls valid refused) is shown, not fatal: some refusals (an NHS number's
check digit, a birth date in the future) are beyond what a schema says. Bounded: a fixed seed,
a few examples per operation, and a hard time limit.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fhirserver import free_port
from support import FIXTURES, build_gateway, make_dead_letter, wait_healthy

from gateway.openapi import document
from gateway.services import services
from gateway.store.keys import KINDS, create_key

BIN = Path(sys.executable).parent
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)
#: The whole schemathesis run must finish within this (CI on two cores).
BUDGET_SECONDS = 90
SEED = 20261203
EXAMPLES = 25
#: Referrals seeded before the run (their record ids feed the generator).
SEEDED = (
    ("uk-core", "/fhir/$process-message", "01-new-referral.json"),
    ("uk-core", "/fhir/ServiceRequest", "12-uk-core-standalone-servicerequest.json"),
    ("vision", "/fhir/ServiceRequest", "01-new-referral.json"),
    ("systmone", "/fhir", "01-new-referral.json"),
    ("emis-web", "/fhir/$process-message", "01-new-referral.json"),
)
#: "(platform key)", "(admin or commissioner key)", "(community source key)" in a summary.
_KEY_WORDS = re.compile(r"\(([^()]*?) key\)")
#: The source a plain "(source key)" is given.
DEFAULT_SOURCE = "uk-core"

#: A key's kind and, for a source key, the source it names (None: any).
KeySpec = tuple[str, str | None]


@dataclass(frozen=True)
class Served:
    """A running gateway: its base URL, a key of each kind, and what the store holds."""

    url: str
    keys: dict[KeySpec, str]
    record_ids: list[str]
    dead_ids: list[int]
    workdir: Path


def _seed(url: str) -> tuple[dict[KeySpec, str], list[str], list[int]]:
    """Referrals posted through the app, three dead letters, and each key the document's
    operations name (read from the same document the server will serve)."""
    gateway = build_gateway(url)
    db = services(gateway.app).db
    record_ids = []
    for source, path, name in SEEDED:
        answer = gateway.post(path, (FIXTURES / source / name).read_bytes(), source)
        assert answer.status_code in (200, 201), answer.get_data(as_text=True)
        record_ids.append(answer.headers["X-Record-Id"])
    dead_ids = [
        make_dead_letter(db, record_ids[n], "platform-webhook", f"schemathesis-{n}")
        for n in range(3)
    ]
    keys: dict[KeySpec, str] = {}
    for _, _, operation in _operations(document()):
        spec = key_spec(operation)
        if spec is None or spec in keys or spec[0] == "unnamed":
            continue
        kind, name = spec
        if kind == "platform":
            keys[spec] = gateway.platform_key
        elif kind == "source":
            source = name or DEFAULT_SOURCE
            keys[spec] = gateway.source_keys.get(source) or create_key(db, kind, source)
        else:
            keys[spec] = create_key(db, kind, "schemathesis")
    db.dispose()
    return keys, record_ids, dead_ids


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`gateway serve` (one worker, no outbox worker) on a seeded SQLite store."""
    workdir = tmp_path_factory.mktemp("schemathesis")
    url = f"sqlite:///{workdir / 'gateway.db'}"
    keys, record_ids, dead_ids = _seed(url)
    env = {**os.environ, "GATEWAY_DATABASE_URL": url, "GATEWAY_OUTBOX_IN_SERVE": "0"}
    port = free_port()
    argv = [str(BIN / "gateway"), "serve", "--port", str(port), "--workers", "1"]
    with (workdir / "serve.log").open("wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(port, process)
            yield Served(f"http://127.0.0.1:{port}", keys, record_ids, dead_ids, workdir)
        finally:
            process.terminate()
            process.wait(30)


def key_spec(operation: dict[str, Any]) -> KeySpec | None:
    """The key an operation needs, from its summary (the first kind when it names several);
    None when it needs none, ("unnamed", None) when its summary does not say."""
    if not operation.get("security"):
        return None
    named = _KEY_WORDS.search(f"{operation.get('summary', '')} {operation.get('description', '')}")
    words = named.group(1).split(" or ")[0].split() if named else []
    if not words or words[-1] not in KINDS or len(words) > 2:
        return ("unnamed", None)
    return (words[-1], words[0] if len(words) == 2 else None)


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, METHOD, operation) for every operation in the document."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options"):
                yield path, method.upper(), operation


def _toml(value: Any) -> str:
    """A TOML value (JSON strings, numbers and inline tables of them are TOML too)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def config_file(document: dict[str, Any], served: Served) -> str:
    """schemathesis.toml: the seeded ids as dictionaries, and each operation's key."""
    lines = [
        "[warnings]",
        'fail-on = ["missing_auth"]',
        "[dictionaries.records]",
        f"values = {_toml(served.record_ids)}",
        "[dictionaries.items]",
        f"values = {_toml(served.dead_ids)}",
        "[parameters]",
    ]
    for name, dictionary in (
        ("record_id", "records"),
        ("referral_id", "records"),
        ("item_id", "items"),
    ):
        lines.append(f'"path.{name}" = {_toml({"dictionary": dictionary, "probability": 0.5})}')
    for path, method, operation in _operations(document):
        spec = key_spec(operation)
        if spec is None or spec not in served.keys:
            continue
        lines += [
            "[[operations]]",  # one filter: include-path and include-method would be or'ed
            f"include-name = {_toml(f'{method} {path}')}",
            f"headers = {_toml({'Authorization': f'Bearer {served.keys[spec]}'})}",
        ]
    return "\n".join(lines) + "\n"


def run_schemathesis(config: Path, location: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`st run` with the checks, bounded in examples and time, from ``config``'s folder."""
    argv = [
        str(BIN / "st"),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        location,
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        str(SEED),
        # One worker: hypothesis describing strategies from two threads at once trips a
        # CPython 3.11 parser race (SystemError: AST constructor recursion depth mismatch).
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        *extra,
    ]
    return subprocess.run(
        argv, cwd=config.parent, capture_output=True, text=True, timeout=BUDGET_SECONDS
    )


def _document(served: Served) -> dict[str, Any]:
    with urllib.request.urlopen(f"{served.url}/openapi.json", timeout=10) as answer:
        loaded: dict[str, Any] = json.load(answer)
    return loaded


def test_every_keyed_operation_names_its_key_kind(served: Served) -> None:
    unnamed = [
        f"{method} {path}"
        for path, method, operation in _operations(_document(served))
        if key_spec(operation) == ("unnamed", None)
    ]
    assert unnamed == [], "say '(platform key)' or '(admin key)' in these operations' summaries"


def test_no_server_error_and_no_answer_off_the_document(served: Served) -> None:
    document = _document(served)
    config = served.workdir / "schemathesis.toml"
    config.write_text(config_file(document, served))
    run = run_schemathesis(config, f"{served.url}/openapi.json")
    (served.workdir / "schemathesis.out").write_text(run.stdout)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert f"Operations:       {len(list(_operations(document)))} selected" in run.stdout


def test_a_document_that_lies_is_caught(served: Served) -> None:
    # The same run against a document demanding a field /healthz never sends must fail:
    # the check has teeth.
    document = copy.deepcopy(_document(served))
    health = document["components"]["schemas"]["Health"]
    health["properties"]["uptime"] = {"type": "integer"}
    health["required"] = [*health.get("required", []), "uptime"]
    lying = served.workdir / "lying.json"
    lying.write_text(json.dumps(document))
    config = served.workdir / "lying.toml"
    config.write_text(config_file(document, served))
    run = run_schemathesis(
        config, str(lying), "--url", served.url, "--include-path", "/healthz", "-n", "3"
    )
    assert run.returncode != 0, run.stdout[-5000:]
    assert "uptime" in run.stdout
