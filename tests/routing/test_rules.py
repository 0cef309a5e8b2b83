"""The routing file: schema checks naming file and line, reference tables, hubs known."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gateway.errors import MappingError
from gateway.routing.rules import load_routing
from gateway.routing.tables import normal_postcode, postcode_district, read_practice_pcns

FIXTURES = Path(__file__).resolve().parent / "files"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return path


def test_the_fixture_routing_file_loads_with_its_tables() -> None:
    routing = load_routing(FIXTURES / "routing.yaml")
    assert [r.hub for r in routing.rules] == [
        "calm-minds",
        "kirklees",
        "pennine",
        "tyneside",
        "leeds",
    ]
    assert routing.default_hub is None and routing.hold_reason
    assert routing.practice_pcns["B99004"] == "U99001"
    assert routing.postcode_authorities["LS1 4AP"] == "E08000035"


def test_an_ended_pcn_membership_is_ignored() -> None:
    table = read_practice_pcns(FIXTURES / "epcn-core-partners.csv", today=date(2026, 12, 3))
    assert table["B99002"] == "U99002"
    before = read_practice_pcns(FIXTURES / "epcn-core-partners.csv", today=date(2020, 1, 1))
    assert before["B99002"] == "U99001"


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("rules: []\n", "file must contain ['default']", 1),
        ("rules:\n  - hub: a\ndefault: {hub: a}\n", "rules.0", 2),
        ("rules:\n  - hub: a\n    practice: []\ndefault: {hub: a}\n", "rules.0.practice", 3),
        ("rules:\n  - hub: a\n    postcode: [LS1]\ndefault: {hub: a}\n", "postcode", 3),
        ("rules: []\ndefault: {hub: a, hold: why}\n", "default", 2),
        ("rules:\n  - hub: a\n    pcn: [U1]\ndefault: {hub: a}\n", "practice_pcns table", None),
    ],
)
def test_a_bad_routing_file_names_file_and_line(
    tmp_path: Path, text: str, message: str, line: int | None
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(MappingError) as caught:
        load_routing(path)
    assert message in str(caught.value)
    assert caught.value.file == str(path)
    if line is not None:
        assert caught.value.line == line


def test_every_hub_must_be_a_configured_platform(tmp_path: Path) -> None:
    path = _write(tmp_path, "rules:\n  - hub: leeds\n    practice: [B1]\ndefault: {hub: york}\n")
    with pytest.raises(MappingError, match="'york' is not a platform"):
        load_routing(path, hubs={"leeds"})
    with pytest.raises(MappingError, match="'leeds' is not a platform") as caught:
        load_routing(path, hubs={"york"})
    assert caught.value.line == 2
    assert load_routing(path, hubs={"leeds", "york"}).hubs == {"leeds", "york"}


def test_a_missing_table_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "practice_pcns: nope.csv\nrules: []\ndefault: {hub: a}\n")
    with pytest.raises(MappingError, match=r"practice_pcns: no such file nope\.csv") as caught:
        load_routing(path)
    assert caught.value.line == 1


def test_a_table_without_its_columns_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pcn.csv").write_text("code,pcn\nB1,U1\n")
    path = _write(tmp_path, "practice_pcns: pcn.csv\nrules: []\ndefault: {hub: a}\n")
    with pytest.raises(MappingError, match="Partner Organisation Code"):
        load_routing(path)


@pytest.mark.parametrize(
    ("raw", "normal", "district"),
    [("ls1 4ap", "LS1 4AP", "LS1"), ("WF133LN", "WF13 3LN", "WF13"), ("M1  2AB", "M1 2AB", "M1")],
)
def test_postcodes_are_compared_in_one_form(raw: str, normal: str, district: str) -> None:
    assert normal_postcode(raw) == normal
    assert postcode_district(raw) == district


def test_a_postcode_too_short_or_long_has_no_district() -> None:
    assert postcode_district("LS1") is None
    assert postcode_district("LS11 4APXX") is None
    assert postcode_district(None) is None
