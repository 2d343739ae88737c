"""Integration: tasks, batches, asks, sessions, status and the monitor on OpenCode 2.1.2, beside
1.18.33, with the same contract (issue 25, items 1 and 2).

One module fleet (its own OCM_HOME): `v1` runs the pinned 1.18.33 and `v2` 2.1.2, both on the
scripted model and one git project, so every test here shares two servers. What must hold on
both lines is parametrized over both (a bash task's record, asks rejected and approved); the
rest runs on 2.x only, where 1.x has its own tests (tests/tasks/test_tasks.py and friends).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.scripted_model import ScriptedModelServer

from conftest import Both, both_lines
from helpers import (
    assert_one_line_error,
    model_sends,
    patient,
    run_in_terminal,
    run_ocm,
    wait_for,
)

pytestmark = pytest.mark.integration

#: The tool each line's `BASH:` runs, and a read that asks for permission on each line.
SHELL = {"v1": "bash", "v2": "shell"}
ASKING_READ = {"v1": "READ: /etc/hostname", "v2": "READ: .env"}
ASKED = {"v1": "external_directory", "v2": "read"}


@pytest.fixture(scope="module")
def both(
    tmp_path_factory: pytest.TempPathFactory,
    opencode_bin: str,
    opencode2_bin: str,
    model_env: list[str],
) -> Iterator[Both]:
    base = tmp_path_factory.mktemp("both")
    with both_lines(base, opencode_bin, opencode2_bin, model_env) as started:
        yield started


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def _run(both: Both, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_ocm("run", *args, "--json", env=both.env, timeout=180)
    assert result.stdout, str(result)
    data = result.json()
    assert isinstance(data, dict)
    return result.returncode, data


def _active(both: Both) -> dict[str, Any]:
    data = run_ocm("api", "v2", "GET", "/api/session/active", env=both.env, check=True).json()
    assert isinstance(data, dict)
    return dict(data["data"])


def _popen(both: Both, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", *args], env={**os.environ, **both.env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


# -- ocm run -------------------------------------------------------------------------------------
@pytest.mark.parametrize("line", ["v1", "v2"])
def test_a_bash_task_records_its_tool_call_on_both_lines(both: Both, line: str) -> None:
    tag = _tag()
    code, record = _run(both, "-i", line, f"BASH: echo hi-{tag}")
    assert code == 0, record
    assert (record["status"], record["instance"], record["steps"]) == ("completed", line, 2)
    [call] = record["tool_calls"]
    assert (call["tool"], call["status"]) == (SHELL[line], "completed")  # the line's own name
    assert call["input"]["command"] == f"echo hi-{tag}"
    assert call["output"] == f"hi-{tag}\n"
    assert call["ended_at"] >= call["started_at"] > 0
    assert record["text"] == f"Tool said: hi-{tag}"
    assert record["tokens"]["input"] > 0
    assert record["session_id"].startswith("ses_")
    assert record["message_id"].startswith("msg_")


@pytest.mark.parametrize("line", ["v1", "v2"])
def test_a_model_the_instance_lacks_is_refused_before_anything_is_sent(
    both: Both, line: str
) -> None:
    """Each line lists its models (1.x /config/providers, 2.x /api/model): a --model not
    among them is a usage error naming some that are, and nothing is recorded or sent."""
    before = len(run_ocm("results", "--all", "--json", env=both.env, check=True).json())
    assert_one_line_error(
        run_ocm("run", "-i", line, "--model", "scripted/nosuch", "hi", env=both.env), 2,
        "invalid --model 'scripted/nosuch': this instance has ", "scripted/scripted-model",
    )  # fmt: skip
    assert len(run_ocm("results", "--all", "--json", env=both.env, check=True).json()) == before
    code, record = _run(both, "-i", line, "--model", "scripted/scripted-model", "hi")
    assert (code, record["status"]) == (0, "completed"), record


def test_format_json_prints_the_same_lines_on_both_lines(both: Both) -> None:
    kinds = {}
    for line in ("v1", "v2"):
        result = run_ocm("run", "-i", line, f"BASH: echo j-{_tag()}", "--format", "json",
                         env=both.env, check=True)  # fmt: skip
        lines = [json.loads(x) for x in result.stdout.splitlines()]
        assert all(set(x) == {"type", "timestamp", "sessionID", "part"} for x in lines), line
        kinds[line] = [x["type"] for x in lines]
        assert lines[1]["part"]["state"]["output"].startswith("j-"), line
    assert kinds["v2"] == kinds["v1"] == [
        "step_start", "tool_use", "step_finish", "step_start", "text", "step_finish"
    ]  # fmt: skip
    failed = run_ocm("run", "-i", "v2", f"ERR400 {_tag()}", "--format", "json", env=both.env)
    assert failed.returncode == 10
    errors = [json.loads(x) for x in failed.stdout.splitlines() if '"error"' in x]
    assert errors[-1]["type"] == "error"
    assert errors[-1]["error"]["name"] == "APIError"
    assert errors[-1]["error"]["data"]["statusCode"] == 400


def test_async_then_wait_on_2x(both: Both) -> None:
    tag = _tag()
    started = run_ocm("run", "-i", "v2", f"SLEEP 1 {tag}", "--async", "--json", env=both.env,
                      check=True).json()  # fmt: skip
    assert isinstance(started, dict)
    assert (started["status"], started["instance"]) == ("running", "v2")
    waited = run_ocm("wait", started["task_id"], "--json", env=both.env, check=True).json()
    assert isinstance(waited, dict)
    assert waited["status"] == "completed"
    assert waited["text"] == f"Scripted reply. You said: SLEEP 1 {tag}"


def test_wait_in_a_terminal_shows_the_whole_answer_when_it_joins_mid_text(
    both: Both, model: ScriptedModelServer
) -> None:
    prompt = f"SLEEP 8 {_tag()}"  # the first words, then 8 s, then the rest
    started = run_ocm("run", "-i", "v2", prompt, "--async", "--json", env=both.env,
                      check=True).json()  # fmt: skip
    assert isinstance(started, dict)
    wait_for(lambda: model_sends(model, [prompt]).get(prompt), timeout=60,
             message="the model answering")  # fmt: skip
    screen = run_in_terminal("wait", started["task_id"], env=both.env)  # joins in the pause
    assert f"Scripted reply. You said: {prompt}" in screen, screen


def test_a_timeout_interrupts_the_2x_turn(both: Both) -> None:
    code, record = _run(both, "-i", "v2", f"SLEEP 60 {_tag()}", "--timeout", "2")
    assert code == 11
    assert record["status"] == "timed_out"
    assert record["duration_s"] < 20
    assert record["session_id"] not in _active(both)  # interrupted, not left running


def test_the_provider_retry_budget_stops_a_2x_turn(both: Both, model: ScriptedModelServer) -> None:
    prompt = f"ERR500 {_tag()}"
    code, record = _run(both, "-i", "v2", prompt, "--max-retries", "1")
    assert code == 10, record
    assert record["status"] == "failed"
    assert record["error"]["name"] == "RetriesExhausted"
    assert "scripted error 500" in record["error"]["message"]
    assert record["duration_s"] < 40  # not 2.x's own 10 retries (~82 s)
    assert record["session_id"] not in _active(both)
    sent = [e for e in model.requests.entries() if e["last_user_text"] == prompt]
    assert len(sent) == 2  # the first request and the one retry the budget allows


def test_a_2x_task_runs_in_its_own_worktree(both: Both) -> None:
    code, record = _run(both, "-i", "v2", "--dir", str(both.project), "--worktree",
                        "WRITE: from-the-worktree.txt")  # fmt: skip
    assert code == 0, record
    tree = record["worktree"]
    assert tree["path"] != str(both.project)
    assert record["directory"] == tree["path"]  # the session's location
    assert [d["file"] for d in record["diff"]] == ["from-the-worktree.txt"]
    assert "from-the-worktree.txt" in json.dumps(tree["files"])
    assert not (both.project / "from-the-worktree.txt").exists()  # the checkout untouched


def test_a_1x_route_on_2x_says_where_2x_has_its_api(both: Both) -> None:
    """The README's 1.x routes reach a 2.x server's web app: the error names the route to try."""
    page = run_ocm("api", "v2", "GET", "/config", env=both.env)
    assert_one_line_error(page, 8, "web page", "under /api/: try /api/config")
    post = run_ocm("api", "v2", "POST", "/session", "--data", "{}", env=both.env)
    assert_one_line_error(post, 8, "under /api/: try /api/session")
    assert_one_line_error(run_ocm("api", "v1", "GET", "/nope", env=both.env), 8, "web page")
    assert "/api/" not in run_ocm("api", "v1", "GET", "/nope", env=both.env).stderr


def test_a_schema_is_refused_on_2x_before_anything_is_sent(both: Both, tmp_path: Path) -> None:
    before = run_ocm("sessions", "v2", "--json", env=both.env, check=True).json()
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "string"}}}))
    result = run_ocm("run", "-i", "v2", "STRUCTURED {}", "--schema", str(schema), env=both.env)
    assert_one_line_error(result, 2, "no structured output", "v2")
    after = run_ocm("sessions", "v2", "--json", env=both.env, check=True).json()
    assert len(after) == len(before)  # no session made, nothing recorded or sent
    results = run_ocm("results", "--json", env=both.env, check=True).json()
    assert all(r["prompt"] != "STRUCTURED {}" for r in results)


# -- asks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("line", ["v1", "v2"])
def test_asks_are_rejected_by_default_and_approved_on_request(both: Both, line: str) -> None:
    code, record = _run(both, "-i", line, f"QUESTION {_tag()}")
    assert code == 0, record
    assert record["status"] == "completed"
    assert [(a["kind"], a["answer"]) for a in record["asks"]] == [("question", "rejected")]
    assert (record["tool_calls"][0]["tool"], record["tool_calls"][0]["status"]) == (
        "question", "error"
    )  # fmt: skip
    code, record = _run(both, "-i", line, ASKING_READ[line])
    assert code == 0, record
    assert [(a["kind"], a["answer"]) for a in record["asks"]] == [("permission", "reject")]
    assert record["asks"][0]["request"]["permission"] == ASKED[line]
    assert record["tool_calls"][0]["status"] == "error"
    code, approved = _run(both, "-i", line, ASKING_READ[line], "--auto-approve")
    assert code == 0, approved
    assert [(a["kind"], a["answer"]) for a in approved["asks"]] == [("permission", "once")]
    assert approved["tool_calls"][0]["status"] == "completed"


def _pending(both: Both, session_id: str) -> list[dict[str, Any]]:
    def listed() -> list[dict[str, Any]]:
        found = run_ocm("session", "asks", session_id, "--json", env=both.env, check=True)
        return list(found.json())

    found = wait_for(listed, timeout=60, message=f"an ask in {session_id}")
    assert isinstance(found, list)
    return found


def test_asks_left_pending_on_2x_are_answered_by_somebody_else(both: Both) -> None:
    started = run_ocm("run", "-i", "v2", f"QUESTION {_tag()}", "--leave-asks", "--async",
                      "--json", env=both.env, check=True).json()  # fmt: skip
    assert isinstance(started, dict)
    waiter = _popen(both, "wait", started["task_id"], "--json")
    try:
        asks = _pending(both, started["session_id"])
        assert [(a["kind"], a["questions"][0]["options"]) for a in asks] == [
            ("question", ["Option A", "Option B"])
        ]
        wrong = run_ocm("session", "reply", started["session_id"], asks[0]["id"], "once",
                        env=both.env)  # fmt: skip
        assert_one_line_error(wrong, 3, "no pending permission", asks[0]["id"])
        run_ocm("session", "answer", started["session_id"], asks[0]["id"], "Option B",
                env=both.env, check=True)  # fmt: skip
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
    # A permission, on a task followed from the start, allowed once by a person.
    runner = _popen(both, "run", "-i", "v2", "READ: .env", "--leave-asks", "--json")
    try:

        def busy() -> str | None:
            return next(iter(_active(both)), None)

        session_id = str(wait_for(busy, timeout=60, message="the task's session"))
        asks = _pending(both, session_id)
        assert (asks[0]["kind"], asks[0]["permission"], asks[0]["patterns"]) == (
            "permission", "read", [".env"]
        )  # fmt: skip
        run_ocm("session", "reply", session_id, asks[0]["id"], "once", env=both.env, check=True)
        stdout, stderr = runner.communicate(timeout=patient(120))
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 0, stderr
    record = json.loads(stdout)
    assert [(a["kind"], a["answer"]) for a in record["asks"]] == [("permission", "once")]
    assert record["tool_calls"][0]["status"] == "completed"


# -- batches -------------------------------------------------------------------------------------
def test_a_batch_runs_across_both_lines(
    both: Both, tmp_path: Path, model: ScriptedModelServer
) -> None:
    tag = _tag()
    tasks = [{"id": f"t{i}", "prompt": f"BASH: echo mixed-{tag}-{i}", "instance": f"v{1 + i % 2}"}
             for i in range(6)]  # fmt: skip
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    result = run_ocm("batch", str(path), "--per-instance", "3", "--json", env=both.env, timeout=300)
    assert result.returncode == 0, str(result)
    summary = result.json()
    assert isinstance(summary, dict)
    assert summary["counts"] == {"completed": 6}
    shown = run_ocm("batch", "show", summary["id"], "--json", env=both.env, check=True).json()
    assert isinstance(shown, dict)
    assert sorted(t["instance"] for t in shown["tasks"]) == ["v1"] * 3 + ["v2"] * 3
    prompts = [t["prompt"] for t in tasks]
    assert model_sends(model, prompts) == dict.fromkeys(prompts, 1)


# Runs a recorded batch in its own process and SIGKILLs itself when a task passes STEP for the
# NTH time (the seam of tests/tasks/test_exactly_once.py).
RUNNER = """
import asyncio, os, signal, sys
from opencode_manager import AsyncManager

