"""The ER7 parser: separators, escapes, segment endings, character sets, and bad input.

Every fixture is also parsed by two independent HL7 libraries (hl7apy and python-hl7) and
each segment, field, repetition, component and sub-component must agree with ours.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hl7
import pytest
from hl7apy.base_datatypes import ST
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message
from support import FIXTURES

from gateway.errors import GatewayError, InvalidMessage, NotAnHl7Message, NotSupported
from gateway.hl7v2.er7 import parse, require_type
from gateway.hl7v2.message import ORDER_KEY, Encoding, V2Message
from gateway.hl7v2.values import decode_text

MSH = "MSH|^~\\&|GPSYS|B99002|SPGW|C99003|20261102101500||REF^I12^REF_I12|GP0001|P|2.5.1"


def message(*segments: str, msh: str = MSH, end: str = "\r") -> bytes:
    """An ER7 message from segment lines, each ended by ``end``."""
    return "".join(line + end for line in (msh, *segments)).encode("utf-8")


def first(raw: bytes, segment: str) -> dict[str, Any]:
    """The first occurrence of ``segment``, without its position key."""
    found = dict(parse(raw).tree[segment][0])
    found.pop(ORDER_KEY)
    return found


# ----------------------------------------------------------------------------- tree shape


def test_tree_keeps_segments_in_order_with_numbered_fields() -> None:
    parsed = parse(message("PID|1||9990000220^^^NHS^NH", "NTE|1||one", "NTE|2||two"))
    assert [name for name, _ in parsed.segments] == ["MSH", "PID", "NTE", "NTE"]
    assert [s[ORDER_KEY] for _, s in parsed.segments] == [0, 1, 2, 3]
    assert parsed.tree["PID"][0] == {
        ORDER_KEY: 1,
        "1": [{"1": "1"}],
        "3": [{"1": "9990000220", "4": "NHS", "5": "NH"}],
    }
    assert [n["3"] for n in parsed.tree["NTE"]] == [[{"1": "one"}], [{"1": "two"}]]


def test_msh_1_and_2_are_the_separators_and_msh_3_is_the_next_field() -> None:
    msh = first(message(), "MSH")
    assert msh["1"] == [{"1": "|"}]
    assert msh["2"] == [{"1": "^~\\&"}]
    assert msh["3"] == [{"1": "GPSYS"}]
    assert msh["9"] == [{"1": "REF", "2": "I12", "3": "REF_I12"}]
    assert msh["12"] == [{"1": "2.5.1"}]


def test_header_helpers() -> None:
    parsed = parse(message("PID|1||9990000220^^^NHS^NH~P1^^^B99011^PI"))
    assert parsed.control_id == "GP0001"
    assert parsed.message_type == "REF^I12"
    assert parsed.version == "2.5.1"
    assert parsed.value("PID", 3, 4) == "NHS"  # first repetition only
    assert parsed.value("PID", 3, 9) == ""
    assert parsed.value("PID", 99) == ""
    assert parsed.value("ZZZ", 1) == ""
    assert parsed.value("PID", 1, occurrence=1) == ""
    assert parsed.encoding == Encoding()


def test_repetitions_keep_their_positions_and_empty_ones() -> None:
    pid = first(message("PID|1||A1^^^RXX01^MR~~9990000220^^^NHS^NH~"), "PID")
    assert pid["3"] == [
        {"1": "A1", "4": "RXX01", "5": "MR"},
        {},
        {"1": "9990000220", "4": "NHS", "5": "NH"},
        {},
    ]


def test_a_field_of_only_empty_repetitions_or_components_is_left_out() -> None:
    pid = first(message("PID|1|~~|^^|&&|^&^"), "PID")
    assert set(pid) == {"1"}


def test_components_are_numbered_and_empty_ones_left_out() -> None:
    pid = first(message("PID|1||||Ellis^^Joan^^Mrs^^L"), "PID")
    assert pid["5"] == [{"1": "Ellis", "3": "Joan", "5": "Mrs", "7": "L"}]


def test_sub_components_are_numbered_within_their_component() -> None:
    pd1 = first(message("PD1|||Leeds&Riverside^&B99002^&&x&"), "PD1")
    assert pd1["3"] == [
        {"1": {"1": "Leeds", "2": "Riverside"}, "2": {"2": "B99002"}, "3": {"3": "x"}}
    ]


def test_a_trailing_empty_field_or_component_changes_nothing() -> None:
    assert first(message("PID|1||X^Y^|"), "PID") == first(message("PID|1||X^Y"), "PID")


def test_other_encoding_characters_are_used() -> None:
    raw = message(
        "PID*1**9990000220!!!NHS!NH@P1!!!B99011!PI**O#F#Brien!Si$obh!!!Ms",
        "NTE*1**a#F#b#S#c#T#d#R#e#E#f",
        msh="MSH*!@#$*GPSYS*B99002*SPGW*C99003*20261102101500**REF!I12!REF_I12*GP0001*P*2.5.1",
    )
    parsed = parse(raw)
    assert parsed.encoding == Encoding("*", "!", "@", "#", "$")
    assert parsed.message_type == "REF^I12"
    pid = parsed.tree["PID"][0]
    assert pid["3"] == [
        {"1": "9990000220", "4": "NHS", "5": "NH"},
        {"1": "P1", "4": "B99011", "5": "PI"},
    ]
    assert pid["5"] == [{"1": "O*Brien", "2": {"1": "Si", "2": "obh"}, "5": "Ms"}]
    assert parsed.tree["NTE"][0]["3"] == [{"1": "a*b!c$d@e#f"}]
    assert parsed.tree["MSH"][0]["2"] == [{"1": "!@#$"}]


def test_a_fifth_encoding_character_truncation_is_allowed() -> None:
    raw = message(msh=MSH.replace("^~\\&", "^~\\&#"))
    parsed = parse(raw)
    assert parsed.encoding == Encoding()
    assert parsed.tree["MSH"][0]["2"] == [{"1": "^~\\&#"}]


# ----------------------------------------------------------------------------- escapes


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        ("a\\F\\b", "a|b"),
        ("a\\S\\b", "a^b"),
        ("a\\T\\b", "a&b"),
        ("a\\R\\b", "a~b"),
        ("a\\E\\b", "a\\b"),
        ("a\\.br\\b", "a\nb"),
        ("a\\.sp\\b", "a\nb"),
        ("\\H\\bold\\N\\ text", "bold text"),
        ("\\E\\F\\E\\", "\\F\\"),  # an escaped escape is not a second escape
        ("\\F\\\\S\\\\T\\\\R\\", "|^&~"),
    ],
    ids=["F", "S", "T", "R", "E", "br", "sp", "H-N", "E-F-E", "adjacent"],
)
def test_each_escape_sequence(escaped: str, text: str) -> None:
    assert first(message(f"NTE|1||{escaped}"), "NTE")["3"] == [{"1": text}]


def test_escapes_decode_inside_components_and_sub_components_after_splitting() -> None:
    pid = first(message("PID|1||||O\\S\\Brien&x\\T\\y^A\\R\\B~C\\F\\D"), "PID")
    assert pid["5"] == [{"1": {"1": "O^Brien", "2": "x&y"}, "2": "A~B"}, {"1": "C|D"}]


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        ("\\X2C\\", ","),
        ("\\X41424344\\", "ABCD"),
        ("Siobh\\XC3A1\\n", "Siobhán"),  # UTF-8 bytes, the default character set
        ("\\Xc3a1\\", "á"),  # lower-case hex digits too
    ],
)
def test_hex_escapes_decode_as_bytes_in_the_message_character_set(escaped: str, text: str) -> None:
    assert first(message(f"NTE|1||{escaped}"), "NTE")["3"] == [{"1": text}]


def test_hex_escapes_use_msh_18() -> None:
    raw = message("NTE|1||Ren\\XE9\\e", msh=MSH + "||||||8859/1")
    assert first(raw, "NTE")["3"] == [{"1": "Renée"}]


@pytest.mark.parametrize(
    "escaped",
    ["\\Zlocal\\", "\\X2\\", "\\XZZ\\", "\\XC3\\", "\\C2842\\", "\\M2442\\", "\\.in+4\\"],
    ids=["Z", "odd-hex", "not-hex", "broken-utf8", "C", "M", "in"],
)
def test_unknown_or_undecodable_escapes_are_kept_as_sent(escaped: str) -> None:
    assert first(message(f"NTE|1||a{escaped}b"), "NTE")["3"] == [{"1": f"a{escaped}b"}]


def test_an_unterminated_escape_is_kept_as_sent() -> None:
    assert first(message("NTE|1||C:\\temp"), "NTE")["3"] == [{"1": "C:\\temp"}]
    assert first(message("NTE|1||\\F\\ then \\"), "NTE")["3"] == [{"1": "| then \\"}]


# ----------------------------------------------------------------------------- segment endings


@pytest.mark.parametrize("end", ["\r", "\n", "\r\n"], ids=["CR", "LF", "CRLF"])
def test_segment_endings_give_the_same_tree(end: str) -> None:
    segments = ("PID|1||9990000220^^^NHS^NH", "NTE|1||one\\.br\\two")
    assert parse(message(*segments, end=end)).tree == parse(message(*segments)).tree


def test_mixed_endings_blank_lines_and_mllp_framing_are_tolerated() -> None:
    expected = parse(message("PID|1||X", "NTE|1||one")).tree
    raw = b"\x0b" + MSH.encode() + b"\r\n\r\nPID|1||X\nNTE|1||one\r\x1c\r"
    assert parse(raw).tree == expected
    assert parse(b"\r\n  " + message("PID|1||X", "NTE|1||one") + b"\n\n").tree == expected


def test_a_segment_without_fields() -> None:
    parsed = parse(message("PID|1||X", "ZZZ"))
    assert parsed.tree["ZZZ"] == [{ORDER_KEY: 2}]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("raw", [b"", b"   ", b"\r\n\r\n", b"\x0b\x1c\r"], ids=repr)
def test_an_empty_message_is_not_an_hl7_message(raw: bytes) -> None:
    with pytest.raises(NotAnHl7Message, match="empty") as caught:
        parse(raw)
    assert caught.value.expression == "MSH"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"PID|1||X\rMSH|^~\\&|A", "starts with PID, not MSH"),
        (b"FHS|^~\\&|A\r", "batch"),
        (b'{"resourceType": "Bundle"}', "no MSH"),
    ],
    ids=["pid-first", "fhs", "json"],
)
def test_a_message_must_start_with_msh(raw: bytes, text: str) -> None:
    with pytest.raises(NotAnHl7Message, match=text) as caught:
        parse(raw)
    assert caught.value.expression == "MSH"


def test_a_bare_msh_declares_no_encoding_characters() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse(b"MSH")
    assert not isinstance(caught.value, NotAnHl7Message)
    assert caught.value.expression == "MSH.2"


@pytest.mark.parametrize(
    "header",
    [
        "MSH|^~\\|A|B|C|D|20260101||REF^I12|1|P|2.5",  # three encoding characters
        "MSH|^~|A",  # two
        "MSH||A|B",  # none
        "MSH|^^\\&|A|B|C|D|20260101||REF^I12|1|P|2.5",  # repeated
        "MSH|^~\\||A|B",  # the field separator again
        "MSHA^~\\&A1A2",  # alphanumeric field separator
    ],
)
def test_bad_msh_2_is_invalid_naming_msh_2(header: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse(header.encode() + b"\rPID|1\r")
    assert caught.value.expression == "MSH.2"


def test_a_line_that_is_not_a_segment_is_invalid_naming_its_position() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse(message("PID|1||X", "this is not a segment"))
    assert caught.value.expression == "segment[3]"
    with pytest.raises(InvalidMessage) as caught:
        parse(message("pid|1"))
    assert caught.value.expression == "segment[2]"
    with pytest.raises(InvalidMessage) as caught:
        parse(message("PIDX|1"))
    assert caught.value.expression == "segment[2]"


def test_msh_9_is_required() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse(message(msh=MSH.replace("REF^I12^REF_I12", "")))
    assert caught.value.expression == "MSH.9"


def test_require_type() -> None:
    parsed = parse(message())
    require_type(parsed, ("REF^I12", "REF^I13"))
    with pytest.raises(NotSupported, match="ORU\\^R01") as caught:
        require_type(parse(message(msh=MSH.replace("REF^I12", "ORU^R01"))), ("REF^I12",))
    assert caught.value.expression == "MSH.9"


# ----------------------------------------------------------------------------- character sets


def test_msh_18_8859_1_decodes_latin_1_bytes() -> None:
    raw = (MSH + "||||||8859/1\rPID|1||||Lef\xe8vre^Ren\xe9e\r").encode("latin-1")
    assert first(raw, "PID")["5"] == [{"1": "Lefèvre", "2": "Renée"}]
    assert decode_text(raw).startswith("MSH|")


def test_msh_18_utf_8_and_no_msh_18_decode_utf_8() -> None:
    for header in (MSH + "||||||UNICODE UTF-8", MSH):
        raw = (header + "\rPID|1||||Ó Briain^Siobhán\r").encode("utf-8")
        assert first(raw, "PID")["5"] == [{"1": "Ó Briain", "2": "Siobhán"}]


def test_msh_18_8859_15_and_ascii() -> None:
    raw = (MSH + "||||||8859/15\rNTE|1||€ 5\r").encode("iso8859-15")
    assert first(raw, "NTE")["3"] == [{"1": "€ 5"}]
    with pytest.raises(InvalidMessage) as caught:
        parse((MSH + "||||||ASCII\rNTE|1||caf\xe9\r").encode("latin-1"))
    assert caught.value.expression == "MSH.18"


@pytest.mark.parametrize(
    "raw",
    [
        (MSH + "\rPID|1||||Lef\xe8vre\r").encode("latin-1"),  # latin-1 bytes, no MSH-18
        (MSH + "||||||UNICODE UTF-8\rPID|1||||Lef\xe8vre\r").encode("latin-1"),
        MSH.encode() + b"\rNTE|1||\xff\xfe\xc3\r",
    ],
    ids=["undeclared", "declared-utf8", "garbage"],
)
def test_invalid_utf_8_is_invalid_naming_msh_18(raw: bytes) -> None:
    with pytest.raises(InvalidMessage, match="not valid utf-8") as caught:
        parse(raw)
    assert caught.value.expression == "MSH.18"


def test_an_unknown_charset_name_falls_back_to_utf_8() -> None:
    raw = (MSH + "||||||ISO IR87\rPID|1||||Siobhán\r").encode("utf-8")
    assert first(raw, "PID")["5"] == [{"1": "Siobhán"}]


# ----------------------------------------------------------------------------- cross-check
#
# hl7apy and python-hl7 split the message themselves; neither decodes escapes the way HL7
# says on its own (hl7apy keeps leaves raw, python-hl7 maps \.br\ to CR and \H\ to "_" and
# decodes \X..\ a byte per character), so python-hl7's unescape runs with an application map
# for those three and fixtures keep \X..\ to ASCII (the unit tests above cover the rest).

APP_MAP = {"H": "", "N": "", ".br": "\n"}


Decode = Callable[[str, str, int], str]


def unescaper(container: hl7.Message) -> Decode:
    """python-hl7's unescape (MSH-1 and MSH-2 are never unescaped)."""

    def decode(raw_leaf: str, segment: str, field: int) -> str:
        if segment == "MSH" and field in (1, 2):
            return raw_leaf
        return str(container.unescape(raw_leaf, APP_MAP))

    return decode


