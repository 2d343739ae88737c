"""5. Monitor: events/s through the merged monitor from replayed streams, latency, memory; then
`ocm monitor` on live instances under a batch, its events counted against the servers' own."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..env import ROOT, BenchEnv, wait_for_line
from ..measure import BenchError, Series, check, run_command
from ..plan import Plan
from ..report import Figure

EVENTS_GOAL = 5_000
LATENCY_GOAL_MS = 50.0
FLAT_TOLERANCE = 0.10  # RSS at the last event within +10% of RSS after the warm-up
WARMUP_S = 1.0  # buffers and caches fill in the first second (or first 20% of a short run)


@dataclass
class Run:
    received: int
    expected: int
    seconds: float
    latency_ms: dict[str, float]
    rss: list[tuple[float, int]]  # (wall time, bytes)
    first: float
    last: float

    @property
    def rate(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def rss_at(self, when: float) -> int:
        """The last RSS sample taken at or before `when` (the first one if none)."""
        before = [rss for t, rss in self.rss if t <= when]
        return before[-1] if before else self.rss[0][1]

    @property
    def start_mb(self) -> float:
        return self.rss_at(self.first) / 2**20

    @property
    def warm_mb(self) -> float:
        return self.rss_at(self.first + min(WARMUP_S, 0.2 * (self.last - self.first))) / 2**20

    @property
    def end_mb(self) -> float:
        return self.rss_at(self.last) / 2**20

    @property
    def peak_mb(self) -> float:
        return max(rss for _, rss in self.rss) / 2**20


def _servers(
    env: BenchEnv, tag: str, streams: int, count: int, rate: float
) -> list[dict[str, Any]]:
    worker_env = {**env.env, "PYTHONPATH": str(ROOT)}
    started = []
    for i in range(streams):
        out = env.base / f"fake-sse-{tag}-{i}.out"
        proc = env.spawn(
            [
                env.python,
                "-m",
                "opencode_manager.testing.sse",
                "serve",
                "--count",
                str(count),
                "--rate",
                str(rate),
            ],
            out,
            env=worker_env,
        )
        started.append((proc, out))
    spec = []
    for i, (proc, out) in enumerate(started):
        url = wait_for_line(out, r"listening on (http://\S+)", proc).group(1)
        spec.append({"name": f"fake-{i + 1}", "url": url, "pid": proc.pid, "proc": proc})
    return spec


def _probe(
    env: BenchEnv, servers: list[dict[str, Any]], expect: int, timeout: float, *, bare: bool = False
) -> Run:
    spec = json.dumps([{k: s[k] for k in ("name", "url", "pid")} for s in servers])
    result = subprocess.run(
        [
            env.python,
            "-m",
            "bench.monitor_probe",
            "--expect",
            str(expect),
            "--timeout",
            str(timeout),
            *(["--bare"] if bare else []),
            spec,
        ],
        env={**env.env, "PYTHONPATH": str(ROOT)},
        cwd=str(env.project),
        capture_output=True,
        text=True,
        timeout=timeout + 60,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(
            f"monitor probe exited {result.returncode}: {result.stderr.strip()[-400:]}"
        )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    if not data["received"]:
        raise BenchError("the monitor delivered no replayed event")
    return Run(
        data["received"],
        expect,
        data["last"] - data["first"],
        data["latency_ms"],
        [(t, rss) for t, rss in data["rss"]],
        data["first"],
        data["last"],
    )


def _phase(
    env: BenchEnv, tag: str, plan: Plan, count: int, rate: float, runs: int, timeout: float
) -> tuple[list[Run], list[Run]]:
    """Monitor runs and bare-reader runs, interleaved, against the same fake servers."""
    servers = _servers(env, tag, plan.monitor_streams, count, rate)
    expect = count * plan.monitor_streams
    monitor_runs, bare_runs = [], []
    try:
        for _ in range(runs):
            monitor_runs.append(_probe(env, servers, expect, timeout))
            bare_runs.append(_probe(env, servers, expect, timeout, bare=True))
        return monitor_runs, bare_runs
    finally:
        for server in servers:
            env.end(server["proc"])


def _memory_table(run: Run) -> list[str]:
    points = 10
    span = run.last - run.first
    return [
        "Monitor RSS over the last fixed-rate run:",
        "",
        "| t (s) | " + " | ".join(f"{span * i / points:.1f}" for i in range(points + 1)) + " |",
        "|---|" + "---:|" * (points + 1),
        "| RSS (MB) | "
        + " | ".join(
            f"{run.rss_at(run.first + span * i / points) / 2**20:.1f}" for i in range(points + 1)
        )
        + " |",
        "",
    ]


def run(env: BenchEnv, plan: Plan) -> Figure:
    streams, count = plan.monitor_streams, plan.monitor_events
    paced_count = int(plan.monitor_rate * plan.monitor_seconds)
    figure = Figure(
        5,
        f"Monitor: {streams} replayed event streams merged",
        commands=[
            f"python -m opencode_manager.testing.sse serve --count {count}   # x{streams}: as fast "
            "as possible",
            f"python -m opencode_manager.testing.sse serve --count {paced_count} --rate "
            f"{plan.monitor_rate}   "
            f"# x{streams}: fixed rate, {plan.monitor_seconds:g} s",
            "python -m bench.monitor_probe --expect N SPEC   # Monitor(fleet_of(...)).events()",
            "python -m bench.monitor_probe --bare --expect N SPEC   # floor: a bare httpx-sse "
            "reader per stream",
        ],
    )
    fast, fast_bare = _phase(env, "fast", plan, count, 0.0, plan.runs, timeout=120.0)
    paced, paced_bare = _phase(
        env,
        "paced",
        plan,
        paced_count,
        plan.monitor_rate,
        plan.batch_runs,
        timeout=plan.monitor_seconds + 60.0,
    )

    figure.add(
        "fast_rate",
        "Monitor: merged events/s, as fast as possible",
        "events/s",
        Series([r.rate for r in fast]),
        baseline="bare_rate",
    )
    figure.add(
        "bare_rate",
        "bare readers: events/s, as fast as possible",
        "events/s",
        Series([r.rate for r in fast_bare]),
    )
    figure.add(
        "paced_rate",
        f"Monitor: events/s, offered {streams * plan.monitor_rate:,}/s",
        "events/s",
        Series([r.rate for r in paced]),
    )
    for name in ("p50", "p95", "p99", "max"):
        figure.add(
            f"lat_{name}",
            f"Monitor: latency {name}, fixed rate",
            "ms",
            Series([r.latency_ms[name] for r in paced]),
            baseline=f"bare_{name}",
        )
    for name in ("p50", "p95", "p99", "max"):
        figure.add(
            f"bare_{name}",
            f"bare readers: latency {name}, fixed rate",
            "ms",
            Series([r.latency_ms[name] for r in paced_bare]),
        )
    figure.add(
        "fast_lat",
        "Monitor: latency p50, as fast as possible (queueing)",
        "ms",
        Series([r.latency_ms["p50"] for r in fast]),
    )
    figure.add(
        "mem_start",
        "monitor RSS at the first event, fixed rate",
        "MB",
        Series([r.start_mb for r in paced]),
    )
    figure.add(
        "mem_warm",
        "monitor RSS after the warm-up, fixed rate",
        "MB",
        Series([r.warm_mb for r in paced]),
    )
    figure.add(
        "mem_end",
        "monitor RSS at the last event, fixed rate",
        "MB",
        Series([r.end_mb for r in paced]),
        baseline="mem_warm",
    )
    figure.add(
        "mem_fast_start",
        "monitor RSS at the first event, as fast as possible",
        "MB",
        Series([r.start_mb for r in fast]),
    )
    figure.add(
        "mem_fast_warm",
        "monitor RSS after the warm-up, as fast as possible",
        "MB",
        Series([r.warm_mb for r in fast]),
    )
    figure.add(
        "mem_fast_end",
        "monitor RSS at the last event, as fast as possible",
        "MB",
        Series([r.end_mb for r in fast]),
        baseline="mem_fast_warm",
    )
    figure.add(
        "mem_peak", "monitor peak RSS, any run", "MB", Series([r.peak_mb for r in [*fast, *paced]])
    )
    figure.extra += _memory_table(paced[-1])

    rate = figure.row("fast_rate").series.median
    figure.goal(
        f">= {EVENTS_GOAL:,} events/s merged from {streams} streams",
        f"{rate:,.0f} events/s",
        rate >= EVENTS_GOAL,
    )
    growth = max(r.end_mb / r.warm_mb - 1 for r in [*paced, *fast])
    figure.goal(
        f"flat memory (RSS at the last event within +{FLAT_TOLERANCE:.0%} of RSS "
        "after the warm-up, every run)",
        f"largest growth {growth:+.1%}",
        growth <= FLAT_TOLERANCE,
    )
    p95 = figure.row("lat_p95").series.median
    bare_p95 = figure.row("bare_p95").series.median
    figure.goal(
        f"< {LATENCY_GOAL_MS:g} ms added latency (p95, fixed rate)",
        f"{p95:.1f} ms (bare readers: {bare_p95:.1f} ms)",
        p95 < LATENCY_GOAL_MS,
    )
    delivered = [f"{r.received:,}/{r.expected:,}" for r in [*fast, *paced]]
    figure.notes += [
        "In-process: `opencode_manager.observe.monitor.Monitor` over a stub fleet whose records "
        "point "
        "at the fake servers (state running, the fake server's real PID and start time), in "
        "its own Python process; the fake servers are separate processes.",
        "Events/s: replayed events received over the seconds between the first and the last "
        "one. Latency: `Received.received_at` minus the `sent` time the server wrote into the "
        "event. RSS: the monitor process's own, sampled every 0.25 s; the warm-up is the "
        f"first {WARMUP_S:g} s after the first event (the first 20% of a shorter run).",
        f"Events delivered per Monitor run (received/sent): {', '.join(delivered)}.",
        "As fast as possible, latency measures queueing in the socket buffers, not the "
        "monitor; the latency goal is judged at the fixed rate, on the monitor's latency "
        "(server write to `Received`), with the bare readers' latency shown as its floor.",
        "Bare readers: the same streams read by one `httpx_sse.aconnect_sse` loop each, "
        "`json.loads` per event, no merging, no queue, in the same kind of process; runs "
        "alternate Monitor and bare readers. The probes keep their counts and latencies in "
        "memory allocated before the first event.",
    ]
    _live(env, plan, figure)
    return figure


# -- `ocm monitor` on live instances under a batch -----------------------------------------
PER_CONNECTION = ("server.connected", "server.heartbeat")  # each subscriber gets its own
QUIET_S = 2.0  # after the batch: no new monitor output for this long means the events are in


@dataclass
class LiveRun:
    server: dict[str, dict[str, int]]  # instance -> type -> frames on the server's stream
    monitor: dict[str, dict[str, int]]  # instance -> type -> events `ocm monitor` printed
    cpu_s: float  # CPU of the monitor process from attached to stopped
    extra: dict[str, int]  # frames left out of the comparison, by type

    @property
    def events(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.server.values())

    @property
    def delivered(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.monitor.values())

    @property
    def lost(self) -> int:
        return sum(
            max(0, count - self.monitor.get(name, {}).get(kind, 0))
            for name, kinds in self.server.items()
            for kind, count in kinds.items()
        )

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu_s / self.delivered * 1000 if self.delivered else math.nan


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _monitor_counts(path: Path) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """What `ocm monitor --json` printed, by instance and type; its own ocm.* apart."""
    counts: dict[str, dict[str, int]] = {}
    own: dict[str, int] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("{"):
            continue  # not an event: its one line on Ctrl-C (exit 130), or a blank one
        item = json.loads(line)
        kind = item["type"]
        if kind.startswith("ocm.") or kind in PER_CONNECTION:
            own[f"monitor {kind}"] = own.get(f"monitor {kind}", 0) + 1
            continue
        per = counts.setdefault(item["instance"], {})
        per[kind] = per.get(kind, 0) + 1
    return counts, own


def _live_run(env: BenchEnv, spec: list[dict[str, str]], tasks_file: Path, n: int) -> LiveRun:
    names = [s["name"] for s in spec]
    referee = subprocess.Popen(
        [env.python, "-m", "bench.monitor_probe", "--live"],
        env={**env.env, "PYTHONPATH": str(ROOT)},
        cwd=str(env.project),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    out = env.base / "live-monitor.jsonl"
    out.unlink(missing_ok=True)
    monitor = env.spawn([env.ocm, "monitor", "--json", *names], out)
    try:
        assert referee.stdin is not None
        assert referee.stdout is not None
        referee.stdin.write(json.dumps(spec) + "\n")
        referee.stdin.flush()
        if referee.stdout.readline().strip() != "ready":
            raise BenchError("the referee's streams did not connect")
        for name in names:  # every instance attached before the batch starts
            wait_for_line(out, rf'"instance": "{re.escape(name)}", [^\n]*"ocm\.attached"', monitor)
        proc = psutil.Process(monitor.pid)
        cpu_start = _cpu(proc)
        result = check(
            run_command(
                [
                    env.ocm,
                    "batch",
                    str(tasks_file),
                    "--json",
                    *(arg for name in names for arg in ("-i", name)),
                ],
                env=env.env,
                cwd=env.project,
                gnu_time=False,
                timeout=900,
            ),
            "ocm batch (under the monitor)",
        )
        if json.loads(result.stdout)["counts"].get("completed", 0) != n:
            raise BenchError(
                f"the batch under the monitor did not complete: {result.stdout[-300:]}"
            )
        size, quiet_since, deadline = -1, time.monotonic(), time.monotonic() + 60
        while time.monotonic() - quiet_since < QUIET_S and time.monotonic() < deadline:
            if out.stat().st_size != size:
                size, quiet_since = out.stat().st_size, time.monotonic()
            time.sleep(0.1)  # polling the monitor's output until it is quiet, with a deadline
        cpu_s = _cpu(proc) - cpu_start
    finally:
        env.end(monitor)  # SIGTERM: the monitor stops watching and exits
        if referee.stdin is not None:
            referee.stdin.close()
    assert referee.stdout is not None
    server_out = referee.stdout.read()  # the counts, printed once its stdin closed
    referee.wait(30)
    if referee.returncode != 0:
        raise BenchError(f"the referee exited {referee.returncode}")
    raw: dict[str, dict[str, int]] = json.loads(server_out.strip().splitlines()[-1])
    monitor_counts, extra = _monitor_counts(out)
    server: dict[str, dict[str, int]] = {}
    for name, kinds in raw.items():
        for kind, count in kinds.items():
            if kind == "sync" or kind in PER_CONNECTION:
                extra[f"server {kind}"] = extra.get(f"server {kind}", 0) + count
            else:
                server.setdefault(name, {})[kind] = count
    return LiveRun(server, monitor_counts, cpu_s, extra)


def _live(env: BenchEnv, plan: Plan, figure: Figure) -> None:
    count, n = plan.live_instances, plan.live_tasks
    rows = env.start_fleet(count, "--port-range", "48100-48999")
    names = [row["name"] for row in rows]
    try:
        spec = []
        for row in rows:
            creds = env.credentials(row["name"])
            spec.append(
                {
                    "name": row["name"],
                    "url": row["url"],
                    "username": creds["OPENCODE_SERVER_USERNAME"],
                    "password": creds["OPENCODE_SERVER_PASSWORD"],
                }
            )
        tasks_file = env.base / "live-tasks.jsonl"
        tasks_file.write_text(
            "".join(json.dumps({"prompt": f"bench task {i}"}) + "\n" for i in range(n))
        )
        runs = [_live_run(env, spec, tasks_file, n) for _ in range(plan.batch_runs)]
    finally:
        env.ocm_run("stop", *names, timeout=120)
    figure.title += f"; `ocm monitor` on {count} live instances under a batch"
    figure.commands += [
        f"ocm monitor --json {' '.join(names)}   # {count} live instances, while:",
        f"ocm batch tasks.jsonl --json -i ...   # {n} tasks over those instances",
        "python -m bench.monitor_probe --live < spec   # the referee: its own /global/event "
        "subscription to each server, frames counted per instance and type",
    ]
    figure.add("live_events", f"events on the {count} servers' streams, per batch", "events",
               Series([r.events for r in runs]))  # fmt: skip
    figure.add("live_delivered", "events printed by `ocm monitor --json`", "events",
               Series([r.delivered for r in runs]))  # fmt: skip
    figure.add("live_lost", "events lost by `ocm monitor`", "events",
               Series([r.lost for r in runs]))  # fmt: skip
    figure.add("live_cpu", "`ocm monitor` CPU per 1,000 events", "s",
               Series([r.cpu_per_1000 for r in runs]))  # fmt: skip
    last = runs[-1]
    kinds = sorted({k for per in last.server.values() for k in per})
    figure.extra += [
        f"`ocm monitor` on {count} live instances, last run: events per instance "
        "(server's stream / printed by the monitor):",
        "",
        "| type | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        *(
            f"| {kind} | "
            + " | ".join(
                f"{last.server.get(name, {}).get(kind, 0)} / "
                f"{last.monitor.get(name, {}).get(kind, 0)}"
                for name in names
            )
            + " |"
            for kind in kinds
        ),
        "",
    ]
    lost = sum(r.lost for r in runs)
    figure.goal(
        f"`ocm monitor` on {count} live instances under a batch loses no event (counted "
        "against each server's own stream)",
        f"{lost} lost of {sum(r.events for r in runs):,} "
        f"({len(runs)} run{'s' if len(runs) > 1 else ''})",
        lost == 0,
    )
    figure.notes += [
        "Live instances: the referee and `ocm monitor --json` both subscribe before the batch "
        "starts (the monitor's `ocm.attached` for every instance); after the batch, the "
        f"monitor's output is left {QUIET_S:g} s to go quiet, then the monitor gets SIGTERM "
        "and the referee's standard input is closed. Compared per instance and type: every "
        "frame but the per-connection ones (`server.connected`, `server.heartbeat`: each "
        "subscriber gets its own) and `sync` (the same changes again, which the monitor drops "
        "by design). Left out of the comparison, over all runs: "
        + ", ".join(
            f"{kind} {sum(r.extra.get(kind, 0) for r in runs)}"
            for kind in sorted({k for r in runs for k in r.extra})
        )
        + ".",
        "CPU per 1,000 events: user + system CPU of the `ocm monitor` process (psutil "
        "`cpu_times`) from the moment every instance was attached to the end of the quiet "
        "period, over the events it printed in that time.",
    ]
