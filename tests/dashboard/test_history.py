"""The charts: values in, SVG polyline points out; many instances' samples summed on one
time grid for the fleet chart."""

from __future__ import annotations

from opencode_manager import ResourceSample
from opencode_manager.dashboard.history import FleetSeries, fleet_series, polyline


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


# -- the fleet chart: many instances' samples summed on one grid ------------------------------
def _samples(*points: tuple[float, float | None, int | None]) -> list[ResourceSample]:
    return [ResourceSample(at, cpu, rss) for at, cpu, rss in points]


def test_no_samples_make_an_empty_chart() -> None:
    assert fleet_series({}, now=100.0) == FleetSeries()
    assert fleet_series({"a": []}, now=100.0).since is None


def test_two_instances_are_summed_where_both_were_sampled() -> None:
    series = {
        "a": _samples((0.0, 10.0, 100), (5.0, 10.0, 100), (10.0, 10.0, 100)),
        "b": _samples((0.0, 5.0, 50), (5.0, 5.0, 50), (10.0, 5.0, 50)),
    }
    found = fleet_series(series, now=10.0, points=3)
    assert found.since == 0.0
    assert found.instances == 2
    assert found.cpu == [15.0, 15.0, 15.0]
    assert found.rss == [150.0, 150.0, 150.0]


def test_instances_sampled_at_their_own_pace_still_add_up() -> None:
    # a every 5 s from 0, b every 5 s from 2.5: at each grid point each counts once.
    a = _samples(*((t, 1.0, 10) for t in range(0, 61, 5)))
    b = _samples(*((t + 2.5, 2.0, 20) for t in range(0, 56, 5)))
    found = fleet_series({"a": a, "b": b}, now=60.0, points=13)
    assert found.cpu[0] == 1.0  # b had no sample yet
    assert set(found.cpu[1:]) == {3.0}
    assert set(found.rss[1:]) == {30.0}


def test_a_stopped_instance_drops_out_of_the_sum() -> None:
    a = _samples(*((float(t), 1.0, 10) for t in range(0, 121, 5)))
    b = _samples(*((float(t), 2.0, 20) for t in range(0, 31, 5)))  # stopped at 30 s
    found = fleet_series({"a": a, "b": b}, now=120.0, points=25)  # a point every 5 s
    assert found.cpu[:7] == [3.0] * 7  # 0..30 s
    assert found.cpu[-1] == 1.0  # long after b stopped: a alone
    assert 3.0 not in found.cpu[10:]


def test_a_missed_sample_leaves_no_dip() -> None:
    a = _samples((0.0, 4.0, 1), (5.0, 4.0, 1), (15.0, 4.0, 1), (20.0, 4.0, 1))  # 10 s missing
    found = fleet_series({"a": a}, now=20.0, points=21)
    assert set(found.cpu) == {4.0}


def test_the_grid_starts_at_the_oldest_sample_within_the_window() -> None:
    old = _samples((0.0, 1.0, 1), (1000.0, 1.0, 1), (2000.0, 1.0, 1))
    found = fleet_series({"a": old}, now=2000.0, window=1800.0, points=2)
    assert found.since == 1000.0  # the one at 0 is older than the window
    assert polyline(found.cpu) != ""


def test_unknown_figures_stay_gaps() -> None:
    a = _samples((0.0, None, None), (10.0, None, None))
    found = fleet_series({"a": a}, now=10.0, points=3)
    assert found.cpu == [None, None, None]
    assert polyline(found.rss) == ""
