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
    #: The same goal's identity on every OpenCode line (the both-lines table's row), and its
    #: words there: the line's own baseline may be named differently in `text` (`opencode run
    #: --attach` on 1.x, `--server` on 2.x). Default: the text itself.
    key: str = ""
    neutral: str = ""
    #: `measured` with its spread, where the goal is a ratio of two rows: the ratio, then each
    #: side's p50 with its min-max.
    spread: str = ""


@dataclass
class Figure:
    number: int
    title: str
    #: The OpenCode version the figure measured, for the figures that talk to a server (each
    #: is measured once per line); None for the ones that do not (registry, reads).
    line: str | None = None
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

    def goal(
        self, text: str, measured: str, met: bool, *, key: str = "", neutral: str = "",
        spread: str = "",
    ) -> None:  # fmt: skip
        self.goals.append(Goal(text, measured, met, key or text, neutral or text, spread))

    @property
    def heading(self) -> str:
        """The section's title: the OpenCode version when the figure is one line's."""
        suffix = f" (OpenCode {self.line})" if self.line else ""
        return f"{self.number}. {self.title}{suffix}"


def _one_line(text: str) -> str:
    """An error in a Markdown list item or paragraph: its lines joined."""
    return " ".join(text.split())


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
    lines = [f"## {figure.heading}", ""]
    if figure.error:
        lines += [f"**The benchmark crashed**: {_one_line(figure.error)}", ""]
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


def spread(row: Row, show: Callable[[float], str]) -> str:
    """A row's p50 with its min-max, the unit said once: `0.368 s [0.353-0.390]`."""
    s = row.series
    if not len(s):
        return "n/a"
    median, low, high = show(s.median), show(s.min), show(s.max)
    _, space, unit = median.partition(" ")
    if space and low.endswith(space + unit) and high.endswith(space + unit):
        low, high = low[: -len(space + unit)], high[: -len(space + unit)]
    return f"{median} [{low}-{high}]"


def both_lines(figures: list[Figure]) -> list[str]:
    """The headline table: every goal of the figures measured on more than one OpenCode line,
    one row per goal, one column per line (each ratio with both sides' spread)."""
    versions: list[str] = []
    for figure in figures:
        if figure.line and figure.line not in versions:
            versions.append(figure.line)
    if len(versions) < 2:
        return []
    rows: dict[tuple[int, str], dict[str, Goal]] = {}
    labels: dict[tuple[int, str], str] = {}
    for figure in figures:
        if not figure.line:
            continue
        for goal in figure.goals:
            rows.setdefault((figure.number, goal.key), {})[figure.line] = goal
            labels.setdefault((figure.number, goal.key), goal.neutral or goal.text)
    head = " | ".join(versions)
    lines = [
        "## Both lines: every goal of the figures that talk to a server",
        "",
        "Each column comes from this run, on that line, against the line's own baselines (its "
        "own `opencode run` client, its own REST routes, its own raw `opencode serve`). A "
        "ratio is of medians; in brackets, each side's p50 [min-max]. The sections below give "
        "p95 and p99.",
        "",
        f"| figure | goal | {head} |",
        "|---|---|" + "---|" * len(versions),
    ]
    for (number, key), by_line in sorted(rows.items(), key=lambda item: item[0][0]):
        cells = []
        for version in versions:
            found = by_line.get(version)
            if found is None:
                cells.append("not measured")
                continue
            shown = found.spread or found.measured
            cells.append(f"{shown}: {'met' if found.met else '**missed**'}")
        lines.append(f"| {number} | {labels[(number, key)]} | {' | '.join(cells)} |")
    return [*lines, ""]


def render(header: list[str], figures: list[Figure], footer: list[str]) -> str:
    lines = list(header)
    lines += both_lines(figures)
    for figure in figures:
        lines += figure_markdown(figure)
    missed = [(f, g) for f in figures for g in f.goals if not g.met]
    crashed = [f for f in figures if f.error]
    lines += ["## Where we miss", ""]
    if not missed and not crashed:
        lines += ["Every goal was met in this run.", ""]
    lines += [f"* {f.heading}: {g.text}: {g.spread or g.measured}" for f, g in missed]
    lines += [
        f"* {f.heading}: not measured, the benchmark crashed ({_one_line(f.error or '')})"
        for f in crashed
    ]
    notes = Path(__file__).with_name("NOTES.md")
    if notes.exists():  # the maintainers' profiling notes, kept across regenerations
        lines += ["", notes.read_text().rstrip()]
    lines += ["", *footer]
    return "\n".join(lines).rstrip() + "\n"


def timed_ratio_goal(
    figure: Figure,
    key: str,
    baseline: str,
    limit: float,
    what: str,
    show: Callable[[float], str],
    *,
    versus: str = "",
    at_least: bool = False,
) -> None:
    """A goal of the form: median(key) <= limit x median(baseline) (>= with `at_least`, for
    rates). `versus` names the baseline the same way on every line (the both-lines table)."""
    ratio = figure.ratio(key, baseline)
    row, base = figure.row(key), figure.row(baseline)
    measured = (
        f"{ratio:.2f}x ({show(row.series.median)} vs {show(base.series.median)})"
        if len(row.series) and len(base.series)
        else "n/a"
    )
    sign = ">=" if at_least else "<="
    met = not math.isnan(ratio) and (ratio >= limit if at_least else ratio <= limit)
    figure.goal(
        f"{what} {sign} {limit:g}x {base.label}",
        measured,
        met,
        key=f"{key}/{baseline}/{sign}{limit:g}",
        neutral=f"{what} {sign} {limit:g}x {versus or base.label}",
        spread=(
            f"{ratio:.2f}x ({spread(row, show)} vs {spread(base, show)})"
            if len(row.series) and len(base.series)
            else ""
        ),
    )
