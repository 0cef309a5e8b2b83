"""Running a compiled mapping over one message to produce a social prescribing record."""

from __future__ import annotations

import copy
import re
from functools import partial
from pathlib import Path
from typing import Any

from gateway.data_quality import not_stated, settle_risks
from gateway.errors import GatewayError, InvalidContent, MappingError, RequiredMissing
from gateway.mapping import identity
from gateway.mapping.codegen import generate
from gateway.mapping.compile import ALWAYS_IGNORED, Compiled, compile_source
from gateway.mapping.interpret import Placement, interpret
from gateway.mapping.layers import Documents
from gateway.mapping.parse import DOCUMENT
from gateway.mapping.reference import run_alternative
from gateway.mapping.runtime import Env, ResourceIndex
from gateway.mapping.syntax import CompiledPath
from gateway.mapping.transforms import MapState
from gateway.record.model import ReferralRecord
from gateway.record.schema import validate_record

#: The root of a JSON document in the locations of refusals and diagnostics (JSONPath).
JSON_ROOT = "$"
_CONTEXT_REF = re.compile(r"%([A-Za-z_]\w*)")
_V2_FIELD = re.compile(r"\b([A-Z][A-Z0-9]{2})\.(\d+)")
#: Top-level sections in the record schema's order, so records read the same for every source.
_SECTIONS = tuple(ReferralRecord().fields)


