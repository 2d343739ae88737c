"""Output for pipes without loading rich (about 25 ms of every command that imports it).

Rich prints text to a non-terminal unchanged, with these exceptions: it expands tabs, drops
control characters, turns `:name:` emoji codes in strings (not in Text) into emoji, and wraps
lines wider than its console. Text free of all four goes straight to the stream here, byte for
byte what rich would have written; anything else, and every terminal, still goes through rich
(`output.out` / `output.err`), so what a person or a script sees is the same either way.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

#: rich's emoji codes (rich._emoji_replace), and every character of their names: a code whose
#: name has any other (a URL's `//`, a path's `/`) is not one, whatever rich's table holds.
_EMOJI_CODE = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")
_EMOJI_NAME = re.compile(r"[!#&()*+\-.0-9_a-zA-Z\u00c0-\uffff]*")


def _emoji_free(text: str) -> bool:
    """Whether rich's emoji codes would leave `text` as it is: each `:name:` it would look up
    (the same matches, left to right) has a character no emoji name has."""
    return not any(_EMOJI_NAME.fullmatch(m.group(2)) for m in _EMOJI_CODE.finditer(text))


_PIPE_WIDTH = 250  # `output.out`'s width on a pipe; wider lines would be wrapped there


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
    return not emoji or _emoji_free(text)


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


@dataclass(frozen=True)
class PlainColumn:
    """A column of a borderless table as `output` builds them (`Table(box=None,
    pad_edge=False)`: two spaces between columns): right-justified or not, and whether its
    cells wrap at word boundaries within `max_width` (no_wrap=False) or stay on one line."""

    header: str
    right: bool = False
    wrap: bool = False
    max_width: int | None = None


_WORD = re.compile(r"\s*\S+\s*")  # rich's word: the word and the whitespace around it
_MARKUP = re.compile(r"[\[\]]")  # a str cell may hold rich markup: rich decides


def _plain_cell(cell: str) -> bool:
    """Whether rich renders this str cell as its characters, one cell wide each."""
    return cell.isascii() and cell.isprintable() and not _MARKUP.search(cell) and _emoji_free(cell)


def _wrapped(text: str, width: int) -> list[str] | None:
    """`Text(text).wrap(width, overflow="ellipsis")` as rich does it (rich._wrap.divide_line),
    or None where rich would crop a word with an ellipsis."""
    breaks: list[int] = []
    offset = 0
    for match in _WORD.finditer(text):
        start, word = match.start(), match.group(0)
        length = len(word.rstrip())
        if width - offset >= length:
            offset += len(word)
        elif length > width:
            return None
        elif offset and start:
            breaks.append(start)
            offset = len(word)
    bounds = [0, *breaks, len(text)]
    lines = [text[a:b] for a, b in itertools.pairwise(bounds)]
    out = []
    for line in lines:
        if len(line) > width:  # rich's rstrip_end: trailing spaces beyond the width go
            excess = len(line) - width
            line = line[: len(line) - min(excess, len(line) - len(line.rstrip()))]
        if len(line) > width:
            return None
        out.append(line)
    return out


def table_text(
    columns: Sequence[PlainColumn],
    rows: Sequence[Sequence[str]],
    width: int = _PIPE_WIDTH,
    *,
    header: bool = True,
) -> str | None:
    """What `output.out` prints for this table on a pipe (`width` columns wide), or None
    where only rich can say: a cell it would parse or measure differently (markup, emoji
    codes, wide or control characters), or a table it would have to squeeze or crop.
    `header=False`: a grid (`Table.grid(padding=(0, 2))`), rows only."""
    cells = [*([[c.header for c in columns]] if header else []), *(list(row) for row in rows)]
    if not cells:
        return None
    if not all(_plain_cell(cell) for row in cells for cell in row):
        return None
    widths = []
    for i, column in enumerate(columns):
        longest = max(len(row[i]) for row in cells)
        if column.max_width is not None:
            longest = min(longest, column.max_width)
        if longest == 0:
            return None  # rich gives an empty column a width of its own
        widths.append(longest)
    if sum(widths) + 2 * (len(columns) - 1) > width:
        return None
    lines: list[str] = []
    for index, row in enumerate(cells):
        parts: list[list[str]] = []
        for i, column in enumerate(columns):
            if column.wrap:
                wrapped = _wrapped(row[i], widths[i])
                if wrapped is None:
                    return None
                parts.append(wrapped or [""])
            elif len(row[i]) > widths[i]:
                return None  # cropped with an ellipsis
            else:
                parts.append([row[i]])
        height = max(len(p) for p in parts)
        if header and index == 0:  # the header aligns its cells to the bottom, rows to the top
            parts = [[""] * (height - len(p)) + p for p in parts]
        for n in range(height):
            line = []
            for i, column in enumerate(columns):
                cell = parts[i][n] if n < len(parts[i]) else ""
                line.append(cell.rjust(widths[i]) if column.right else cell.ljust(widths[i]))
            lines.append("  ".join(line))
    return "".join(line + "\n" for line in lines)


def table(
    columns: Sequence[PlainColumn], rows: Sequence[Sequence[str]], *, header: bool = True
) -> bool:
    """Print the table on stdout without rich where that is byte for byte what rich would
    print (a pipe, plain cells); False: the caller prints it with rich."""
    if maybe_terminal(sys.stdout):
        return False
    text = table_text(columns, rows, header=header)
    if text is None:
        return False
    sys.stdout.write(text)
    sys.stdout.flush()
    return True
