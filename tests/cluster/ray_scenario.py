"""A fleet across two Ray nodes on this machine, end to end, as `ocm` users drive it.

Run inside a private network namespace (`unshare -n`), where Ray stays on loopback: a head
node ("host A") and a second node ("host B", its own resources and OCM_HOME), both started
here by PID; the scripted model; and `ocm` as the driver with an OCM_HOME of its own.
Writes what it saw as JSON to the file named by argv[1] (the test asserts on it); any
failure is raised, and everything it started is stopped by PID in `finally` (SIGTERM, which
the test sends when it gives up, goes through `finally` too).

With OCM_TEST_RAY_FIGURES=1 it also starts 4 local instances and runs the same batch on
them, for docs/scale-out.md's comparison (figures only: nothing about the cluster is proved
there, so the test does not pay for it by default).

    python tests/cluster/ray_scenario.py OUT.json   # inside: unshare -n (lo up)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from opencode_manager.scripted_model import ScriptedModelServer, opencode_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: tests/
from helpers import patient, wait_for

HEAD_PORT = 46379
RAY = str(Path(sys.executable).with_name("ray"))


def log(message: str) -> None:
    print(f"[scenario {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Scenario:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.model = ScriptedModelServer().start()
        self.config = json.dumps(opencode_config(self.model.base_url))
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.homes = {h: base / f"home-{h}" for h in ("A", "B", "driver")}
        self.project = base / "project"
        self.project.mkdir()
        self.out: dict[str, Any] = {}

    def env(self, home: str) -> dict[str, str]:
        user = self.base / f"user-{home}"
        env = dict(os.environ)
        env.update(
            OCM_HOME=str(self.homes[home]),
            HOME=str(user),
            XDG_CONFIG_HOME=str(user / ".config"),
            XDG_DATA_HOME=str(user / ".local" / "share"),
            XDG_STATE_HOME=str(user / ".local" / "state"),
            XDG_CACHE_HOME=str(user / ".cache"),
            RAY_USAGE_STATS_ENABLED="0",
            # Offline: OpenCode's plugin install and catalogue fetch fail at once.
            npm_config_registry="http://127.0.0.1:9/",
            npm_config_fetch_retries="0",
            OPENCODE_DISABLE_MODELS_FETCH="1",
        )
        return env

    def ocm(self, *args: str, home: str = "driver", check: bool = True) -> Any:
        began = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "opencode_manager", *args],
            capture_output=True, text=True, env=self.env(home), timeout=600, check=False,
        )  # fmt: skip
        took = time.monotonic() - began
        log(f"ocm {' '.join(args[:4])} -> {proc.returncode} in {took:.1f} s")
        if check and proc.returncode != 0:
            raise AssertionError(f"ocm {' '.join(args)}: rc {proc.returncode}\n{proc.stderr}")
        if "--json" in args and proc.stdout.strip():
            try:
                return json.loads(proc.stdout)
            except ValueError:  # JSON lines (`ocm logs --json`)
                return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        return proc

    # -- Ray nodes, started and stopped by PID ----------------------------------------------
    def start_node(self, host: str, *, head: bool, ports: int) -> None:
        common = [
            "--num-cpus", "2", "--resources", json.dumps({f"host{host}": 1}),
            "--node-manager-port", str(ports), "--object-manager-port", str(ports + 1),
            "--runtime-env-agent-port", str(ports + 2), "--metrics-export-port", str(ports + 3),
            "--dashboard-agent-listen-port", str(ports + 4),
            "--dashboard-agent-grpc-port", str(ports + 5),
            "--min-worker-port", str(ports + 10), "--max-worker-port", str(ports + 60),
            "--disable-usage-stats", "--block",
        ]  # fmt: skip
        if head:
            argv = [RAY, "start", "--head", "--port", str(HEAD_PORT), "--include-dashboard",
                    "false", "--temp-dir", str(self.base / "ray"),
                    *common]  # fmt: skip
        else:
            argv = [RAY, "start", "--address", f"127.0.0.1:{HEAD_PORT}", *common]
        logfile = (self.base / f"ray-{host}.log").open("wb")
        self.nodes[host] = subprocess.Popen(
            argv, env=self.env(host), stdout=logfile, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def stop_node(self, host: str) -> None:
        proc = self.nodes.pop(host, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    def check_nodes(self) -> None:
        for host, proc in self.nodes.items():
            if proc.poll() is not None:
                tail = (self.base / f"ray-{host}.log").read_text()[-3000:]
                raise AssertionError(f"Ray node {host} exited ({proc.returncode}):\n{tail}")

    # -- the story --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        self.start_node("A", head=True, ports=46100)
        self.start_node("B", head=False, ports=46200)
        address = f"127.0.0.1:{HEAD_PORT}"

        def head_up() -> bool:
            self.check_nodes()
            return _listening(HEAD_PORT)

        wait_for(head_up, timeout=60, message="the Ray head")

        def both() -> Any:
            self.check_nodes()
            r = self.ocm("cluster", "up", "--address", address, "--json", check=False)
            return isinstance(r, dict) and len(r["hosts"]) == 2 and r

        up: Any = wait_for(both, timeout=120, message="two nodes with their agents")
        self.out["up"] = up
        self.out["cluster_ready_s"] = round(time.monotonic() - began, 1)
        homes = {h["node_id"]: h["home"] for h in up["hosts"]}
        node_of = {home: node for node, home in homes.items()}
        node_b = node_of[str(self.homes["B"])]

        # A start that outlives the driver's deadline on host B: undone on both hosts.
        agent_b = next(int(h["agent_pid"]) for h in up["hosts"] if h["node_id"] == node_b)
        t0 = time.monotonic()
        self.failing_start(agent_b)
        self.out["failed_start_s"] = round(time.monotonic() - t0, 1)

        t0 = time.monotonic()
        started = self.ocm(
            "start", "--cluster", "-n", "4", "--spread", "--dir", str(self.project),
            "--env", f"OPENCODE_CONFIG_CONTENT={self.config}",
            "--env", "OPENCODE_DISABLE_MODELS_FETCH=1", "--json",
        )  # fmt: skip
        self.out["start_4_s"] = round(time.monotonic() - t0, 2)
        self.out["started"] = started
        self.out["ls"] = self.ocm("ls", "--json", "--no-foreign")
        self.out["cluster_ls"] = self.ocm("cluster", "ls", "--json")
        self.out["status"] = self.ocm("status", started[0]["name"], "--json", check=False)
        logs = self.ocm("logs", started[0]["name"], "-n", "5", "--json", check=False)
        self.out["logs"] = logs if isinstance(logs, list) else []

        # A batch of 12 across both hosts.
        tag = uuid.uuid4().hex[:8]
        first = self.base / "first.jsonl"
        first.write_text("".join(
            json.dumps({"id": f"b{i}", "prompt": f"{tag} spread {i} SLEEP 0.5"}) + "\n"
            for i in range(12)
        ))  # fmt: skip
        t0 = time.monotonic()
        self.out["batch"] = self.ocm("batch", str(first), "--json", check=False)
        if (
            not isinstance(self.out["batch"], dict)
            or self.out["batch"]["counts"].get("completed") != 12
        ):
            raise AssertionError(f"the first batch: {json.dumps(self.out['batch'])[:4000]}")
        self.out["batch_12_s"] = round(time.monotonic() - t0, 2)

        # Stop and restart one instance through its agent.
        one = started[0]["name"]
        self.out["stopped"] = self.ocm("stop", one, "--json")
        self.out["ls_stopped"] = self.ocm("ls", "--json", "--no-foreign")
        self.out["restarted"] = self.ocm("restart", one, "--json")

        # Kill host B's agent: `cluster up` recreates it, and it adopts B's instances.
        host_b = next(h for h in self.out["cluster_ls"]["hosts"] if h["node_id"] == node_b)
        os.kill(int(host_b["agent_pid"]), signal.SIGKILL)
        wait_for(lambda: not _alive(int(host_b["agent_pid"])), timeout=30, message="the agent")
        self.out["after_agent_kill"] = self.ocm("cluster", "up", "--json")
        b_servers = self.ocm("ls", "--json", "--no-foreign", home="B")
        self.out["b_servers"] = b_servers

        # Lose host B mid-batch: its unfinished tasks finish on host A.
        second = self.base / "second.jsonl"
        second.write_text("".join(
            json.dumps({"id": f"m{i}", "prompt": f"{tag} moving {i} SLEEP 4"}) + "\n"
            for i in range(8)
        ))  # fmt: skip
        batch = subprocess.Popen(
            [sys.executable, "-m", "opencode_manager", "batch", str(second), "--json",
             "--per-instance", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env("driver"),
        )  # fmt: skip
        b_names = {i["name"] for i in b_servers}
        b_ports = {i["port"] for i in b_servers}
        wait_for(
            lambda: sum(f"{tag} moving" in str(e["last_user_text"])
                        for e in self.model.requests.entries() if e["has_tools"]) >= 4,
            timeout=120, message="the second batch's first turns",
        )  # fmt: skip
        self.out["lost_at"] = time.time()
        for info in b_servers:  # the host dies: its processes at once (keeper first, so
            for pid in (info.get("keeper_pid"), info.get("pid")):  # none restarts)...
                if pid and _alive(int(pid)):
                    os.kill(int(pid), signal.SIGKILL)
        self.stop_node("B")  # ...and its node leaves the cluster
        out, errors = batch.communicate(timeout=patient(600))
        self.out["moved_batch_rc"] = batch.returncode
        self.out["moved_batch"] = json.loads(out) if out.strip() else {"stderr": errors}
        self.out["b_names"] = sorted(b_names)
        self.out["b_ports"] = sorted(b_ports)
        self.out["after_loss"] = self.ocm("cluster", "up", "--json")
        self.out["ls_after_loss"] = self.ocm("ls", "--json", "--no-foreign")
        self.out["sent"] = [
            str(e["last_user_text"]) for e in self.model.requests.entries()
            if e["has_tools"] and tag in str(e["last_user_text"])
        ]  # fmt: skip

        # Teardown through the agents, then the Ray nodes by PID.
        self.out["down"] = self.ocm("cluster", "down", "--json")
        if os.environ.get("OCM_TEST_RAY_FIGURES") == "1":
            self.baseline(first)
        return self.out

    def baseline(self, first: Path) -> None:
        """The same machine, same run: 4 local instances and the same 12 tasks."""
        t0 = time.monotonic()
        self.ocm(
            "start", "-n", "4", "--dir", str(self.project),
            "--env", f"OPENCODE_CONFIG_CONTENT={self.config}",
            "--env", "OPENCODE_DISABLE_MODELS_FETCH=1", "--json",
        )  # fmt: skip
        self.out["local_start_4_s"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        local = self.ocm("batch", str(first), "--json", check=False)
        self.out["local_batch_12_s"] = round(time.monotonic() - t0, 2)
        self.out["local_batch_completed"] = local["counts"].get("completed")
        self.ocm("stop", "--all", "--json")

    def failing_start(self, agent_b: int) -> None:
        """`ocm start --cluster -n 2 --spread` whose agent on host B stops answering once its
        start has begun (SIGSTOP: a loaded host, a swap storm), while host A's start goes on
        and succeeds. The driver's deadline passes; it must undo the start on both hosts and
        leave nothing running that no registry lists. B answers again once A's part is undone
        (so its start and the undo run in whatever order Ray delivers them)."""
        argv = [
            sys.executable, "-m", "opencode_manager", "start", "--cluster", "-n", "2",
            "--spread", "--timeout", "10", "--dir", str(self.project),
            "--env", f"OPENCODE_CONFIG_CONTENT={self.config}",
            "--env", "OPENCODE_DISABLE_MODELS_FETCH=1", "--json",
        ]  # fmt: skip
        env = {**self.env("driver"), "OCM_CLUSTER_CALL_TIMEOUT": "3"}
        began = time.monotonic()
        driver = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        seen: dict[str, dict[str, Any]] = {}  # every row the hosts held, with its PIDs

        def rows(host: str) -> set[str]:
            found = _rows(self.homes[host])
            for name, row in found.items():
                seen.setdefault(f"{host}:{name}", {}).update(
                    {k: v for k, v in row.items() if v is not None}
                )
            return set(found)

        def driving(condition: Any) -> Any:
            """The condition, or the driver's own words if it ended before it held."""

            def check() -> Any:
                value = condition()
                if not value and driver.poll() is not None:
                    out, errors = driver.communicate()
                    raise AssertionError(
                        f"the failing start ended (rc {driver.returncode}) before the "
                        f"scenario could stall it: {errors[-3000:] or out[-3000:]}"
                    )
                return value

            return check

        frozen = False
        try:
            wait_for(driving(lambda: rows("B")), timeout=120, interval=0.02, message="B's start")
            os.kill(agent_b, signal.SIGSTOP)
            frozen = True
            self.out["b_frozen_at_s"] = round(time.monotonic() - began, 1)
            wait_for(lambda: rows("A"), timeout=60, interval=0.05, message="A's start")
            wait_for(lambda: not rows("A"), timeout=120, interval=0.1, message="A's undo")
        finally:
            if frozen:
                os.kill(agent_b, signal.SIGCONT)
            if driver.poll() is None and not frozen:
                driver.kill()  # it never got as far as the stall: do not leave it behind
        out, errors = driver.communicate(timeout=patient(300))
        self.out["failed_start"] = {
            "rc": driver.returncode, "stdout": out, "stderr": errors,
            "took_s": round(time.monotonic() - began, 1), "seen": seen,
        }  # fmt: skip

        def keepers() -> list[str]:
            """Keeper processes of hosts A and B still alive, by instance name."""
            found = []
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                text = [a.decode(errors="replace") for a in argv if a]
                homes = {str(self.homes["A"]), str(self.homes["B"])}
                if "opencode_manager.keeper" in text and homes & set(text) and _alive(int(entry)):
                    found.append(text[-1])
            return found

        pids = [
            int(row[k]) for row in seen.values() for k in ("keeper_pid", "server_pid") if row.get(k)
        ]
        wait_for(
            lambda: not keepers() and not [p for p in pids if _alive(p)],
            timeout=60, message="no keeper or server of the failed start",
        )  # fmt: skip
        self.out["failed_start"].update(
            driver_rows=self.ocm("ls", "--json", "--no-foreign"),
            a_rows=self.ocm("ls", "--json", "--no-foreign", home="A"),
            b_rows=self.ocm("ls", "--json", "--no-foreign", home="B"),
            pids=pids,
        )

    def close(self) -> None:
        for host in list(self.nodes):
            self.stop_node(host)
        for home in ("A", "B"):  # anything of a lost host's fleet, by its registry's PIDs
            self.ocm("stop", "--all", home=home, check=False)
        self.model.stop()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _rows(home: Path) -> dict[str, dict[str, Any]]:
    """A host registry's instance rows, read-only (WAL: beside its writers)."""
    import sqlite3

    path = home / "registry.db"
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        db.row_factory = sqlite3.Row
        found = db.execute("SELECT name, state, keeper_pid, server_pid FROM instances")
        return {r["name"]: dict(r) for r in found}
    except sqlite3.Error:
        return {}
    finally:
        db.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is not alive
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"


def _stopped(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # through `finally`: everything started is stopped


def main() -> None:
    signal.signal(signal.SIGTERM, _stopped)
    target = Path(sys.argv[1])
    with tempfile.TemporaryDirectory(prefix="ocm-ray-") as tmp:
        scenario = Scenario(Path(tmp))
        try:
            result = scenario.run()
        finally:
            scenario.close()
    target.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
