"""Read commands' tables on a pipe without rich: byte for byte what rich's borderless table
prints (checked here against rich itself), and rich is left to every case it might print
differently."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from opencode_manager.cli.plain import PlainColumn, table_text
from opencode_manager.models import BatchStatus, TaskRecord, TaskStatus
from opencode_manager.registry import Registry
from opencode_manager.tasks.store import Batch, TaskStore

WORDS = [
    "a", "bb", "fix", "the", "pagination", "x" * 12, "y" * 39, "z" * 41, " ", "  ",
    "http://127.0.0.1:4096/session", "12:30:45", ":smile:", "[bold]", "日本語", "done.",
]  # fmt: skip
SHORT = ["t-1", "completed", "-", "0.5", "12345678", "oc-1 http://127.0.0.1:47107", ""]


def rich_table(columns: list[PlainColumn], rows: list[list[str]], width: int) -> str:
    """The tables `ocm results`, `batch ls` and `worktrees` print with rich, on a pipe."""
    buffer = io.StringIO()
    console = Console(file=buffer, highlight=False, soft_wrap=False, width=width)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for c in columns:
        table.add_column(c.header, no_wrap=not c.wrap, max_width=c.max_width,
                         overflow="ellipsis", justify="right" if c.right else "left")  # fmt: skip
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return buffer.getvalue()


def rich_grid(rows: list[list[str]], width: int) -> str:
    """`ocm result`'s grid with rich, on a pipe."""
    buffer = io.StringIO()
    console = Console(file=buffer, highlight=False, soft_wrap=False, width=width)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for row in rows:
        grid.add_row(*row)
    console.print(grid)
    return buffer.getvalue()


def _sentence(rng: random.Random, words: list[str] = WORDS) -> str:
    said = " ".join(rng.choice(words) for _ in range(rng.randint(0, 25)))
    return rng.choice(["", " "]) + said + rng.choice(["", "  "])


@pytest.mark.parametrize("seed", range(3))
def test_tables_match_rich_wherever_rendered_without_it(seed: int) -> None:
    rng = random.Random(seed)
    rendered = 0
    for _ in range(400):
        columns = []
        for _ in range(rng.randint(1, 5)):
            wrap = rng.random() < 0.4
            columns.append(PlainColumn(
                rng.choice(["TASK", "STATUS", "PROMPT", "A", "LONGER HEADER"]),
                right=not wrap and rng.random() < 0.3,
                wrap=wrap,
                max_width=rng.choice([None, 10, 40]) if wrap else None,
            ))  # fmt: skip
        rows = [[_sentence(rng) if c.wrap else rng.choice(SHORT) for c in columns]
                for _ in range(rng.randint(0, 4))]  # fmt: skip
        width = rng.choice([250, 60, 30])
        ours = table_text(columns, rows, width)
        if ours is not None:
            rendered += 1
            assert ours == rich_table(columns, rows, width), (columns, rows, width)
    assert rendered > 100  # most tables are rendered here: the comparison is not vacuous


@pytest.mark.parametrize("seed", range(2))
def test_grids_match_rich_wherever_rendered_without_it(seed: int) -> None:
    rng = random.Random(seed)
    rendered = 0
    columns = [PlainColumn(""), PlainColumn("", wrap=True)]
    for _ in range(400):
        rows = [[rng.choice(["task", "status", "prompt"]), _sentence(rng, WORDS[:10])]
                for _ in range(rng.randint(1, 6))]  # fmt: skip
        width = rng.choice([250, 80])
        ours = table_text(columns, rows, width, header=False)
        if ours is not None:
            rendered += 1
            assert ours == rich_grid(rows, width), (rows, width)
    assert rendered > 50


def test_what_rich_might_print_differently_is_left_to_rich() -> None:
    column = [PlainColumn("A", wrap=True, max_width=5)]
    assert table_text(column, [["abc def"]]) == "A    \nabc  \ndef  \n"
    assert table_text(column, [["abcdefgh"]]) is None  # cropped with an ellipsis
    assert table_text(column, [["[bold]x"]]) is None  # markup
    assert table_text(column, [[":smile:"]]) is None  # an emoji code
    assert table_text(column, [["日本"]]) is None  # two cells wide each
    assert table_text(column, [["a\tb"]]) is None  # a tab
    assert table_text([PlainColumn("A")], [["x" * 251]]) is None  # wider than the pipe's 250
    assert table_text([PlainColumn("URL")], [["http://127.0.0.1:1/x"]]) is not None


def _registry(home: Path) -> str:
    store = TaskStore(Registry(home / "registry.db"))
    task = TaskRecord(id="t-1", prompt="fix the pagination bug, at http://127.0.0.1:4096/x",
                      status=TaskStatus.COMPLETED, created_at=1.0, batch_id="b-1",
                      started_at=1.0, finished_at=3.5, instance="oc-1",
                      url="http://127.0.0.1:47107",
                      text="I changed the loop bound and added a test for the empty page. " * 3,
                      )  # fmt: skip
    store.add_batch(Batch("b-1", BatchStatus.COMPLETED, created_at=1, updated_at=4), [task])
    store.registry.close()
    return task.id


@pytest.mark.parametrize(
    "args", [["results"], ["result", "t-1"], ["batch", "ls"]], ids=["results", "result", "batch-ls"]
)
def test_read_tables_on_a_pipe_load_no_rich_and_print_what_rich_prints(
    isolated: dict[str, str], args: list[str]
) -> None:
    _registry(Path(isolated["OCM_HOME"]))
    code = (
        "import sys\n"
        "from opencode_manager.cli import main\n"
        f"code = main({args!r})\n"
        "print('rich' in sys.modules, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    ours = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True, env=env)  # fmt: skip
    assert ours.stderr.splitlines()[-1] == "False", ours.stderr
    # TTY_COMPATIBLE=0: rich decides (and prints), to a non-terminal all the same.
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True, env={**env, "TTY_COMPATIBLE": "0"})  # fmt: skip
    assert theirs.stderr.splitlines()[-1] == "True", theirs.stderr
    assert ours.stdout == theirs.stdout
    assert "t-1" in ours.stdout or "b-1" in ours.stdout
