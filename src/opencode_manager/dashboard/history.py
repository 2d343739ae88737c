"""A bounded history of each instance's CPU and memory samples, for the instance page's chart
(pure: samples in, SVG polyline points out)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MAX_SAMPLES = 180  # at one sample per 2 s: the last six minutes


@dataclass(frozen=True)
class Sample:
    at: float
    cpu_percent: float | None
    rss_bytes: int | None


class History:
    def __init__(self, limit: int = MAX_SAMPLES) -> None:
        self.limit = limit
        self._samples: dict[str, deque[Sample]] = {}

    def add(self, name: str, sample: Sample) -> None:
        self._samples.setdefault(name, deque(maxlen=self.limit)).append(sample)

    def samples(self, name: str) -> list[Sample]:
        return list(self._samples.get(name, ()))

    def forget(self, keep: set[str]) -> None:
        for name in [n for n in self._samples if n not in keep]:
            del self._samples[name]


def polyline(values: list[float | None], width: int = 300, height: int = 60) -> str:
    """SVG polyline points for values (None skipped), scaled to the box; newest at the right."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if not known:
        return ""
    top = max(v for _, v in known) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in known)