class Mapping:
    """A source system's compiled mapping: ``translate`` turns a message into a record."""

    def __init__(self, compiled: Compiled) -> None:
        self.compiled = compiled
        self.source = compiled.source
        self.version = compiled.version
        self.accepts = compiled.accepts
        self._targets = {".".join(r.target): r for r in compiled.rules}
        self._contexts = {c.name: c for c in compiled.contexts}
        #: Named collections: their members are read by rules, not bound as one resource.
        self._collections = frozenset(c.name for c in compiled.contexts if c.all)
        self._program = generate(compiled, self._missing, _SECTIONS)
        #: JSON: where each context's object sits in the document (the same in every one).
        self._places = (
            {
                c.name: self._describe(c.path.text, Env({}, ResourceIndex({})))
                for c in compiled.contexts
            }
            if compiled.format == "json"
            else {}
        )
        # Per context: the keys of its resource never reported, as written in the JSON
        # (an element ``x`` and its primitive extension ``_x``).
        self._silent = {name: _keys_of(consumed) for name, consumed in compiled.consumed.items()}

    def explaining(self, placements: list[Placement]) -> Mapping:
        """This mapping run by the reference interpreter, noting each item it places."""
        twin = copy.copy(self)
        twin._program = partial(
            interpret, self.compiled, required=self._missing, order=_SECTIONS, placements=placements
        )
        return twin

    def _missing(self, name: str, env: Env) -> None:
        """Raise for a required context the message does not have."""
        where = self._describe(self._contexts[name].path.text, env)
        raise RequiredMissing(f"the message has no {name} ({where})", expression=where)

    def translate(self, message: dict[str, Any]) -> dict[str, Any]:
        """The validated record for ``message`` (received_at left unset), or a domain error.

        A validation error carries the record as mapped (``partial_record``), so that intake
        can still apply a cancellation that names a held referral and little else.
        """
        document = self.compiled.format == "json"
        if document and self.compiled.document_schema is not None:
            self.compiled.document_schema.validate(message)
        env = Env(root=message, index=ResourceIndex({} if document else message))
        state = MapState(self.compiled.timezone, describe=lambda t: self._describe(t, env))
        v2 = self.compiled.format == "hl7v2"
        try:
            record = self._program(message, env, state)  # sections in _SECTIONS order
        except InvalidContent as exc:
            if document:  # the transform named the document's element already
                raise
            raise self._nhs_number_located(exc, env, v2) from None
        numbers = (
            self._document_nhs_number(record, env) if document else identity.nhs_numbers(env, v2)
        )
        identity.check_one_nhs_number(numbers)
        provenance = record.setdefault("provenance", {})
        provenance["source_system"] = self.source
        provenance["mapping_version"] = self.version
        elements = identity.elements(record, env, numbers, v2, lambda i: self._where(i, env))
        if elements:
            provenance["elements"] = elements
        if v2:
            self._unused_segments(message, state)
        elif document:
            self._unused_keys(env, state)
        else:
            self._unused(env, state)
        settle_risks(record)
        quality = not_stated(record)
        if quality:
            record["data_quality"] = quality
        record["diagnostics"] = state.diagnostics
        try:
            try:
                validate_record(record)
            except GatewayError as exc:
                raise self._located(exc, env) from None
            identity.check_birth_date(record, elements.get("person.date_of_birth", ""))
            self._required(record, quality, env)
        except GatewayError as exc:
            exc.partial_record = record  # type: ignore[attr-defined]
            raise
        return record

    def _nhs_number_located(self, exc: InvalidContent, env: Env, v2: bool) -> GatewayError:
        """An NHS number refusal pointed at the very identifier that failed, when found."""
        if exc.message.startswith("NHS number"):
            numbers = identity.nhs_numbers(env, v2)
            identity.check_one_nhs_number(numbers)
            where = identity.invalid_nhs_number_location(numbers)
            if where:
                exc.expression = where
        return exc

    def _document_nhs_number(self, record: dict[str, Any], env: Env) -> list[tuple[str, str]]:
        """A JSON document's NHS number (checked by its transform) and where it was given."""
        number = (record.get("person") or {}).get("nhs_number")
        if not isinstance(number, str):
            return []
        return [(self._where("person.nhs_number", env) or "$.person.nhs_number", number)]

    def _unused_keys(self, env: Env, state: MapState) -> None:
        """Diagnose keys of a JSON document, and of the objects bound to its contexts, that
        no path reads (``unused-element``, located as ``$.person.pronouns``; ``ignore``
        names them without the ``$.``)."""
        consumed = self.compiled.consumed
        ignore = self.compiled.ignore
        bound: list[tuple[str, dict[str, Any], frozenset[str]]] = [
            (JSON_ROOT, env.root, consumed.get(DOCUMENT, frozenset()))
        ]
        for name, col in env.contexts.items():
            if col and name not in self._collections and isinstance(col[0], dict):
                bound.append((self._places[name], col[0], consumed.get(name, frozenset())))
        seen: set[str] = set()
        for where, node, read in bound:
            for key in node:
                location = f"{where}.{key}"
                if key in read or location[2:] in ignore or location in seen:
                    continue
                seen.add(location)
                state.diagnose("unused-element", "element present but not mapped", location)

    def _required(self, record: dict[str, Any], quality: list[dict[str, str]], env: Env) -> None:
        """Refuse a record that leaves out an item this source's mapping requires."""
        if not self.compiled.require:
            return
        missing = {q["item"] for q in quality}
        for item in self.compiled.require:
            if item in missing or _absent(record, item):
                where = self._where(item, env) or item
                raise RequiredMissing(
                    f"{item} is required by the {self.source} mapping and is missing"
                    f" (from {where})",
                    expression=where,
                )

    def _where(self, item: str, env: Env) -> str:
        """The sender's element a record item's rule reads, or "" when no rule reads one."""
        target = item
        rule = self._targets.get(target)
        while rule is None and "." in target:
            target = target.rsplit(".", 1)[0]
            rule = self._targets.get(target)
        if rule is None:
            # A section: the first rule inside it that reads the message.
            rule = next((r for t, r in self._targets.items() if t.startswith(item + ".")), None)
        path = None if rule is None else (rule.source or rule.each)
        return self._describe_path(path, env) if path is not None else ""

    def _unused(self, env: Env, state: MapState) -> None:
        """Diagnose bundle entries no rule reached and context elements no rule reads."""
        # One pass over the contexts: what they are bound to, and per bound resource the
        # keys never reported (a resource bound to several contexts is read by any of them).
        bound: set[int] = set()
        resources: dict[int, tuple[dict[str, Any], frozenset[str]]] = {}
        silent_of = self._silent
        collections = self._collections
        for name, col in env.contexts.items():
            if not col or name in collections:
                continue
            bound_to = col[0]
            key = id(bound_to)
            bound.add(key)
            if not isinstance(bound_to, dict) or "resourceType" not in bound_to:
                continue
            silent = silent_of.get(name, _ALWAYS_IGNORED_KEYS)
            seen = resources.get(key)
            resources[key] = (bound_to, silent if seen is None else seen[1] | silent)
        used = bound | env.touched
        for position, resource in env.index.entries:
            if id(resource) not in used:
                rtype = resource.get("resourceType")
                if rtype != "MessageHeader":
                    state.diagnose(
                        "unused-resource",
                        f"{rtype} resource not used by the mapping",
                        f"Bundle.entry[{position}]",
                    )
        ignore = self.compiled.ignore
        for resource, silent in resources.values():
            unread = resource.keys() - silent  # usually empty; the loop keeps the JSON order
            if not unread:
                continue
            rtype = resource["resourceType"]
            for element in resource:
                if element not in unread:
                    continue
                name = element[1:] if element.startswith("_") else element
                if f"{rtype}.{name}" in ignore:
                    continue
                state.diagnose(
                    "unused-element", "element present but not mapped", f"{rtype}.{name}"
                )

    def _unused_segments(self, tree: dict[str, Any], state: MapState) -> None:
        """Diagnose segments no rule reads (Z-segments included) and fields no rule reads."""
        consumed = self.compiled.consumed
        ignore = self.compiled.ignore
        for name, occurrences in tree.items():
            fields = consumed.get("@" + name)
            if name in ignore:
                continue
            if fields is None:
                state.diagnose("unused-segment", "segment present but not mapped", name)
                continue
            if "" in fields:
                continue
            seen: set[str] = set()
            for segment in occurrences:
                for number in segment:
                    if number.isdigit() and number not in fields and number not in seen:
                        seen.add(number)
                        if f"{name}.{number}" not in ignore:
                            state.diagnose(
                                "unused-field", "field present but not mapped", f"{name}-{number}"
                            )

    def _describe_path(self, path: CompiledPath, env: Env) -> str:
        """The sender's element a path read: its first ``|`` alternative that selects
        anything in this message (the one the rule took), else its first alternative."""
        texts = [t.strip() for t in path.text.split("|")]
        if len(texts) == len(path.alternatives) > 1:
            for text, alternative in zip(texts, path.alternatives, strict=True):
                if run_alternative(alternative, env):
                    return self._describe(text, env)
        return self._describe(path.text, env)

    def _describe(self, text: str, env: Env) -> str:
        """Path text with each %context replaced by the type of resource it found."""

        def swap(match: re.Match[str]) -> str:
            name = match.group(1)
            col = env.contexts.get(name)
            if col and isinstance(col[0], dict) and col[0].get("resourceType"):
                return identity.resource_location(env, col[0])
            ctx = self._contexts.get(name)
            return self._describe(ctx.path.text, env) if ctx else match.group(0)

        first = _CONTEXT_REF.sub(swap, text.split("|")[0].strip())
        if self.compiled.format == "hl7v2":
            # HL7 locations are written SEG-N (PID-3), not SEG.N.
            return _V2_FIELD.sub(r"\1-\2", first)
        if self.compiled.format == "json" and not first.startswith(JSON_ROOT):
            # JSON locations are JSONPath from the document's root: $.person.nhs_number.
            return f"{JSON_ROOT}.{first}"
        return first

    def _located(self, exc: GatewayError, env: Env) -> GatewayError:
        """A record validation error re-pointed at the message element the rule reads."""
        target = exc.expression or ""
        rule = self._targets.get(target)
        while rule is None and "." in target:
            target = target.rsplit(".", 1)[0]
            rule = self._targets.get(target)
        path = None if rule is None else (rule.source or rule.each)
        if path is not None:
            where = self._describe_path(path, env)
            exc.message = f"{exc.message} (from {where})"
            exc.args = (exc.message,)
            exc.expression = where
        return exc


def _absent(record: dict[str, Any], item: str) -> bool:
    """Whether the dotted record item is missing or empty."""
    node: Any = record
    for part in item.split("."):
        node = node.get(part) if isinstance(node, dict) else None
        if node in (None, "", [], {}):
            return True
    return False


def _keys_of(names: frozenset[str]) -> frozenset[str]:
    """JSON keys whose element (the key without a leading ``_``) is in ``names``."""
    names = names | ALWAYS_IGNORED
    return frozenset({n for n in names if not n.startswith("_")} | {"_" + n for n in names})


_ALWAYS_IGNORED_KEYS = _keys_of(frozenset())


def load_mappings(directory: Path) -> dict[str, Mapping]:
    """Every source mapping under ``directory`` (abstract layers excluded), compiled."""
    if not directory.is_dir():
        raise MappingError("mappings folder not found", file=str(directory))
    out: dict[str, Mapping] = {}
    documents = Documents()
    for folder in sorted(p for p in directory.iterdir() if (p / "mapping.yaml").is_file()):
        compiled = compile_source(directory, folder.name, documents)
        if not compiled.abstract:
            out[folder.name] = Mapping(compiled)
    return out
