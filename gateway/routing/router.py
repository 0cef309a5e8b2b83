"""A referral's hub from its record: the first routing rule that matches, else the default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.record.needs import coded_needs
from gateway.routing.rules import RoutingFile, RoutingRule, need_key
from gateway.routing.tables import normal_postcode, postcode_district


@dataclass(frozen=True)
class Route:
    """Where a referral goes: a hub, or held for an operator with the reason."""

    hub: str | None
    rule: str
    reason: str

    @property
    def held(self) -> bool:
        """Whether no hub was chosen and an operator must assign one."""
        return self.hub is None


def _get(record: dict[str, Any], *keys: str) -> Any:
    """A nested value of the record, or None where any level is absent."""
    node: Any = record
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def facts(routing: RoutingFile, record: dict[str, Any]) -> dict[str, frozenset[str]]:
    """What each routing criterion can see of one record (empty where the record is silent)."""
    practice = _get(record, "gp_practice", "ods_code")
    practice = practice.strip().upper() if isinstance(practice, str) else None
    postcode = _get(record, "person", "address", "postcode")
    postcode = postcode if isinstance(postcode, str) else None
    referral_to = _get(record, "referral", "referral_to", "ods_code")
    source = _get(record, "provenance", "source_system")
    needs: set[str] = set()
    for system, code in coded_needs(record):
        needs.add(need_key(system, code))
        needs.add(need_key(None, code))
    pcn = routing.practice_pcns.get(practice) if practice else None
    authority = routing.postcode_authorities.get(normal_postcode(postcode) or "")
    district = postcode_district(postcode)

    def one(value: Any) -> frozenset[str]:
        return frozenset((value.strip().upper(),)) if isinstance(value, str) and value else _NONE

    return {
        "source": frozenset((source,)) if isinstance(source, str) else _NONE,
        "practice": one(practice),
        "pcn": one(pcn),
        "local_authority": one(authority),
        "postcode_district": one(district),
        "referral_to": one(referral_to),
        "need": frozenset(needs),
    }


_NONE: frozenset[str] = frozenset()


def _first_match(routing: RoutingFile, seen: dict[str, frozenset[str]]) -> RoutingRule | None:
    """The first rule all of whose criteria accept one of the record's values.

    Rules are reached through the index, by the record's own values: a rule matches when the
    number of its criteria that some value hit equals the number it names, so the cost
    follows the record's values, not the length of the file.
    """
    hits: dict[int, int] = {}
    for name, by_value in routing.index.items():
        matched: set[int] = set()
        for value in seen[name]:
            positions = by_value.get(value)
            if positions:
                matched.update(positions)
        for position in matched:
            hits[position] = hits.get(position, 0) + 1
    rules = routing.rules
    for position in sorted(hits):
        if hits[position] == len(rules[position].criteria):
            return rules[position]
    return None


def _why(rule: RoutingRule, seen: dict[str, frozenset[str]]) -> str:
    """The values that made ``rule`` match, in words."""
    parts = []
    for name, accepted in rule.criteria:
        hit = sorted(accepted & seen[name])
        parts.append(f"{name} {', '.join(hit)}")
    return "; ".join(parts)


def route(routing: RoutingFile, record: dict[str, Any]) -> Route:
    """The hub for ``record``: the first matching rule, else the default hub or a hold."""
    seen = facts(routing, record)
    rule = _first_match(routing, seen)
    if rule is not None:
        return Route(rule.hub, rule.name, _why(rule, seen))
    if routing.default_hub:
        return Route(routing.default_hub, "default", "no rule matched")
    return Route(None, "default", routing.hold_reason or "no rule matched")


def explain(routing: RoutingFile, record: dict[str, Any]) -> list[str]:
    """Every rule in order with whether it matched and why not, then the decision."""
    seen = facts(routing, record)
    lines = [
        "record: "
        + "; ".join(f"{k} {', '.join(sorted(v)) or '(not stated)'}" for k, v in seen.items())
    ]
    for rule in routing.rules:
        failed = [
            f"{name} is {', '.join(sorted(seen[name])) or 'not stated'}, "
            f"rule wants {', '.join(sorted(accepted))}"
            for name, accepted in rule.criteria
            if accepted.isdisjoint(seen[name])
        ]
        if not failed:
            lines.append(f"{rule.number}. {rule.name} -> {rule.hub}: matches ({_why(rule, seen)})")
            break
        lines.append(f"{rule.number}. {rule.name} -> {rule.hub}: no ({'; '.join(failed)})")
    decision = route(routing, record)
    target = decision.hub or "held for an operator"
    lines.append(f"decision: {target} by {decision.rule} ({decision.reason})")
    return lines
