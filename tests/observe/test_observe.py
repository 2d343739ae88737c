"""Integration: monitor, top, metrics and logs on real servers."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import Fleet
from helpers import invoke_ocm, patient, wait_for

pytestmark = pytest.mark.integration


class Stream:
    """A running `ocm ...` whose stdout lines are collected as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opencode_manager", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self.err = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.lines)]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        _, self.err = self.proc.communicate(timeout=patient(20))
        self._reader.join(5)
        assert "Traceback" not in self.err, self.err
        return self.proc.returncode


def _run(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    record = invoke_ocm("run", *args, "--json", env=env, check=True).json()
    assert isinstance(record, dict)
    return record


def _seen(stream: Stream, instance: str, kind: str, session: str | None = None) -> bool:
    for event in stream.events():
        if event["instance"] != instance or event["type"] != kind:
            continue
        props = event["properties"]
        sid = props.get("sessionID") or (props.get("info") or {}).get("id")
        if session is None or sid == session:
            return True
    return False


def test_monitor_merges_instances_and_survives_a_restart(model_env: list[str]) -> None:
    args = ["start", "m", "-n", "2", "--json"]
    for item in model_env:
        args += ["--env", item]
    invoke_ocm(*args, check=True)
    stream = Stream("monitor", "m-1", "m-2", "--json")
    try:
        wait_for(
            lambda: _seen(stream, "m-1", "ocm.attached") and _seen(stream, "m-2", "ocm.attached"),
            timeout=30,
            message="both streams attached",
        )
        one = _run("-i", "m-1", "hello one")
        two = _run("-i", "m-2", "hello two")
        for name, record in (("m-1", one), ("m-2", two)):
            for kind in ("session.created", "session.idle"):
                wait_for(
                    lambda n=name, k=kind, s=record["session_id"]: _seen(stream, n, k, s),  # type: ignore[misc]
                    timeout=30,
                    message=f"{kind} of {name}",
                )
        event = next(e for e in stream.events() if e["type"] == "session.idle")
        assert {"instance", "received_at", "type", "properties"} <= set(event)
        invoke_ocm("restart", "m-2", check=True)
        for kind in ("ocm.disconnected", "ocm.reconnected", "ocm.resync"):
            wait_for(
                functools.partial(_seen, stream, "m-2", kind),
                timeout=60,
                message=f"{kind} after the restart",
            )
        later = _run("-i", "m-2", "after the restart")
        wait_for(
            lambda: _seen(stream, "m-2", "session.idle", later["session_id"]),
            timeout=30,
            message="events after the reconnect",
        )
        assert not any(e["type"] == "server.heartbeat" for e in stream.events())
    finally:
        assert stream.stop() == 130  # Ctrl-C: exit 130 like every command, one line
        assert stream.err.splitlines() == ["ocm: monitor interrupted: stopped watching events"]
    invoke_ocm("stop", "--all", check=True)


def test_monitor_filters_and_human_output(fleet: Fleet) -> None:
    first = _run("-i", "oc-1", "filtered one", env=fleet.env)
    sid = first["session_id"]
    only = Stream(
        "monitor", "oc-1", "--json", "--type", "session.*", "--session", sid, env=fleet.env
    )
    human = Stream("monitor", "oc-1", env=fleet.env)
    try:
        wait_for(lambda: human.lines, timeout=30, message="the human monitor attached")
        _run("-i", "oc-1", "other session", env=fleet.env)
        _run("-i", "oc-1", "--session", sid, "BASH: echo again", env=fleet.env)
        wait_for(
            lambda: any(e["type"] == "session.idle" for e in only.events()),
            timeout=30,
            message="the filtered idle",
        )
        wait_for(
            lambda: any("tool bash completed: echo again" in ln for ln in human.lines),
            timeout=30,
            message="the human tool line",
        )
        wait_for(
            lambda: any("text: Tool said: again" in ln for ln in human.lines),
            timeout=30,
            message="folded text",
        )
    finally:
        assert only.stop() == 130
        assert human.stop() == 130
    kinds = {e["type"] for e in only.events() if not e["type"].startswith("ocm.")}
    assert kinds
    assert all(k.startswith("session.") for k in kinds), kinds
    for event in only.events():
        if event["type"].startswith("ocm."):
            continue
        props = event["properties"]
        assert (props.get("sessionID") or props.get("info", {}).get("id")) == sid
    assert not any("delta" in ln for ln in human.lines)  # folded into the text line
    assert any("oc-1" in ln and sid in ln and ln.endswith("idle") for ln in human.lines)


def test_top_once_shows_the_fleet(fleet: Fleet) -> None:
    frame = invoke_ocm("top", "--once", "--json", env=fleet.env, check=True).json()
    assert isinstance(frame, dict)
    rows = {r["name"]: r for r in frame["instances"]}
    assert set(rows) == {"oc-1", "oc-2", "oc-3"}
    listed = invoke_ocm("sessions", "--json", env=fleet.env, check=True).json()
    assert isinstance(listed, list)
    for name, row in rows.items():
        assert row["status"] == "running"
        assert row["rss_bytes"] > 50_000_000
        assert row["busy"] == 0
        assert row["sessions"] == sum(1 for s in listed if s["instance"] == name)
        assert row["idle"] == row["sessions"]
        assert row["last_event"]["kind"] == "healthy"
    totals = frame["totals"]
    assert totals["running"] == 3
    assert totals["rss_bytes"] == sum(r["rss_bytes"] for r in rows.values())
    text = invoke_ocm("top", "--once", env=fleet.env, check=True).stdout
    assert "3 instances, 3 running" in text
    assert "oc-2" in text


def test_metrics_parse_and_have_the_families(fleet: Fleet) -> None:
    _run("-i", "oc-1", "for the metrics", env=fleet.env)
    text = invoke_ocm("metrics", env=fleet.env, check=True).stdout
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {
        "ocm_instances",
        "ocm_instance_up",
        "ocm_instance_restarts",
        "ocm_instance_rss_bytes",
        "ocm_instance_cpu_percent",
        "ocm_instance_sessions_busy",
        "ocm_instance_sessions",
        "ocm_tasks",
        "ocm_task_tokens",
        "ocm_task_cost",
    } <= set(families)
    running = [s for s in families["ocm_instances"].samples if s.labels["status"] == "running"]
    assert running[0].value == 3
    up = {s.labels["instance"]: s.value for s in families["ocm_instance_up"].samples}
    assert up == {"oc-1": 1, "oc-2": 1, "oc-3": 1}
    completed = [s for s in families["ocm_tasks"].samples if s.labels["status"] == "completed"]
    assert completed[0].value >= 1
    tokens = {
        s.labels["kind"]: s.value
        for s in families["ocm_task_tokens"].samples
        if s.name.endswith("_total")
    }
    assert tokens["input"] > 0


def test_metrics_serve_answers_every_scrape_from_the_running_totals() -> None:
    """`ocm metrics --serve`: each scrape a fresh reading of the totals (every scrape used to
    answer 500: the reading was gathered outside the event loop)."""
    from opencode_manager.models import TaskRecord, TaskStatus
    from opencode_manager.registry import Registry
    from opencode_manager.tasks.store import TaskStore

    store = TaskStore(Registry(Path(os.environ["OCM_HOME"]) / "registry.db"))
    for i, status in enumerate((TaskStatus.COMPLETED, TaskStatus.COMPLETED, TaskStatus.FAILED)):
        store.add(TaskRecord(id=f"t-{i}", prompt="p", status=status, created_at=1.0,
                             tokens={"input": 100, "output": 10}, cost=0.25))  # fmt: skip
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> dict[str, dict[str, float]]:
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, response.text[-300:]
        return {
            family.name: {"/".join(s.labels.values()): s.value for s in family.samples}
            for family in text_string_to_metric_families(response.text)
        }

    def listening() -> bool:
        try:
            httpx.head(url, timeout=2)
        except httpx.TransportError:
            return False
        return True

    server = Stream("metrics", "--serve", str(port))
    try:
        wait_for(listening, timeout=30, message="metrics --serve listening")
        first = scrape()
        assert first["ocm_tasks"]["completed"] == 2
        assert first["ocm_tasks"]["failed"] == 1
        assert first["ocm_task_tokens"]["input"] == 300
        assert first["ocm_task_cost"][""] == pytest.approx(0.75)
        fixed = store.get("t-2")
        fixed.status, fixed.cost = TaskStatus.COMPLETED, 0.5
        store.save(fixed)
        second = scrape()
        assert second["ocm_tasks"]["completed"] == 3
        assert second["ocm_tasks"]["failed"] == 0
        assert second["ocm_task_cost"][""] == pytest.approx(1.0)
    finally:
        assert server.stop() in (0, 130)
    store.registry.close()


def test_logs_level_filter_and_follow_across_rotation(tmp_path: Path) -> None:
    home = Path(os.environ["OCM_HOME"])
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    from opencode_manager.models import InstanceSpec
    from opencode_manager.registry import Registry

    registry = Registry(home / "registry.db")
    with registry.transaction() as db:
        registry.reserve(db, InstanceSpec(name="quiet", dir=str(tmp_path)), port=None)
    registry.close()
    log = logs / "quiet.log"
    log.write_text("level=INFO message=a\nlevel=WARN message=b\nlevel=ERROR message=c\n")
    warn = invoke_ocm("logs", "quiet", "--level", "WARN", check=True).stdout.splitlines()
    assert warn == ["level=WARN message=b", "level=ERROR message=c"]
    follower = Stream("logs", "quiet", "-f", "-n", "1")
    try:
        wait_for(
            lambda: follower.lines == ["level=ERROR message=c"], timeout=20, message="the tail"
        )
        with open(log, "a") as handle:
            handle.write("before rotation\n")
        log.rename(logs / "quiet.log.1")
        log.write_text("after rotation\n")
        wait_for(
            lambda: follower.lines[1:] == ["before rotation", "after rotation"],
            timeout=20,
            message="lines on both sides of the rotation",
        )
    finally:
        follower.proc.terminate()
        follower.proc.communicate(timeout=patient(10))


def test_json_everywhere(fleet: Fleet) -> None:
    logs = invoke_ocm("logs", "oc-1", "-n", "3", "--json", env=fleet.env, check=True).stdout
    lines = [json.loads(line) for line in logs.splitlines()]
    assert len(lines) == 3
    assert all(set(x) == {"instance", "level", "line"} and x["instance"] == "oc-1" for x in lines)
    figures = invoke_ocm("metrics", "--json", env=fleet.env, check=True).json()
    assert isinstance(figures, dict)
    assert figures["totals"]["running"] == 3
    assert set(figures["tasks"]) == {"tasks", "tokens", "cost"}
