"""The raw limit of starting a fleet: `opencode serve --port 0` processes, nothing else.

A minimal script (standard library only), as a user would write it: spawn the servers (all at
once, or one after another with --serial), read each one's listening URL from its output, poll
the line's health route until each answers (1.x ``/global/health`` says ``"healthy":true``;
2.x ``/api/info`` answers 200 once ready, 503 while starting: ``--line 2``), and print one
JSON line: the seconds from the first spawn to all healthy (interpreter start excluded), the
URLs and the PIDs. Then it waits for its standard input to close and ends its servers by their
Popen handles (their process groups).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)")
POLL = 0.01  # seconds between health polls


ROUTES = {1: "/global/health", 2: "/api/info"}
LINE = 1  # set by --line


def healthy(host: str, port: int, auth: dict[str, str]) -> bool:
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", ROUTES[LINE], headers=auth)
        response = conn.getresponse()
        body = response.read()
        if LINE == 2:  # its web app answers any other route with 200 HTML
            return response.status == 200 and body.startswith(b"{")
        return response.status == 200 and b"true" in body
    except OSError:
        return False
    finally:
        conn.close()


def drain(stream: IO[str]) -> None:
    for _ in stream:
        pass


class Server:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.url = ""
        self.error = ""

    def wait_healthy(self, auth: dict[str, str], deadline: float) -> None:
        assert self.proc.stdout is not None
        seen: list[str] = []
        for line in self.proc.stdout:
            match = LISTENING.search(line)
            if match:
                host, port = match.group(1), int(match.group(2))
                break
            seen.append(line.rstrip())
        else:
            self.error = f"server {self.proc.pid} exited before listening: {seen[-5:]}"
            return
        threading.Thread(target=drain, args=(self.proc.stdout,), daemon=True).start()
        while not healthy(host, port, auth):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.error = f"server {self.proc.pid} never became healthy"
                return
            time.sleep(POLL)  # polling health with a deadline
        self.url = f"http://{host}:{port}"

    def end(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own group: started with a session
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_fleet")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--serial", action="store_true", help="one after another")
    parser.add_argument(
        "--private-dirs",
        metavar="DIR",
        help="give each server fresh XDG data/state/cache dirs under DIR",
    )
    parser.add_argument("--line", type=int, choices=sorted(ROUTES), default=1)
    parser.add_argument("opencode")
    args = parser.parse_args()
    global LINE
    LINE = args.line
    password = os.environ.get("OPENCODE_SERVER_PASSWORD", "")
    token = base64.b64encode(f"opencode:{password}".encode()).decode()
    auth = {"Authorization": f"Basic {token}"} if password else {}
    argv = [args.opencode, "serve", "--hostname", "127.0.0.1", "--port", "0"]

    def env_for(i: int) -> dict[str, str]:
        env = dict(os.environ)
        if args.private_dirs:
            for kind in ("DATA", "STATE", "CACHE"):
                path = Path(args.private_dirs) / f"s{i}" / kind.lower()
                path.mkdir(parents=True, exist_ok=True)
                env[f"XDG_{kind}_HOME"] = str(path)
        return env

    servers: list[Server] = []
    try:
        start = time.perf_counter()
        deadline = time.monotonic() + 120
        if args.serial:
            for i in range(args.count):
                servers.append(Server(argv, env_for(i)))
                servers[-1].wait_healthy(auth, deadline)
                if servers[-1].error:
                    raise SystemExit(servers[-1].error)
        else:
            servers = [Server(argv, env_for(i)) for i in range(args.count)]
            waiters = [
                threading.Thread(target=s.wait_healthy, args=(auth, deadline)) for s in servers
            ]
            for waiter in waiters:
                waiter.start()
            for waiter in waiters:
                waiter.join()
            failed = [s.error for s in servers if s.error]
            if failed:
                raise SystemExit("; ".join(failed))
        elapsed = time.perf_counter() - start
        print(
            json.dumps(
                {
                    "elapsed_s": elapsed,
                    "urls": [s.url for s in servers],
                    "pids": [s.proc.pid for s in servers],
                }
            ),
            flush=True,
        )
        sys.stdin.read()  # hold the fleet until the caller closes our stdin
    finally:
        for server in servers:
            server.end()


if __name__ == "__main__":
    main()
