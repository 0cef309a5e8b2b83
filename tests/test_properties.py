"""Property-based tests over damaged copies of every fixture, sent through the HTTP channels.

Whatever a sender posts: never a 5xx or a traceback; never a record under an NHS number that
fails modulus 11 or that the sender did not give for the patient; every refusal names an
element of the sender's message.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import FHIR_JSON, FIXTURES, HL7_V2, Gateway, build_gateway

from gateway import nhs_number
from gateway.services import services

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "60"))
NHS = "https://fhir.nhs.uk/Id/nhs-number"
FHIR_SOURCES = ("emis-web", "systmone", "uk-core", "vision")
V2_SOURCES = ("gp-v2", "hospital-a", "hospital-b")
ENDPOINT = {"message": "/fhir/$process-message", "transaction": "/fhir", "batch": "/fhir"}
#: Answers about the request rather than its content need not name an element.
NO_ELEMENT = {401, 403, 413, 415}
AWKWARD = [
    "",
    " ",
    "999000001²",
    "9990000018",
    "999 000 0018",
    "2999-01-01",
    "1948-02-30",
    '""',
    "\u0000",
    "\uff53\uff4f\uff43\uff49\uff41\uff4c",
    "x" * 300,
]


def _fhir_fixtures() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for source in FHIR_SOURCES:
        for path in sorted((FIXTURES / source).glob("*.json")):
            if not path.name.endswith((".record.json", ".outcome.json")):
                out.append((source, orjson.loads(path.read_bytes())))
    return out


def _v2_fixtures() -> list[tuple[str, str]]:
    out = []
    for source in V2_SOURCES:
        for path in sorted((FIXTURES / source).glob("*.hl7")):
            out.append((source, path.read_bytes().decode("utf-8", "replace")))
    return out


FHIR_FIXTURES = _fhir_fixtures()
_CONTROL_IDS = itertools.count(1)
V2_FIXTURES = _v2_fixtures()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for every example: resends and clashes between examples are part of it."""
    path: Path = tmp_path_factory.mktemp("properties") / "gateway.db"
    gateway = build_gateway(f"sqlite:///{path}")
    yield gateway
    services(gateway.app).db.dispose()


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a node of a JSON document."""
    yield path
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _nodes(value, (*path, key))
    elif isinstance(doc, list):
        for position, value in enumerate(doc):
            yield from _nodes(value, (*path, position))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


VALUES = st.one_of(
    st.sampled_from(AWKWARD),
    st.text(max_size=12),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=4), max_size=3),
    st.dictionaries(st.sampled_from(["url", "value", "system", "code"]), st.text(max_size=6)),
)


@st.composite
def damaged_fhir(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A fixture with one to three of its nodes deleted, replaced or repeated."""
    source, original = draw(st.sampled_from(FHIR_FIXTURES))
    doc = orjson.loads(orjson.dumps(original))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _nodes(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        action = draw(st.sampled_from(["delete", "replace", "repeat"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif isinstance(parent, list):
            parent.append(orjson.loads(orjson.dumps(parent[path[-1]])))
        elif isinstance(parent[path[-1]], list) and parent[path[-1]]:
            parent[path[-1]].append(orjson.loads(orjson.dumps(parent[path[-1]][0])))
    return source, doc


def _given_nhs_numbers(doc: Any) -> set[str]:
    """Every NHS number written as an nhs-number identifier anywhere in the message."""
    found = set()
    for path in _nodes(doc):
        node = doc
        for step in path:
            node = node[step]
        if (
            isinstance(node, dict)
            and node.get("system") == NHS
            and isinstance(node.get("value"), str)
        ):
            found.add(nhs_number.normalise(node["value"]))
    return found


def _record_from(gw: Gateway, message_id: str) -> dict[str, Any] | None:
    """The newest stored record version made from the message with this id, if any."""
    items = gw.get("/records?since=0&limit=500").get_json()["items"]
    made = [
        i["record"]
        for i in items
        if i["record"]["provenance"].get("source_message_id") == message_id
    ]
    return made[-1] if made else None


def _names_an_element(outcome: dict[str, Any]) -> bool:
    errors = [i for i in outcome.get("issue", []) if i.get("severity") in ("error", "fatal")]
    return bool(errors) and all(i.get("expression") and i["expression"][0] for i in errors)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(damaged_fhir())
def test_damaged_fhir_is_answered_safely(gw: Gateway, case: tuple[str, dict[str, Any]]) -> None:
    source, doc = case
    kind = doc.get("type") if doc.get("resourceType") == "Bundle" else None
    path = ENDPOINT.get(str(kind), "/fhir/ServiceRequest")
    answer = gw.post(path, orjson.dumps(doc), source, Content_Type=FHIR_JSON)
    assert answer.status_code < 500, answer.get_data(as_text=True)
    body = answer.get_json()
    if answer.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome"
        if answer.status_code not in NO_ELEMENT:
            assert _names_an_element(body), body
        return
    record = gw.get(f"/records/{answer.headers['X-Record-Id']}").get_json()["record"]
    number = record["person"].get("nhs_number")
    if number is not None:
        assert nhs_number.is_valid(number)
        assert number in _given_nhs_numbers(doc)


def _segments(text: str) -> list[str]:
    return [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s]


@st.composite
def damaged_v2(draw: st.DrawFn) -> tuple[str, str]:
    """An ER7 fixture with fields replaced, segments dropped or repeated."""
    source, original = draw(st.sampled_from(V2_FIXTURES))
    segments = _segments(original)
    for _ in range(draw(st.integers(1, 3))):
        if not segments:
            break
        at = draw(st.integers(0, len(segments) - 1))
        action = draw(st.sampled_from(["field", "field", "drop", "repeat"]))
        if action == "drop":
            del segments[at]
        elif action == "repeat":
            segments.insert(at, segments[at])
        else:
            fields = segments[at].split("|")
            if len(fields) > 1:
                spot = draw(st.integers(1, len(fields) - 1))
                fields[spot] = draw(
                    st.one_of(
                        st.sampled_from(AWKWARD),
                        st.text(alphabet="abcAB19^~&\\ ²", max_size=12),
                    )
                )
                segments[at] = "|".join(fields)
    # A fresh control id, so that the record made from this message can be found.
    if segments and segments[0].startswith("MSH|"):
        fields = segments[0].split("|")
        if len(fields) > 9:
            fields[9] = f"P{next(_CONTROL_IDS)}"
            segments[0] = "|".join(fields)
    return source, "\r".join(segments) + "\r"


def _pid_nhs_numbers(text: str) -> set[str]:
    found = set()
    for segment in _segments(text):
        if segment.startswith("PID|"):
            fields = segment.split("|")
            for rep in (fields[3] if len(fields) > 3 else "").split("~"):
                found.add(nhs_number.normalise(rep.split("^")[0]))
    return found


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(damaged_v2())
def test_damaged_hl7v2_is_answered_safely(gw: Gateway, case: tuple[str, str]) -> None:
    source, text = case
    answer = gw.post("/hl7v2", text.encode(), source, Content_Type=HL7_V2)
    assert answer.status_code < 500, answer.get_data(as_text=True)
    reply = answer.get_data(as_text=True)
    if answer.status_code >= 400 and not reply.startswith("MSH"):
        body = answer.get_json()
        assert body["resourceType"] == "OperationOutcome"
        assert _names_an_element(body), body
        return
    segments = {s[:3]: s for s in _segments(reply)}
    code = segments["MSA"].split("|")[1]
    assert code in ("AA", "AE", "AR"), reply
    if code != "AA":
        err = segments.get("ERR", "")
        assert any(part.strip("^") for part in err.split("|")[1:3]), reply
        return
    header = _segments(text)[0].split("|")
    record = _record_from(gw, header[9]) if len(header) > 9 else None
    number = record["person"].get("nhs_number") if record else None
    if number is not None:
        assert nhs_number.is_valid(number)
        assert number in _pid_nhs_numbers(text)
