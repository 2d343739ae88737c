"""`ocm limits` (list, set, rm, --json), a fleet file's [limits] through `ocm diff`/`ocm up`,
the facade's methods, and the budget_exceeded status's exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opencode_manager import Manager, Settings, TaskRecord, TaskStatus
from opencode_manager.cli.tasks import EXIT_FOR_STATUS, report
from opencode_manager.limits import Lease, Limit, Slots, Waiting, parse_scope, set_limits
from opencode_manager.limits.breaker import BreakerPolicy
from opencode_manager.limits.recovery import ProviderError, Trouble
from opencode_manager.registry import Registry

from helpers import assert_one_line_error, run_ocm

README = Path(__file__).resolve().parents[2] / "README.md"


def test_set_list_and_remove_limits() -> None:
    assert run_ocm("limits", "--json", check=True).json() == []
    empty = run_ocm("limits", check=True)
    assert "no limits; set one with `ocm limits set" in empty.stderr
    made = run_ocm("limits", "set", "anthropic", "--concurrency", "8", "--rpm", "50", check=True)
    assert made.stdout.strip() == "anthropic: concurrency 8, rpm 50"
    model = run_ocm("limits", "set", "anthropic/claude-opus-4", "--concurrency", "2", "--json")
    assert model.json() == {"scope": "anthropic/claude-opus-4", "concurrency": 2, "rpm": None}
    rows = run_ocm("limits", "--json", check=True).json()
    assert [(r["scope"], r["concurrency"], r["rpm"], r["in_use"], r["queued"], r["breaker"])
            for r in rows] == [("anthropic", 8, 50, 0, 0, "closed"),
                               ("anthropic/claude-opus-4", 2, None, 0, 0, "closed")]  # fmt: skip
    table = run_ocm("limits", check=True).stdout.splitlines()
    assert table[0].split() == ["SCOPE", "IN", "USE", "RPM", "QUEUED", "BREAKER", "SOURCE"]
    assert table[1].split() == ["anthropic", "0/8", "0/50", "0", "closed", "cli"]
    removed = run_ocm("limits", "rm", "anthropic/claude-opus-4", "--json", check=True)
    assert removed.json() == {"removed": ["anthropic/claude-opus-4"]}
    assert [r["scope"] for r in run_ocm("limits", "--json").json()] == ["anthropic"]


def test_bad_limits_are_one_line_errors() -> None:
    assert_one_line_error(run_ocm("limits", "set", "p"), 2, "give --concurrency N and/or --rpm N")
    assert_one_line_error(
        run_ocm("limits", "set", "p", "--concurrency", "0"), 2, "--concurrency must be 1 or more"
    )
    assert_one_line_error(run_ocm("limits", "set", "a b", "--rpm", "1"), 2, "invalid provider")
    assert_one_line_error(run_ocm("limits", "rm", "nope"), 3, "no limit for nope")
    assert_one_line_error(run_ocm("limits", "rm"), 2, "Missing argument")
    assert_one_line_error(run_ocm("limits", "set", "p", "--rpm", "x"), 2, "not a valid integer")


def test_the_table_shows_slots_in_use_the_queue_and_an_open_breaker() -> None:
    with Manager() as ocm:
        ocm.limit_set("scripted", concurrency=1)
    registry = Registry(Settings.load().registry_path)
    try:
        slots = Slots(registry, breaker_policy=BreakerPolicy(threshold=1, cooldown=600))
        assert isinstance(slots.try_take(slots.ticket("scripted", "m", "t-1")), Lease)
        assert isinstance(slots.try_take(slots.ticket("scripted", "m", "t-2")), Waiting)
        slots.report("flaky", ProviderError(Trouble.TRANSIENT, "APIError", "503 down", 503))
        shown = run_ocm("limits", check=True).stdout
    finally:
        registry.close()
    lines = shown.splitlines()
    assert lines[1].split()[:5] == ["scripted", "1/1", "1", "1", "closed"]
    assert lines[2].split()[:5] == ["flaky", "0", "0", "0", "open"]
    assert "left)" in lines[2]
    assert "flaky: APIError: 503 down" in shown


def test_a_fleet_files_limits_are_shown_by_diff_and_set_by_up(tmp_path: Path) -> None:
    (tmp_path / "ocm.toml").write_text(
        '[project]\nname = "api"\n\n[limits]\nanthropic = { concurrency = 4 }\n'
        '"anthropic/opus" = { rpm = 10 }\n'
    )
    cwd = str(tmp_path)
    planned = run_ocm("diff", "--json", cwd=cwd, check=True).json()
    assert planned["limits"] == [
        {"scope": "anthropic", "concurrency": 4, "rpm": None, "before": None},
        {"scope": "anthropic/opus", "concurrency": None, "rpm": 10, "before": None},
    ]
    assert run_ocm("diff", "--exit-code", cwd=cwd).returncode == 1
    shown = run_ocm("up", cwd=cwd, check=True)
    assert "limit anthropic: concurrency 4 (new)" in shown.stdout
    rows = run_ocm("limits", "--json", check=True).json()
    assert [(r["scope"], r["source"]) for r in rows] == [
        ("anthropic", "ocm.toml:api"),
        ("anthropic/opus", "ocm.toml:api"),
    ]
    assert run_ocm("diff", "--exit-code", cwd=cwd).returncode == 0
    run_ocm("limits", "set", "anthropic", "--concurrency", "9", check=True)
    again = run_ocm("diff", "--json", cwd=cwd, check=True).json()["limits"]
    assert again == [
        {"scope": "anthropic", "concurrency": 4, "rpm": None,
         "before": {"concurrency": 9, "rpm": None}}
    ]  # fmt: skip


def test_budget_exceeded_is_a_final_status_with_exit_code_13() -> None:
    assert TaskStatus.BUDGET_EXCEEDED.final
    record = TaskRecord(
        id="t-1", prompt="p", status=TaskStatus.BUDGET_EXCEEDED, created_at=0.0, cost=0.02
    )
    assert report(record, as_json="*", jsonl=False) == 13
    # Every task exit code is in README's table.
    table = README.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in set(EXIT_FOR_STATUS.values()) - {0}:
        assert f"\n| {code} |" in table, code


def test_ocm_top_shows_the_tasks_queued_for_a_provider_slot(ocm: Any) -> None:
    """A limit full: a waiter shows in `ocm top` with its place (JSON and the table)."""
    run_ocm("limits", "set", "scripted", "--concurrency", "1", check=True)
    settings = Settings.load()
    registry = Registry(settings.registry_path)
    try:
        slots = Slots(registry)
        held = slots.try_take(slots.ticket("scripted", None, "t-holder"))
        assert isinstance(held, Lease)
        waiting = slots.try_take(slots.ticket("scripted", "scripted/good", "t-waiter", 3))
        assert isinstance(waiting, Waiting)
        frame = ocm("top", "--once", "--json").json()
        assert [(q["owner"], q["place"], q["priority"]) for q in frame["queue"]] == [
            ("t-waiter", 1, 3)
        ]
        shown = ocm("top", "--once").stdout
        assert "1 queued for a provider slot:" in shown
        assert "#1 t-waiter on scripted/good (priority 3" in shown
    finally:
        registry.close()


def test_results_show_a_queued_tasks_place_cost_and_turns(ocm: Any) -> None:
    from opencode_manager.tasks.store import TaskStore

    settings = Settings.load()
    settings.ensure_home()
    registry = Registry(settings.registry_path)
    try:
        set_limits(registry, [Limit(parse_scope("scripted"), 1, None)])
        slots = Slots(registry)  # t-queued waits behind another task, in this process
        assert isinstance(slots.try_take(slots.ticket("scripted", None, "t-other")), Lease)
        assert isinstance(slots.try_take(slots.ticket("scripted", None, "t-queued")), Waiting)
        store = TaskStore(registry)
        store.add(TaskRecord("t-queued", "wait for it", TaskStatus.QUEUED, 1.0,
                             queue={"provider": "scripted", "model": None, "place": 2,
                                    "reason": "concurrency", "scope": "scripted"}))  # fmt: skip
        store.add(TaskRecord("t-fell", "fall back", TaskStatus.COMPLETED, 2.0, cost=0.0123,
                             max_cost=0.5, turns=[
                                 {"model": "scripted/broken", "status": "failed",
                                  "action": "fallback"},
                                 {"model": "scripted/good", "status": "completed"}]))  # fmt: skip
    finally:
        registry.close()
    listed = ocm("results").stdout
    assert "queued #2 (concurrency)" in listed
    assert "0.0123" in listed
    queued = ocm("result", "t-queued").stdout
    assert "#2 for scripted (concurrency)" in queued
    fell = ocm("result", "t-fell").stdout
    assert "scripted/broken: failed -> fallback" in fell
    assert "scripted/good: completed" in fell
    assert "$0.5" in fell


def test_a_queued_task_whose_process_is_gone_ends_cancelled_unsent(ocm: Any) -> None:
    """A killed `ocm run` leaves its task `queued`; the listing sees that nobody waits for a
    slot for it any more. One whose process still waits stays queued."""
    from opencode_manager.tasks.store import TaskStore

    settings = Settings.load()
    settings.ensure_home()
    registry = Registry(settings.registry_path)
    try:
        run_ocm("limits", "set", "scripted", "--concurrency", "1", check=True)
        slots = Slots(registry)
        assert isinstance(slots.try_take(slots.ticket("scripted", None, "t-other")), Lease)
        assert isinstance(slots.try_take(slots.ticket("scripted", None, "t-waits")), Waiting)
        store = TaskStore(registry)
        for task_id in ("t-waits", "t-left"):
            store.add(TaskRecord(task_id, "p", TaskStatus.QUEUED, 1.0, queue={"place": 1}))
    finally:
        registry.close()
    rows = {r["id"]: r for r in ocm("results", "--json").json()}
    assert rows["t-waits"]["status"] == "queued"
    assert rows["t-left"]["status"] == "cancelled"
    assert "nothing was sent" in rows["t-left"]["error"]["message"]
