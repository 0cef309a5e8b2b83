"""A broken mapping folder stops loading with a MappingError naming the file and the line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.config import ROOT
from gateway.errors import MappingError
from gateway.mapping.engine import load_mappings
from gateway.mapping.files import line_of, read_mapping_file

MAPPINGS = ROOT / "mappings"


def copy_mappings(tmp_path: Path, *sources: str) -> Path:
    """The common layer and ``sources`` copied under tmp_path/mappings."""
    folder = tmp_path / "mappings"
    for name in ("common", *sources):
        shutil.copytree(MAPPINGS / name, folder / name)
    return folder


def break_file(folder: Path, relative: str, anchor: str, insert: str) -> Path:
    """Insert text just after ``anchor`` (found once in the file); returns the file."""
    path = folder / relative
    text = path.read_text(encoding="utf-8")
    assert text.count(anchor) == 1, anchor
    start = text.index(anchor) + len(anchor)
    path.write_text(text[:start] + insert + text[start:], encoding="utf-8")
    return path


def line_holding(path: Path, marker: str) -> int:
    """The 1-based number of the only line of ``path`` that holds ``marker``."""
    lines = [i for i, t in enumerate(path.read_text().splitlines(), 1) if marker in t]
    assert len(lines) == 1, (marker, lines)
    return lines[0]


def load_error(folder: Path) -> MappingError:
    """The MappingError that loading ``folder`` raises."""
    with pytest.raises(MappingError) as caught:
        load_mappings(folder)
    return caught.value


def assert_names(error: MappingError, path: Path, line: int) -> None:
    """The error's text names the file and line (``.../mapping.yaml:12: ...``)."""
    assert str(error).startswith(f"{path}:{line}: "), str(error)
    assert f"{path.name}:{line}" in str(error)
    assert (error.file, error.line) == (str(path), line)


RULE_BREAKS = {
    "unknown-transform": ('{from: "%referral.priority", transform: kodeing}', "kodeing"),
    "unknown-record-target": ('"%referral.priority"', "referral.urgency"),
    "path-syntax-error": ('"%referral.priority.first("', "first("),
    "unknown-context": ('"%nosuch.priority"', "nosuch"),
    "unknown-code-map": ('{from: "%referral.priority", codemap: priorities}', "priorities"),
    "from-and-value": ('{from: "%referral.priority", value: routine}', "value: routine"),
    "fields-without-each": ('{from: "%referral.priority", fields: {a: b}}', "fields: {a: b}"),
    "when-path-syntax-error": (
        '{from: "%referral.priority", when: {path: "%referral.status(", equals: active}}',
        "when:",
    ),
}


@pytest.mark.parametrize("source", ["emis-web", "systmone"])
@pytest.mark.parametrize("kind", sorted(RULE_BREAKS))
def test_a_broken_rule_names_file_and_line(tmp_path: Path, source: str, kind: str) -> None:
    folder = copy_mappings(tmp_path, source)
    spec, marker = RULE_BREAKS[kind]
    target = "referral.urgency" if kind == "unknown-record-target" else "referral.priority"
    path = break_file(folder, f"{source}/mapping.yaml", "\nrules:\n", f"  {target}: {spec}\n")
    error = load_error(folder)
    assert_names(error, path, line_holding(path, marker))


def test_a_broken_rule_in_the_common_layer_names_the_common_file(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path, "vision")
    # person.gender: a record field the common layer does not map (a second person.sex
    # would silently replace the first: see test_duplicate_rule_in_one_file_is_an_error).
    path = break_file(
        folder,
        "common/mapping.yaml",
        "\nrules:\n",
        '  person.gender: {from: "%patient.gender", transform: sexx}\n',
    )
    error = load_error(folder)
    assert_names(error, path, line_holding(path, "sexx"))
    assert "unknown transform 'sexx'" in str(error)


def test_a_broken_field_names_its_own_line(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path, "uk-core")
    path = break_file(
        folder,
        "uk-core/mapping.yaml",
        "accepts: [message, transaction, batch, ServiceRequest]\n",
        "rules:\n"
        "  risks.items:\n"
        '    each: "%referral.supportingInfo.resolve().ofType(Flag)"\n'
        "    fields:\n"
        '      coding: {from: "code.coding", transform: coding}\n'
        '      text: {from: "code.text", transform: txet}\n',
    )
    assert_names(load_error(folder), path, line_holding(path, "txet"))


@pytest.mark.parametrize(
    "insert, marker",
    [
        ('  gp: "%patient.generalPractitioner.resolve("\n', "resolve("),
        ('  gp: "%later.name"\n', "%later"),
        ('  gp: {from: "%patient.generalPractitioner.resolve()", requird: true}\n', "requird"),
    ],
    ids=["syntax", "used-before-defined", "schema"],
)
def test_a_broken_context_names_its_line(tmp_path: Path, insert: str, marker: str) -> None:
    folder = copy_mappings(tmp_path, "emis-web")
    path = break_file(folder, "emis-web/mapping.yaml", "\ncontexts:\n", insert)
    # Context names have no dots, so even the schema error finds its line.
    assert_names(load_error(folder), path, line_holding(path, marker))


@pytest.mark.parametrize(
    "insert, marker",
    [
        ('  referral.priority: "%referral.priority": x\n', '"%referral.priority": x'),
        ("  referral.priority:\t'%referral.priority'\n", "\t"),
    ],
    ids=["mapping-value", "tab"],
)
def test_yaml_syntax_error_names_its_line(tmp_path: Path, insert: str, marker: str) -> None:
    folder = copy_mappings(tmp_path, "emis-web")
    path = break_file(folder, "emis-web/mapping.yaml", "\nrules:\n", insert)
    error = load_error(folder)
    assert "YAML syntax" in str(error)
    assert_names(error, path, line_holding(path, marker))


