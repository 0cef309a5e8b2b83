"""Compiling layered mapping files (source, then common) into executable rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import MappingError
from gateway.mapping import transforms_person, transforms_v2  # noqa: F401  (registers transforms)
from gateway.mapping.codemaps import CodeMap
from gateway.mapping.documents import DocumentSchema, document_schema
from gateway.mapping.files import LineDict
from gateway.mapping.layers import Documents, codemaps_of, layers_of
from gateway.mapping.parse import PathSyntaxError, compile_path
from gateway.mapping.syntax import CompiledPath
from gateway.mapping.targets import check_fields, check_target, fail_require, record_properties
from gateway.mapping.transforms import REGISTRY, Registered

#: Elements never reported as unused: identity, metadata and narrative.
ALWAYS_IGNORED = frozenset({"resourceType", "id", "meta", "text", "contained", "implicitRules"})


@dataclass(frozen=True)
class Condition:
    """A tiny rule condition: present, absent, equals or in."""

    path: CompiledPath
    equals: Any = None
    one_of: tuple[Any, ...] | None = None
    present: bool | None = None


@dataclass(frozen=True)
class Rule:
    """One compiled rule: where a record item comes from and how it is converted."""

    target: tuple[str, ...]
    source: CompiledPath | None
    value: Any
    transform: Registered | None
    codemap: CodeMap | None
    default: Any
    many: bool
    each: CompiledPath | None
    fields: tuple[Rule, ...]
    when: Condition | None
    where: str


@dataclass(frozen=True)
class ContextDef:
    """A named resource the rules start from (``%patient``), or with ``all`` a named
    collection of every resource the path finds (``%observations``)."""

    name: str
    path: CompiledPath
    required: bool
    all: bool = False


@dataclass(frozen=True)
class Compiled:
    """A source's mapping after layering and compilation."""

    source: str
    version: str
    format: str
    strict: bool
    abstract: bool
    accepts: tuple[str, ...]
    timezone: ZoneInfo
    contexts: tuple[ContextDef, ...]
    rules: tuple[Rule, ...]
    ignore: frozenset[str]
    consumed: dict[str, frozenset[str]]
    require: tuple[str, ...] = ()
    #: JSON sources: the document schema of the nearest layer that names one.
    document_schema: DocumentSchema | None = None


class _Compiler:
    """Compiles one layered mapping, remembering file and line for every error."""

    def __init__(self, codemaps: dict[str, CodeMap], message_format: str) -> None:
        self.codemaps = codemaps
        self.segments = message_format == "hl7v2"
        self.document = message_format == "json"

    def path(self, text: str, file: str, line: int | None, relative: bool = False) -> CompiledPath:
        try:
            return compile_path(
                text, relative=relative, segments=self.segments, document=self.document
            )
        except PathSyntaxError as exc:
            raise MappingError(f"path: {exc}", file=file, line=line) from None

    def rule(
        self, target: str, spec: Any, file: str, line: int | None, relative: bool = False
    ) -> Rule:
        def fail(message: str) -> None:
            raise MappingError(message, file=file, line=line)

        if isinstance(spec, str):
            spec = {"from": spec}
        sources = [k for k in ("from", "value", "each") if k in spec]
        if len(sources) != 1:
            fail(f"rule {target!r} needs exactly one of from, value, each")
        if "fields" in spec and "each" not in spec:
            fail(f"rule {target!r}: fields go with each")
        transform = None
        if "transform" in spec:
            transform = REGISTRY.get(spec["transform"])
            if transform is None:
                fail(f"rule {target!r}: unknown transform {spec['transform']!r}")
        codemap = None
        if "codemap" in spec:
            codemap = self.codemaps.get(spec["codemap"])
            if codemap is None:
                fail(f"rule {target!r}: unknown code map {spec['codemap']!r}")
        field_rules: list[Rule] = []
        sub = spec.get("fields") or {}
        for name, sub_spec in sub.items():
            sub_line = sub.lines.get(name, line) if isinstance(sub, LineDict) else line
            field_rules.append(self.rule(name, sub_spec, file, sub_line, relative=True))
        when = None
        if "when" in spec:
            w = spec["when"]
            when = Condition(
                self.path(w["path"], file, line, relative),
                w.get("equals"),
                tuple(w["in"]) if "in" in w else None,
                w.get("present"),
            )
        return Rule(
            target=tuple(target.split(".")),
            source=self.path(spec["from"], file, line, relative) if "from" in spec else None,
            value=spec.get("value"),
            transform=transform,
            codemap=codemap,
            default=spec.get("default"),
            many=bool(spec.get("list", False)) or "each" in spec,
            each=self.path(spec["each"], file, line, relative) if "each" in spec else None,
            fields=tuple(field_rules),
            when=when,
            where=f"{file}:{line}",
        )


def _compile_contexts(
    compiler: _Compiler, contexts: dict[str, tuple[Any, str, int | None]]
) -> list[ContextDef]:
    """Contexts in order; each may use only contexts defined before it."""
    out: list[ContextDef] = []
    for name, (spec, file, line) in contexts.items():
        spec = {"from": spec} if isinstance(spec, str) else spec
        path = compiler.path(spec["from"], file, line)
        for used in path.contexts - {c.name for c in out}:
            raise MappingError(
                f"context {name} uses %{used} before it is defined", file=file, line=line
            )
        out.append(
            ContextDef(name, path, bool(spec.get("required", False)), bool(spec.get("all", False)))
        )
    return out


