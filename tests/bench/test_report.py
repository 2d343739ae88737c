"""The report's pure logic (bench/report.py): the goals of the figures measured on each OpenCode
line put side by side with their spread, and the misses named with their line."""

from __future__ import annotations

from bench.measure import Series
from bench.report import Figure, both_lines, render, timed_ratio_goal

SECONDS = "{:.3f} s".format


def dispatch(line: str | None, client: str, ocm: list[float], attach: list[float]) -> Figure:
    figure = Figure(1, "Task dispatch", line=line)
    figure.add("ocm", "`ocm run` wall", "s", Series(ocm), baseline="attach")
    figure.add("attach", f"`{client}` wall", "s", Series(attach))
    timed_ratio_goal(figure, "ocm", "attach", 0.2, "`ocm run` wall", SECONDS,
                     versus="the line's `opencode run` wall")  # fmt: skip
    return figure


def registry() -> Figure:
    figure = Figure(7, "Registry at scale")
    figure.goal("`ocm results` under 300 ms", "240 ms", True)
    return figure


def test_a_goal_measured_on_two_lines_is_one_row_with_a_column_per_line() -> None:
    figures = [
        dispatch("1.18.33", "opencode run --attach", [0.36, 0.37, 0.39], [0.90, 0.92, 1.0]),
        dispatch("2.1.2", "opencode run --server", [0.47, 0.45, 0.50], [0.38, 0.40, 0.36]),
        registry(),
    ]
    table = both_lines(figures)
    assert "| figure | goal | 1.18.33 | 2.1.2 |" in table
    [row] = [line for line in table if line.startswith("| 1 |")]
    # The baselines' names differ by line; the row names the goal once, the same way for both.
    assert "<= 0.2x the line's `opencode run` wall" in row
    assert "0.40x (0.370 s [0.360-0.390] vs 0.920 s [0.900-1.000]): **missed**" in row
    assert "1.24x (0.470 s [0.450-0.500] vs 0.380 s [0.360-0.400]): **missed**" in row
    # A figure no server takes part in is measured once: not in the both-lines table.
    assert not [line for line in table if line.startswith("| 7 |")]


def test_a_goal_missing_on_one_line_says_so() -> None:
    first = dispatch("1.18.33", "opencode run --attach", [0.1], [1.0])
    second = Figure(1, "Task dispatch", line="2.1.2", error="the shared fleet did not start")
    [row] = [line for line in both_lines([first, second]) if line.startswith("| 1 |")]
    assert row.endswith("| 0.10x (0.100 s [0.100-0.100] vs 1.000 s [1.000-1.000]): met "
                        "| not measured |")  # fmt: skip


def test_one_line_alone_has_no_both_lines_table() -> None:
    assert both_lines([dispatch(None, "opencode run --attach", [0.1], [1.0]), registry()]) == []


def test_misses_and_sections_name_their_line() -> None:
    figures = [
        dispatch("1.18.33", "opencode run --attach", [0.36], [0.92]),
        dispatch("2.1.2", "opencode run --server", [0.47], [0.38]),
    ]
    text = render(["# Benchmarks", ""], figures, ["footer"])
    assert "## 1. Task dispatch (OpenCode 1.18.33)" in text
    assert "## 1. Task dispatch (OpenCode 2.1.2)" in text
    misses = text.split("## Where we miss")[1]
    assert (
        "* 1. Task dispatch (OpenCode 2.1.2): `ocm run` wall <= 0.2x `opencode run --server` "
        "wall: 1.24x (0.470 s [0.470-0.470] vs 0.380 s [0.380-0.380])" in misses
    )
    # The both-lines table comes before the sections.
    assert text.index("## Both lines") < text.index("## 1. Task dispatch")


def test_a_rate_goal_is_met_at_or_above_its_limit() -> None:
    figure = Figure(2, "Batch throughput", line="1.18.33")
    figure.add("ocm", "`ocm batch` throughput", "tasks/s", Series([12.0]), baseline="floor")
    figure.add("floor", "REST floor throughput", "tasks/s", Series([13.0]))
    rate = "{:.2f} tasks/s".format
    timed_ratio_goal(figure, "ocm", "floor", 0.9, "`ocm batch` throughput", rate, at_least=True)
    timed_ratio_goal(figure, "ocm", "floor", 0.95, "`ocm batch` throughput", rate, at_least=True)
    met, missed = figure.goals
    assert met.text == "`ocm batch` throughput >= 0.9x REST floor throughput"
    assert met.met
    assert not missed.met
    assert met.key != missed.key  # two limits on the same rows: two goals, two rows


def test_a_crash_is_one_line_in_the_misses() -> None:
    crashed = Figure(4, "CLI overhead", line="2.1.2", error="no ports:\n 47100\n 47101\n")
    text = render(["# Benchmarks", ""], [crashed], [])
    said = "* 4. CLI overhead (OpenCode 2.1.2): not measured, the benchmark crashed (no ports: "
    assert said + "47100 47101)" in text
