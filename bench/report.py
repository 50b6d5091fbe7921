"""Results as Markdown tables, printed and appended to ``BENCHMARKS.md`` as dated entries."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.machine import Machine

ENTRIES_HEADING = "## Recorded runs"


def number(value: float, digits: int = 0) -> str:
    """A figure with thousands separators."""
    return f"{value:,.{digits}f}"


def figure(value: float | None, digits: int = 0) -> str:
    """:func:`number`, or "-" for a figure that could not be measured."""
    return "-" if value is None else number(value, digits)


def ratio(value: float, ceiling: float) -> str:
    """``value`` as a multiple of ``ceiling`` (e.g. ``0.83x``), rounded down.

    Rounded down so that a ratio shown next to a goal of "≥ 0.8x" reads 0.80x only when it
    is 0.8 or more (0.798 shows as 0.79x, not 0.80x).
    """
    if ceiling <= 0:
        return "n/a"
    # The small addition keeps a ratio such as 0.29, stored as 0.28999…, from showing 0.28.
    return f"{math.floor(value / ceiling * 100 + 1e-9) / 100:.2f}x"


@dataclass
class Table:
    """A Markdown table: header cells and rows of cells."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Append a row; cells are converted with ``str``."""
        self.rows.append([str(cell) for cell in cells])

    def markdown(self) -> str:
        """The table as GitHub-flavoured Markdown."""
        lines = [
            "| " + " | ".join(self.headers) + " |",
            "|" + "|".join("---" for _ in self.headers) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Result:
    """What one benchmark produced: how it measured, the table, and remarks."""

    name: str
    title: str
    method: str
    table: Table
    notes: list[str] = field(default_factory=list)


@dataclass
class Entry:
    """One benchmark's result with the circumstances of the run."""

    result: Result
    machine: Machine
    command: str
    scale: str
    started: dt.datetime
    load_before: str
    load_after: str

    def markdown(self) -> str:
        """The dated entry appended to BENCHMARKS.md."""
        when = self.started.strftime("%Y-%m-%d %H:%M UTC")
        parts = [
            f"### {when} · `{self.result.name}` · {self.result.title} ({self.scale})",
            "",
            self.machine.describe(),
            f"- Load average (1/5/15 min) before: {self.load_before}; after: {self.load_after}",
            f"- Command: `{self.command}`",
            f"- Method: {self.result.method}",
            "",
            self.result.table.markdown(),
        ]
        if self.result.notes:
            parts.append("")
            parts += [f"- {note}" for note in self.result.notes]
        return "\n".join(parts) + "\n"


def append(path: Path, entry: Entry) -> None:
    """Append ``entry`` under the recorded-runs heading of ``path`` (created if missing)."""
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{ENTRIES_HEADING}\n"
    if ENTRIES_HEADING not in text:
        text = text.rstrip("\n") + f"\n\n{ENTRIES_HEADING}\n"
    path.write_text(text.rstrip("\n") + "\n\n" + entry.markdown())