def _compile_rules(
    compiler: _Compiler, rules: dict[str, tuple[Any, str, int | None]], known: set[str]
) -> list[Rule]:
    """Rules, each checked for a real record target and known contexts."""
    props = record_properties()
    out: list[Rule] = []
    for target, (spec, file, line) in rules.items():

        def fail(message: str, file: str = file, line: int | None = line) -> None:
            raise MappingError(message, file=file, line=line)

        check_fields(target, spec, check_target(target, props, fail), fail)
        rule = compiler.rule(target, spec, file, line)
        for path in (rule.source, rule.each):
            for name in path.contexts - known if path is not None else ():
                fail(f"rule {target!r} uses unknown context %{name}")
        out.append(rule)
    return out


def compile_source(directory: Path, source: str, documents: Documents | None = None) -> Compiled:
    """Load, layer, schema-check and compile the mapping for one source folder.

    ``documents`` keeps the files read for the sources before (a layer is read once).
    """
    documents = documents or Documents()
    layers = layers_of(documents, directory, source)
    formats = {d.get("format", "fhir") for _, d in layers}
    if len(formats) > 1:
        file, doc = layers[-1]
        raise MappingError(
            "a mapping cannot extend a layer of another format (fhir / hl7v2 / json)",
            file=str(file),
            line=doc.lines.get("extends"),
        )
    message_format = formats.pop()
    compiler = _Compiler(codemaps_of(documents, layers, source), message_format)
    contexts: dict[str, tuple[Any, str, int | None]] = {}
    rules: dict[str, tuple[Any, str, int | None]] = {}
    ignore: set[str] = set()
    require: dict[str, None] = {}
    for layer_file, doc in layers:
        for name, spec in (doc.get("contexts") or {}).items():
            contexts[name] = (spec, str(layer_file), doc["contexts"].lines.get(name))
        for target, spec in (doc.get("rules") or {}).items():
            if spec is None:
                rules.pop(target, None)
            else:
                rules[target] = (spec, str(layer_file), doc["rules"].lines.get(target))
        ignore.update(doc.get("ignore") or [])
        for item in doc.get("require") or []:
            check_target(
                item,
                record_properties(),
                lambda message, f=str(layer_file), d=doc: fail_require(message, f, d),
            )
            require[item] = None
    top_file, top = layers[-1]
    compiled_contexts = _compile_contexts(compiler, contexts)
    compiled_rules = _compile_rules(compiler, rules, {c.name for c in compiled_contexts})
    consumed: dict[str, set[str]] = {}
    paths: list[CompiledPath | None] = [c.path for c in compiled_contexts]
    for rule in compiled_rules:
        paths += [rule.source, rule.each, rule.when.path if rule.when else None]
    context_paths = {id(c.path) for c in compiled_contexts}
    for path in paths:
        for name, element in path.consumed if path is not None else ():
            if element == "" and id(path) in context_paths:
                continue  # naming a segment as a context reads none of its fields yet
            consumed.setdefault(name, set()).add(element)
    # Fields of an each over whole segments (OBX.where(...)) are fields of that segment.
    for rule in compiled_rules:
        if rule.each is not None:
            for segment in rule.each.selects_segments:
                for field_rule in rule.fields:
                    for path in (field_rule.source, field_rule.each):
                        names = {n for c, n in path.consumed if c == "$this"} if path else set()
                        consumed.setdefault(segment, set()).update(names)
    # A context bound to a segment (referrer: "PRD.where(1 = 'RP')") reads for that segment.
    for ctx in compiled_contexts:
        for segment in {c for c, _ in ctx.path.consumed if c.startswith("@")}:
            consumed[segment].update(consumed.get(ctx.name, ()))
    tz_name = top.get("timezone") or next(
        (d["timezone"] for _, d in reversed(layers) if d.get("timezone")), "Europe/London"
    )
    try:
        timezone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(
            f"unknown time zone {tz_name!r}", file=str(top_file), line=top.lines.get("timezone")
        ) from None
    version = "+".join(f"{d['source']}@{d['version']}" for _, d in reversed(layers))
    if len(version) > 200:
        raise MappingError("source names and versions are too long", file=str(top_file))
    accepts = top.get("accepts")
    if not top.get("abstract") and not accepts:
        raise MappingError("a source mapping must say what it accepts", file=str(top_file))
    for kind in accepts or ():
        if _format_of_kind(kind) != message_format:
            raise MappingError(
                f"accepts {kind!r} does not suit a {message_format} mapping",
                file=str(top_file),
                line=top.lines.get("accepts"),
            )
    return Compiled(
        source=source,
        version=version,
        format=message_format,
        strict=bool(top.get("strict", False)),
        abstract=bool(top.get("abstract")),
        accepts=tuple(accepts or ()),
        timezone=timezone,
        contexts=tuple(compiled_contexts),
        rules=tuple(compiled_rules),
        ignore=frozenset(ignore),
        consumed={k: frozenset(v) for k, v in consumed.items()},
        require=tuple(require),
        document_schema=document_schema(layers, message_format),
    )


def _format_of_kind(kind: str) -> str:
    """The format an ``accepts`` entry belongs to: REF^I12 is HL7 v2, object is JSON."""
    if "^" in kind:
        return "hl7v2"
    return "json" if kind == "object" else "fhir"
