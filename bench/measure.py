"""Timing and memory helpers: commands under GNU time, process-tree RSS sampling, stats."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

GNU_TIME = "/usr/bin/time"
SAMPLE_INTERVAL = 0.05  # seconds between process-tree RSS samples


class BenchError(RuntimeError):
    """A benchmark could not run (a command failed, a result is invalid)."""


@dataclass
class CommandResult:
    """One run of a command: wall time, peak RSS, exit code and output."""

    wall_s: float
    max_rss_kb: int | None  # GNU time %M: max RSS of the command or one waited-for child
    tree_peak_rss: int | None  # bytes: sampled max of the summed RSS of the process tree
    returncode: int
    stdout: str
    stderr: str
    #: CPU seconds (user + system) of the command and the children it waited for, from the
    #: kernel's accounting (microseconds, where GNU time's %U/%S count in 10 ms ticks); with
    #: `gnu_time`, GNU time's own share (about a millisecond) is in it too.
    cpu_s: float = 0.0


def tree_rss(root: psutil.Process) -> int:
    """Summed RSS (bytes) of a process and all its live descendants."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


class TreeSampler:
    """Samples the summed RSS of a process tree in a thread, every `interval` seconds."""

    def __init__(self, pid: int, interval: float = SAMPLE_INTERVAL) -> None:
        self.interval = interval
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._root = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        start = time.monotonic()
        while True:
            total = tree_rss(self._root)
            self.samples.append((time.monotonic() - start, total))
            self.peak = max(self.peak, total)
            if self._stop.wait(self.interval):  # sampling period, not a synchronisation sleep
                return


def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | Path,
    timeout: float = 300.0,
    gnu_time: bool = True,
    sample_tree: bool = False,
    stdin: str | None = None,
) -> CommandResult:
    """Run a command to its end; wall time is measured here around the whole process."""
    with tempfile.TemporaryDirectory(prefix="bench-time-") as tmp:
        time_file = Path(tmp) / "time"
        full = [GNU_TIME, "-f", "%e %M", "-o", str(time_file), *argv] if gnu_time else list(argv)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.Popen(
            full,
            env=dict(env),
            cwd=str(cwd),
            text=True,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        sampler = TreeSampler(proc.pid) if sample_tree else None
        try:
            if sampler is not None:
                with sampler:
                    out, err = proc.communicate(stdin, timeout=timeout)
            else:
                out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(argv)[:200]}") from None
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        max_rss = None
        if gnu_time and time_file.is_file():
            fields = time_file.read_text().split()
            if len(fields) >= 2 and fields[-1].isdigit():
                max_rss = int(fields[-1])
    return CommandResult(
        wall, max_rss, sampler.peak if sampler else None, proc.returncode, out, err, cpu
    )


def check(result: CommandResult, what: str, *, expect: str | None = None) -> CommandResult:
    """Fail the benchmark if a measured command did not do its job."""
    if result.returncode != 0:
        raise BenchError(
            f"{what} exited {result.returncode}: {(result.stderr or result.stdout).strip()[-400:]}"
        )
    if expect is not None and expect not in result.stdout:
        raise BenchError(f"{what}: {expect!r} not in its output: {result.stdout.strip()[-400:]}")
    return result


@dataclass
class Series:
    """Repeated measurements of one quantity."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    def percentile(self, q: float) -> float:
        """p50 (the median), p95, p99, ..."""
        return percentile(self.values, q)

    def __len__(self) -> int:
        return len(self.values)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between the two nearest ranks (numpy's
    default), so p50 is the median; with few values a high one is near the largest."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = max(0.0, min(1.0, q / 100)) * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


QUIET_CPU = 20.0  # percent of the whole machine: "quiet" before a figure begins
QUIET_DEADLINE = 30.0  # seconds: a busy machine is measured anyway (and the report says so)


def settle() -> tuple[float, bool]:
    """Wait until the machine's CPU stays under QUIET_CPU% for two 0.5 s windows in a row
    (servers just started keep working for a while), at most QUIET_DEADLINE seconds; return
    the seconds waited and whether it got quiet."""
    began = time.monotonic()
    quiet = 0
    while time.monotonic() - began < QUIET_DEADLINE:
        if psutil.cpu_percent(interval=0.5) < QUIET_CPU:  # the measuring window
            quiet += 1
            if quiet >= 2:
                return time.monotonic() - began, True
        else:
            quiet = 0
    return time.monotonic() - began, False


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
