"""`--json [FIELDS]` and `--jq EXPR` (issue 26): one helper on every command printing rows
or an object; a word after `--json` on a command taking arguments is FIELDS only when it
names fields of the output, so `ocm stop --json oc-1` still stops oc-1."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from opencode_manager.cli.selection import (
    field_names,
    jq_lines,
    json_fields_option,
    print_selected,
    select,
)
from opencode_manager.models import TaskRecord, TaskStatus
from opencode_manager.registry import Registry
from opencode_manager.tasks.store import TaskStore

from helpers import Ocm, assert_one_line_error

ROWS = [{"name": "a", "status": "running", "url": "u1"}, {"name": "b", "status": "stopped"}]


@click.command()
@click.argument("refs", nargs=-1)
@json_fields_option(known=field_names("name", "status", "url"))
def _listing(refs: tuple[str, ...], as_json: str | None) -> None:
    rows = [r for r in ROWS if not refs or r["name"] in refs]
    if as_json:
        print_selected(rows, as_json)
    else:
        click.echo(" ".join(r["name"] for r in rows))


def _run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(_listing, list(args), catch_exceptions=False)


def test_a_word_that_names_fields_selects_and_any_other_stays_an_argument() -> None:
    assert json.loads(_run("--json", "name,url").output) == [
        {"name": "a", "url": "u1"},
        {"name": "b", "url": None},
    ]
    assert '"status": "stopped"' in _run("--json", "b").output  # `b` is an argument
    assert '"url"' not in _run("--json", "b").output
    assert json.loads(_run("--json=status", "a").output) == [{"status": "running"}]
    assert '"name": "a"' in _run("a", "--json").output


def test_jq_filters_the_json_and_implies_it() -> None:
    assert _run("--jq", ".[].name").output == "a\nb\n"
    assert _run("--json", "name,status", "--jq", '.[] | select(.status == "running")').output == (
        '{\n  "name": "a",\n  "status": "running"\n}\n'
    )
    assert _run("--jq", "map(.url)").output.split() == ["[", '"u1",', "null", "]"]


def test_select_keeps_the_fields_of_one_object_too() -> None:
    assert select({"a": 1, "b": 2, "c": 3}, "c,a") == {"c": 3, "a": 1}
    assert select(ROWS, "*") == ROWS


def test_a_bad_jq_expression_is_one_line() -> None:
    from opencode_manager import UsageError

    with pytest.raises(UsageError, match=r"^invalid --jq '\.\[': "):
        jq_lines(ROWS, ".[")
    with pytest.raises(UsageError) as caught:
        jq_lines(ROWS, ".name")  # an array has no .name
    assert "\n" not in str(caught.value)


def _task(home: Path) -> None:
    store = TaskStore(Registry(home / "registry.db"))
    now = time.time()
    store.add(
        TaskRecord(
            id="t-1",
            prompt="p",
            status=TaskStatus.COMPLETED,
            created_at=now,
            instance="oc-1",
            text="hello",
            started_at=now,
            finished_at=now + 1,
        )
    )
    store.registry.close()  # fmt: skip


def test_result_takes_fields_and_jq(ocm: Ocm) -> None:
    _task(Path(os.environ["OCM_HOME"]))
    data: Any = ocm("result", "t-1", "--json", "id,status,text", check=True).json()
    assert data == {"id": "t-1", "status": "completed", "text": "hello"}
    assert ocm("result", "--json", "text", "t-1", check=True).stdout == (
        '{\n  "text": "hello"\n}\n'
    )
    assert ocm("result", "t-1", "--jq", ".text", check=True).stdout == "hello\n"
    assert_one_line_error(ocm("result", "t-1", "--jq", ".["), 2, "invalid --jq")
    assert_one_line_error(ocm("results", "--json", "nope"), 2, "unknown --json field nope")


def test_start_checks_its_fields_before_starting_anything(ocm: Ocm) -> None:
    result = ocm("start", "api", "--json=name,nope", "--no-warm")
    assert_one_line_error(result, 2, "unknown --json field nope", "the fields are:")
    assert not (Path(os.environ["OCM_HOME"]) / "registry.db").exists() or (
        ocm("ls", "--json", "name", "--no-foreign", check=True).json() == []
    )
    assert_one_line_error(ocm("stop", "--json", "oc-1"), 3, "no instance named 'oc-1'")
    # A list of bare words, one of them a field, is FIELDS with a typo, not an argument.
    for args in (("start", "--json", "name,nope"), ("status", "oc-1", "--json", "pid,nope")):
        assert_one_line_error(ocm(*args), 2, "unknown --json field nope")


def test_a_prompt_with_commas_after_json_stays_a_prompt() -> None:
    assert '"name": "a"' not in _run("--json", "a, b").output  # words with spaces: arguments
    assert _run("--json", "hello,world").exit_code == 0  # no field among them: arguments
