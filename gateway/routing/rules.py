"""The routing file: an ordered list of first-match rules and a required default.

    practice_pcns: epcn-core-partners.csv      # optional, beside this file (tables.py)
    postcode_authorities: onspd-extract.csv    # optional
    rules:
      - name: Leeds practices
        hub: leeds
        practice: [B86001, B86002]
      - name: Debt advice
        hub: money-hub
        need: [{system: "http://snomed.info/sct", code: "1363311000000107"}]
    default: {hold: "no hub agreed for this area"}    # or {hub: leeds}

A rule matches when every criterion it names matches (a list matches any of its values).
Read and checked at start-up: an error names the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastjsonschema

from gateway.errors import MappingError
from gateway.mapping.files import line_of, read_checked
from gateway.routing.tables import read_postcode_authorities, read_practice_pcns

#: Criteria a rule may name, in the order they are tested.
CRITERIA = (
    "source",
    "practice",
    "pcn",
    "local_authority",
    "postcode_district",
    "referral_to",
    "need",
)
_CODES = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
_NEED = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["code"],
        "properties": {"system": {"type": "string"}, "code": {"type": "string"}},
    },
}
_HUB = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rules", "default"],
    "properties": {
        "practice_pcns": {"type": "string"},
        "postcode_authorities": {"type": "string"},
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["hub"],
                "minProperties": 2,
                "properties": {
                    "name": {"type": "string"},
                    "hub": _HUB,
                    "need": _NEED,
                    **{c: _CODES for c in CRITERIA if c != "need"},
                },
            },
        },
        "default": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {"hub": _HUB, "hold": {"type": "string", "minLength": 1}},
        },
    },
}
_check = fastjsonschema.compile(SCHEMA)


@dataclass(frozen=True)
class RoutingRule:
    """One rule: the hub it sends to and the values each named criterion accepts."""

    number: int
    name: str
    hub: str
    criteria: tuple[tuple[str, frozenset[str]], ...]
    line: int | None


@dataclass(frozen=True)
class RoutingFile:
    """A checked routing file with its reference tables loaded."""

    file: str
    rules: tuple[RoutingRule, ...]
    default_hub: str | None
    hold_reason: str | None
    practice_pcns: dict[str, str]
    postcode_authorities: dict[str, str]
    #: criterion -> value -> positions (in ``rules``) of the rules accepting that value.
    index: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)

    @property
    def hubs(self) -> frozenset[str]:
        """Every hub the file can send to."""
        named = {r.hub for r in self.rules}
        return frozenset(named | ({self.default_hub} if self.default_hub else set()))


def need_key(system: str | None, code: str) -> str:
    """How a need is compared: ``system|code``, or ``|code`` for any system."""
    return f"{system or ''}|{code}"


def _values(name: str, raw: list[Any]) -> frozenset[str]:
    """A criterion's accepted values, normalised as the record's values will be."""
    if name == "need":
        return frozenset(need_key(v.get("system"), str(v["code"]).strip()) for v in raw)
    if name == "source":
        return frozenset(str(v).strip() for v in raw)
    if name == "postcode_district":
        return frozenset("".join(str(v).split()).upper() for v in raw)
    return frozenset(str(v).strip().upper() for v in raw)


def _table(base: Path, name: str | None, read: Any, doc: Any, key: str) -> dict[str, str]:
    """A reference table named by the routing file, relative to it."""
    if not name:
        return {}
    path = Path(name) if Path(name).is_absolute() else base / name
    if not path.is_file():
        raise MappingError(f"{key}: no such file {name}", file=str(base), line=line_of(doc, [key]))
    table: dict[str, str] = read(path)
    return table


def _index(rules: list[RoutingRule]) -> dict[str, dict[str, tuple[int, ...]]]:
    """For each criterion and value, the rules that accept it, so a decision skips the rest."""
    out: dict[str, dict[str, list[int]]] = {}
    for position, rule in enumerate(rules):
        for name, accepted in rule.criteria:
            by_value = out.setdefault(name, {})
            for value in accepted:
                by_value.setdefault(value, []).append(position)
    return {c: {v: tuple(p) for v, p in by.items()} for c, by in out.items()}


def load_routing(path: str | Path, hubs: set[str] | None = None) -> RoutingFile:
    """A routing file, checked; ``hubs`` (the configured platforms) must hold every hub named."""
    file = Path(path)
    doc = read_checked(file, _check, empty={})
    rules: list[RoutingRule] = []
    for number, raw in enumerate(doc["rules"], start=1):
        criteria = tuple((c, _values(c, raw[c])) for c in CRITERIA if c in raw)
        if not criteria:
            raise MappingError(
                f"rules.{number - 1}: a rule needs at least one of {', '.join(CRITERIA)}",
                file=str(file),
                line=getattr(raw, "line", None) or line_of(doc, ["rules", number - 1]),
            )
        name = str(raw.get("name") or f"rule {number}")
        line = line_of(doc, ["rules", number - 1, "hub"])
        rules.append(RoutingRule(number, name, raw["hub"], criteria, line))
    default = doc["default"]
    routing = RoutingFile(
        file=str(file),
        rules=tuple(rules),
        default_hub=default.get("hub"),
        hold_reason=default.get("hold"),
        practice_pcns=_table(
            file.parent, doc.get("practice_pcns"), read_practice_pcns, doc, "practice_pcns"
        ),
        postcode_authorities=_table(
            file.parent,
            doc.get("postcode_authorities"),
            read_postcode_authorities,
            doc,
            "postcode_authorities",
        ),
        index=_index(rules),
    )
    uses_pcn = any(c == "pcn" for r in rules for c, _ in r.criteria)
    if uses_pcn and not routing.practice_pcns:
        raise MappingError("pcn rules need a practice_pcns table", file=str(file))
    uses_la = any(c == "local_authority" for r in rules for c, _ in r.criteria)
    if uses_la and not routing.postcode_authorities:
        raise MappingError(
            "local_authority rules need a postcode_authorities table", file=str(file)
        )
    if hubs is not None:
        for rule in rules:
            if rule.hub not in hubs:
                raise MappingError(
                    f"{rule.name}: hub {rule.hub!r} is not a platform in the destinations file",
                    file=str(file),
                    line=rule.line,
                )
        if routing.default_hub and routing.default_hub not in hubs:
            raise MappingError(
                f"default: hub {routing.default_hub!r} is not a platform in the destinations file",
                file=str(file),
                line=line_of(doc, ["default", "hub"]),
            )
    return routing
