"""`ocm --help` groups its commands (like gh and kubectl), every help fits 80 columns, and
the list commands' `--json FIELDS` keeps the fields asked for (issue 26)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from opencode_manager.cli.main import COMMAND_GROUPS, LAZY_COMMANDS, cli
from opencode_manager.cli.selection import select_fields
from opencode_manager.errors import UsageError
from opencode_manager.models import InstanceSpec
from opencode_manager.registry import Registry

from helpers import assert_one_line_error, invoke_ocm

WIDTH = 80


def test_every_command_is_in_exactly_one_group() -> None:
    grouped = [name for _, names in COMMAND_GROUPS for name in names]
    assert sorted(grouped) == sorted(LAZY_COMMANDS)


def test_the_root_help_lists_the_groups_in_order_with_examples() -> None:
    text = invoke_ocm("--help", check=True).stdout
    titles = [title for title, _ in COMMAND_GROUPS]
    at = [text.index(f"\n{title}:\n") for title in titles]
    assert at == sorted(at)
    assert "Commands:" not in text  # no flat block of forty
    assert "ocm ls --json name,status,url" in text.split("Examples:")[1]


def _helps() -> Iterator[tuple[str, str]]:
    def ctx(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
        # The CLI's own help names: click keeps a command's help option from the first
        # context that asks, and docs/cli.md (rendered later in the same process) shows -h.
        return click.Context(command, info_name=name, parent=parent, terminal_width=WIDTH,
                             max_content_width=WIDTH,
                             help_option_names=["-h", "--help"])  # fmt: skip

    root = ctx(cli, "ocm", None)
    yield "ocm", cli.get_help(root)
    for name in sorted(LAZY_COMMANDS):
        command = cli.get_command(root, name)
        assert command is not None
        here = ctx(command, name, root)
        yield f"ocm {name}", command.get_help(here)
        if isinstance(command, click.Group):
            for sub, child in sorted(command.commands.items()):
                yield f"ocm {name} {sub}", child.get_help(ctx(child, sub, here))


def test_every_help_fits_80_columns_and_shows_no_formatting_marks() -> None:
    """Click leaves a \\b block (the examples) unwrapped: a long example overflows."""
    wide = [
        f"{path}: {line!r}"
        for path, text in _helps()
        for line in text.splitlines()
        if len(line) > WIDTH or "\b" in line or "\\b" in line
    ]
    assert wide == []


ROWS = [{"name": "a", "status": "running", "url": "u"}, {"name": "b", "status": "stopped"}]


def test_select_fields_keeps_the_fields_asked_for_in_their_order() -> None:
    assert select_fields(ROWS, "*") == ROWS
    assert select_fields(ROWS, None) == ROWS
    assert select_fields(ROWS, "url,name") == [
        {"url": "u", "name": "a"},
        {"url": None, "name": "b"},
    ]
    assert select_fields([], "anything") == []


def test_an_unknown_field_is_named_with_the_ones_there_are() -> None:
    with pytest.raises(UsageError, match="unknown --json field nme; the fields are: name, status"):
        select_fields(ROWS, "nme,status")
    with pytest.raises(UsageError, match="needs field names"):
        select_fields(ROWS, ",")


def test_ls_json_fields(tmp_path: Path) -> None:
    registry = Registry(Path(os.environ["OCM_HOME"]) / "registry.db")
    try:
        with registry.transaction() as db:
            registry.reserve(db, InstanceSpec(name="web", dir=str(tmp_path)), port=None)
    finally:
        registry.close()
    rows = invoke_ocm("ls", "--no-foreign", "--json", "name,status", check=True).json()
    assert [list(row) for row in rows] == [["name", "status"]]
    assert rows[0]["name"] == "web"
    every = invoke_ocm("ls", "--no-foreign", "--json", check=True).json()
    assert {"name", "status", "url", "pid"} <= set(every[0])
    assert_one_line_error(invoke_ocm("ls", "--json", "nme"), 2, "unknown --json field nme")
