"""Compatibility smoke run: the `ocm` CLI, as a user runs it, against several OpenCode versions.

For each version: install it (once, into .cache/ocm), then in a fresh, isolated environment
(HOME, XDG dirs, OCM_HOME, offline npm) start the scripted model and two instances, and run the
smoke set below, one `ocm` subprocess at a time. Every process started carries a marker in its
environment; at the end no process with it may be left. Writes docs/compatibility.md.

    scripts/compat [--out FILE] [--keep] [VERSION...]     # default: every version in VERSIONS

Exit code 0 only if every step passed or its failure is listed in KNOWN.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from opencode_manager.lines import Line, line_of

ROOT = Path(__file__).resolve().parent.parent
OCM = str(Path(sys.executable).parent / "ocm")  # the checkout's .venv; PYTHONPATH picks the code
CACHE = ROOT / ".cache" / "ocm"  # installs, shared with scripts/setup (pinned one reused)
VERSIONS = ["1.1.53", "1.2.27", "1.3.2", "1.14.41", "1.15.13", "1.17.19", "1.18.33", "2.1.2"]
MARK_VAR = "COMPAT_MARK"

# (version, step) -> why that failure is acceptable and what ocm does about it. A failure listed
# here is reported as "known" and does not fail the run.
KNOWN: dict[tuple[str, str], str] = {
    ("1.1.53", "schema"): "1.1.53 answers no structured output to a prompt with a `format` "
    "(it arrived later in 1.x; 1.2.27 has it): the task fails (exit 10), nothing is faked",
}
# A step whose capability a line does not have is not a failure: the step raises NotOffered
# with the reason (and checks what ocm does instead), and the report says "not offered".

STEPS = {
    "start": "`ocm start -n 2 --json` returns two instances",
    "ls": "`ocm ls --json`: both running and healthy",
    "server pid": "the `ls` PID is the server itself (cmdline has `serve`, exe is not node)",
    "run text": "`ocm run --json` plain prompt: completed, the reply in `text`",
    "run jsonl": "`ocm run --format json 'BASH: echo hi'`: step_start, tool_use, text, "
    "step_finish; the tool is the line's shell tool (`bash` on 1.x, `shell` on 2.x)",
    "todo": "`ocm run --json 'TODO ...'`: completed, todos in the record",
    "schema": "`ocm run --schema FILE 'STRUCTURED {...}'`: completed, the answer in "
    "`structured`; where the line has no structured output, refused (exit 2) before "
    "anything is sent",
    "secrets": "`ocm run --json 'BASH: env'`: the tool's environment has not the server "
    "password (its variable gone, or empty where the line's tools keep it), and the server "
    "still refuses requests without it (401)",
    "timeout": "`ocm run --timeout 2 'SLEEP 30'`: exit 11, timed_out, promptly; session idle",
    "retries": "`ocm run --max-retries 1 'ERR500 x'`: exit 10 within 60 s; session idle",
    "async+wait": "`ocm run --async` then `ocm wait`: completed",
    "sessions": "`ocm sessions --json` lists the sessions (the text run's included)",
    "monitor": "`ocm monitor --json` (background) prints the task's session events; SIGINT ends it",
    "batch": "`ocm batch FILE --json` of 4 tasks: all completed",
    "restart": "`ocm restart oc-1`: running, healthy, new PID, restarts 0",
    "kill -9": "SIGKILL to oc-2's server PID: its keeper restarts it (restarts +1)",
    "bg process": "`ocm run 'BASH: sleep 300 >/dev/null 2>&1 & echo started'`: leaves a process",
    "stop": "`ocm stop --all --json`: every instance stopped",
    "npm wrapper": "`ocm start --opencode node_modules/.bin/opencode`: the PID is the server's",
    "leftovers": "no process carrying the run's marker is left (scanned in /proc)",
}
# How to read the per-version table: what differs between versions and what ocm does about it.
NOTES = [
    "**npm `.bin/opencode`**: up to 1.14.x npm's `opencode` is a Node script that spawns the "
    "platform binary; given that script (`--opencode`, `OCM_OPENCODE` or `PATH`), ocm runs the "
    "binary beside it instead, so the PID it records, signals and measures is the server's. "
    "From 1.15 npm's `opencode` is a copy of the binary (`opencode-ai/bin/opencode.exe`). "
    "`ocm install` always resolves the platform package's binary.",
    "**ERR500 ends as**: `RetriesExhausted` is ocm's own budget (`--max-retries`): when OpenCode "
    "announces one retry more than allowed, ocm aborts the turn and fails the task (the session "
    "is idle afterwards, checked). Older OpenCode retries a failing provider without end, so "
    "this budget is what ends such tasks there; `APIError` would mean OpenCode gave up first. "
    "The scripted model sends `retry-after-ms: 20`, hence the short times.",
    "Versions older than 1.1.39 are refused (`ocm install`, `ocm start`: exit 5); 1.1.53 is the "
    "oldest tested here.",
    "**2.x** (npm `@opencode/cli`; `ocm install --version 2.1.2` takes the line's package): the "
    "same steps through the same CLI. Its shell tool is `shell`; todos exist only with "
    '`"experimental": {"todo": true}` in the config (set here for 2.x, as a user would); it '
    "has no structured output (no `format` on its prompt, no StructuredOutput tool), so "
    "`--schema` is refused on a 2.x instance; its `.bin/opencode` is a link to the binary; "
    "it ends a provider's 500s itself after 10 retries (~82 s), ocm's `--max-retries` first.",
]
FINAL = ("stop", "npm wrapper", "leftovers")  # cleanup and checks run whatever failed before


class Failed(Exception):
    """A step's check did not hold; the message is the reason recorded."""


