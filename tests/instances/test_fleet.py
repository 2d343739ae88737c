"""Integration: a shared fleet of three real servers started with `ocm start -n 3 --json`."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from opencode_manager.instances.fleet import Fleet as RegistryFleet
from opencode_manager.instances.inventory import list_instances
from opencode_manager.models import InstanceInfo, Status
from opencode_manager.scripted_model import ScriptedModelServer

from conftest import CORS_ORIGIN, Fleet
from helpers import invoke_ocm, wait_for

pytestmark = pytest.mark.integration

REQUIRED = {
    "name",
    "status",
    "managed",
    "pid",
    "port",
    "url",
    "hostname",
    "version",
    "healthy",
    "started_at",
    "uptime_s",
    "restarts",
    "rss_bytes",
    "cpu_percent",
    "log",
    "dir",
    "auth",
}


def _creds(fleet: Fleet, name: str) -> dict[str, str]:
    result = invoke_ocm("env", name, "--json", env=fleet.env, check=True)
    creds = result.json()
    assert isinstance(creds, dict)
    return creds


def test_start_returns_three_healthy_instances_on_distinct_ports(fleet: Fleet) -> None:
    assert len(fleet.instances) == 3
    assert {i["status"] for i in fleet.instances} == {"running"}
    assert all(i["healthy"] is True for i in fleet.instances)
    assert len({i["port"] for i in fleet.instances}) == 3
    assert [i["name"] for i in fleet.instances] == ["oc-1", "oc-2", "oc-3"]


def test_ls_json_lists_them_with_every_field(fleet: Fleet) -> None:
    listed = invoke_ocm("ls", "--json", env=fleet.env, check=True).json()
    assert isinstance(listed, list)
    managed = [i for i in listed if i["managed"]]
    assert [i["name"] for i in managed] == ["oc-1", "oc-2", "oc-3"]
    for info in managed:
        assert set(info) >= REQUIRED, REQUIRED - set(info)
        assert info["status"] == "running"
        assert info["healthy"] is True
        assert info["version"] == "1.18.33"
        assert info["auth"] is True
        assert info["hostname"] == "127.0.0.1"
        assert info["rss_bytes"] > 50_000_000
        assert psutil.Process(info["pid"]).name().startswith("opencode")
        assert info["dir"] == str(fleet.project.resolve())
        assert Path(info["log"]).is_file()


def test_ls_of_foreign_servers_does_not_wait_to_measure_cpu(
    fleet: Fleet, home_fleet: RegistryFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen from another OCM_HOME, the shared fleet's servers are foreign: `ls` lists them
    without sleeping for a CPU window (it slept 0.1 s). Their CPU is unknown at first sight,
    and the use since the previous look from the second look on (a long-lived front's)."""
    slept: list[float] = []
    real_async_sleep, real_sleep = asyncio.sleep, time.sleep
    # Threads already running (the session's scripted model, say) sleep as they like.
    others = {t.ident for t in threading.enumerate()} - {threading.get_ident()}

    def note(delay: float) -> None:
        if threading.get_ident() not in others:
            slept.append(delay)

    async def async_sleep(delay: float, *args: Any, **kwargs: Any) -> Any:
        note(delay)
        return await real_async_sleep(delay, *args, **kwargs)

    def sleep(delay: float) -> None:
        # A child's exit polled by the standard library (`Popen.wait(timeout)`, 1 ms first:
        # a version probe on a loaded machine) is no CPU window.
        # Nor is the wait for another process's run of it (instances/binary.py's lock).
        caller = sys._getframe(1).f_code
        if not (caller.co_filename.endswith("subprocess.py") or caller.co_name == "_probing"):
            note(delay)
        real_sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", async_sleep)
    monkeypatch.setattr(time, "sleep", sleep)
    ports = {i["port"] for i in fleet.instances}

    def look(*, probe_health: bool) -> dict[object, InstanceInfo]:
        infos = asyncio.run(list_instances(home_fleet, probe_health=probe_health))
        return {i.port: i for i in infos if i.port in ports}

    # Without health checks to overlap, a window would be slept in full.
    first, second = look(probe_health=False), look(probe_health=True)
    assert [delay for delay in slept if delay > 0] == []
    assert first.keys() == second.keys() == ports
    for info in first.values():
        assert info.status is Status.FOREIGN
        assert info.cpu_percent is None
        assert info.rss_bytes is not None
        assert info.rss_bytes > 50_000_000
    for info in second.values():
        assert info.cpu_percent is not None
        assert info.cpu_percent >= 0


def test_auth_401_without_and_200_with_credentials_from_env(fleet: Fleet) -> None:
    for info in fleet.instances:
        creds = _creds(fleet, str(info["name"]))
        assert creds["OPENCODE_SERVER_URL"] == info["url"]
        url = f"{info['url']}/global/health"
        assert httpx.get(url, trust_env=False).status_code == 401
        ok = httpx.get(
            url,
            auth=(creds["OPENCODE_SERVER_USERNAME"], creds["OPENCODE_SERVER_PASSWORD"]),
            trust_env=False,
        )
        assert ok.status_code == 200
        assert ok.json()["healthy"] is True