def _as_sent(raw_leaf: str, segment: str, field: int) -> str:
    return raw_leaf


def _slots(element: Any) -> list[Any]:
    """An hl7apy element's children by position (None where a position is empty).

    This is how hl7apy itself writes an element back to ER7: known components in the data
    type's order, then any it has no name for (a v2.5 component in a v2.4 message).
    """
    out: list[Any] = []
    for group in element._get_children(trailing=True):
        out.extend(group or [None])
    return out


def _apy_leaf(sub: Any) -> str:
    value = sub.value
    inner = getattr(value, "value", value)
    return inner if isinstance(inner, str) else str(value.to_er7())


def _component(leaves: list[tuple[int, str]]) -> Any:
    """Our shape of one component from its (number, text) sub-components."""
    if len(leaves) == 1 and leaves[0][0] == 1:
        return leaves[0][1] or None
    subs = {str(n): text for n, text in leaves if text}
    return subs or None


def _repetition(components: list[tuple[int, Any]]) -> dict[str, Any]:
    return {str(n): c for n, c in components if c}


def hl7apy_tree(text: str, decode: Decode) -> dict[str, list[dict[str, Any]]]:
    """Our tree shape, built from hl7apy's parse, each leaf passed through ``decode``."""
    parsed = parse_message(text, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    tree: dict[str, list[dict[str, Any]]] = {}
    for segment in parsed.children:
        out: dict[str, list[dict[str, Any]]] = {}
        for field in segment.children:
            number = int(field.name.rsplit("_", 1)[1])  # PID_3, ZSP_4
            components = []
            for c_number, component in enumerate(_slots(field), start=1):
                if component is None:
                    continue
                leaves = [
                    (s_number, decode(_apy_leaf(sub), segment.name, number))
                    for s_number, sub in enumerate(_slots(component), start=1)
                    if sub is not None
                ]
                components.append((c_number, _component(leaves)))
            out.setdefault(str(number), []).append(_repetition(components))
        tree.setdefault(segment.name, []).append({k: reps for k, reps in out.items() if any(reps)})
    return tree


def python_hl7_tree(decoder: hl7.Message) -> dict[str, list[dict[str, Any]]]:
    """Our tree shape, built from python-hl7's parse."""
    decode = unescaper(decoder)
    tree: dict[str, list[dict[str, Any]]] = {}
    for segment in decoder:
        name = str(segment[0])
        out: dict[str, list[dict[str, Any]]] = {}
        for number, field in enumerate(segment[1:], start=1):
            reps = []
            for rep in [field] if isinstance(field, str) else field:
                items = [rep] if isinstance(rep, str) else list(rep)
                components = []
                for c_index, component in enumerate(items, start=1):
                    subs = [component] if isinstance(component, str) else list(component)
                    leaves = [
                        (s_index, decode(str(sub), name, number))
                        for s_index, sub in enumerate(subs, start=1)
                    ]
                    components.append((c_index, _component(leaves)))
                reps.append(_repetition(components))
            if any(reps):
                out[str(number)] = reps
        tree.setdefault(name, []).append(out)
    return tree


def ours(parsed: V2Message) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [{k: v for k, v in seg.items() if not k.startswith("_")} for seg in occurrences]
        for name, occurrences in parsed.tree.items()
    }


