"""Integration: OpenCode 2.x instances beside 1.x ones, through the CLI, on the real 2.1.2.

The lifecycle half of the 2.x support: start (the line found from the binary's version and
confirmed by `/api/info`), ls/status, restart (the instance keeps its binary), stop (SIGTERM,
no dispose route), a fleet mixing both lines, foreign 2.x servers; and the binaries and servers
ocm must refuse quickly: an unknown major, a server that answers no OpenCode API.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from opencode_manager import Manager
from opencode_manager.errors import BinaryError
from opencode_manager.instances.ports import ephemeral_port

from helpers import assert_one_line_error, invoke_ocm, wait_for

pytestmark = pytest.mark.integration


def _ls(*, foreign: bool = False) -> dict[str, dict[str, Any]]:
    data = invoke_ocm("ls", "--json", *(() if foreign else ("--no-foreign",)), check=True).json()
    assert isinstance(data, list)
    return {i["name"]: i for i in data}


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    return project


def _env_args(model_env: list[str]) -> list[str]:
    return [arg for item in model_env for arg in ("--env", item)]


def test_a_2x_instance_starts_lists_restarts_and_stops(
    opencode2_bin: str, model_env: list[str], tmp_path: Path
) -> None:
    project = _project(tmp_path)
    began = time.monotonic()
    started = invoke_ocm(
        "start", "v2", "--opencode", opencode2_bin, "--dir", str(project), "--log-level", "INFO",
        *_env_args(model_env), "--timeout", "90", "--json",
        env={"OCM_WARMUP_TIMEOUT": "120"},  # warmed, as a user's is (conftest turns it off)
    )  # fmt: skip
    took = time.monotonic() - began
    assert started.returncode == 0, str(started)
    print(f"ocm start of a 2.1.2 instance: {took:.2f} s")  # the figure for the report (-s)
    [info] = started.json()
    assert (info["name"], info["status"], info["version"], info["line"]) == (
        "v2", "running", "2.1.2", 2
    )  # fmt: skip

    listed = _ls()["v2"]
    assert (listed["status"], listed["healthy"], listed["version"], listed["line"]) == (
        "running", True, "2.1.2", 2
    )  # fmt: skip
    table = invoke_ocm("ls", "--no-foreign", check=True).stdout
    row = next(line for line in table.splitlines() if line.startswith("v2 "))
    assert "2.1.2" in row.split()

    status = invoke_ocm("status", "v2", "--json")
    assert status.returncode == 0, str(status)  # healthy: exit 0
    report = status.json()
    assert (report["line"], report["version"], report["settings"]["binary"]) == (
        2, "2.1.2", opencode2_bin
    )  # fmt: skip
    assert report["api_errors"] == []  # nothing asked in the 1.x dialect

    doctor = invoke_ocm("doctor", "--json").json()
    checks = {c["name"]: c for c in doctor["checks"]}
    assert checks["instance v2"]["ok"], checks["instance v2"]
    assert checks["instance v2"]["detail"] == "healthy; refuses anonymous requests, accepts ours"

    log = Path(listed["log"]).read_text()
    assert "warmed up in" in log
    assert "text turn, shell turn; 2/2 steps" in log
    assert "--log-level info" in log  # 2.x wants it in lower case
    password = (Path(os.environ["OCM_HOME"]) / "secrets" / "v2.password").read_text().strip()
    assert password not in log

    # OCM_OPENCODE is a 1.x here: the instance keeps the binary it was started with.
    restarted = invoke_ocm("restart", "v2", "--json")
    assert restarted.returncode == 0, str(restarted)
    again = _ls()["v2"]
    assert (again["status"], again["version"], again["line"], again["restarts"]) == (
        "running", "2.1.2", 2, 0
    )  # fmt: skip
    assert again["pid"] != listed["pid"]

    server = psutil.Process(again["pid"])
    stopped = invoke_ocm("stop", "v2", "--json")
    assert stopped.returncode == 0, str(stopped)
    [result] = stopped.json()
    assert (result["status"], result["via"], result["killed"]) == ("stopped", "keeper", 0)
    assert not server.is_running()
    events = invoke_ocm("events", "v2", "--json", check=True).json()
    kinds = [e["kind"] for e in events]
    assert kinds[-1] == "stopped"
    assert "crashed" not in kinds  # its exit 130 on SIGTERM is a normal stop
    final = _ls()["v2"]
    assert (final["status"], final["last_exit"]) == ("stopped", "stopped")


def test_one_fleet_file_runs_both_lines_side_by_side(
    opencode_bin: str, opencode2_bin: str, model_env: list[str], tmp_path: Path
) -> None:
    project = _project(tmp_path)
    config = json.loads(model_env[0].split("=", 1)[1])
    (project / "ocm.toml").write_text(
        textwrap.dedent(
            f"""\
            [defaults]
            config = {_toml_inline(config)}
            env = {{ OPENCODE_DISABLE_MODELS_FETCH = "1" }}

            [instance.one]

            [instance.two]
            opencode = {json.dumps(opencode2_bin)}
            """
        )
    )
    up = invoke_ocm("up", "--json", cwd=str(project), timeout=300)
    assert up.returncode == 0, str(up)
    try:
        listed = _ls()
        assert {n: (i["status"], i["version"], i["line"]) for n, i in listed.items()} == {
            "one": ("running", "1.18.33", 1),
            "two": ("running", "2.1.2", 2),
        }
        diff = invoke_ocm("diff", "--json", cwd=str(project), check=True).json()
        assert {c["name"]: c["action"] for c in diff["changes"]} == {
            "one": "unchanged",
            "two": "unchanged",
        }
    finally:
        down = invoke_ocm("down", "--json", cwd=str(project))
    assert down.returncode == 0, str(down)
    assert {i["status"] for i in _ls().values()} == {"stopped"}


def _toml_inline(value: Any) -> str:
    """A JSON value as a TOML inline value (the scripted model's config)."""
    if isinstance(value, dict):
        return (
            "{ "
            + ", ".join(f"{json.dumps(k)} = {_toml_inline(v)}" for k, v in value.items())
            + " }"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_toml_inline(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _fake(path: Path, version_said: str, body: str = "") -> Path:
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"if sys.argv[1:] == ['--version']:\n    print({version_said!r})\n    sys.exit(0)\n"
        + textwrap.dedent(body)
    )
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("said", ["3.0.0", "opencode v3.0.0"])
def test_an_unknown_major_is_refused_at_once_in_one_line(tmp_path: Path, said: str) -> None:
    fake = _fake(tmp_path / "opencode", said)
    manager = Manager()
    try:
        began = time.monotonic()
        with pytest.raises(BinaryError):
            manager.start("v3", opencode=str(fake), directory=str(tmp_path))
        assert time.monotonic() - began < 1.0
    finally:
        manager.close()
    result = invoke_ocm("start", "v3", "--opencode", str(fake), "--dir", str(tmp_path))
    assert_one_line_error(
        result, 5, f"opencode 3.0.0 at {fake} is not a line opencode-manager supports",
        "1.x (>= 1.1.39) and 2.x",
    )  # fmt: skip
    assert _ls() == {}  # nothing was recorded


HTML_ONLY = """\
# A server that listens and prints OpenCode's listening line, but answers every request
# with a web page, as both lines do on the routes they do not serve.
import http.server

port = int(sys.argv[sys.argv.index("--port") + 1])


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<!doctype html><html><body>app</body></html>"
        self.send_response(200)
        self.send_header("content-type", "text/html; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", port), Page)
print(f"server listening on http://127.0.0.1:{server.server_port}", flush=True)
server.serve_forever()
"""


def test_a_server_that_answers_no_opencode_api_fails_the_start_with_the_reason(
    tmp_path: Path,
) -> None:
    fake = _fake(tmp_path / "opencode", "opencode v2.1.2", HTML_ONLY)
    began = time.monotonic()
    result = invoke_ocm(
        "start", "h", "--opencode", str(fake), "--dir", str(tmp_path), "--timeout", "20"
    )
    took = time.monotonic() - began
    assert result.returncode == 6, str(result)
    assert took < 20 + 10, took  # within --timeout (and ocm's own start-up)
    first = result.stderr.splitlines()[0]
    assert "h failed to start: no OpenCode API answered at http://127.0.0.1:" in first, first
    assert "/api/info answered HTML, /global/health answered HTML" in first, first
    assert "last log lines:" in result.stderr  # the server's own last words come with it
    assert "server listening on http://127.0.0.1:" in result.stderr
    assert _ls()["h"]["status"] == "crashed"


@dataclass
class Foreign:
    proc: subprocess.Popen[bytes]
    port: int
    password: str


@pytest.fixture
def foreign2(opencode2_bin: str, tmp_path: Path) -> Iterator[Foreign]:
    """A bare `opencode serve` of 2.1.2 that ocm did not start (the user's own)."""
    port = ephemeral_port("127.0.0.1")
    password = secrets.token_urlsafe(18)
    out = (tmp_path / "foreign.out").open("wb")
    proc = subprocess.Popen(
        [opencode2_bin, "serve", "--hostname", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "OPENCODE_SERVER_PASSWORD": password},
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:

        def answers() -> bool:
            assert proc.poll() is None, (tmp_path / "foreign.out").read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=2).status_code == 401
            except httpx.TransportError:
                return False

        wait_for(answers, timeout=90, interval=0.1, message="the foreign 2.x server to answer")
        yield Foreign(proc, port, password)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        out.close()


def test_a_foreign_2x_server_and_the_service_are_listed_and_never_signalled(
    foreign2: Foreign,
) -> None:
    proc, port = foreign2.proc, foreign2.port
    name = f"foreign:{port}"
    found = _ls(foreign=True)[name]
    assert (found["status"], found["owner"], found["pid"]) == ("foreign", "foreign", proc.pid)
    assert (found["line"], found["version"], found["service"]) == (2, "2.1.2", False)
    assert found["auth"] is True  # 401 without our credentials: its password is not ours

    for command in (("stop", name), ("restart", name), ("rm", name)):
        result = invoke_ocm(*command)
        assert_one_line_error(result, 4, "ocm did not start")
    assert proc.poll() is None  # never signalled

    # The same server registered as the user's background service (`opencode service start`).
    registry = Path(os.environ["XDG_STATE_HOME"]) / "opencode" / "service.json"
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text(json.dumps({"id": "x", "version": "2.1.2",
                                    "url": f"http://127.0.0.1:{port}", "pid": proc.pid,
                                    "password": "not-for-ocm-to-use"}))  # fmt: skip
    service = _ls(foreign=True)[name]
    assert (service["service"], service["line"], service["version"]) == (True, 2, "2.1.2")
    shown = invoke_ocm("ls", check=True).stdout
    assert "not-for-ocm-to-use" not in shown
    assert proc.poll() is None


def test_a_2x_server_added_by_url_is_found_with_its_line(foreign2: Foreign, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{foreign2.port}"
    refused = invoke_ocm("remote", "add", "r2", url)  # no password: 2.x always has one
    assert_one_line_error(refused, 8, f"{url} needs a password")
    added = invoke_ocm(
        "remote", "add", "r2", url, "--password-env", "R2_PASSWORD", "--json",
        env={"R2_PASSWORD": foreign2.password},
    )  # fmt: skip
    assert added.returncode == 0, str(added)
    listed = _ls()["r2"]
    assert (listed["status"], listed["owner"], listed["version"], listed["line"]) == (
        "running", "remote", "2.1.2", 2
    )  # fmt: skip
    assert listed["dir"] == str(tmp_path)  # the server's own directory (/api/location)
    assert invoke_ocm("remote", "rm", "r2").returncode == 0
    assert foreign2.proc.poll() is None  # never signalled
