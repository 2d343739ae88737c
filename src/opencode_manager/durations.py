"""Human durations such as `90s`, `30m`, `12h`, `7d`, `1h30m` (pure)."""

from __future__ import annotations

import re

from .errors import UsageError

_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in `text`; a bare number means seconds."""
    value = text.strip().lower()
    if not value:
        raise UsageError("empty duration: expected e.g. 30s, 15m, 12h or 7d")
    try:
        seconds = float(value)
    except ValueError:
        pos = 0
        seconds = 0.0
        for match in _PART_RE.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value) or pos == 0:
            raise UsageError(
                f"invalid duration {text!r}: expected e.g. 30s, 15m, 12h, 7d or 1h30m"
            ) from None
    if seconds < 0:
        raise UsageError(f"invalid duration {text!r}: must not be negative")
    return seconds
