"""``gateway import``: a directory through the intake pipeline, as if sent, twice over."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from support import summary_row

import gateway.intake.pipeline as pipeline_module
from gateway.cli import main
from gateway.config import ROOT
from gateway.store import audit
from gateway.store.database import Database
from gateway.store.migrate import upgrade
from gateway.store.models import Message, RecordVersion

FIXTURES = ROOT / "fixtures"
GOOD_FHIR = (
    "01-new-referral.json",
    "08-xml-message.xml",
    "12-uk-core-standalone-servicerequest.json",
    "13-transaction-conditional-create.json",
)


@pytest.fixture
def store(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Database:
    """A migrated SQLite store the commands use."""
    monkeypatch.setenv("GATEWAY_DATABASE_URL", sqlite_url)
    db = Database(sqlite_url)
    upgrade(db)
    return db


def _counts(db: Database) -> tuple[int, int]:
    """(messages kept, record versions stored)."""
    with db.transaction() as session:
        messages = session.scalar(select(func.count()).select_from(Message))
        versions = session.scalar(select(func.count()).select_from(RecordVersion))
    return int(messages or 0), int(versions or 0)


def _fhir_directory(tmp_path: Path) -> Path:
    """Good uk-core fixtures, one refused by the mapping, and three broken files."""
    folder = tmp_path / "fhir-in"
    folder.mkdir()
    for name in (*GOOD_FHIR, "04-missing-date-of-birth.json"):
        shutil.copy(FIXTURES / "uk-core" / name, folder / name)
    (folder / "broken.json").write_text('{"resourceType": "Bundle", ')
    (folder / "empty.json").write_bytes(b"")
    (folder / "not-fhir.xml").write_text("<html><body>hello</body></html>")
    (folder / ".hidden.json").write_text("{}")  # dot files are left out
    return folder


def test_a_fhir_directory_twice_stores_once(store: Database, tmp_path: Path) -> None:
    folder = _fhir_directory(tmp_path)
    runner = CliRunner()
    first = runner.invoke(main, ["import", str(folder), "--source", "uk-core"])
    assert first.exit_code == 0, first.output
    assert summary_row(first.output, "fhir-json accepted") == 3
    assert summary_row(first.output, "fhir-xml accepted") == 1
    assert summary_row(first.output, "fhir-json rejected") == 3
    assert summary_row(first.output, "fhir-xml rejected") == 1
    assert summary_row(first.output, "total") == 8
    for name in ("04-missing-date-of-birth.json", "broken.json", "empty.json", "not-fhir.xml"):
        assert f"rejected  {name}: " in first.output
    assert ".hidden" not in first.output
    messages, versions = _counts(store)
    assert (messages, versions) == (8, 4)

    again = runner.invoke(main, ["import", str(folder), "--source", "uk-core", "--channel", "fhir"])
    assert again.exit_code == 0, again.output
    assert summary_row(again.output, "fhir-json resent") == 3
    assert summary_row(again.output, "fhir-xml resent") == 1
    assert summary_row(again.output, "fhir-json accepted") == 0
    assert summary_row(again.output, "fhir-json rejected") == 3
    # Nothing new stored; the refusals are kept again, as a resent refused FHIR message is.
    assert _counts(store) == (12, 4)


def test_refusals_are_kept_raw_with_their_status(store: Database, tmp_path: Path) -> None:
    folder = _fhir_directory(tmp_path)
    CliRunner().invoke(main, ["import", str(folder), "--source", "uk-core"])
    with store.transaction() as session:
        rows = session.execute(select(Message.channel, Message.status, Message.body)).all()
    assert {channel for channel, _, _ in rows} == {"fhir-import"}
    refused = sorted(body for _, status, body in rows if status == "rejected")
    assert refused[0] == b""  # the empty file, kept as it was
    assert b'{"resourceType": "Bundle", ' in refused


def test_output_names_files_never_patient_data(store: Database, tmp_path: Path) -> None:
    folder = _fhir_directory(tmp_path)
    result = CliRunner().invoke(main, ["import", str(folder), "--source", "uk-core"])
    assert "04-missing-date-of-birth.json: required at Bundle.entry" in result.output
    for name in ("01-new-referral.json", "04-missing-date-of-birth.json"):
        bundle = json.loads((FIXTURES / "uk-core" / name).read_text())
        (patient,) = [
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        ]
        assert patient["name"][0]["family"] not in result.output
        assert patient["identifier"][0]["value"] not in result.output


def _batch(*names: str) -> bytes:
    """An HL7 v2 batch file (FHS, BHS, the messages, BTS, FTS) of gp-v2 fixtures."""
    messages = [(FIXTURES / "gp-v2" / name).read_bytes().rstrip(b"\r\n") + b"\r" for name in names]
    return (
        b"FHS|^~\\&|GPSYS|B99002|SPGW|C99003|20261102101500||||F1\r"
        b"BHS|^~\\&|GPSYS|B99002|SPGW|C99003|20261102101500||||B1\r"
        + b"".join(messages)
        + f"BTS|{len(messages)}\rFTS|1\r".encode()
    )


def test_hl7v2_files_and_batches_twice(store: Database, tmp_path: Path) -> None:
    folder = tmp_path / "v2-in"
    folder.mkdir()
    (folder / "night.hl7").write_bytes(_batch("01-new-referral.hl7", "08-no-pid.hl7"))
    shutil.copy(FIXTURES / "gp-v2" / "04-v23-message.hl7", folder / "single.hl7")
    # Two messages one after the other, no batch segments: each is taken on its own.
    two = b"".join(
        (FIXTURES / "gp-v2" / n).read_bytes().rstrip(b"\r\n") + b"\r"
        for n in ("11-community-prd-roles.hl7", "09-wrong-msh9.hl7")
    )
    (folder / "two.er7").write_bytes(two)
    (folder / "junk.hl7").write_text("not HL7 at all")
    runner = CliRunner()
    first = runner.invoke(main, ["import", str(folder), "--source", "gp-v2"])
    assert first.exit_code == 0, first.output
    assert summary_row(first.output, "hl7v2 accepted") == 3
    assert summary_row(first.output, "hl7v2 rejected") == 3
    assert "rejected  night.hl7 message 2: " in first.output
    assert "rejected  two.er7 message 2: " in first.output
    assert "rejected  junk.hl7: " in first.output
    kept, versions = _counts(store)
    assert versions == 3

    again = runner.invoke(main, ["import", str(folder), "--source", "gp-v2", "--glob", "*.hl7"])
    assert again.exit_code == 0, again.output
    assert summary_row(again.output, "hl7v2 resent") == 2
    assert summary_row(again.output, "hl7v2 rejected") == 2
    assert "two.er7" not in again.output
    # A resent refused v2 message gets its first ACK again and is not kept twice.
    assert _counts(store) == (kept, versions)


def test_a_fault_fails_the_import(
    store: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(FIXTURES / "vision" / "01-new-referral.json", folder / "a.json")

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipeline_module, "store_referral", broken)
    result = CliRunner().invoke(main, ["import", str(folder), "--source", "vision"])
    assert result.exit_code == 1
    assert summary_row(result.output, "fhir-json failed") == 1
    assert "failed    a.json: exception at the message" in result.output
    with store.transaction() as session:
        assert session.scalars(select(Message.status)).all() == ["failed"]


def test_the_import_is_audited_and_checks_its_channel(store: Database, tmp_path: Path) -> None:
    folder = _fhir_directory(tmp_path)
    runner = CliRunner()
    wrong = runner.invoke(
        main, ["import", str(folder), "--source", "uk-core", "--channel", "hl7v2"]
    )
    assert wrong.exit_code == 1
    assert "source 'uk-core' sends fhir, not hl7v2" in wrong.output
    unknown = runner.invoke(main, ["import", str(folder), "--source", "nobody"])
    assert unknown.exit_code == 1 and "no mapping for source 'nobody'" in unknown.output
    runner.invoke(main, ["import", str(folder), "--source", "uk-core"])
    (event,) = audit.events(store)
    assert (event["actor_kind"], event["action"], event["target_kind"]) == (
        "cli",
        "import",
        "directory",
    )
    assert event["detail"] == {
        "source": "uk-core",
        "files": 8,
        "accepted": 4,
        "resent": 0,
        "rejected": 4,
        "failed": 0,
    }


@pytest.mark.parametrize(
    ("source", "name", "kind"),
    [("uk-core", "01-new-referral.json", "fhir-json"), ("gp-v2", "01-new-referral.hl7", "hl7v2")],
)
def test_a_file_over_the_body_limit_is_refused_and_kept_truncated(
    store: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    name: str,
    kind: str,
) -> None:
    monkeypatch.setenv("GATEWAY_MAX_BODY_BYTES", "200")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(FIXTURES / source / name, folder / name)
    result = CliRunner().invoke(main, ["import", str(folder), "--source", source])
    assert result.exit_code == 0, result.output
    assert summary_row(result.output, f"{kind} rejected") == 1
    with store.transaction() as session:
        assert session.execute(select(Message.status, Message.body_truncated)).all() == [
            ("rejected", True)
        ]
