"""Golden fixtures: each input message beside the record (or OperationOutcome) it must give."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.fhir.outcome import from_error
from gateway.hl7v2.ack import ack_code
from gateway.intake.community import translate_document
from gateway.intake.fhir import translate_message
from gateway.intake.hl7v2 import translate_v2
from gateway.mapping.engine import Mapping
from gateway.withdrawal import is_withdrawal, not_held

INPUT_SUFFIXES = (".json", ".xml", ".hl7")
EXPECTED_SUFFIXES = (".record.json", ".outcome.json")


@dataclass(frozen=True)
class Fixture:
    """One input message of one source and where its expected result lives."""

    source: str
    path: Path

    @property
    def name(self) -> str:
        """The fixture's name without its suffix."""
        return self.path.name.rsplit(".", 1)[0]

    def expected(self) -> Path | None:
        """The golden file beside the input, if there is one."""
        for suffix in EXPECTED_SUFFIXES:
            candidate = self.path.with_name(self.name + suffix)
            if candidate.exists():
                return candidate
        return None


def fixtures(directory: Path) -> Iterator[Fixture]:
    """Every input fixture under ``directory``/<source>/, in name order."""
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            if path.name.endswith(EXPECTED_SUFFIXES) or path.suffix not in INPUT_SUFFIXES:
                continue
            yield Fixture(folder.name, path)


def content_type_for(path: Path) -> str:
    """The media type a fixture file is sent with."""
    return "application/fhir+xml" if path.suffix == ".xml" else "application/fhir+json"


def translate_file(mappings: dict[str, Mapping], source: str, path: Path) -> tuple[str, Any]:
    """("record", record) or ("outcome", {status, [ack,] outcome}) for one message file."""
    message_format = mappings[source].compiled.format
    v2 = message_format == "hl7v2"
    try:
        if v2:
            _, record = translate_v2(mappings, source, path.read_bytes())
        elif message_format == "json":
            _, record = translate_document(mappings, source, path.read_bytes(), None)
        else:
            _, record, _ = translate_message(
                mappings, source, path.read_bytes(), content_type_for(path)
            )
    except GatewayError as refusal:
        # Translation holds no referrals: a cancellation that needs one is answered as the
        # gateway answers it on an empty store.
        partial = getattr(refusal, "partial_record", None)
        exc = not_held(partial) if partial and is_withdrawal(partial) else refusal
        outcome: dict[str, Any] = {"status": exc.status}
        if v2:
            outcome["ack"] = ack_code(exc)
        outcome["outcome"] = from_error(exc)
        return "outcome", outcome
    return "record", record


def render(document: Any) -> str:
    """A golden file's text: indented JSON, keys in the record's order, UTF-8 kept."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"


def compare(mappings: dict[str, Mapping], fixture: Fixture, update: bool = False) -> str | None:
    """None when the fixture gives its golden file, else a readable difference."""
    kind, document = translate_file(mappings, fixture.source, fixture.path)
    actual = render(document)
    golden = fixture.path.with_name(f"{fixture.name}.{kind}.json")
    if update:
        for stale in EXPECTED_SUFFIXES:
            fixture.path.with_name(fixture.name + stale).unlink(missing_ok=True)
        golden.write_text(actual, encoding="utf-8")
        return None
    expected_path = fixture.expected()
    if expected_path is None:
        return f"no golden file (expected {golden.name})"
    expected = expected_path.read_text(encoding="utf-8")
    if expected_path != golden:
        return f"gave a {kind} but the golden file is {expected_path.name}"
    if expected == actual:
        return None
    return "".join(
        difflib.unified_diff(
            expected.splitlines(True), actual.splitlines(True), str(expected_path), "actual"
        )
    )