def _parses(path: Path) -> bool:
    try:
        parse(path.read_bytes())
    except GatewayError:
        return False
    return True


V2_FIXTURES = sorted(FIXTURES.glob("*/*.hl7"))
PARSEABLE = [p for p in V2_FIXTURES if _parses(p)]
SAMPLES = {
    "other-separators": message(
        "PID*1**9990000220!!!NHS!NH@P1!!!B99011!PI**O#F#Brien!Si$obh!!!Ms",
        "ZZZ*a#S#b!c$$d@@e*#E##T#",
        msh="MSH*!@#$*GPSYS*B99002*SPGW*C99003*20261102101500**REF!I12!REF_I12*GP0001*P*2.5.1",
    ),
    "latin-1": (MSH + "||||||8859/1\rPID|1||||Lef\xe8vre^Ren\xe9e\rZZZ|\xe9&\xe8^~x\r").encode(
        "latin-1"
    ),
    "crlf": message("PID|1||A~~B^C&D&^E", "ZZZ|^^x&&y~|\\T\\\\F\\", end="\r\n"),
}


def test_every_v2_fixture_but_the_empty_one_parses() -> None:
    assert len(V2_FIXTURES) >= 24
    assert {p.parent.name for p in PARSEABLE} == {"gp-v2", "hospital-a", "hospital-b"}
    assert [p.name for p in V2_FIXTURES if p not in PARSEABLE] == ["08-empty-message.hl7"]