step, nth, batch_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = 0

async def checkpoint(name: str) -> None:
    global seen
    if name == step:
        seen += 1
        if seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)

async def main() -> None:
    async with AsyncManager() as ocm:
        await ocm.batch_run(batch_id, checkpoint=checkpoint)

asyncio.run(main())
"""


@pytest.mark.parametrize("step", ["sending", "sent"])
def test_a_batch_killed_in_the_send_window_on_2x_sends_each_prompt_once(
    both: Both, tmp_path: Path, model: ScriptedModelServer, step: str
) -> None:
    tag = _tag()
    prompts = [f"BASH: echo once-{step}-{tag}-{i}" for i in range(3)]
    path = tmp_path / "once.jsonl"
    path.write_text("".join(json.dumps({"id": f"t{i}", "prompt": p, "instance": "v2"}) + "\n"
                            for i, p in enumerate(prompts)))  # fmt: skip
    create = (
        "import sys; from opencode_manager import BatchOptions, Manager\n"
        "with Manager() as ocm:\n"
        "    print(ocm.batch_create(open(sys.argv[1]).read(), BatchOptions(per_instance=1),"
        " source=sys.argv[1]).id)\n"
    )
    env = {**os.environ, **both.env}
    made = subprocess.run([sys.executable, "-c", create, str(path)], env=env, check=True,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    batch_id = made.stdout.strip()
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    died = subprocess.run([sys.executable, str(script), step, "2", batch_id], env=env,
                          capture_output=True, text=True, timeout=180, check=False)  # fmt: skip
    assert died.returncode == -9, died.stderr[-2000:]  # killed where we wanted
    resumed = run_ocm("batch", "resume", batch_id, "--json", env=both.env, timeout=240)
    assert resumed.returncode == 0, str(resumed)
    summary = resumed.json()
    assert isinstance(summary, dict)
    assert summary["counts"] == {"completed": 3}
    sends = model_sends(model, prompts)
    assert sends == dict.fromkeys(prompts, 1), sends


# -- sessions, status, monitor -------------------------------------------------------------------
def test_sessions_commands_on_2x(both: Both) -> None:
    code, record = _run(both, "-i", "v2", "WRITE: made-by-v2.txt")
    assert code == 0, record
    sid = record["session_id"]
    assert [d["file"] for d in record["diff"]] == ["made-by-v2.txt"]  # the turn's own diff
    listed = run_ocm("sessions", "v2", "--json", env=both.env, check=True).json()
    row = next(s for s in listed if s["id"] == sid)
    assert (row["instance"], row["status"], row["directory"]) == ("v2", "idle", str(both.project))
    shown = run_ocm("session", "show", sid, "--json", env=both.env, check=True).json()
    assert (shown["id"], shown["title"]) == (sid, "ocm: WRITE: made-by-v2.txt")
    messages = run_ocm("session", "messages", sid, "--json", env=both.env, check=True).json()
    assert [m["info"]["role"] for m in messages] == ["user", "assistant", "assistant"]
    assert run_ocm("session", "todo", sid, "--json", env=both.env, check=True).json() == []
    diff = run_ocm("session", "diff", sid, "--json", env=both.env, check=True).json()
    assert [(d["message_id"], d["file"]) for d in diff] == [
        (record["message_id"], "made-by-v2.txt")
    ]
    assert run_ocm("session", "asks", sid, "--json", env=both.env, check=True).json() == []
    # A busy session: abort interrupts it, rm deletes it.
    started = run_ocm("run", "-i", "v2", f"SLEEP 60 {_tag()}", "--async", "--json",
                      env=both.env, check=True).json()  # fmt: skip
    assert isinstance(started, dict)
    busy = started["session_id"]
    wait_for(lambda: busy in _active(both), timeout=60, message="the session busy")
    run_ocm("session", "abort", busy, env=both.env, check=True)
    assert busy not in _active(both)
    run_ocm("session", "rm", busy, env=both.env, check=True)
    gone = run_ocm("session", "show", busy, env=both.env)
    assert_one_line_error(gone, 3, busy)
    waited = run_ocm("wait", started["task_id"], "--json", env=both.env, timeout=60)
    assert waited.json()["status"] in ("aborted", "failed")


def test_status_and_top_read_2x(both: Both) -> None:
    _run(both, "-i", "v2", f"hello {_tag()}")
    report = run_ocm("status", "v2", "--json", env=both.env)
    assert report.returncode == 0, str(report)
    data = report.json()
    assert data["api_errors"] == []
    assert data["sessions"]["total"] >= 1
    assert data["sessions"]["busy"] == 0
    assert data["mcp"] == {}
    assert data["lsp"] is None  # 2.x has no LSP
    frame = run_ocm("top", "--once", "--json", env=both.env, check=True).json()
    rows = {r["name"]: r for r in frame["instances"]}
    assert rows["v2"]["sessions"] >= 1
    assert rows["v1"]["status"] == rows["v2"]["status"] == "running"


def test_monitor_labels_the_events_of_both_lines(both: Both) -> None:
    stream = _popen(both, "monitor", "v1", "v2", "--json")
    lines: list[dict[str, Any]] = []

    def seen(instance: str, kind: str, session: str | None = None) -> bool:
        for event in list(lines):
            props = event["properties"]
            sid = props.get("sessionID") or (props.get("info") or {}).get("id")
            if (event["instance"], event["type"]) == (instance, kind) and session in (None, sid):
                return True
        return False

    def read() -> None:
        assert stream.stdout is not None
        for line in stream.stdout:
            lines.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: seen("v1", "ocm.attached") and seen("v2", "ocm.attached"), timeout=30,
                 message="both streams attached")  # fmt: skip
        records = {name: _run(both, "-i", name, f"BASH: echo mon-{_tag()}")[1]
                   for name in ("v1", "v2")}  # fmt: skip
        for name, record in records.items():
            for kind in ("session.created", "message.part.updated", "session.idle"):
                wait_for(lambda n=name, k=kind, s=record["session_id"]: seen(n, k, s),  # type: ignore[misc]
                         timeout=30, message=f"{kind} of {name}")  # fmt: skip
        native = [e for e in lines if e["instance"] == "v2" and e["type"] == "session.idle"]
        assert native[0]["properties"]["ocm_native"] == "session.execution.succeeded"
    finally:
        stream.send_signal(2)
        _, err = stream.communicate(timeout=patient(20))
        reader.join(5)
    assert "Traceback" not in err, err


@pytest.mark.parametrize("line", ["v1", "v2"])
def test_a_budget_and_a_fallback_hold_on_both_lines(both: Both, line: str) -> None:
    """Provider control on either line (issue 27, item 6): a turn past its budget is stopped
    between its steps, and a refused model falls back in the same session."""
    from opencode_manager.scripted_model import BROKEN_MODEL, GOOD_MODEL

    prompt = f"{_tag()} USAGE 100000 2000 LATER 20\nBASH: echo hi"
    code, record = _run(both, "-i", line, "--model", GOOD_MODEL, "--max-cost", "0.01",
                        "--auto-approve", prompt)  # fmt: skip
    assert (code, record["status"]) == (13, "budget_exceeded"), record
    assert record["error"]["kind"] == "cost"
    assert record["cost"] > 0.01
    code, record = _run(both, "-i", line, "--model", BROKEN_MODEL, "--fallback", GOOD_MODEL,
                        f"hello {_tag()}")  # fmt: skip
    assert (code, record["status"]) == (0, "completed"), record
    assert [t["model"] for t in record["turns"]] == [BROKEN_MODEL, GOOD_MODEL]
