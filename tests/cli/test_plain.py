"""Output for pipes without rich: byte for byte what rich would have printed, and `ocm run`
on a pipe never loads rich."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.text import Text

from opencode_manager.cli import output, plain

SAMPLES = [
    "abc",
    "",
    "ocm: task t-1 failed: boom (the rest: `ocm result t-1`)",
    "→ bash: echo bench (completed)",
    "trailing spaces  ",
    " leading",
    "two\nlines\n",
    "\n",
    "w" * 300,
    "word " * 70,
    "ünï cödé ✓ 日本語 " * 20,
    "emoji 👍🏽 and family 👨‍👩‍👧",
    "tab\there",
    "bell\x07 and cr\r",
    "\x1b[31mred\x1b[0m",
    ":smile: x",
    "a:b:c",
    "http://127.0.0.1:4096/session",
    "[bold]not markup[/bold]",
    "zero\u200bwidth",
]


@pytest.fixture
def pipes(monkeypatch: pytest.MonkeyPatch) -> tuple[io.StringIO, io.StringIO]:
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    stdout, stderr = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    return stdout, stderr


def _taken(stream: io.StringIO) -> str:
    text = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    return text


@pytest.mark.parametrize("text", SAMPLES)
def test_a_pipe_gets_what_rich_would_print(
    pipes: tuple[io.StringIO, io.StringIO], text: str
) -> None:
    stdout, stderr = pipes
    assert not output.err.is_terminal
    assert not output.out.is_terminal
    plain.say(text, style="yellow")
    ours = _taken(stderr)
    output.err.print(text, style="yellow", markup=False)
    assert ours == _taken(stderr)
    plain.say(text, style="red", markup_free_str=False)
    ours = _taken(stderr)
    output.err.print(Text(text, style="red"))
    assert ours == _taken(stderr)
    for soft_wrap in (True, False):
        plain.show(text, soft_wrap=soft_wrap)
        ours = _taken(stdout)
        output.out.print(text, markup=False, highlight=False, soft_wrap=soft_wrap)
        assert ours == _taken(stdout), soft_wrap


@pytest.mark.parametrize("args", [["--json"], []], ids=["json", "text"])
def test_ocm_run_on_a_pipe_loads_no_rich(args: list[str]) -> None:
    """The whole `ocm run` import path (facade, dispatch, runner, httpx), up to finding no
    instance to run on: neither rich nor pygments is loaded."""
    code = (
        "import sys\n"
        "from opencode_manager.cli import main\n"
        f"code = main(['run', *{args!r}, 'hi'])\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "assert {'opencode_manager.tasks.dispatch', 'httpx'} <= set(sys.modules)\n"
        "print(code, sorted(loaded & {'rich', 'pygments'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split(None, 1)[1].strip() == "[]", result
    assert result.stderr.startswith("ocm: error: "), result.stderr


def test_plain_text_skips_rich_and_the_rest_does_not() -> None:
    assert plain._unchanged("ocm: task t-1 failed: boom", emoji=True, width=None)
    assert plain._unchanged("→ edit: 日本語 (completed)", emoji=False, width=250)
    assert not plain._unchanged("a\tb", emoji=False, width=None)  # rich expands tabs
    assert not plain._unchanged("a:b:c", emoji=True, width=None)  # rich makes emoji of codes
    assert plain._unchanged("a:b:c", emoji=False, width=None)  # not in Text
    assert not plain._unchanged("w" * 126, emoji=False, width=250)  # may be wrapped
