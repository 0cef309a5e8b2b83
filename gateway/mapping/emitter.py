"""Collecting generated Python lines and their bound constants, then compiling them.

Generated code is built from fixed templates; every name or value from a mapping file
travels as a bound constant or as the ``repr`` of an identifier-like element name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gateway.mapping import runtime
from gateway.mapping.compile import Compiled, Rule
from gateway.mapping.syntax import CompiledPath


class Emitter:
    """Collects generated lines and constants; tracks which memo locals are surely set."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {
            "_many": runtime.many,
            "_part_one": runtime.part_one,
            "_values_at": runtime.values_at,
            "_MISSING": runtime.MISSING,
        }
        self.depth = 1
        self.counter = 0
        self.memo: dict[str, str] = {}
        self.assigned: set[str] = set()  # memo locals set somewhere earlier in the code
        self.tested: set[str] = set()  # memo locals read before surely set: start as None
        self.defined: set[str] = set()  # memo locals surely set at this point
        self.functions: list[str] = []  # helper functions generated beside ``run``
        self.nodes: dict[str, str] = {}  # context name -> local holding its dict (or None)
        self.sections: dict[str, str] = {}  # record section -> local holding its dict
        self.used: set[str] = set()  # env helpers the code uses, bound once per message
        #: How many alternatives (in all of the mapping's paths) reach each memo key.
        self.uses: dict[str, int] = {}

    def emit(self, line: str) -> None:
        """Add one line at the current depth."""
        self.lines.append("    " * self.depth + line)

    def var(self, stem: str = "v") -> str:
        """A new local name."""
        self.counter += 1
        return f"{stem}{self.counter}"

    def const(self, value: Any, stem: str = "k") -> str:
        """The name of a new bound constant holding ``value``."""
        name = f"_{stem}{len(self.names)}"
        self.names[name] = value
        return name

    @contextmanager
    def block(self, header: str) -> Iterator[None]:
        """A conditional or loop body: memo locals it sets are not surely set after it."""
        self.emit(header)
        self.depth += 1
        outer = set(self.defined)
        try:
            yield
        finally:
            if self.lines[-1].strip().endswith(":"):
                self.emit("pass")
            self.depth -= 1
            self.defined = outer

    def function(self, signature: str, filename: str) -> Callable[..., Any]:
        """Compile the emitted lines as ``run(signature)``, its helpers beside it."""
        head = [f"def run({signature}):"]
        if self.used:
            head.append("    _touch = env.touched.add")
        if "resolve" in self.used:
            head.append("    _resolve_ref = env.index.resolve")
        if self.tested:
            locals_ = [n for n in self.memo.values() if n in self.tested]
            head.append("    " + " = ".join(locals_) + " = None")
        source = "\n\n".join([*self.functions, "\n".join(head + self.lines)])
        # The one place generated mapping code is compiled: built from fixed templates.
        exec(compile(source, filename, "exec"), self.names)
        run: Callable[..., Any] = self.names["run"]
        run.source = source  # type: ignore[attr-defined]
        return run


def key_uses(compiled: Compiled) -> dict[str, int]:
    """How many memoised alternatives of the mapping's paths reach each prefix key."""
    uses: dict[str, int] = {}

    def count(path: CompiledPath | None) -> None:
        for alt in path.alternatives if path is not None else ():
            if alt.memo:
                for key in alt.keys:
                    uses[key] = uses.get(key, 0) + 1

    def rule(each: Rule) -> None:
        count(each.source)
        count(each.each)
        count(each.when.path if each.when is not None else None)
        for field in each.fields:
            rule(field)

    for context in compiled.contexts:
        count(context.path)
    for each in compiled.rules:
        rule(each)
    return uses