def test_cors_origins_are_passed_on(fleet: Fleet) -> None:
    creds = _creds(fleet, "oc-1")
    auth = (creds["OPENCODE_SERVER_USERNAME"], creds["OPENCODE_SERVER_PASSWORD"])
    url = f"{creds['OPENCODE_SERVER_URL']}/global/health"
    allowed = httpx.get(url, auth=auth, headers={"Origin": CORS_ORIGIN}, trust_env=False)
    assert allowed.headers.get("access-control-allow-origin") == CORS_ORIGIN
    other = httpx.get(
        url, auth=auth, headers={"Origin": "https://other.example.test"}, trust_env=False
    )
    assert "access-control-allow-origin" not in other.headers


def test_env_prints_shell_exports(fleet: Fleet) -> None:
    out = invoke_ocm("env", "oc-2", env=fleet.env, check=True).stdout
    lines = out.strip().splitlines()
    assert [ln.split("=")[0] for ln in lines] == [
        "export OPENCODE_SERVER_URL",
        "export OPENCODE_SERVER_USERNAME",
        "export OPENCODE_SERVER_PASSWORD",
        "export OPENCODE_BIN",
    ]
    # OpenCode need not be on PATH (it came from `ocm install`): the line names the binary.
    bare = {**os.environ, **fleet.env, "PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"}
    version = subprocess.run(
        ["bash", "-c", f'eval "$({_ocm_cmd()} env oc-2)"; "$OPENCODE_BIN" --version'],
        capture_output=True, text=True, env=bare, check=True,
    )  # fmt: skip
    assert version.stdout.strip().endswith(str(fleet.instances[1]["version"]))
    probe = subprocess.run(
        [
            "bash",
            "-c",
            # The README's recipe: the password on curl's stdin, not its command line.
            f'eval "$({_ocm_cmd()} env oc-2)"; curl -s -o /dev/null -w "%{{http_code}}" '
            '-K - "$OPENCODE_SERVER_URL/global/health" '
            '<<<"user = \\"$OPENCODE_SERVER_USERNAME:$OPENCODE_SERVER_PASSWORD\\""',
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **fleet.env},
        check=True,
    )
    assert probe.stdout == "200"


def _ocm_cmd() -> str:
    import sys

    return f"{sys.executable} -m opencode_manager"


def test_no_password_in_any_argv_and_secrets_are_0600(fleet: Fleet) -> None:
    passwords = [_creds(fleet, str(i["name"]))["OPENCODE_SERVER_PASSWORD"] for i in fleet.instances]
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        for password in passwords:
            assert password not in cmdline, f"password in argv of pid {proc.pid}"
    secrets = Path(fleet.env["OCM_HOME"]) / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    for path in secrets.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for info in fleet.instances:
        log = Path(str(info["log"])).read_text()
        assert not any(p in log for p in passwords), "password written to a log"


@pytest.mark.parametrize("how", ["name", "port", "url"])
def test_status_by_name_port_or_url(fleet: Fleet, how: str) -> None:
    info = fleet.instances[0]
    ref = {"name": info["name"], "port": str(info["port"]), "url": info["url"]}[how]
    report = invoke_ocm("status", str(ref), "--json", env=fleet.env, check=True).json()
    assert isinstance(report, dict)
    assert report["name"] == "oc-1"
    assert report["status"] == "running"
    assert report["processes"][0]["pid"] == info["pid"]
    assert report["connections"].get("LISTEN", 0) >= 1
    assert report["sessions"]["busy"] == 0
    assert report["mcp"] == {}
    assert report["lsp"] == []
    assert isinstance(report["recent_errors"], list)
    settings = report["settings"]
    assert settings["restart"] == "on-failure"
    assert settings["cors"] == ["https://ocm.example.test"]
    # The environment's keys, never its values (OPENCODE_CONFIG_CONTENT may hold API keys).
    assert settings["env_keys"] == ["OPENCODE_CONFIG_CONTENT", "OPENCODE_DISABLE_MODELS_FETCH"]
    assert "scripted" not in json.dumps(settings)
    human = invoke_ocm("status", str(ref), env=fleet.env, check=True).stdout
    assert "oc-1" in human
    assert "processes" in human
    assert "restart on-failure (at most 10 in 60 s)" in " ".join(human.split())


def test_opencode_run_attach_works_with_ocm_env(
    fleet: Fleet, opencode_bin: str, model: ScriptedModelServer
) -> None:
    """OpenCode's own client reaches a managed instance with nothing but `ocm env`."""
    before = len(model.requests.entries())
    script = (
        f'eval "$({_ocm_cmd()} env oc-3)" && '
        f'"{opencode_bin}" run --attach "$OPENCODE_SERVER_URL" attach-check-word'
    )
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, **fleet.env},
        timeout=120,
        check=False,
        cwd=fleet.project,
    )
    assert done.returncode == 0, done.stderr
    texts = [e["last_user_text"] for e in model.requests.entries()[before:]]
    assert any("attach-check-word" in (t or "") for t in texts), texts
    creds = _creds(fleet, "oc-3")
    auth = (creds["OPENCODE_SERVER_USERNAME"], creds["OPENCODE_SERVER_PASSWORD"])
    sessions = httpx.get(
        f"{creds['OPENCODE_SERVER_URL']}/session", auth=auth, trust_env=False
    ).json()
    assert len(sessions) >= 1
    wait_for(
        lambda: (
            not httpx.get(
                f"{creds['OPENCODE_SERVER_URL']}/session/status", auth=auth, trust_env=False
            ).json()
        ),
        message="session idle",
    )
