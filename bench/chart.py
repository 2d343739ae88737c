"""A tiny hand-written SVG chart (no plotting library): a few panels of points joined by lines.

Pure: numbers in, SVG text out. The x axis is logarithmic (batch sizes grow tenfold), each
panel's y axis starts at 0 so that flat means flat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 300, 180  # one panel
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 28, 36  # margins inside a panel


@dataclass
class Panel:
    title: str
    points: list[tuple[float, float]]  # (x, y), x > 0
    unit: str


def _ticks(top: float) -> list[float]:
    """About four round steps from 0 to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(math.ceil(top / step) + 1)]


def _number(value: float) -> str:
    return f"{value:g}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _panel(panel: Panel, x0: int) -> list[str]:
    xs = [x for x, _ in panel.points]
    ticks = _ticks(max((y for _, y in panel.points), default=0.0))
    low, high = math.log10(min(xs)), math.log10(max(xs))
    span = (high - low) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return x0 + LEFT + (math.log10(x) - low) / span * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - y / ticks[-1] * plot_h

    parts = [
        f'<text x="{x0 + WIDTH / 2}" y="16" text-anchor="middle" font-weight="bold">'
        f"{escape(panel.title)}</text>",
        f'<line x1="{x0 + LEFT}" y1="{TOP + plot_h}" x2="{x0 + LEFT + plot_w}" '
        f'y2="{TOP + plot_h}" stroke="#888"/>',
    ]
    for tick in ticks:
        parts.append(
            f'<line x1="{x0 + LEFT}" y1="{py(tick):.1f}" x2="{x0 + LEFT + plot_w}" '
            f'y2="{py(tick):.1f}" stroke="#eee"/>'
            f'<text x="{x0 + LEFT - 4}" y="{py(tick) + 4:.1f}" text-anchor="end">'
            f"{_number(tick)}</text>"
        )
    for x in xs:
        parts.append(
            f'<text x="{px(x):.1f}" y="{TOP + plot_h + 14}" text-anchor="middle">{x:g}</text>'
        )
    parts.append(
        f'<text x="{x0 + LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle" '
        f'fill="#555">tasks ({escape(panel.unit)})</text>'
    )
    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in panel.points)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#2563eb" stroke-width="2"/>')
    for x, y in panel.points:
        parts.append(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="#2563eb"/>'
            f'<text x="{px(x):.1f}" y="{py(y) - 7:.1f}" text-anchor="middle">{_number(y)}</text>'
        )
    return parts


def svg(panels: list[Panel]) -> str:
    """Panels side by side, as one SVG document."""
    body = [line for i, panel in enumerate(panels) for line in _panel(panel, i * WIDTH)]
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH * len(panels)}" '
            f'height="{HEIGHT}" font-family="sans-serif" font-size="11">',
            f'<rect width="{WIDTH * len(panels)}" height="{HEIGHT}" fill="white"/>',
            *body,
            "</svg>",
            "",
        ]
    )
