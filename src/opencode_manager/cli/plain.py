"""Output for pipes without loading rich (about 25 ms of every command that imports it).

Rich prints text to a non-terminal unchanged, with these exceptions: it expands tabs, drops
control characters, turns `:name:` emoji codes in strings (not in Text) into emoji, and wraps
lines wider than its console. Text free of all four goes straight to the stream here, byte for
byte what rich would have written; anything else, and every terminal, still goes through rich
(`output.out` / `output.err`), so what a person or a script sees is the same either way.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, TextIO

_EMOJI_CODE = re.compile(r":\S*?:")  # rich's emoji codes are a subset of this
_PIPE_WIDTH = 250  # `output.out`'s width on a pipe; wider lines would be wrapped there


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def maybe_terminal(stream: TextIO) -> bool:
    """False only when rich would certainly not treat `stream` as a terminal."""
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ or "IPython" in sys.modules:
        return True  # rich's own rules decide
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no such method, or closed: rich's rules decide
        return True


def _unchanged(text: str, *, emoji: bool, width: int | None) -> bool:
    """Whether rich would print `text` to a pipe as it is."""
    for line in text.split("\n"):
        if not line.isprintable():  # tabs and control characters
            return False
        if width is not None and 2 * len(line) > width:  # no cell is wider than 2
            return False
    return not (emoji and _EMOJI_CODE.search(text))


def say(text: str, *, style: str = "", markup_free_str: bool = True) -> None:
    """A line on stderr: `output.err.print(text, style=style, markup=False)`, or with
    `markup_free_str=False`, `output.err.print(Text(text, style=style))` (no emoji codes)."""
    if not maybe_terminal(sys.stderr) and _unchanged(text, emoji=markup_free_str, width=None):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
        return
    from .output import err

    if markup_free_str:
        err.print(text, style=style or None, markup=False)
    else:
        from rich.text import Text

        err.print(Text(text, style=style))


def show(text: str, *, soft_wrap: bool = True) -> None:
    """Text on stdout: `output.out.print(text, markup=False, highlight=False, soft_wrap=...)`."""
    width = None if soft_wrap else _PIPE_WIDTH
    if not maybe_terminal(sys.stdout) and _unchanged(text, emoji=True, width=width):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    from .output import out

    out.print(text, markup=False, highlight=False, soft_wrap=soft_wrap)


def stderr_is_terminal() -> bool:
    """`output.err.is_terminal`, asking rich only when it might say yes."""
    if not maybe_terminal(sys.stderr):
        return False
    from .output import err

    return err.is_terminal


def stdout_is_terminal() -> bool:
    """`output.out.is_terminal`, asking rich only when it might say yes."""
    if not maybe_terminal(sys.stdout):
        return False
    from .output import out

    return out.is_terminal
