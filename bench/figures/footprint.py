"""6. Footprint: the RSS of each instance's keeper (`python -m opencode_manager.keeper`)."""

from __future__ import annotations

import time

import psutil

from ..measure import BenchError, Series
from ..plan import Plan, SharedFleet
from ..report import Figure

KEEPER_GOAL_MB = 30.0
SAMPLES = 5


def run(fleet: SharedFleet, plan: Plan) -> Figure:
    env = fleet.env
    rows = [
        r
        for r in env.ocm_json("ls", "--no-foreign")
        if r["name"] in {i.name for i in fleet.instances}
    ]
    keepers: list[psutil.Process] = []
    servers: list[psutil.Process] = []
    for row in rows:
        if not row.get("keeper_pid") or not row.get("pid"):
            raise BenchError(f"{row['name']} has no keeper or server PID in `ocm ls --json`")
        keeper = psutil.Process(row["keeper_pid"])
        if "opencode_manager.keeper" not in " ".join(keeper.cmdline()):
            raise BenchError(f"PID {keeper.pid} is not a keeper: {keeper.cmdline()}")
        keepers.append(keeper)
        servers.append(psutil.Process(row["pid"]))
    rss, uss, server_rss = Series(), Series(), Series()
    for i in range(SAMPLES):
        if i:
            time.sleep(0.2)  # spacing the samples
        for keeper in keepers:
            info = keeper.memory_full_info()
            rss.add(info.rss / 2**20)
            uss.add(info.uss / 2**20)
        for server in servers:
            server_rss.add(server.memory_info().rss / 2**20)
    figure = Figure(
        6,
        "Footprint: keeper memory per instance",
        commands=[
            "ocm ls --json   # keeper_pid and pid of each instance; then psutil on those PIDs",
        ],
    )
    figure.add("rss", "keeper RSS", "MB", rss)
    figure.add("uss", "keeper USS (private memory)", "MB", uss)
    figure.add("server", "its `opencode serve` RSS, for scale", "MB", server_rss)
    figure.goal(
        f"keeper under {KEEPER_GOAL_MB:g} MB RSS (largest sample)",
        f"{rss.max:.1f} MB (median {rss.median:.1f} MB)",
        rss.max < KEEPER_GOAL_MB,
    )
    figure.notes += [
        f"{len(keepers)} keepers, {SAMPLES} samples each 0.2 s apart, taken after the dispatch, "
        "batch and CLI figures ran on these instances.",
    ]
    return figure
