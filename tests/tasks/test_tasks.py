"""Integration: `ocm run`, results and sessions on the shared fleet (real servers, scripted model).

Each test uses prompts of its own, so they can share the fleet's servers and registry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from opencode_manager import Manager, Settings
from opencode_manager.scripted_model import ScriptedModelServer

from conftest import Fleet
from helpers import (
    assert_one_line_error,
    invoke_ocm,
    patient,
    run_in_terminal,
    run_ocm,
    wait_for,
)

pytestmark = pytest.mark.integration


def _run(fleet: Fleet, *args: str) -> tuple[int, dict[str, Any]]:
    result = invoke_ocm("run", *args, "--json", env=fleet.env, timeout=180)
    assert result.stdout, str(result)
    data = result.json()
    assert isinstance(data, dict)
    return result.returncode, data


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def test_text_reply(fleet: Fleet) -> None:
    tag = _tag()
    code, record = _run(fleet, f"hello {tag}", "-i", "oc-1")
    assert code == 0
    assert record["status"] == "completed"
    assert record["text"] == f"Scripted reply. You said: hello {tag}"
    assert record["instance"] == "oc-1"
    assert record["session_id"].startswith("ses_")
    assert record["steps"] == 1
    assert record["tokens"]["input"] > 0
    assert record["duration_s"] > 0
    plain = invoke_ocm("run", f"plain {tag}", "-i", "oc-1", env=fleet.env)
    assert plain.returncode == 0
    assert plain.stdout.strip() == f"Scripted reply. You said: plain {tag}"


def test_bash_tool_output_lands_in_tool_calls(fleet: Fleet) -> None:
    tag = _tag()
    code, record = _run(fleet, f"BASH: echo out-{tag}")
    assert code == 0
    [call] = record["tool_calls"]
    assert call["tool"] == "bash"
    assert call["status"] == "completed"
    assert call["input"] == {"command": f"echo out-{tag}"}
    assert call["output"] == f"out-{tag}\n"
    assert call["ended_at"] >= call["started_at"] > 0
    assert record["text"] == f"Tool said: out-{tag}"
    assert record["steps"] == 2


def test_todos(fleet: Fleet) -> None:
    code, record = _run(fleet, f"TODO {_tag()}")
    assert code == 0
    assert [t["content"] for t in record["todos"]] == ["First task", "Second task", "Third task"]
    assert record["tool_calls"][0]["tool"] == "todowrite"


def test_todos_and_diff_are_read_when_they_may_exist(fleet: Fleet) -> None:
    # A text-only turn in a new session has no todos and no diff, so they are not asked
    # for; a turn continuing a session still reports the todos its earlier turn wrote.
    code, first = _run(fleet, f"TODO {_tag()}", "-i", "oc-1")
    assert code == 0
    code, record = _run(fleet, f"plain {_tag()}", "--session", first["session_id"])
    assert code == 0
    assert record["tool_calls"] == []
    assert [t["content"] for t in record["todos"]] == ["First task", "Second task", "Third task"]
    code, fresh = _run(fleet, f"plain {_tag()}", "-i", "oc-1")
    assert code == 0
    assert (fresh["todos"], fresh["diff"]) == ([], [])


def test_model_500_becomes_failed_with_the_error(fleet: Fleet) -> None:
    code, record = _run(fleet, f"ERR500 {_tag()}")
    assert code == 10
    assert record["status"] == "failed"
    assert record["error"]["name"] == "APIError"
    assert record["error"]["data"]["statusCode"] == 500
    assert "scripted error 500" in record["error"]["data"]["message"]


def test_timeout_aborts_and_leaves_the_session_idle(fleet: Fleet) -> None:
    code, record = _run(fleet, f"SLEEP 60 {_tag()}", "--timeout", "2", "-i", "oc-2")
    assert code == 11
    assert record["status"] == "timed_out"
    assert record["duration_s"] < 20

    def idle() -> bool:
        status = invoke_ocm("api", "oc-2", "GET", "/session/status", env=fleet.env, check=True)
        return record["session_id"] not in status.json()

    wait_for(idle, timeout=30, message="the aborted session idle again")


def test_format_json_is_compatible_and_keeps_the_final_step(fleet: Fleet) -> None:
    tag = _tag()
    result = invoke_ocm("run", f"BASH: echo j-{tag}", "--format", "json", env=fleet.env, check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["type"] for line in lines] == [
        "step_start",
        "tool_use",
        "step_finish",
        "step_start",
        "text",
        "step_finish",
    ]
    session = lines[0]["sessionID"]
    assert all(set(line) == {"type", "timestamp", "sessionID", "part"} for line in lines)
    assert all(line["sessionID"] == session for line in lines)
    assert lines[1]["part"]["state"]["output"] == f"j-{tag}\n"
    assert lines[4]["part"]["text"].strip() == f"Tool said: j-{tag}"  # `--attach` drops it
    failed = invoke_ocm("run", f"ERR400 {tag}", "--format", "json", env=fleet.env)
    assert failed.returncode == 10
    errors = [json.loads(x) for x in failed.stdout.splitlines() if '"error"' in x]
    assert errors[-1]["type"] == "error"
    assert errors[-1]["error"]["name"] == "APIError"


def test_async_then_wait_and_result(fleet: Fleet) -> None:
    tag = _tag()
    started = invoke_ocm(
        "run", f"SLEEP 1 {tag}", "--async", "--json", env=fleet.env, check=True
    ).json()
    assert isinstance(started, dict)
    assert started["status"] == "running"
    assert started["session_id"].startswith("ses_")
    waited = invoke_ocm("wait", started["task_id"], "--json", env=fleet.env, check=True).json()
    assert isinstance(waited, dict)
    assert waited["status"] == "completed"
    assert waited["text"] == f"Scripted reply. You said: SLEEP 1 {tag}"
    shown = invoke_ocm("result", started["task_id"], "--json", env=fleet.env, check=True).json()
    assert shown == waited
    listed = invoke_ocm("results", "--jsonl", env=fleet.env, check=True).stdout.splitlines()
    assert any(json.loads(line)["id"] == started["task_id"] for line in listed)
    human = invoke_ocm("result", started["task_id"], env=fleet.env, check=True).stdout
    assert "completed" in human
    assert f"SLEEP 1 {tag}" in human


def test_ctrl_c_on_wait_stops_watching_and_leaves_the_task_running(fleet: Fleet) -> None:
    started = invoke_ocm("run", f"SLEEP 8 {_tag()}", "--async", "--json", env=fleet.env, check=True)
    task = started.json()
    waiter = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", "wait", task["task_id"]],
        env={**os.environ, **fleet.env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip

    def busy() -> bool:
        status = invoke_ocm("api", task["instance"], "GET", "/session/status", env=fleet.env)
        return task["session_id"] in status.json()

    wait_for(busy, timeout=30, message="the task running")
    port = int(task_url(fleet, task["instance"]).rsplit(":", 1)[1])

    def watching() -> bool:  # the waiter follows the server's event stream
        conns = psutil.Process(waiter.pid).net_connections(kind="tcp")
        return any(c.raddr and c.raddr.port == port for c in conns)

    wait_for(watching, timeout=30, message="ocm wait watching")
    waiter.send_signal(signal.SIGINT)
    _, err = waiter.communicate(timeout=patient(30))
    assert waiter.returncode == 130
    assert err.strip().splitlines() == [
        f"ocm: wait interrupted; the task is still running: ocm wait {task['task_id']}"
    ]
    assert busy()  # watching stopped; the task did not
    done = invoke_ocm("wait", task["task_id"], "--json", env=fleet.env, check=True).json()
    assert done["status"] == "completed"


def task_url(fleet: Fleet, name: str) -> str:
    return str(next(i["url"] for i in fleet.instances if i["name"] == name))


def test_wait_ends_when_its_session_is_deleted(fleet: Fleet) -> None:
    started = invoke_ocm(
        "run", f"SLEEP 30 {_tag()}", "--async", "--json", env=fleet.env, check=True
    )
    task = started.json()
    invoke_ocm("session", "rm", task["session_id"], env=fleet.env, check=True)
    result = invoke_ocm("wait", task["task_id"], "--json", env=fleet.env, timeout=60)
    assert result.returncode in (10, 12), str(result)
    assert result.json()["status"] in ("failed", "aborted")


def _in_a_terminal(fleet: Fleet, *args: str) -> str:
    return run_in_terminal(*args, env=fleet.env)


def test_in_a_terminal_the_answer_is_printed_once(fleet: Fleet) -> None:
    tag = _tag()
    screen = _in_a_terminal(fleet, "run", f"hello {tag}")
    assert screen.count(f"You said: hello {tag}") == 1, screen


def test_without_a_terminal_progress_is_one_line_per_event(fleet: Fleet) -> None:
    tag = _tag()
    result = invoke_ocm("run", f"BASH: echo plain-{tag}", env=fleet.env, check=True)
    assert f"plain-{tag}" in result.stdout
    assert "→ bash:" in result.stderr  # the tool call, as one plain line
    assert "\x1b[" not in result.stderr  # no colour codes when nobody looks


def test_asks_are_rejected_by_default_and_reported(fleet: Fleet) -> None:
    code, record = _run(fleet, f"QUESTION {_tag()}")
    assert code == 0
    assert [(a["kind"], a["answer"]) for a in record["asks"]] == [("question", "rejected")]
    assert record["tool_calls"][0]["status"] == "error"
    code, record = _run(fleet, "READ: /etc/hostname")
    assert code == 0
    assert [(a["kind"], a["answer"]) for a in record["asks"]] == [("permission", "reject")]
    assert record["asks"][0]["request"]["permission"] == "external_directory"
    assert record["tool_calls"][0]["status"] == "error"
    code, approved = _run(fleet, "READ: /etc/hostname", "--auto-approve")
    assert code == 0
    assert [(a["kind"], a["answer"]) for a in approved["asks"]] == [("permission", "once")]
    assert approved["tool_calls"][0]["status"] == "completed"


def _pending_asks(fleet: Fleet, session_id: str) -> list[dict[str, Any]]:
    def listed() -> list[dict[str, Any]]:
        found = invoke_ocm("session", "asks", session_id, "--json", env=fleet.env, check=True)
        return list(found.json())

    found = wait_for(listed, timeout=60, message=f"an ask in {session_id}")
    assert isinstance(found, list)
    return found


def test_asks_left_pending_are_answered_by_somebody_else(fleet: Fleet) -> None:
    # A question, on a detached task, answered while `ocm wait` follows it.
    started = invoke_ocm("run", f"QUESTION {_tag()}", "--leave-asks", "--async", "--json",
                      "-i", "oc-3", env=fleet.env, check=True).json()  # fmt: skip
    waiter = _popen_ocm(fleet, "wait", started["task_id"], "--json")
    try:
        asks = _pending_asks(fleet, started["session_id"])
        assert [(a["kind"], a["questions"][0]["options"]) for a in asks] == [
            ("question", ["Option A", "Option B"])
        ]

        def followed() -> bool:  # `ocm wait` follows it (it recorded the ask as pending)
            shown = invoke_ocm("result", started["task_id"], "--json", env=fleet.env, check=True)
            return bool(shown.json()["asks"])

        wait_for(followed, timeout=patient(60), message="ocm wait to follow the task")
        wrong = invoke_ocm("session", "reply", started["session_id"], asks[0]["id"], "once",
                        env=fleet.env)  # fmt: skip
        assert_one_line_error(wrong, 3, "no pending permission", asks[0]["id"])
        invoke_ocm("session", "answer", started["session_id"], asks[0]["id"], "Option B",
                env=fleet.env, check=True)  # fmt: skip
        stdout, stderr = waiter.communicate(timeout=patient(120))
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, stderr
    record = json.loads(stdout)
    assert record["text"].startswith("You answered:"), record
    assert "Option B" in record["text"]
    assert [(a["kind"], a["answer"]) for a in record["asks"]] == [
        ("question", "answered: Option B")
    ]
    # A permission, on a task followed from the start, allowed once.
    runner = _popen_ocm(fleet, "run", "READ: /etc/hostname", "--leave-asks", "--json",
                        "-i", "oc-3")  # fmt: skip
    try:
        session_id = str(wait_for(lambda: _newest_busy_session(fleet, "oc-3"), timeout=60,
                                  message="the task's session"))  # fmt: skip
        asks = _pending_asks(fleet, session_id)
        assert asks[0]["permission"] == "external_directory"
        invoke_ocm("session", "reply", session_id, asks[0]["id"], "once", env=fleet.env, check=True)
        stdout, stderr = runner.communicate(timeout=patient(120))
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 0, stderr
    record = json.loads(stdout)
    assert [(a["kind"], a["answer"]) for a in record["asks"]] == [("permission", "once")]
    assert record["tool_calls"][0]["status"] == "completed"
    assert "left pending" in stderr


def test_an_ask_answered_while_nobody_followed_the_task_is_in_its_record(fleet: Fleet) -> None:
    """A detached task's question, answered with `ocm session answer` before anyone waits
    for the task: the answer is in the record at once (`ocm result`), and once after
    `ocm wait` (the default policy: nobody follows a detached task to reject it)."""
    started = invoke_ocm("run", f"QUESTION {_tag()}", "--async", "--json", "-i", "oc-3",
                         env=fleet.env, check=True).json()  # fmt: skip
    asks = _pending_asks(fleet, started["session_id"])
    invoke_ocm("session", "answer", started["session_id"], asks[0]["id"], "Option A",
               env=fleet.env, check=True)  # fmt: skip
    shown = invoke_ocm("result", started["task_id"], "--json", env=fleet.env, check=True).json()
    assert [(a["id"], a["answer"]) for a in shown["asks"]] == [
        (asks[0]["id"], "answered: Option A")
    ]
    waited = invoke_ocm("wait", started["task_id"], "--json", env=fleet.env, check=True,
                        timeout=patient(120)).json()  # fmt: skip
    assert "Option A" in waited["text"]
    assert [(a["kind"], a["answer"]) for a in waited["asks"]] == [
        ("question", "answered: Option A")
    ]


def _newest_busy_session(fleet: Fleet, name: str) -> str | None:
    busy = _busy(fleet, name)
    return next(iter(busy), None)


def test_least_busy_instance_is_chosen(fleet: Fleet, model: ScriptedModelServer) -> None:
    tag = _tag()
    busy = [
        invoke_ocm(
            "run",
            f"SLEEP 60 busy-{tag}-{n}",
            "-i",
            name,
            "--async",
            "--json",
            env=fleet.env,
            check=True,
        ).json()
        for n, name in enumerate(["oc-1", "oc-2"])
    ]

    def both_busy() -> bool:
        status = [
            invoke_ocm("api", name, "GET", "/session/status", env=fleet.env, check=True).json()
            for name in ("oc-1", "oc-2")
        ]
        return all(status)

    wait_for(both_busy, timeout=30, message="oc-1 and oc-2 busy")
    code, record = _run(fleet, f"free {tag}")
    assert code == 0
    assert record["instance"] == "oc-3"
    for started in busy:  # long enough to stay busy on a loaded machine; not needed after
        invoke_ocm("session", "abort", started["session_id"], env=fleet.env, check=True)


def test_sessions_commands(fleet: Fleet) -> None:
    tag = _tag()
    _, record = _run(fleet, f"TODO sessions-{tag}", "-i", "oc-1")
    sid = record["session_id"]
    listed = invoke_ocm("sessions", "--json", env=fleet.env, check=True).json()
    assert isinstance(listed, list)
    assert any(row["id"] == sid and row["instance"] == "oc-1" for row in listed)
    shown = invoke_ocm("session", "show", sid, "--json", env=fleet.env, check=True).json()
    assert isinstance(shown, dict)
    assert shown["instance"] == "oc-1"
    todos = invoke_ocm("session", "todo", sid, "--json", env=fleet.env, check=True).json()
    assert isinstance(todos, list)
    assert len(todos) == 3
    messages = invoke_ocm("session", "messages", sid, env=fleet.env, check=True).stdout
    assert f"TODO sessions-{tag}" in messages
    assert "todowrite" in messages
    invoke_ocm("session", "abort", sid, env=fleet.env, check=True)
    invoke_ocm("session", "rm", sid, "-i", "oc-1", env=fleet.env, check=True)
    assert_one_line_error(invoke_ocm("session", "show", sid, env=fleet.env), 3, f"no session {sid}")


def test_api_passthrough(fleet: Fleet) -> None:
    config = invoke_ocm("api", "oc-1", "GET", "/config", env=fleet.env, check=True).json()
    assert isinstance(config, dict)
    assert config["model"] == "scripted/scripted-model"
    made = invoke_ocm(
        "api",
        "oc-1",
        "POST",
        "/session",
        "--data",
        '{"title": "via api"}',
        env=fleet.env,
        check=True,
    ).json()
    assert isinstance(made, dict)
    assert made["title"] == "via api"
    assert_one_line_error(
        invoke_ocm("api", "oc-1", "GET", "/no/such/route", env=fleet.env), 8, "not an API route"
    )
    assert_one_line_error(
        invoke_ocm("api", "oc-1", "POST", "/session", "--data", "{oops", env=fleet.env),
        2,
        "invalid --data",
    )


def test_bad_task_input(fleet: Fleet) -> None:
    env = fleet.env
    assert_one_line_error(invoke_ocm("run", "hi", "-i", "nope", env=env), 3, "no instance named")
    assert_one_line_error(
        invoke_ocm("run", "hi", "-i", "oc-1", "--session", "ses_nope", env=env),
        3,
        "no session ses_nope on oc-1",
    )
    assert_one_line_error(invoke_ocm("run", "  ", env=env), 2, "empty prompt")
    assert_one_line_error(invoke_ocm("run", "hi", "--timeout", "0", env=env), 2, "--timeout")
    assert_one_line_error(invoke_ocm("run", "hi", "--timeout", "-3", env=env), 2, "--timeout")
    assert_one_line_error(invoke_ocm("run", "hi", "--model", "nomodel", env=env), 2, "--model")
    assert_one_line_error(invoke_ocm("wait", "t-nope", env=env), 3, "no task 't-nope'")
    assert_one_line_error(invoke_ocm("result", "t-nope", env=env), 3, "no task 't-nope'")
    assert_one_line_error(invoke_ocm("results", "--status", "weird", env=env), 2, "--status")
    assert_one_line_error(invoke_ocm("session", "show", "bogus", env=env), 2, "session ids start")
    before = len(invoke_ocm("results", "--all", "--json", env=env, check=True).json())
    assert_one_line_error(
        invoke_ocm("run", "hi", "--agent", "nosuchagent", env=env), 2,
        "invalid --agent 'nosuchagent': this instance has ",
    )  # fmt: skip
    assert_one_line_error(
        invoke_ocm("run", "hi", "--model", "scripted/nosuch", env=env), 2,
        "invalid --model 'scripted/nosuch': this instance has ", "scripted/scripted-model",
    )  # fmt: skip
    assert len(invoke_ocm("results", "--all", "--json", env=env, check=True).json()) == before


def test_servers_of_another_ocm_home_are_foreign_and_read_only(fleet: Fleet) -> None:
    """From this test's own OCM_HOME, the shared fleet's servers are foreign."""
    port = fleet.instances[0]["port"]
    listed = invoke_ocm("ls", "--json", check=True).json()
    assert f"foreign:{port}" in [row["name"] for row in listed]
    ref = f"foreign:{port}"
    assert_one_line_error(invoke_ocm("stop", ref), 4, "ocm did not start")
    assert_one_line_error(invoke_ocm("api", ref, "POST", "/session"), 4, "only GET")
    # A GET goes out, without a password ocm does not have: the server says no.
    assert_one_line_error(invoke_ocm("api", ref, "GET", "/path"), 8, "401 unauthorized")
    assert_one_line_error(invoke_ocm("sessions", ref), 8, "401 unauthorized")


def _popen_ocm(fleet: Fleet, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", *args],
        env={**os.environ, **fleet.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _busy(fleet: Fleet, name: str) -> dict[str, Any]:
    status = invoke_ocm("api", name, "GET", "/session/status", env=fleet.env, check=True).json()
    assert isinstance(status, dict)
    return status


def test_ctrl_c_aborts_the_session(fleet: Fleet) -> None:
    proc = _popen_ocm(fleet, "run", f"SLEEP 60 ctrl-c {_tag()}", "-i", "oc-3", "--json")
    wait_for(lambda: _busy(fleet, "oc-3"), timeout=30, message="the session busy")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=patient(30))
    assert proc.returncode == 130, err  # Ctrl-C means the same everywhere (issue 26)
    record = json.loads(out)
    assert record["status"] == "aborted"
    assert record["session_id"] not in _busy(fleet, "oc-3")
    assert err.strip().splitlines() == [
        f"ocm: run interrupted: task {record['id']} aborted on oc-3; "
        f"`ocm result {record['id']}` shows what it did"
    ]


def test_ctrl_c_cancels_a_batch(fleet: Fleet, tmp_path: Path) -> None:
    tag = _tag()
    batch_file = tmp_path / "slow.jsonl"
    batch_file.write_text(
        "".join(json.dumps({"prompt": f"SLEEP 60 cancel-{tag}-{i}"}) + "\n" for i in range(6))
    )
    proc = _popen_ocm(
        fleet, "batch", str(batch_file), "-i", "oc-1", "--per-instance", "2", "--json"
    )
    wait_for(lambda: len(_busy(fleet, "oc-1")) == 2, timeout=30, message="two tasks running")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=patient(60))
    assert proc.returncode == 130, err  # Ctrl-C: exit 130, one line (issue 26)
    assert len(err.strip().splitlines()) == 1, err
    summary = json.loads(out)
    assert summary["status"] == "cancelled"
    assert summary["counts"] == {"aborted": 2, "cancelled": 4}
    assert _busy(fleet, "oc-1") == {}


def test_diff_of_a_git_project(fleet: Fleet, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("original\n")
    git = ["git", "-c", "user.email=t@example.test", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    code, record = _run(fleet, "WRITE: a.txt", "-i", "oc-2", "--dir", str(repo))
    assert code == 0
    assert record["directory"] == str(repo)
    [change] = record["diff"]
    assert change["file"] == "a.txt"
    assert change["status"] == "modified"
    assert "+scripted content" in change["patch"]
    assert (repo / "a.txt").read_text() == "scripted content\n"
    shown = invoke_ocm(
        "session", "diff", record["session_id"], "--json", env=fleet.env, check=True
    ).json()
    assert isinstance(shown, list)
    assert [c["file"] for c in shown] == ["a.txt"]


def test_attach_passes_credentials_by_environment(fleet: Fleet) -> None:
    _, record = _run(fleet, "-i", "oc-1", f"hello attach {_tag()}")
    settings = Settings.load(environ={**os.environ, **fleet.env})
    with Manager(settings) as manager:
        session = record["session_id"]
        argv, env = manager.attach_command("oc-1", session_id=session)
        values = manager.env("oc-1")
    password = values["OPENCODE_SERVER_PASSWORD"]
    assert argv == [values["OPENCODE_BIN"], "attach", fleet.instances[0]["url"], "--session",
                    session]  # fmt: skip
    assert password not in " ".join(argv)
    assert env == {"OPENCODE_SERVER_USERNAME": "opencode", "OPENCODE_SERVER_PASSWORD": password}


def test_attach_to_a_session_that_is_not_there_is_one_line_before_the_tui(fleet: Fleet) -> None:
    """OpenCode's TUI exits 1 with raw colour codes for an unknown session (issue 26)."""
    # A process of its own: `attach` replaces itself with the TUI once the checks pass.
    result = run_ocm("attach", "oc-1", "--session", "ses_nothere", env=fleet.env, timeout=60)
    assert_one_line_error(result, 3, "no session ses_nothere on oc-1")


def test_results_and_result_agree_after_the_runner_died(fleet: Fleet) -> None:
    """A closed terminal kills `ocm run`; the turn still ends on the server."""
    tag = _tag()
    proc = _popen_ocm(fleet, "run", f"SLEEP 1 closed-{tag}", "-i", "oc-2")

    def mine() -> dict[str, Any] | None:
        rows = invoke_ocm("results", "--json", "--limit", "20", env=fleet.env, check=True).json()
        return next((r for r in rows if r["prompt"] == f"SLEEP 1 closed-{tag}"), None)

    wait_for(lambda: (row := mine()) is not None and row["prompted"], timeout=60,
             message="the prompt sent")  # fmt: skip
    proc.kill()
    proc.communicate(timeout=patient(30))
    wait_for(lambda: (row := mine()) is not None and row["status"] == "completed", timeout=60,
             message="`ocm results` sees the turn that ended on the server")  # fmt: skip
    row = mine()
    assert row is not None
    shown = invoke_ocm("result", row["id"], "--json", env=fleet.env, check=True).json()
    assert shown["status"] == "completed"
    assert shown["text"] == f"Scripted reply. You said: SLEEP 1 closed-{tag}"
