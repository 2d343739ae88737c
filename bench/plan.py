"""How much a run measures (full or --quick), and the fleet the figures share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .env import BenchEnv


@dataclass(frozen=True)
class Plan:
    quick: bool
    runs: int  # measured runs per figure (after one warm-up where one is needed)
    batch_runs: int  # runs of `ocm batch`, the shell recipe and the REST floor, in turn
    floor_runs: int  # `ocm batch` and REST floor runs in all (>= batch_runs: seconds each)
    batch_tasks: int
    batch_scale: tuple[int, ...]  # batch sizes of the cost-as-the-work-grows table
    scale_runs: int  # runs of that table (960 tasks take minutes: one in a full run)
    cli_runs: int
    monitor_streams: int
    monitor_events: int  # per stream, in the as-fast-as-possible phase
    monitor_rate: int  # per stream, events/s, in the fixed-rate phase
    monitor_seconds: float  # length of the fixed-rate phase
    live_instances: int  # `ocm monitor` on live instances under a batch
    live_tasks: int  # the batch it watches

    @classmethod
    def make(cls, *, quick: bool, runs: int | None) -> Plan:
        if quick:
            n = runs or 1
            return cls(
                quick=True,
                runs=n,
                batch_runs=n,
                floor_runs=n,
                batch_tasks=6,
                batch_scale=(12, 48),
                scale_runs=n,
                cli_runs=max(2, n),
                monitor_streams=4,
                monitor_events=2_000,
                monitor_rate=1_500,
                monitor_seconds=2.0,
                live_instances=3,
                live_tasks=12,
            )
        n = runs or 5
        return cls(
            quick=False,
            runs=n,
            batch_runs=max(1, (n + 1) // 2),
            floor_runs=max(5, (n + 1) // 2),  # near its goal, and noisy here: more samples
            batch_tasks=24,
            batch_scale=(24, 240, 960),
            scale_runs=1,
            cli_runs=2 * n,
            monitor_streams=4,
            monitor_events=200_000,  # about 5 s merged: long enough for a warm-up and RSS samples
            monitor_rate=1_500,
            monitor_seconds=20.0,
            live_instances=6,
            live_tasks=72,
        )


@dataclass
class Instance:
    name: str
    url: str
    port: int
    keeper_pid: int | None
    username: str
    password: str


@dataclass
class SharedFleet:
    """The 3 running instances the dispatch, batch, CLI and footprint figures use."""

    env: BenchEnv
    instances: list[Instance] = field(default_factory=list)

    @classmethod
    def start(cls, env: BenchEnv, count: int = 3) -> SharedFleet:
        rows: list[dict[str, Any]] = env.start_fleet(count, "--port-range", "47100-47999")
        fleet = cls(env)
        for row in rows:
            creds = env.credentials(row["name"])
            fleet.instances.append(
                Instance(
                    row["name"],
                    row["url"],
                    int(row["port"]),
                    row.get("keeper_pid"),
                    creds["OPENCODE_SERVER_USERNAME"],
                    creds["OPENCODE_SERVER_PASSWORD"],
                )
            )
        return fleet

    def attach_env(self, instance: Instance) -> dict[str, str]:
        """What `opencode run --attach` needs: the model config and the server's password."""
        return self.env.server_env(
            OPENCODE_SERVER_USERNAME=instance.username, OPENCODE_SERVER_PASSWORD=instance.password
        )