def test_unclosed_flow_mapping_names_its_line(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path, "emis-web")
    path = break_file(
        folder,
        "emis-web/mapping.yaml",
        "\nrules:\n",
        '  referral.priority: {from: "%referral.priority", transform: text\n',
    )
    assert_names(load_error(folder), path, line_holding(path, "transform: text\n".strip()))


@pytest.mark.parametrize(
    "old, new",
    [
        ("accepts: [message]", "accepts: [mesage]"),
        ("extends: common\n", "extends: common\ntimezone: Mars/Olympus\n"),
    ],
    ids=["accepts-value", "time-zone"],
)
def test_top_level_value_errors_name_their_line(tmp_path: Path, old: str, new: str) -> None:
    folder = copy_mappings(tmp_path, "emis-web")
    path = folder / "emis-web" / "mapping.yaml"
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))
    marker = "mesage" if "mesage" in new else "Mars/Olympus"
    assert_names(load_error(folder), path, line_holding(path, marker))


def test_source_that_differs_from_its_folder_names_the_line(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path, "emis-web")
    path = folder / "emis-web" / "mapping.yaml"
    path.write_text(path.read_text().replace("source: emis-web", "source: emis-web-2"))
    assert_names(load_error(folder), path, line_holding(path, "source: emis-web-2"))


def test_code_map_file_error_names_the_code_map_file(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path, "emis-web")
    path = folder / "emis-web" / "codemaps.yaml"
    path.write_text(path.read_text().replace("unknown: keep", "unknown: perhaps"))
    error = load_error(folder)
    assert_names(error, path, line_holding(path, "perhaps"))
    assert "keep" in str(error)


def test_code_map_default_policy_needs_a_default(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path, "vision")
    path = folder / "common" / "codemaps.yaml"
    path.write_text(path.read_text().replace("    default: routine\n", ""))
    assert_names(load_error(folder), path, line_holding(path, "  priority:"))


@pytest.mark.parametrize(
    "spec",
    ['{from: "%referral.priority", tranform: text}', '{from: "%referral.priority", list: maybe}'],
    ids=["unknown-rule-key", "wrong-type"],
)
def test_schema_violation_in_a_rule_names_the_rule_line(tmp_path: Path, spec: str) -> None:
    folder = copy_mappings(tmp_path, "emis-web")
    path = break_file(
        folder, "emis-web/mapping.yaml", "\nrules:\n", f"  referral.priority: {spec}\n"
    )
    assert_names(load_error(folder), path, line_holding(path, "referral.priority:"))


def test_unknown_top_level_key_names_its_line(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path, "emis-web")
    path = break_file(folder, "emis-web/mapping.yaml", "accepts: [message]\n", "acepts: [x]\n")
    assert_names(load_error(folder), path, line_holding(path, "acepts"))


def test_duplicate_rule_in_one_file_is_an_error(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path, "emis-web")
    path = break_file(
        folder,
        "emis-web/mapping.yaml",
        "\nrules:\n",
        '  referral.priority: "%referral.priority"\n  referral.priority: "%referral.intent"\n',
    )
    error = load_error(folder)
    assert error.file == str(path)


def test_line_of_follows_keys_and_list_items(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "source: demo\nversion: '1'\nrules:\n  a: x\n  b:\n    from: y\n"
        "ignore:\n  - Patient.photo\n  - Patient.link\n"
    )
    doc = read_mapping_file(path)
    assert line_of(doc, ["rules", "b", "from"]) == 6
    assert line_of(doc, ["rules", "nosuch"]) == 3
    assert line_of(doc, ["ignore", 1]) == 7  # a string item has no line of its own
    assert line_of(doc, []) == 1


def test_missing_folders_and_parents_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="mappings folder not found"):
        load_mappings(tmp_path / "nowhere")
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS / "emis-web", folder / "emis-web")
    error = load_error(folder)
    assert error.file == str(folder / "common" / "mapping.yaml")
    assert "no mapping.yaml for 'common'" in str(error)


def test_extends_loop_is_an_error(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path)
    common = folder / "common" / "mapping.yaml"
    common.write_text(
        common.read_text().replace("abstract: true\n", "abstract: true\nextends: common\n")
    )
    assert "extends loops back to common" in str(load_error(folder))


def test_a_bad_mapping_stops_start_up(tmp_path: Path) -> None:
    folder = copy_mappings(tmp_path, "emis-web")
    path = break_file(
        folder, "emis-web/mapping.yaml", "\nrules:\n", '  referral.priority: "%nosuch.x"\n'
    )
    with pytest.raises(MappingError) as caught:
        create_app({"MAPPINGS_DIR": str(folder), "DATABASE_URL": "sqlite://"})
    assert_names(caught.value, path, line_holding(path, "%nosuch.x"))


def test_the_repository_mappings_load(tmp_path: Path) -> None:
    assert set(load_mappings(MAPPINGS)) >= {"emis-web", "systmone", "uk-core", "vision", "gp-v2"}
    folder = copy_mappings(tmp_path, "emis-web", "systmone", "uk-core", "vision")
    assert sorted(load_mappings(folder)) == ["emis-web", "systmone", "uk-core", "vision"]
