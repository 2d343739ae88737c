"""Human durations such as `90s`, `30m`, `12h`, `7d`, `1h30m`, and sizes such as `512M` (pure)."""

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


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
               "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}  # fmt: skip


def parse_size(text: str) -> int:
    """`512M`, `1.5G`, `100k`, `2048` (bytes) -> bytes."""
    value = text.strip().lower()
    number = value.rstrip("bikmg")
    unit = value[len(number) :]
    try:
        amount = float(number)
    except ValueError:
        raise UsageError(f"invalid size {text!r}: expected e.g. 512M, 2G or 100k") from None
    if unit not in _SIZE_UNITS or amount <= 0:
        raise UsageError(f"invalid size {text!r}: expected e.g. 512M, 2G or 100k")
    return int(amount * _SIZE_UNITS[unit])
