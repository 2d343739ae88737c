"""Capture what OpenCode 2 answers and emits for the turns the 2.x dialect translates.

Run by hand (not a test) to refresh the fixtures beside it:

    .venv/bin/python tests/client/opencode2/capture.py [SCENARIO ...]

It starts the scripted model and one `opencode serve` (2.x: OCM_TEST_OPENCODE2, or the one
scripts/setup installs) in a private HOME, follows `/api/event`, runs each scenario in a session
of its own and writes `<scenario>.json`: the session, its projected messages (ascending, every
page), the events that name it or its children, and whatever else the scenario read (asks,
diffs, the answers to duplicate sends). Temporary paths become `/w`; no password is written.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from opencode_manager.instances.ports import ephemeral_port  # noqa: E402
from opencode_manager.scripted_model import ScriptedModelServer, opencode_config  # noqa: E402

OUT = Path(__file__).parent


def _binary() -> str:
    explicit = os.environ.get("OCM_TEST_OPENCODE2")
    if explicit:
        return explicit
    found = sorted((ROOT / ".cache" / "ocm" / "opencode").glob("2.*/node_modules/.bin/opencode"))
    if not found:
        raise SystemExit("no OpenCode 2 in .cache/ocm: run scripts/setup")
    return str(found[-1])


class Server:
    """One `opencode serve` (2.x) and an event recorder."""

    def __init__(self, binary: str, base: Path, model_url: str) -> None:
        self.base = base
        self.project = base / "project"
        self.project.mkdir(exist_ok=True)
        if not (self.project / ".git").exists():
            subprocess.run(["git", "init", "-q"], cwd=self.project, check=True)
            (self.project / "README.md").write_text("capture\n")
            (self.project / ".env").write_text("SECRET=not-really\n")
            subprocess.run(["git", "add", "README.md"], cwd=self.project, check=True)
            subprocess.run(
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
                cwd=self.project, check=True,
            )  # fmt: skip
        home = base / "home"
        self.env = {
            **os.environ,
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_STATE_HOME": str(home / ".local/state"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "npm_config_registry": "http://127.0.0.1:9/",
            "OPENCODE_CONFIG_CONTENT": json.dumps(opencode_config(model_url)),
            "OPENCODE_SERVER_PASSWORD": secrets.token_urlsafe(18),
        }
        self.binary = binary
        self.port = ephemeral_port("127.0.0.1")
        self.proc: subprocess.Popen[bytes] | None = None
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            auth=("opencode", self.env["OPENCODE_SERVER_PASSWORD"]),
            timeout=60,
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--hostname", "127.0.0.1", "--port", str(self.port)],
            cwd=self.project, env=self.env, stdin=subprocess.DEVNULL,
            stdout=(self.base / "serve.out").open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.http.get("/api/info").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("OpenCode 2 did not start")
        threading.Thread(target=self._follow, daemon=True).start()
        self.wait(lambda: any(e["type"] == "server.connected" for _, e in self.events), 30)

    def _follow(self) -> None:
        try:
            with self.http.stream("GET", "/api/event", timeout=httpx.Timeout(10, read=None)) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        with self._lock:
                            self.events.append((time.time(), json.loads(line[6:])))
        except httpx.HTTPError:
            return

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @staticmethod
    def wait(cond: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = cond()
            if value:
                return value
            time.sleep(0.05)
        raise SystemExit(f"timed out waiting for {cond}")

    # -- API -------------------------------------------------------------------------------
    def call(self, method: str, path: str, **kw: Any) -> Any:
        response = self.http.request(method, path, **kw)
        if response.status_code >= 400:
            return {"status": response.status_code, "body": response.json()}
        if response.status_code == 204 or not response.content:
            return {"status": response.status_code}
        return response.json()

    def session(self, **body: Any) -> str:
        body.setdefault("location", {"directory": str(self.project)})
        return str(self.call("POST", "/api/session", json=body)["data"]["id"])

    def messages(self, sid: str) -> list[Any]:
        out: list[Any] = []
        cursor: str | None = None
        while True:
            params = {"limit": "50", **({"cursor": cursor} if cursor else {"order": "asc"})}
            page = self.call("GET", f"/api/session/{sid}/message", params=params)
            assert "data" in page, page
            out.extend(page["data"])
            cursor = page.get("cursor", {}).get("next")
            if not page["data"] or not cursor:
                return out

    def ended(self, sid: str, after: float = 0.0, count: int = 1) -> bool:
        kinds = ("session.execution.succeeded", "session.execution.failed",
                 "session.execution.interrupted")  # fmt: skip
        with self._lock:
            return sum(
                1 for t, e in self.events
                if t >= after and e["type"] in kinds and e["data"].get("sessionID") == sid
            ) >= count  # fmt: skip

    def active(self) -> dict[str, Any]:
        return dict(self.call("GET", "/api/session/active")["data"])

    def of(self, sids: set[str], since: float) -> list[dict[str, Any]]:
        """Events after `since` that name one of `sids` (children found on the way)."""
        out = []
        with self._lock:
            events = [e for t, e in self.events if t >= since]
        for event in events:
            text = json.dumps(event)
            data = event.get("data") or {}
            if event["type"] == "session.created" and data.get("parentID") in sids:
                sids.add(data["sessionID"])
            if any(s in text for s in sids):
                out.append(event)
        return out


def run(server: Server, name: str) -> dict[str, Any]:
    s = server
    since = time.time()
    out: dict[str, Any] = {}

    def prompt(sid: str, text: str, mid: str | None = None, **extra: Any) -> Any:
        body: dict[str, Any] = {"text": text, **extra}
        if mid:
            body["id"] = mid
        return s.call("POST", f"/api/session/{sid}/prompt", json=body)

    def turn(sid: str, text: str, mid: str, count: int = 1) -> None:
        out.setdefault("admissions", []).append(prompt(sid, text, mid))
        s.wait(lambda: s.ended(sid, since, count), 120)

    mid = f"msg_ocmcapture{name.replace('-', '')}{secrets.token_hex(3)}"
    if name == "text":
        sid = s.session(title="ocm: text")
        turn(sid, "hello there TEXT", mid)
        out["message_by_id"] = s.call("GET", f"/api/session/{sid}/message/{mid}")
        out["missing_message"] = s.call("GET", f"/api/session/{sid}/message/msg_nosuchthing")
    elif name == "shell":
        sid = s.session(title="ocm: shell")
        turn(sid, "BASH: echo hi", mid)
        out["diff"] = s.call("GET", f"/api/session/{sid}/diff", params={"from": mid})
    elif name == "shell-exit":
        sid = s.session(title="ocm: shell exit")
        turn(sid, 'CALL shell {"command":"echo hi && echo err >&2; exit 3"}', mid)
    elif name == "write":
        sid = s.session(title="ocm: write")
        turn(sid, "WRITE: out.txt", mid)
        out["diff"] = s.wait(
            lambda: s.call("GET", f"/api/session/{sid}/diff", params={"from": mid})["data"], 10
        )
        out["diff_all"] = s.call("GET", f"/api/session/{sid}/diff")
    elif name == "reasoning":
        sid = s.session(title="ocm: reason")
        turn(sid, "REASON about it", mid)
    elif name == "failed":
        sid = s.session(title="ocm: failed")
        turn(sid, "ERR400 please", mid)
    elif name == "unknown-model":
        sid = s.session(title="ocm: nomodel", model={"id": "nope", "providerID": "nope"})
        turn(sid, "hello unknown model", mid)
    elif name == "unknown-agent":
        sid = s.session(title="ocm: noagent", agent="nosuchagent")
        turn(sid, "hello unknown agent", mid)
        out["message_by_id"] = s.call("GET", f"/api/session/{sid}/message/{mid}")
        out["inbox"] = s.call("GET", f"/api/session/{sid}/inbox")
    elif name == "interrupted":
        sid = s.session(title="ocm: interrupted")
        out["admissions"] = [prompt(sid, "SLEEP 30 then", mid)]
        s.wait(lambda: any(e["type"] == "session.text.started" for e in s.of({sid}, since)), 60)
        out["active"] = s.active()
        out["interrupt"] = s.call("POST", f"/api/session/{sid}/interrupt")
        s.wait(lambda: s.ended(sid, since), 60)
        out["interrupt_idle"] = s.call("POST", f"/api/session/{sid}/interrupt")
    elif name == "interrupted-shell":
        sid = s.session(title="ocm: interrupted shell")
        out["admissions"] = [prompt(sid, "BASH: sleep 117", mid)]
        s.wait(lambda: any(e["type"] == "shell.created" for e in s.of({sid}, since)), 60)
        out["interrupt"] = s.call("POST", f"/api/session/{sid}/interrupt")
        s.wait(lambda: s.ended(sid, since), 60)
    elif name in ("permission-once", "permission-reject"):
        ask = [{"action": "shell", "resource": "*", "effect": "ask"}]
        sid = s.session(title=f"ocm: {name}", permissions=ask)
        out["admissions"] = [prompt(sid, "BASH: echo approved", mid)]
        s.wait(lambda: any(e["type"] == "permission.asked" for e in s.of({sid}, since)), 60)
        out["asks"] = s.call("GET", f"/api/session/{sid}/permission")
        out["asks_location"] = s.call(
            "GET", "/api/permission/request", params={"location[directory]": str(s.project)}
        )
        pid = out["asks"]["data"][0]["id"]
        decision = "once" if name == "permission-once" else "reject"
        body: dict[str, Any] = {"decision": decision}
        if decision == "reject":
            body["message"] = "rejected by ocm: nobody is there to approve it"
        out["reply"] = s.call("POST", f"/api/session/{sid}/permission/{pid}/reply", json=body)
        out["reply_again"] = s.call("POST", f"/api/session/{sid}/permission/{pid}/reply",
                                    json=body)  # fmt: skip
        s.wait(lambda: s.ended(sid, since), 60)
    elif name in ("form-answer", "form-dismiss"):
        sid = s.session(title=f"ocm: {name}")
        out["admissions"] = [prompt(sid, "QUESTION please", mid)]
        s.wait(lambda: any(e["type"] == "form.created" for e in s.of({sid}, since)), 60)
        out["asks"] = s.call("GET", f"/api/session/{sid}/form")
        out["asks_location"] = s.call(
            "GET", "/api/form", params={"location[directory]": str(s.project)}
        )
        fid = out["asks"]["data"][0]["id"]
        out["form"] = s.call("GET", f"/api/session/{sid}/form/{fid}")
        if name == "form-answer":
            out["reply"] = s.call("POST", f"/api/session/{sid}/form/{fid}/reply",
                                  json={"answer": {"q0": "Option B"}})  # fmt: skip
        else:
            out["reply"] = s.call("DELETE", f"/api/session/{sid}/form/{fid}")
        s.wait(lambda: s.ended(sid, since), 60)
        out["session_after"] = s.call("GET", f"/api/session/{sid}")
    elif name == "subagent":
        sid = s.session(title="ocm: subagent")
        args = {"agent": "general", "description": "sub task", "prompt": "hello from child"}
        turn(sid, "CALL subagent " + json.dumps(args), mid)
        out["children"] = s.call("GET", "/api/session", params={"parentID": sid})
    elif name == "retry":
        sid = s.session(title="ocm: retry")
        out["admissions"] = [prompt(sid, "ERR500 again", mid)]
        s.wait(
            lambda: sum(e["type"] == "session.retry.scheduled" for e in s.of({sid}, since)) >= 2,
            60,
        )
        out["active"] = s.active()
        out["interrupt"] = s.call("POST", f"/api/session/{sid}/interrupt")
        s.wait(lambda: s.ended(sid, since), 60)
    elif name == "duplicate":
        sid = s.session(title="ocm: duplicate")
        turn(sid, "hello duplicate", mid)
        out["duplicate"] = prompt(sid, "hello duplicate", mid)
        s.wait(lambda: s.ended(sid, since, 2), 60)
        other = s.session(title="ocm: other")
        out["conflict"] = prompt(other, "hello duplicate", mid)
        s.call("DELETE", f"/api/session/{other}")
    elif name == "queued":
        sid = s.session(title="ocm: queued")
        out["admissions"] = [prompt(sid, "parked prompt", mid, resume=False)]
        out["inbox"] = s.call("GET", f"/api/session/{sid}/inbox")
        out["message_by_id"] = s.call("GET", f"/api/session/{sid}/message/{mid}")
        out["messages_before"] = s.messages(sid)
        turn(sid, "second prompt", mid + "b")
    elif name == "lost":
        sid = s.session(title="ocm: lost")
        out["admissions"] = [prompt(sid, "SLEEP 30 lost", mid)]
        s.wait(lambda: any(e["type"] == "session.text.started" for e in s.of({sid}, since)), 60)
        out["events_before_kill"] = s.of({sid}, since)
        s.kill9()
        s.port = s.port  # same port: the data dir is the same
        s.start()
        out["messages_after_restart"] = s.messages(sid)
        out["active_after_restart"] = s.active()
        out["session_after_restart"] = s.call("GET", f"/api/session/{sid}")
        again = time.time()
        out["resend"] = prompt(sid, "SLEEP 30 lost", mid)
        s.wait(lambda: s.ended(sid, again), 60)
    elif name == "listing":
        sid = s.session(title="ocm: listing")
        out["sessions_page"] = s.call("GET", "/api/session", params={"limit": "2"})
        nxt = out["sessions_page"].get("cursor", {}).get("next")
        out["sessions_next"] = s.call("GET", "/api/session", params={"limit": "2", "cursor": nxt})
        where = {"directory": str(s.project), "limit": "3"}
        out["sessions_dir"] = s.call("GET", "/api/session", params=where)
        out["agents"] = s.call("GET", "/api/agent",
                               params={"location[directory]": str(s.project)})  # fmt: skip
        out["mcp"] = s.call("GET", "/api/mcp", params={"location[directory]": str(s.project)})
        out["info"] = s.call("GET", "/api/info")
        out["agent_switch"] = s.call("POST", f"/api/session/{sid}/agent", json={"agent": "plan"})
        out["missing_session"] = s.call("GET", "/api/session/ses_nosuchsession")
        doomed = s.session(title="ocm: doomed")
        out["delete"] = s.call("DELETE", f"/api/session/{doomed}")
        out["delete_again"] = s.call("DELETE", f"/api/session/{doomed}")
    else:
        raise SystemExit(f"unknown scenario {name}")
    out["session"] = s.call("GET", f"/api/session/{sid}")
    out["messages"] = s.messages(sid)
    time.sleep(0.5)  # let the last events of the turn arrive (capture only)
    out["events"] = s.of({sid}, since)
    return out


SCENARIOS = [
    "text", "shell", "shell-exit", "write", "reasoning", "failed", "unknown-model",
    "unknown-agent", "interrupted", "interrupted-shell", "permission-once", "permission-reject",
    "form-answer", "form-dismiss", "subagent", "retry", "duplicate", "queued", "listing", "lost",
]  # fmt: skip


def _scrub(data: Any, base: Path) -> Any:
    text = json.dumps(data, indent=1, sort_keys=False)
    text = text.replace(str(base), "/w")
    return json.loads(text)


def main(argv: list[str]) -> None:
    wanted = argv or SCENARIOS
    with tempfile.TemporaryDirectory() as tmp, ScriptedModelServer() as model:
        base = Path(tmp)
        server = Server(_binary(), base, model.base_url)
        server.start()
        try:
            version = server.call("GET", "/api/info")["version"]
            for name in wanted:
                began = time.monotonic()
                data = run(server, name)
                data = {"opencode": version, "scenario": name, **data}
                password = server.env["OPENCODE_SERVER_PASSWORD"]
                assert password not in json.dumps(data)
                (OUT / f"{name}.json").write_text(json.dumps(_scrub(data, base), indent=1) + "\n")
                print(f"{name}: {time.monotonic() - began:.1f} s, {len(data['events'])} events")
        finally:
            server.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
