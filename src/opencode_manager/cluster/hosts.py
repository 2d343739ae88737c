"""Where new instances go on a Ray cluster (pure: the hosts as their agents describe them).

The default packs by room: each instance goes to the host with the most free memory once
what it already runs, and what this plan put there, is counted (an OpenCode server takes
300-700 MB). `spread` evens out the count instead (fewest instances first), like
`docker service create --mode replicated` spreading over nodes. `per_host` caps any host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConflictError, UsageError

#: What one OpenCode server is counted as when memory decides (the top of the range seen).
SERVER_BYTES = 700 * 1024 * 1024


@dataclass(frozen=True)
class Host:
    """One alive Ray node with its agent, as placement sees it."""

    node_id: str
    address: str
    free_bytes: int
    instances: int  # running on it now


def place(
    hosts: Sequence[Host], count: int, *, per_host: int | None = None, spread: bool = False
) -> list[str]:
    """The node id for each of `count` new instances, in order."""
    if count < 1:
        raise UsageError(f"invalid -n {count}: start at least 1 instance")
    if per_host is not None and per_host < 1:
        raise UsageError(f"invalid --per-host {per_host}: must be 1 or more")
    if not hosts:
        raise ConflictError("no host agent is up: run `ocm cluster up --address ADDR` first")
    added = {h.node_id: 0 for h in hosts}
    chosen: list[str] = []
    for _ in range(count):
        open_hosts = [
            h for h in hosts if per_host is None or h.instances + added[h.node_id] < per_host
        ]
        if not open_hosts:
            room = sum(max(per_host - h.instances, 0) for h in hosts) if per_host else 0
            raise ConflictError(
                f"--per-host {per_host} leaves room for {room} more instance(s) on "
                f"{len(hosts)} host(s), not {count}"
            )

        def by_count(h: Host) -> tuple[int, int, str]:
            return (h.instances + added[h.node_id], -h.free_bytes, h.node_id)

        def by_room(h: Host) -> tuple[int, int, str]:
            left = h.free_bytes - added[h.node_id] * SERVER_BYTES
            return (-left, h.instances + added[h.node_id], h.node_id)

        best = min(open_hosts, key=by_count if spread else by_room)
        added[best.node_id] += 1
        chosen.append(best.node_id)
    return chosen
