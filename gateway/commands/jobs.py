"""What every long job on the command line shares: a progress bar and a summary table."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import click

T = TypeVar("T")


def with_progress(items: Iterable[T], length: int | None, label: str) -> Iterator[T]:
    """Yield ``items`` while drawing a progress bar on standard error (not into piped output)."""
    bar: Any = click.progressbar(items, length=length, label=label, file=sys.stderr)
    with bar:
        yield from bar


def summary_table(counts: Counter[str] | dict[str, int], heading: str = "outcome") -> str:
    """A two-column table of counts, widest first, with a total line."""
    rows = sorted(counts.items(), key=lambda row: (-row[1], row[0]))
    total = sum(counts.values())
    width = max([len(heading), len("total"), *(len(name) for name, _ in rows)])
    digits = max(len("count"), len(str(total)))
    lines = [f"{heading:<{width}}  {'count':>{digits}}", f"{'-' * width}  {'-' * digits}"]
    lines += [f"{name:<{width}}  {count:>{digits}}" for name, count in rows]
    lines += [f"{'-' * width}  {'-' * digits}", f"{'total':<{width}}  {total:>{digits}}"]
    return "\n".join(lines)
