"""The charts of the keepers' samples (pure: values in, SVG points out)."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .. import ResourceSample

WINDOW_S = 1800.0  # the registry keeps 30 minutes of samples
POINTS = 120  # points across a fleet chart
HOLD_S = 15.0  # a sample stands for its instance this long (three 5 s health checks)


def polyline(values: list[float | None], width: int = 300, height: int = 60) -> str:
    """SVG polyline points for values (None skipped), scaled to the box; newest at the right."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if not known:
        return ""
    top = max(v for _, v in known) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in known)


@dataclass
class FleetSeries:
    """The fleet's summed CPU and memory on one time grid (None: no instance was sampled)."""

    cpu: list[float | None] = field(default_factory=list)
    rss: list[float | None] = field(default_factory=list)
    since: float | None = None  # the grid's first point
    instances: int = 0  # how many instances had samples


def fleet_series(
    series: Mapping[str, Sequence[ResourceSample]],
    *,
    now: float,
    window: float = WINDOW_S,
    points: int = POINTS,
    hold: float = HOLD_S,
) -> FleetSeries:
    """Sum many instances' samples, each taken at its own keeper's pace, on a common grid
    from the oldest sample (at most `window` ago) to `now`.

    At each point an instance counts with its newest sample, if that is recent enough (`hold`,
    or twice its usual gap between samples): one that stopped drops out of the sum instead of
    being counted forever, and a missed health check leaves no dip."""
    kept = {n: sorted((s for s in ss if s.at >= now - window), key=lambda s: s.at)
            for n, ss in series.items()}  # fmt: skip
    kept = {n: ss for n, ss in kept.items() if ss}
    if not kept:
        return FleetSeries()
    start = min(ss[0].at for ss in kept.values())
    step = max((now - start) / max(points - 1, 1), 1e-9)
    grid = [start + i * step for i in range(points)]
    cpu: list[float | None] = [None] * points
    rss: list[float | None] = [None] * points
    for samples in kept.values():
        gaps = [b.at - a.at for a, b in itertools.pairwise(samples)]
        stale = max(hold, 2 * statistics.median(gaps)) if gaps else hold
        index, latest = 0, None
        for i, at in enumerate(grid):
            while index < len(samples) and samples[index].at <= at + 1e-6:
                latest = samples[index]
                index += 1
            if latest is None or at - latest.at > stale:
                continue
            if latest.cpu_percent is not None:
                cpu[i] = (cpu[i] or 0.0) + latest.cpu_percent
            if latest.rss_bytes is not None:
                rss[i] = (rss[i] or 0.0) + latest.rss_bytes
    return FleetSeries(cpu, rss, start, len(kept))
