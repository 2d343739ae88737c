"""The instance page's chart of the keeper's samples (pure: values in, SVG points out)."""

from __future__ import annotations


def polyline(values: list[float | None], width: int = 300, height: int = 60) -> str:
    """SVG polyline points for values (None skipped), scaled to the box; newest at the right."""
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if not known:
        return ""
    top = max(v for _, v in known) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in known)
