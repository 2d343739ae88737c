"""Remote instances: a bare `opencode serve` with a password, started by the test the way a
team runs one on another host, added by URL and driven like an instance ocm started."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.errors import ConflictError, UsageError
from opencode_manager.instances import probe, remote
from opencode_manager.instances.inventory import remote_info
from opencode_manager.models import InstanceRecord, InstanceSpec, State, Status
from opencode_manager.scripted_model import ScriptedModelServer, opencode_config

from helpers import assert_one_line_error, invoke_ocm, patient, wait_for

PASSWORD = "remote-secret-0123456789"


# -- pure parts ------------------------------------------------------------------------------
def test_urls_are_checked_and_normalised() -> None:
    assert remote.parse_url(" http://10.0.0.7:4096/ ") == "http://10.0.0.7:4096"
    assert remote.parse_url("https://oc.example.com") == "https://oc.example.com"
    assert remote.parse_url("http://[::1]:4096") == "http://[::1]:4096"
    assert remote.port_of("https://oc.example.com") == 443
    for bad, needle in [
        ("10.0.0.7:4096", "expected http://HOST:PORT"),
        ("ftp://host:21", "expected http://HOST:PORT"),
        ("http://user:pw@host:4096", "credentials do not belong in the URL"),
        ("http://host:99999", "invalid URL"),
        ("http://host:4096/?x=1", "no query"),
    ]:
        with pytest.raises(UsageError, match=needle):
            remote.parse_url(bad)


def _record(name: str, *, is_remote: bool) -> InstanceRecord:
    spec = InstanceSpec(name=name, dir="/srv/project", remote=is_remote, port=4096)
    return InstanceRecord(
        name=name, spec=spec, state=State.RUNNING, created_at=1.0, updated_at=1.0,
        url="http://10.0.0.7:4096", port=4096, version="1.18.33", started_at=1.0,
    )  # fmt: skip


def test_lifecycle_refuses_remote_instances_only() -> None:
    remote.refuse([_record("local", is_remote=False)], "stop")
    with pytest.raises(ConflictError, match=r"build-1 is a remote instance .* cannot stop it"):
        remote.refuse([_record("build-1", is_remote=True)], "stop")


def test_a_remote_status_comes_from_its_health() -> None:
    record = _record("build-1", is_remote=True)
    up = remote_info(record, probe.Health(healthy=True, version="1.18.33"))
    assert (up.status, up.owner, up.pid, up.healthy) == (Status.RUNNING, "remote", None, True)
    down = remote_info(record, probe.Health(healthy=False, error="connection refused"))
    assert down.status is Status.UNREACHABLE
    assert down.error == "connection refused"
    refused = remote_info(record, probe.Health(healthy=None, auth_required=True))
    assert refused.status is Status.UNHEALTHY
    assert "password" in (refused.error or "")


# -- a real server ---------------------------------------------------------------------------
@dataclass
class Bare:
    """A bare `opencode serve` the test started (and stops by PID)."""

    proc: subprocess.Popen[str]
    url: str
    directory: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(opencode: str, directory: Path, model: ScriptedModelServer, env: dict[str, str]) -> Bare:
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    server_env = {
        **env,
        "OPENCODE_SERVER_PASSWORD": PASSWORD,
        "OPENCODE_CONFIG_CONTENT": json.dumps(opencode_config(model.base_url)),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
    }
    proc = subprocess.Popen(
        [opencode, "serve", "--hostname", "127.0.0.1", "--port", str(port)],
        cwd=directory,
        env=server_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = ""
    while "listening on" not in line:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("the bare server exited before listening")
    proc.stdout.close()
    return Bare(proc, f"http://127.0.0.1:{port}", directory)


@pytest.fixture(scope="module")
def bare(
    tmp_path_factory: pytest.TempPathFactory, opencode_bin: str, model: ScriptedModelServer
) -> Iterator[Bare]:
    base = tmp_path_factory.mktemp("remote-host")
    home = base / "home"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "npm_config_registry": "http://127.0.0.1:9/",
        "npm_config_fetch_retries": "0",
    }
    server = serve(opencode_bin, base / "project", model, env)
    try:
        yield server
    finally:
        server.stop()


def _ls() -> dict[str, dict[str, object]]:
    rows = invoke_ocm("ls", "--json", check=True).json()
    return {str(r["name"]): r for r in rows}


def test_remote_add_checks_the_server_and_keeps_the_password_secret(
    bare: Bare, model: ScriptedModelServer, tmp_path: Path, isolated: dict[str, str]
) -> None:
    # Refused at once, one line each, nothing recorded.
    wrong = invoke_ocm("remote", "add", "r1", bare.url, "--password-env", "WRONG",
                    env={"WRONG": "not-the-password"})  # fmt: skip
    assert_one_line_error(wrong, 8, "refused the username or password")
    missing = invoke_ocm("remote", "add", "r1", bare.url)
    assert_one_line_error(missing, 8, "needs a password")
    nobody = invoke_ocm("remote", "add", "r1", f"http://127.0.0.1:{_free_port()}")
    assert_one_line_error(nobody, 8, "nothing answers")
    stranger = invoke_ocm("remote", "add", "r1", model.base_url.rsplit("/v1", 1)[0])
    assert_one_line_error(stranger, 8, "not as an OpenCode server")
    assert_one_line_error(invoke_ocm("remote", "add", "r1", "10.0.0.7:4096"), 2, "invalid URL")
    assert "r1" not in _ls()

    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    added = invoke_ocm("remote", "add", "r1", bare.url, "--password-file", str(secret), "--json")
    assert added.returncode == 0, str(added)
    info = added.json()
    assert (info["owner"], info["status"], info["version"]) == ("remote", "running", "1.18.33")
    assert info["directory"] == str(bare.directory)
    assert PASSWORD not in added.stdout + added.stderr
    stored = Path(isolated["OCM_HOME"]) / "secrets"
    files = [p for p in stored.iterdir() if PASSWORD in p.read_text()]
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    again = invoke_ocm("remote", "add", "r1", bare.url, "--password-file", str(secret))
    assert_one_line_error(again, 4, "already exists")

    # Listed once (not also as a foreign server on that port), shown as remote.
    listed = invoke_ocm("ls", "--json", check=True)
    assert PASSWORD not in listed.stdout
    rows = [r for r in listed.json() if r["port"] == info["port"]]
    assert [r["name"] for r in rows] == ["r1"]
    table = invoke_ocm("ls", check=True).stdout
    assert "remote" in table
    assert "r1" in table

    # Lifecycle commands refuse it; the server is untouched.
    for verb in ("stop", "restart", "rm"):
        assert_one_line_error(invoke_ocm(verb, "r1"), 4, "remote instance")
    assert bare.proc.poll() is None

    # Tasks, sessions and status work as for any instance.
    ran = invoke_ocm("run", "-i", "r1", "hello remote", "--json")
    assert ran.returncode == 0, str(ran)
    task = ran.json()
    assert task["status"] == "completed"
    assert "hello remote" in task["text"]
    assert task["instance"] == "r1"
    sessions = invoke_ocm("sessions", "r1", "--json", check=True).json()
    assert task["session_id"] in {s["id"] for s in sessions}
    status = invoke_ocm("status", "r1", "--json", check=True).json()
    assert status["sessions"]["total"] >= 1
    assert status["settings"]["remote"] is True
    env_out = invoke_ocm("env", "r1", check=True).stdout
    assert "OPENCODE_SERVER_URL" in env_out
    top = invoke_ocm("top", "--once", "--json", check=True).json()
    row = next(r for r in top["instances"] if r["name"] == "r1")
    assert row["status"] == "running"
    assert row["sessions"] >= 1
    metrics = invoke_ocm("metrics", check=True).stdout
    assert 'instance="r1"' in metrics
    with subprocess.Popen(
        [sys.executable, "-m", "opencode_manager", "monitor", "r1", "--json"],
        stdout=subprocess.PIPE, text=True,
    ) as monitor:  # fmt: skip
        assert monitor.stdout is not None
        first = json.loads(monitor.stdout.readline())
        monitor.terminate()
    assert (first["instance"], first["type"]) == ("r1", "ocm.attached")
    doctor = invoke_ocm("doctor", "--json")
    assert any("r1" in c["name"] and c["ok"] for c in doctor.json()["checks"]), doctor.stdout

    listed_mcp, refused_mcp = asyncio.run(_over_mcp())
    assert {i["name"]: i["owner"] for i in listed_mcp["instances"]}["r1"] == "remote"
    assert refused_mcp.is_error
    assert "remote instance" in str(refused_mcp.content)

    removed = invoke_ocm("remote", "rm", "r1", "--json", check=True).json()
    assert removed == {"removed": ["r1"]}
    assert not [p for p in stored.iterdir() if PASSWORD in p.read_text()]
    assert "r1" not in _ls()
    assert bare.proc.poll() is None


async def _over_mcp() -> tuple[dict[str, Any], Any]:
    """The MCP server (the SDK's own client, in memory) lists the remote and refuses to
    restart it."""
    from mcp import Client

    from opencode_manager import Settings
    from opencode_manager.mcpserver.tools import build_server

    async with Client(build_server(Settings.load())) as client:
        listed = await client.call_tool("instances_list", {})
        refused = await client.call_tool("instance_restart", {"name": "r1", "confirm": True})
    assert isinstance(listed.structured_content, dict)
    return listed.structured_content, refused


def test_a_batch_spreads_over_a_local_and_a_remote_instance(
    bare: Bare, model: ScriptedModelServer, model_env: list[str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env_args = [a for item in model_env for a in ("--env", item)]
    invoke_ocm("start", "loc", "--dir", str(project), *env_args, check=True)
    try:
        invoke_ocm("remote", "add", "far", bare.url, "--password-env", "PW",
                env={"PW": PASSWORD}, check=True)  # fmt: skip
        tasks = tmp_path / "tasks.jsonl"
        prompts = [f"spread {i} SLEEP 0.5" for i in range(8)]
        tasks.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
        result = invoke_ocm("batch", str(tasks), "--json")
        assert result.returncode == 0, str(result)
        summary = result.json()
        outcomes = summary["tasks"]
        assert [t["status"] for t in outcomes] == ["completed"] * 8, outcomes
        assert {t["instance"] for t in outcomes} == {"loc", "far"}
    finally:
        invoke_ocm("stop", "--all")


def _sends(model: ScriptedModelServer, tag: str) -> list[str]:
    return [
        str(e["last_user_text"])
        for e in model.requests.entries()
        if e["has_tools"] and tag in str(e["last_user_text"])
    ]


def test_a_killed_remote_fails_its_sent_task_and_the_rest_run_elsewhere(
    opencode_bin: str,
    model: ScriptedModelServer,
    model_env: list[str],
    tmp_path: Path,
    isolated: dict[str, str],
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env_args = [a for item in model_env for a in ("--env", item)]
    invoke_ocm("start", "loc", "--dir", str(project), *env_args, check=True)
    doomed = serve(opencode_bin, tmp_path / "far", model, isolated)
    tag = f"kill-{uuid.uuid4().hex[:8]}"
    try:
        invoke_ocm("remote", "add", "far", doomed.url, "--password-env", "PW",
                env={"PW": PASSWORD}, check=True)  # fmt: skip
        tasks = tmp_path / "tasks.jsonl"
        lines = [{"id": "held", "prompt": f"{tag} held SLEEP 60", "instance": "far"}]
        lines += [{"id": f"t{i}", "prompt": f"{tag} t{i} SLEEP 0.2"} for i in range(5)]
        tasks.write_text("".join(json.dumps(line) + "\n" for line in lines))
        batch = subprocess.Popen(
            [sys.executable, "-m", "opencode_manager", "batch", str(tasks), "--json",
             "--per-instance", "1", "--recover-timeout", "3s"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            # The pinned task's prompt reached the remote: kill the server under it.
            wait_for(lambda: any("held" in p for p in _sends(model, tag)), timeout=60,
                     message="the held prompt reaches the model")  # fmt: skip
            doomed.stop()
            out, errors = batch.communicate(timeout=patient(180))
        finally:
            if batch.poll() is None:
                batch.kill()
                batch.wait()
        assert batch.returncode != 0, errors  # a task failed
        by_id = {t["id"]: t for t in json.loads(out)["tasks"]}
        held = by_id["held"]
        assert held["status"] == "failed", held
        assert "did not come back" in held["error"], held
        others = [by_id[f"t{i}"] for i in range(5)]
        assert [t["status"] for t in others] == ["completed"] * 5, others
        assert {t["instance"] for t in others} == {"loc"}
        # Each prompt reached the model once: nothing was sent twice.
        sent = _sends(model, tag)
        assert sorted(sent) == sorted(line["prompt"] for line in lines), sent
        assert _ls()["far"]["status"] == "unreachable"
    finally:
        doomed.stop()
        invoke_ocm("stop", "--all")