class NotOffered(Exception):
    """The line has no such capability (the message says why, and what ocm does instead)."""


def short(text: str, limit: int = 200) -> str:
    """ocm's one-line error (`ocm: ...`) if there is one, else the last line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = next((ln for ln in lines if ln.startswith("ocm:")), lines[-1] if lines else "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def marked_pids(mark: str) -> list[int]:
    """PIDs whose environment carries MARK_VAR=mark (ours, whoever their parent is now)."""
    needle = f"{MARK_VAR}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                found.append(int(entry))
    return found


def server_exe(pid: int) -> str:
    """The executable of `pid`, checked to be an OpenCode server (not a Node wrapper)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError as exc:
        raise Failed(f"pid {pid}: {exc.strerror}") from exc
    if "serve" not in proc_cmdline(pid).split() or Path(exe).name == "node":
        raise Failed(f"pid {pid} is not the server: {exe}: {proc_cmdline(pid)[:100]}")
    return exe


def poll(what: str, check: Callable[[], Any], deadline: float, every: float = 0.25) -> Any:
    """check() until it returns something truthy, or Failed after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise Failed(f"{what}: not within {deadline:.0f} s")
        time.sleep(every)


def install(version: str) -> str:
    """`ocm install --version V --json` into the shared cache; the binary path it resolved."""
    env = {**os.environ, "OCM_HOME": str(CACHE)}
    out = subprocess.run(
        [OCM, "install", "--version", version, "--json"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
        check=False,
    )
    if out.returncode != 0:
        raise Failed(f"ocm install --version {version}: exit {out.returncode}: {short(out.stderr)}")
    path: str = json.loads(out.stdout)["path"]
    return path


class Smoke:
    """One version's run: an isolated environment, the scripted model, the steps, cleanup."""

    def __init__(self, version: str, binary: str) -> None:
        self.version = version
        self.binary = binary
        self.mark = f"compat-{version}-{uuid.uuid4().hex[:8]}"
        self.base = Path(tempfile.mkdtemp(prefix=f"ocm-compat-{version}-"))
        self.project = self.base / "project"
        self.project.mkdir()
        home = self.base / "home"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OCM_", "OPENCODE_"))}
        self.env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local/share"),
            XDG_STATE_HOME=str(home / ".local/state"),
            XDG_CACHE_HOME=str(home / ".cache"),
            OCM_HOME=str(self.base / "ocm"),
            OCM_OPENCODE=binary,
            OPENCODE_DISABLE_MODELS_FETCH="1",
            npm_config_registry="http://127.0.0.1:9/",  # no plugin installs at run time
            npm_config_fetch_retries="0",  # ...failing at once (see the README's "Offline")
            NO_COLOR="1",
            **{MARK_VAR: self.mark},
        )
        for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            Path(self.env[key]).mkdir(parents=True)
        self.line = line_of(version)
        self.results: dict[str, tuple[str, str]] = {}
        self.info: dict[str, str] = {"binary": binary}
        self.model: subprocess.Popen[bytes] | None = None
        self.config = ""
        self.text_session = ""

    # -- running ocm ---------------------------------------------------------------------------
    def ocm(self, *args: str, timeout: float = 120) -> tuple[int, str, str, float]:
        """`ocm ARGS` as a user runs it: (exit code, stdout, stderr, seconds)."""
        started = time.monotonic()
        try:
            out = subprocess.run(
                [OCM, *args],
                env=self.env,
                cwd=self.project,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise Failed(f"`ocm {' '.join(args)}` still running after {timeout:.0f} s") from exc
        return out.returncode, out.stdout, out.stderr, time.monotonic() - started

    def ocm_json(self, *args: str, expect: int = 0, timeout: float = 120) -> Any:
        code, out, err, _ = self.ocm(*args, timeout=timeout)
        if code != expect:
            raise Failed(f"`ocm {args[0]}` exit {code} (expected {expect}): {short(err or out)}")
        try:
            return json.loads(out)
        except ValueError as exc:
            raise Failed(f"`ocm {args[0]}` printed no JSON: {short(out or err)}") from exc

    def ls(self) -> dict[str, dict[str, Any]]:
        return {i["name"]: i for i in self.ocm_json("ls", "--no-foreign", "--json")}

    def session_idle(self, record: dict[str, Any]) -> None:
        """The record's session is idle on its server (ocm aborted it; not retrying on)."""

        def idle() -> bool:
            shown = self.ocm_json("session", "show", record["session_id"], "--json")
            return bool(shown["status"] == "idle")

        poll(f"session {record['session_id']} idle", idle, 15, every=1)

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> None:
        started = time.monotonic()
        try:
            self.start_model()
            for name in STEPS:
                if name in FINAL:
                    continue
                if self.results.get("start", ("ok",))[0] != "ok":
                    self.results[name] = ("skip", "no instances")
                    continue
                self.step(name)
        except Failed as exc:  # the scripted model did not start
            self.results.setdefault("start", ("FAIL", str(exc)))
        finally:
            self.step("stop")
            self.step("npm wrapper")
            self.stop_model()
            self.step("leftovers")
            self.info["seconds"] = f"{time.monotonic() - started:.0f}"

    def step(self, name: str) -> None:
        method = getattr(self, "step_" + re.sub(r"\W+", "_", name))
        t0 = time.monotonic()
        try:
            note = method() or ""
            self.results[name] = ("ok", note)
        except Failed as exc:
            self.results[name] = ("FAIL", str(exc))
        except NotOffered as exc:
            self.results[name] = ("n/a", str(exc))
        except Exception as exc:  # a bug in this script or an unexpected answer shape
            self.results[name] = ("FAIL", f"{type(exc).__name__}: {exc}")
        status, note = self.results[name]
        took = time.monotonic() - t0
        print(f"  {self.version:8} {name:11} {status:4} {took:5.1f}s  {note}", file=sys.stderr)

    def start_model(self) -> None:
        out = self.base / "model-server.json"
        with out.open("wb") as handle:
            self.model = subprocess.Popen(
                [OCM, "model-server", "--json"],
                env=self.env,
                cwd=self.project,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

        def ready() -> Any:
            if self.model is not None and self.model.poll() is not None:
                raise Failed(f"model-server exited {self.model.returncode}: {out.read_text()}")
            try:
                return json.loads(out.read_text())
            except ValueError:
                return None

        config = poll("scripted model-server", ready, 30)["config"]
        if self.line is Line.V2:
            config["experimental"] = {"todo": True}  # 2.x offers todowrite only with it
        self.config = json.dumps(config)

    def stop_model(self) -> None:
        if self.model is not None and self.model.poll() is None:
            self.model.send_signal(signal.SIGINT)
            try:
                self.model.wait(10)
            except subprocess.TimeoutExpired:
                self.model.kill()  # our own child
                self.model.wait()

    # -- the steps (each returns a short note or raises Failed) ---------------------------------
    def step_start(self) -> str:
        env = ["--env", f"OPENCODE_CONFIG_CONTENT={self.config}"]
        env += ["--env", "OPENCODE_DISABLE_MODELS_FETCH=1"]
        code, out, err, secs = self.ocm(
            "start", "-n", "2", "--dir", str(self.project), *env, "--json", timeout=180
        )
        if code != 0:
            raise Failed(f"exit {code}: {short(err or out)}")
        names = sorted(i["name"] for i in json.loads(out))
        if names != ["oc-1", "oc-2"]:
            raise Failed(f"started {names}")
        return f"{secs:.1f} s"

    def step_ls(self) -> str:
        fleet = self.ls()
        bad = [
            f"{n}: {i['status']}, healthy={i['healthy']}"
            for n, i in fleet.items()
            if i["status"] != "running" or i["healthy"] is not True
        ]
        if len(fleet) != 2 or bad:
            raise Failed(f"{len(fleet)} instances; {'; '.join(bad)}")
        return ""

    def step_server_pid(self) -> str:
        exes = {server_exe(inst["pid"]) for inst in self.ls().values()}
        same = exes == {os.path.realpath(self.binary)}
        self.info["server exe"] = "the installed binary" if same else ", ".join(sorted(exes))
        return "exe is the installed binary" if same else f"exe {', '.join(sorted(exes))}"

    def step_run_text(self) -> str:
        rec = self.ocm_json("run", "--json", "hello from compat")
        if rec["status"] != "completed" or "hello from compat" not in (rec["text"] or ""):
            raise Failed(f"status {rec['status']}, text {rec['text']!r}, error {rec['error']}")
        self.text_session = rec["session_id"]
        return f"{rec['duration_s']:.1f} s"

    def step_run_jsonl(self) -> str:
        code, out, err, _ = self.ocm("run", "--format", "json", "BASH: echo hi")
        if code != 0:
            raise Failed(f"exit {code}: {short(err or out)}")
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        types = [e["type"] for e in events]
        missing = {"step_start", "tool_use", "text", "step_finish"} - set(types)
        if missing:
            raise Failed(f"no {sorted(missing)} in {types}")
        tool = next(e["part"] for e in events if e["type"] == "tool_use")
        shell = "shell" if self.line is Line.V2 else "bash"
        if tool.get("tool") != shell or "hi" not in str(tool["state"].get("output")):
            raise Failed(f"tool_use is {tool.get('tool')}: {str(tool.get('state'))[:100]}")
        return f"{len(events)} lines"

    def step_todo(self) -> str:
        rec = self.ocm_json("run", "--json", "TODO plan the work")
        if rec["status"] != "completed" or not rec["todos"]:
            raise Failed(f"status {rec['status']}, todos {rec['todos']}, error {rec['error']}")
        return f"{len(rec['todos'])} todos"

    def step_schema(self) -> str:
        schema = self.base / "schema.json"
        answer = {"type": "object", "properties": {"answer": {"type": "string"}}}
        schema.write_text(json.dumps({**answer, "required": ["answer"]}))
        prompt = 'STRUCTURED {"answer": "42"}'
        code, out, err, _ = self.ocm("run", "--json", "--schema", str(schema), prompt)
        if self.line is Line.V2:
            sent = self.ocm_json("results", "--json", "--limit", "500")
            if (
                code != 2
                or "no structured output" not in err
                or any(r["prompt"] == prompt for r in sent)
            ):
                raise Failed(f"exit {code} (expected a refusal, 2): {short(err or out)}")
            raise NotOffered(
                "OpenCode 2.x has no structured output (its prompt takes no `format`); "
                "`--schema` on a 2.x instance is refused (exit 2) before anything is sent"
            )
        rec = json.loads(out) if out.strip().startswith("{") else {}
        if code != 0 or rec.get("structured") != {"answer": "42"}:
            raise Failed(f"exit {code}, structured {rec.get('structured')}: {short(err)}")
        return "structured answer"

    def step_secrets(self) -> str:
        env = self.ocm_json("env", "oc-1", "--json")
        password = env["OPENCODE_SERVER_PASSWORD"]
        code, out, err, _ = self.ocm("run", "-i", "oc-1", "--json", "BASH: env")
        if code != 0:
            raise Failed(f"exit {code}: {short(err or out)}")
        if password in out + err:
            raise Failed("the password is in the tool's output")
        if "OCM_INSTANCE_MARK" not in out:
            raise Failed("the tool's environment was not printed")
        # ocm redacts the value from what it prints, so look for the variable with any value:
        # gone (1.2.27 on) or set to nothing (1.1.53, whose tools get the plugin's empty
        # override) both keep the password from the tool; anything else does not.
        emptied = []
        for variable in ("OPENCODE_SERVER_PASSWORD", "OPENCODE_PASSWORD"):
            values = re.findall(rf"\b{variable}=([^\s\\\"]*)", out)
            if any(values):
                raise Failed(f"the tool's environment has {variable}")
            if values:
                emptied.append(variable)
        route = self.line.health_route  # 2.x serves /global/health to anyone (its web app)
        request = urllib.request.Request(env["OPENCODE_SERVER_URL"] + route)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
                raise Failed(f"answered {answer.status} without a password")
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise Failed(f"answered {exc.code} without a password") from None
        if emptied:
            return f"{', '.join(emptied)} empty in `env`; 401 without it"
        return "not in `env`; 401 without it"

    def step_timeout(self) -> str:
        code, out, err, secs = self.ocm("run", "--json", "--timeout", "2", "SLEEP 30", timeout=60)
        rec = json.loads(out) if out.strip().startswith("{") else {}
        if code != 11 or rec.get("status") != "timed_out" or secs > 15:
            raise Failed(f"exit {code}, status {rec.get('status')}, {secs:.1f} s: {short(err)}")
        self.session_idle(rec)
        return f"{secs:.1f} s"

    def step_retries(self) -> str:
        code, out, err, secs = self.ocm("run", "--json", "--max-retries", "1", "ERR500 x")
        rec = json.loads(out) if out.strip().startswith("{") else {}
        error = rec.get("error") or {}
        name = error.get("name")
        self.info["ERR500"] = f"{name}, {secs:.1f} s"
        if code != 10 or name not in ("RetriesExhausted", "APIError") or secs > 60:
            raise Failed(f"exit {code}, error {error or short(err)}, after {secs:.1f} s")
        self.session_idle(rec)
        return f"{name} in {secs:.1f} s"

    def step_async_wait(self) -> str:
        sent = self.ocm_json("run", "--async", "--json", "SLEEP 2 async task")
        rec = self.ocm_json("wait", "--json", sent["task_id"])
        if rec["status"] != "completed":
            raise Failed(f"wait: status {rec['status']}, error {rec['error']}")
        return ""

    def step_sessions(self) -> str:
        sessions = self.ocm_json("sessions", "--json")
        ids = {s["id"] for s in sessions}
        if not sessions or (self.text_session and self.text_session not in ids):
            raise Failed(f"{len(sessions)} sessions, the text run's {self.text_session} missing")
        return f"{len(sessions)} sessions"

    def step_monitor(self) -> str:
        out = self.base / "monitor.jsonl"
        with out.open("wb") as handle:
            mon = subprocess.Popen(
                [OCM, "monitor", "--json"],
                env=self.env,
                cwd=self.project,
                stdout=handle,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )

        def events() -> list[dict[str, Any]]:
            return [json.loads(ln) for ln in out.read_text().splitlines() if ln.endswith("}")]

        try:
            poll(
                "monitor attached to both",
                lambda: sum(e["type"] == "ocm.attached" for e in events()) >= 2,
                30,
            )
            rec = self.ocm_json("run", "--json", "SLEEP 1 watched")
            sid = rec["session_id"]

            def seen() -> list[str]:
                return [
                    e["type"]
                    for e in events()
                    if e["type"].startswith("session.")
                    and e.get("properties", {}).get("sessionID") == sid
                ]

            types = poll("the task's session events in the monitor's output", seen, 15)
        finally:
            mon.send_signal(signal.SIGINT)
            try:
                _, err = mon.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                mon.kill()  # our own child
                mon.communicate()
                raise Failed("monitor did not end within 10 s of SIGINT") from None
        if mon.returncode not in (0, 130, -signal.SIGINT):
            raise Failed(f"monitor exit {mon.returncode} on SIGINT: {short(err.decode())}")
        return f"{len(types)} session events, exit {mon.returncode}"

    def step_batch(self) -> str:
        tasks = self.base / "tasks.jsonl"
        lines = [json.dumps({"id": f"b{i}", "prompt": f"batch task {i}"}) for i in range(1, 5)]
        tasks.write_text("\n".join(lines) + "\n")
        summary = self.ocm_json("batch", str(tasks), "--json", timeout=180)
        if summary["counts"] != {"completed": 4}:
            raise Failed(f"counts {summary['counts']}: {[t['error'] for t in summary['tasks']]}")
        return f"{summary['duration_s']:.1f} s"

    def step_restart(self) -> str:
        before = self.ls()["oc-1"]
        self.ocm_json("restart", "oc-1", "--json", timeout=150)
        after = self.ls()["oc-1"]
        healthy = (after["status"], after["healthy"]) == ("running", True)
        # A deliberate restart starts the keeper's count of restarts again.
        renewed = after["pid"] != before["pid"] and after["restarts"] == 0
        if not (healthy and renewed):
            raise Failed(
                f"after: {after['status']}, healthy={after['healthy']}, pid {before['pid']}->"
                f"{after['pid']}, restarts {before['restarts']}->{after['restarts']}"
            )
        return f"restarts {before['restarts']}->{after['restarts']}"

    def step_kill_9(self) -> str:
        before = self.ls()["oc-2"]
        pid = before["pid"]
        if pid not in marked_pids(self.mark):
            raise Failed(f"pid {pid} does not carry this run's marker; not killing it")
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()

        def restarted() -> dict[str, Any] | None:
            now = self.ls().get("oc-2", {})
            ok = now.get("status") == "running" and now.get("healthy") is True
            new = ok and now["pid"] != pid and now["restarts"] > before["restarts"]
            return now if new else None

        after = poll("oc-2 running again with more restarts", restarted, 60, every=0.5)
        took = time.monotonic() - t0
        return f"back in {took:.1f} s, restarts {before['restarts']}->{after['restarts']}"

    def step_bg_process(self) -> str:
        before = set(marked_pids(self.mark))
        rec = self.ocm_json("run", "--json", "BASH: sleep 300 >/dev/null 2>&1 & echo started")
        if rec["status"] != "completed":
            raise Failed(f"status {rec['status']}, error {rec['error']}")
        new = [p for p in set(marked_pids(self.mark)) - before if "sleep" in proc_cmdline(p)]
        if not new:
            raise Failed("no `sleep 300` process left running by the bash tool")
        return f"sleep pid {new[0]}"

    def step_stop(self) -> str:
        stopped = self.ocm_json("stop", "--all", "--json", timeout=120)
        left = {n: i["status"] for n, i in self.ls().items() if i["status"] != "stopped"}
        if left:
            raise Failed(f"not stopped after `ocm stop --all`: {left}")
        return f"{len(stopped)} stopped"

    def step_npm_wrapper(self) -> str:
        """npm's own `bin/opencode` (a Node script up to 1.14.x), as `npm i -g` puts on PATH."""
        modules = next(p for p in Path(self.binary).parents if p.name == "node_modules")
        wrapper = modules / ".bin" / "opencode"
        kind = "Node script" if wrapper.read_bytes()[:2] == b"#!" else "binary"
        try:
            self.ocm_json("start", "wrap", "--opencode", str(wrapper), "--json",
                          "--dir", str(self.project), timeout=180)  # fmt: skip
            exe = server_exe(self.ls()["wrap"]["pid"])
        finally:
            self.ocm("stop", "wrap")
        self.info["npm bin"] = f"{kind}; server exe: `{exe.replace(str(ROOT) + '/', '')}`"
        return f"{kind}, server exe {exe}"

    def step_leftovers(self) -> str:
        try:
            poll("processes carrying the marker gone", lambda: not marked_pids(self.mark), 15)
        except Failed:
            left = [f"{pid} {proc_cmdline(pid)[:120]}" for pid in marked_pids(self.mark)]
            if left:
                raise Failed(f"{len(left)} left: " + "; ".join(left)) from None
        return ""

    def close(self, keep: bool) -> None:
        if keep or any(s == "FAIL" for s, _ in self.results.values()):
            print(f"  {self.version}: files kept in {self.base}", file=sys.stderr)
        else:
            shutil.rmtree(self.base, ignore_errors=True)


# -- the report --------------------------------------------------------------------------------
def cell(version: str, step: str, status: str) -> str:
    if status == "FAIL" and (version, step) in KNOWN:
        return "known"
    return "not offered" if status == "n/a" else status


def write_report(path: Path, runs: list[Smoke], seconds: float) -> None:
    versions = [r.version for r in runs]
    ocm_version = subprocess.run([OCM, "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    lines = [
        "# Compatibility with OpenCode versions",
        "",
        "Generated by `scripts/compat` (the smoke set below, through the `ocm` CLI only, on the",
        "bundled scripted model, offline, two instances per version). Do not edit by hand: rerun",
        "`scripts/compat` (all versions) and commit the result.",
        "",
        f"Last run: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {ocm_version} "
        f"(commit {commit or '?'}), "
        f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {seconds / 60:.1f} min in all. "
        "`ok` passed, `FAIL` failed, `known` a listed known exception, `not offered` the line "
        "has no such capability (see Not offered), `skip` not run.",
        "",
        "| step | " + " | ".join(versions) + " |",
        "|---|" + "---|" * len(versions),
    ]
    for step in STEPS:
        cells = [cell(r.version, step, r.results.get(step, ("skip", ""))[0]) for r in runs]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Per version",
        "",
        "| version | `ocm install --json` path | `ls` PID's exe | npm `.bin/opencode` "
        "(`--opencode`) | ERR500 ends as | run |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.version} | `{r.info['binary'].replace(str(ROOT) + '/', '')}` | "
            f"{r.info.get('server exe', '-')} | {r.info.get('npm bin', '-')} | "
            f"{r.info.get('ERR500', '-')} | "
            f"{r.info.get('seconds', '?')} s |"
        )
    lines += [""] + [f"* {note}" for note in NOTES]
    lines += ["", "## Steps", ""] + [f"* **{s}**: {d}" for s, d in STEPS.items()]
    lines += ["", "## Not offered", ""]
    absent = [(r.version, s, note) for r in runs for s, (st, note) in r.results.items()
              if st == "n/a"]  # fmt: skip
    lines += [f"* **{v} / {s}**: {note}" for v, s, note in absent] or ["None."]
    lines += ["", "## Failures", ""]
    failures = [
        (r.version, s, note) for r in runs for s, (st, note) in r.results.items() if st == "FAIL"
    ]
    for version, step, note in failures:
        why = KNOWN.get((version, step), "Not a known exception: to investigate.")
        lines.append(f"* **{version} / {step}**: {note}\n  {why}")
    if not failures:
        lines.append("None.")
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", default=VERSIONS, metavar="VERSION")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "compatibility.md")
    parser.add_argument("--keep", action="store_true", help="keep every run's temp dir")
    args = parser.parse_args()
    started = time.monotonic()
    runs = []
    for version in args.versions:
        print(f"OpenCode {version}", file=sys.stderr)
        try:
            binary = install(version)
        except Failed as exc:
            smoke = Smoke(version, "(not installed)")
            smoke.results["start"] = ("FAIL", str(exc))
            shutil.rmtree(smoke.base, ignore_errors=True)
            runs.append(smoke)
            continue
        smoke = Smoke(version, binary)
        smoke.run()
        smoke.close(args.keep)
        runs.append(smoke)
    seconds = time.monotonic() - started
    write_report(args.out, runs, seconds)
    failed = [(r.version, s) for r in runs for s, (st, _) in r.results.items() if st == "FAIL"]
    unknown = [f for f in failed if f not in KNOWN]
    ran = {(r.version, s) for r in runs for s, (st, _) in r.results.items() if st == "ok"}
    for stale in sorted(ran & set(KNOWN)):
        print(f"known exception {stale} passed: remove it from KNOWN", file=sys.stderr)
    print(
        f"{len(runs)} versions in {seconds:.0f} s; {len(failed)} failures, {len(unknown)} "
        f"not known; report: {args.out}",
        file=sys.stderr,
    )
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main())
