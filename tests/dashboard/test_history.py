"""The instance page's chart: values in, SVG polyline points out."""

from __future__ import annotations

from opencode_manager.dashboard.history import polyline


def _points(line: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (p.split(",") for p in line.split())]


def test_no_values_draw_nothing() -> None:
    assert polyline([]) == ""
    assert polyline([None, None]) == ""


def test_values_fill_the_box_with_the_newest_at_the_right() -> None:
    points = _points(polyline([0.0, 50.0, 100.0], width=300, height=60))
    assert [x for x, _ in points] == [0.0, 150.0, 300.0]
    # The top value touches (almost) the top, zero the bottom: a 1-unit margin for the stroke.
    assert [y for _, y in points] == [59.0, 30.0, 1.0]


def test_the_scale_follows_the_largest_value() -> None:
    small = _points(polyline([1.0, 2.0]))
    large = _points(polyline([1000.0, 2000.0]))
    assert small == large


def test_missing_samples_are_skipped_but_keep_their_place() -> None:
    points = _points(polyline([10.0, None, 20.0], width=300, height=60))
    assert [x for x, _ in points] == [0.0, 300.0]
    assert polyline([None, 5.0]).split()[0].startswith("300.0,")


def test_all_zero_stays_on_the_floor() -> None:
    points = _points(polyline([0.0, 0.0, 0.0], width=100, height=10))
    assert {y for _, y in points} == {9.0}


def test_one_value_is_one_point() -> None:
    assert _points(polyline([3.0], width=300, height=60)) == [(0.0, 1.0)]


def test_every_point_stays_inside_the_box() -> None:
    values: list[float | None] = [v * 7.3 % 11 for v in range(180)]
    for x, y in _points(polyline(values, width=300, height=60)):
        assert 0.0 <= x <= 300.0
        assert 0.0 <= y <= 60.0