def _cross_check(raw: bytes) -> None:
    parsed = parse(raw)
    # The libraries split on CR only and take text: give them the message as decoded.
    text = re.sub(r"\r\n|\n", "\r", decode_text(raw)).strip("\r\n\x0b\x1c ")
    decoder = hl7.parse(text)
    mine = ours(parsed)
    assert hl7apy_tree(text, unescaper(decoder)) == mine
    assert python_hl7_tree(decoder) == mine
    assert [name for name, _ in parsed.segments] == [str(s[0]) for s in decoder]


@pytest.mark.parametrize("path", PARSEABLE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_parses_as_hl7apy_and_python_hl7_parse_it(path: Path) -> None:
    _cross_check(path.read_bytes())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_unusual_messages_parse_as_hl7apy_and_python_hl7_parse_them(name: str) -> None:
    _cross_check(SAMPLES[name])


def _leaves(tree: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[tuple[Any, ...], str]]:
    for name, occurrences in tree.items():
        for index, segment in enumerate(occurrences):
            for field, reps in segment.items():
                for r, rep in enumerate(reps):
                    for component, value in rep.items():
                        if isinstance(value, dict):
                            for sub, text in value.items():
                                yield (name, index, field, r, component, sub), text
                        else:
                            yield (name, index, field, r, component), value


def _at(tree: dict[str, list[dict[str, Any]]], path: tuple[Any, ...]) -> Any:
    name, index, field, rep, *rest = path
    node = tree[name][index][field][rep]
    for step in rest:
        node = node[step]
    return node


@pytest.mark.parametrize("path", PARSEABLE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_hl7apy_escaping_our_text_gives_back_the_sent_text(path: Path) -> None:
    """hl7apy cannot unescape, but it can escape: where a leaf uses only \\F\\ \\S\\ \\T\\
    \\R\\ \\E\\, hl7apy escaping our decoded text gives back the sender's text."""
    raw = path.read_bytes()
    text = re.sub(r"\r\n|\n", "\r", decode_text(raw)).strip("\r\n ")
    sent = hl7apy_tree(text, _as_sent)
    mine = ours(parse(raw))
    encoding = parse_message(text, find_groups=False).encoding_chars
    checked = 0
    for where, as_sent in _leaves(sent):
        codes = set(re.findall(r"\\(.*?)\\", as_sent))
        if where[0] == "MSH" and where[2] in ("1", "2"):
            continue
        if codes and codes <= {"F", "S", "T", "R", "E"}:
            assert ST(_at(mine, where)).to_er7(encoding) == as_sent, where
            checked += 1
        elif not codes:
            assert _at(mine, where) == as_sent, where
    if "escape" in path.name:
        assert checked >= 2


def test_a_damaged_hospital_a_date_is_refused_naming_the_field_not_a_fault() -> None:
    from gateway.errors import GatewayError
    from gateway.intake.hl7v2 import translate_v2
    from gateway.mapping.engine import load_mappings

    root = Path(__file__).resolve().parents[2]
    raw = (root / "fixtures" / "hospital-a" / "01-discharge.hl7").read_bytes()
    damaged = raw.replace(b"|20260714153000", b"|20261314153000")
    assert damaged != raw
    with pytest.raises(GatewayError) as info:
        translate_v2(load_mappings(root / "mappings"), "hospital-a", damaged)
    assert info.value.status == 400 and info.value.issue_code == "invalid"
    assert info.value.expression == "PV1-45"
