"""What a figure reports, and the Markdown of the whole run."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .measure import Series

PERCENTILES = (50, 95, 99)  # the columns of every figure's table: p50 is the median


@dataclass
class Row:
    """One measured quantity of a figure, with the key of the row it is compared to."""

    key: str
    label: str
    unit: str  # "s", "ms", "MB", "tasks/s", "events/s", ...
    series: Series
    baseline: str | None = None  # key of another row of the same figure
    note: str = ""


@dataclass
class Goal:
    """A target from the project's issue, and whether this run met it."""

    text: str
    measured: str
    met: bool


@dataclass
class Figure:
    number: int
    title: str
    commands: list[str] = field(default_factory=list)  # what was run, one per line
    rows: list[Row] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # extra Markdown (tables) after the rows
    error: str | None = None  # the benchmark crashed: what happened

    def add(
        self,
        key: str,
        label: str,
        unit: str,
        series: Series,
        baseline: str | None = None,
        note: str = "",
    ) -> Row:
        row = Row(key, label, unit, series, baseline, note)
        self.rows.append(row)
        return row

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)

    def ratio(self, key: str, baseline: str | None = None) -> float:
        """Median of a row over the median of its baseline."""
        row = self.row(key)
        base = self.row(baseline or row.baseline or key)
        if not len(row.series) or not len(base.series) or base.series.median == 0:
            return math.nan
        return row.series.median / base.series.median

    def goal(self, text: str, measured: str, met: bool) -> None:
        self.goals.append(Goal(text, measured, met))


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit in ("tasks/s", "events/s"):
        return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{value:g} {unit}"


def _ratio_cell(figure: Figure, row: Row) -> str:
    if row.baseline is None:
        return "baseline" if any(r.baseline == row.key for r in figure.rows) else ""
    ratio = figure.ratio(row.key)
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}x {figure.row(row.baseline).label}"


def figure_markdown(figure: Figure) -> list[str]:
    lines = [f"## {figure.number}. {figure.title}", ""]
    if figure.error:
        lines += [f"**The benchmark crashed**: {figure.error}", ""]
    if figure.commands:
        lines += ["Commands:", "", "```", *figure.commands, "```", ""]
    if figure.rows:
        lines += [
            "| what | p50 | p95 | p99 | min | max | runs | ratio to baseline |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in figure.rows:
            s, u = row.series, row.unit
            if not len(s):
                lines.append(f"| {row.label} | n/a | n/a | n/a | n/a | n/a | 0 | |")
                continue
            label = f"{row.label} ({row.note})" if row.note else row.label
            tail = " | ".join(fmt(s.percentile(q), u) for q in PERCENTILES)
            lines.append(
                f"| {label} | {tail} | {fmt(s.min, u)} | {fmt(s.max, u)} "
                f"| {len(s)} | {_ratio_cell(figure, row)} |"
            )
        lines.append("")
    lines += figure.extra
    if figure.goals:
        lines += ["| goal | measured (medians) | result |", "|---|---|---|"]
        lines += [
            f"| {g.text} | {g.measured} | {'met' if g.met else '**missed**'} |"
            for g in figure.goals
        ]
        lines.append("")
    lines += [f"* {note}" for note in figure.notes]
    if figure.notes:
        lines.append("")
    return lines


def render(header: list[str], figures: list[Figure], footer: list[str]) -> str:
    lines = list(header)
    for figure in figures:
        lines += figure_markdown(figure)
    missed = [(f, g) for f in figures for g in f.goals if not g.met]
    crashed = [f for f in figures if f.error]
    lines += ["## Where we miss", ""]
    if not missed and not crashed:
        lines += ["Every goal was met in this run.", ""]
    lines += [f"* {f.number}. {f.title}: {g.text}: {g.measured}" for f, g in missed]
    lines += [
        f"* {f.number}. {f.title}: not measured, the benchmark crashed ({f.error})" for f in crashed
    ]
    notes = Path(__file__).with_name("NOTES.md")
    if notes.exists():  # the maintainers' profiling notes, kept across regenerations
        lines += ["", notes.read_text().rstrip()]
    lines += ["", *footer]
    return "\n".join(lines).rstrip() + "\n"


def timed_ratio_goal(
    figure: Figure, key: str, baseline: str, limit: float, what: str, show: Callable[[float], str]
) -> None:
    """A goal of the form: median(key) <= limit x median(baseline)."""
    ratio = figure.ratio(key, baseline)
    row, base = figure.row(key), figure.row(baseline)
    measured = (
        f"{ratio:.2f}x ({show(row.series.median)} vs {show(base.series.median)})"
        if len(row.series) and len(base.series)
        else "n/a"
    )
    figure.goal(
        f"{what} <= {limit:g}x {base.label}", measured, not math.isnan(ratio) and ratio <= limit
    )
