"""The ``gateway`` command line: translate, check-mappings, db upgrade and keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import inspect
from support import FHIR_JSON, FIXTURES

from gateway.app import create_app
from gateway.cli import main
from gateway.config import ROOT
from gateway.golden import Fixture, fixtures
from gateway.services import services
from gateway.store.database import Database

ALL = list(fixtures(FIXTURES))


def run(*args: str) -> Result:
    """Invoke the CLI in-process."""
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("fixture", ALL, ids=lambda f: f"{f.source}/{f.path.name}")
def test_translate_prints_exactly_the_golden_file(fixture: Fixture) -> None:
    golden = fixture.expected()
    assert golden is not None
    result = run("translate", "--source", fixture.source, str(fixture.path))
    assert result.stdout == golden.read_text(encoding="utf-8")
    assert result.exit_code == (1 if golden.name.endswith(".outcome.json") else 0)


def test_translate_refuses_an_unknown_source() -> None:
    result = run("translate", "--source", "nosuch", str(ALL[0].path))
    assert result.exit_code == 1
    assert "no mapping for source 'nosuch'" in result.output


def test_check_mappings_passes_on_the_repository() -> None:
    result = run("check-mappings")
    assert result.exit_code == 0, result.output
    assert "source mappings valid: community, emis-web, gp-v2," in result.output
    assert f"{len(ALL)} passed, 0 failed" in result.output


@pytest.fixture
def fixtures_copy(tmp_path: Path) -> Path:
    """A copy of fixtures/ to damage."""
    return Path(shutil.copytree(FIXTURES, tmp_path / "fixtures"))


def test_check_mappings_fails_naming_an_altered_golden_file(fixtures_copy: Path) -> None:
    golden = fixtures_copy / "uk-core" / "01-new-referral.record.json"
    record = json.loads(golden.read_text(encoding="utf-8"))
    record["person"]["family_name"] = "Elis"
    golden.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    result = run("check-mappings", "--fixtures", str(fixtures_copy))
    assert result.exit_code == 1
    assert "FAIL uk-core/01-new-referral.json" in result.output
    assert '-    "family_name": "Elis",' in result.output  # a readable diff
    assert '+    "family_name": "Ellis",' in result.output
    assert f"{len(ALL) - 1} passed, 1 failed" in result.output
    # --update rewrites it from the mapping, after which the copy passes again.
    assert run("check-mappings", "--fixtures", str(fixtures_copy), "--update").exit_code == 0
    assert golden.read_text(encoding="utf-8") == (
        FIXTURES / "uk-core" / "01-new-referral.record.json"
    ).read_text(encoding="utf-8")
    assert run("check-mappings", "--fixtures", str(fixtures_copy)).exit_code == 0


def test_check_mappings_fails_on_missing_or_mismatched_golden_files(fixtures_copy: Path) -> None:
    (fixtures_copy / "vision" / "01-new-referral.record.json").unlink()
    outcome = fixtures_copy / "emis-web" / "04-missing-date-of-birth.outcome.json"
    outcome.rename(outcome.with_name("04-missing-date-of-birth.record.json"))
    (fixtures_copy / "nosuch").mkdir()
    shutil.copy(ALL[0].path, fixtures_copy / "nosuch" / "01-new-referral.json")
    result = run("check-mappings", "--fixtures", str(fixtures_copy))
    assert result.exit_code == 1
    assert "FAIL vision/01-new-referral.json: no golden file" in result.output
    assert (
        "FAIL emis-web/04-missing-date-of-birth.json: gave a outcome but the golden file is "
        "04-missing-date-of-birth.record.json" in result.output
    )
    assert "FAIL nosuch/01-new-referral.json: no mapping for this folder" in result.output


def test_check_mappings_names_file_and_line_of_a_broken_mapping(tmp_path: Path) -> None:
    folder = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", folder)
    path = folder / "systmone" / "mapping.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count("\nrules:\n") == 1
    path.write_text(
        text.replace("\nrules:\n", '\nrules:\n  referral.priority: "%nosuch.priority"\n'),
        encoding="utf-8",
    )
    line = (
        path.read_text(encoding="utf-8")
        .splitlines()
        .index('  referral.priority: "%nosuch.priority"')
    )
    for command in ("check-mappings", "translate"):
        extra = [] if command == "check-mappings" else ["--source", "uk-core", str(ALL[0].path)]
        result = run(command, "--mappings", str(folder), *extra)
        assert result.exit_code == 1
        assert f"mapping error: {path}:{line + 1}: " in result.output
        assert "unknown context %nosuch" in result.output


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """GATEWAY_DATABASE_URL pointing at a fresh SQLite file under tmp_path."""
    url = f"sqlite:///{tmp_path / 'var' / 'cli.db'}"
    monkeypatch.setenv("GATEWAY_DATABASE_URL", url)
    return url


def test_db_upgrade_creates_the_tables(database_url: str) -> None:
    for _ in range(2):  # and a second upgrade is a no-op
        result = run("db", "upgrade")
        assert result.exit_code == 0, result.output
        assert "database is up to date" in result.output
    db = Database(database_url)
    tables = set(inspect(db.engine).get_table_names())
    db.dispose()
    assert {"messages", "referrals", "record_versions", "api_keys"} <= tables


def test_keys_create_list_revoke(database_url: str) -> None:
    created = run("keys", "create", "--source", "uk-core", "--label", "practice A")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("spg_s_") and len(key) > 30
    platform = run("keys", "create", "--platform", "link-worker-app")
    assert platform.exit_code == 0 and platform.stdout.strip().startswith("spg_p_")

    listed = run("keys", "list")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert len(lines) == 2
    assert "kind=source" in lines[0] and "principal=uk-core" in lines[0]
    assert "label=practice A" in lines[0] and "revoked_at" not in lines[0]
    assert "principal=link-worker-app" in lines[1]
    assert key not in listed.stdout  # only the hash is stored

    # The key works against an app on the same store...
    app = create_app({"DATABASE_URL": database_url})
    headers = {"Authorization": f"Bearer {key}", "Content-Type": FHIR_JSON}
    body = (FIXTURES / "uk-core" / "01-new-referral.json").read_bytes()
    assert (
        app.test_client().post("/fhir/$process-message", data=body, headers=headers).status_code
        == 200
    )

    revoked = run("keys", "revoke", "--source", "uk-core")
    assert revoked.exit_code == 0
    assert revoked.stdout.strip() == "revoked 1 key(s)"
    assert run("keys", "revoke", "--source", "uk-core").stdout.strip() == "revoked 0 key(s)"
    run("keys", "create", "--admin", "ops")
    assert run("keys", "revoke", "--admin", "ops").stdout.strip() == "revoked 1 key(s)"
    after = run("keys", "list").stdout.splitlines()
    assert "revoked_at=" in after[0] and "revoked_at" not in after[1]
    # ...and not after revocation (a fresh app: no 30 s key cache).
    fresh = create_app({"DATABASE_URL": database_url})
    refused = fresh.test_client().post("/fhir/$process-message", data=body, headers=headers)
    assert refused.status_code == 401
    for each in (app, fresh):
        services(each).db.dispose()


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["keys", "create"], 2, "exactly one of --source, --platform or --admin"),
        (["keys", "create", "--source", "uk-core", "--platform", "x"], 2, "exactly one"),
        (["keys", "create", "--source", "nosuch"], 1, "no mapping for source 'nosuch'"),
        (["keys", "revoke"], 2, "exactly one of"),
    ],
)
def test_keys_usage_errors(database_url: str, args: list[str], code: int, says: str) -> None:
    result = run(*args)
    assert result.exit_code == code
    assert says in result.output
