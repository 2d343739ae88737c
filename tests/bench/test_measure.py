"""The benchmark's statistics and report table (bench/measure.py, bench/report.py)."""

from __future__ import annotations

import statistics

import pytest
from bench.measure import Series, percentile
from bench.report import Figure, figure_markdown


@pytest.mark.parametrize("values", [[3.0], [2.0, 1.0], [5.0, 1.0, 4.0, 2.0, 3.0], list(range(101))])
def test_p50_is_the_median_and_the_tail_is_ordered(values: list[float]) -> None:
    series = Series(list(values))
    assert series.percentile(50) == statistics.median(values)
    assert series.min <= series.percentile(50) <= series.percentile(95)
    assert series.percentile(95) <= series.percentile(99) <= series.max


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile(list(range(101)), 95) == 95
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert percentile([], 50) != percentile([], 50)  # nan: nothing measured


def test_every_row_reports_p50_p95_p99() -> None:
    figure = Figure(1, "Task dispatch")
    figure.add("run", "`ocm run` wall", "s", Series([float(v) for v in range(1, 101)]))
    lines = figure_markdown(figure)
    assert "| what | p50 | p95 | p99 | min | max | runs | ratio to baseline |" in lines
    cells = "50.500 s | 95.050 s | 99.010 s | 1.000 s | 100.000 s | 100 |  |"
    assert f"| `ocm run` wall | {cells}" in lines
