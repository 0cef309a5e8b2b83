"""The destinations file: checked at start-up, naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import MappingError
from gateway.outbound.destinations import load_destinations


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "destinations.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_full_file_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_SECRET", "s3cret")
    path = write(
        tmp_path,
        "platforms:\n  demo: {webhook: 'https://platform.example/hook', secret_env: DEMO_SECRET}\n"
        "writeback:\n  emis-web: {fhir: 'https://gp.example/fhir', mode: message}\n"
        "  gp-v2: {mllp: '127.0.0.1:2575'}\n"
        "pull:\n  uk-core: {fhir: 'https://fhir.example/R4', interval: 30}\n"
        "retry: {max_attempts: 5}\n",
    )
    loaded = load_destinations(path, {"emis-web", "gp-v2", "uk-core"})
    assert loaded.platforms["demo"].secret == b"s3cret"
    assert loaded.writeback["emis-web"].mode == "message"
    assert loaded.writeback["gp-v2"].mllp == "127.0.0.1:2575"
    assert loaded.pull["uk-core"].interval == 30
    assert loaded.retry.max_attempts == 5


def test_no_file_means_no_destinations() -> None:
    assert load_destinations("").platforms == {}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("writeback:\n  emis-web: {mode: transaction}\n", 2),  # neither fhir nor mllp
        ("writeback:\n  emis-web: {fhir: 'ftp://x'}\n", 2),
        ("platforms:\n  demo: {webhook: 'https://x'}\n", 2),  # no secret_env
        ("retry:\n  max_attempts: 0\n", 2),
        ("pull:\n  nosuch: {fhir: 'https://x'}\n", 2),  # not a source
    ],
)
def test_bad_files_name_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        load_destinations(path, {"emis-web", "uk-core"})
    assert f"{path}:{line}" in str(caught.value)
