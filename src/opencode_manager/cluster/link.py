"""The driver's side of a Ray cluster: connect, keep one host agent per alive node, place
instances, and act on each instance through the agent that owns it.

Ray is imported only here, and only when a cluster command runs (`pip install
'opencode-manager[ray]'`). The cluster's address is kept in `$OCM_HOME/cluster.json` by
`ocm cluster up`; instances started on the cluster are rows of the driver's registry (spec
`remote`, with the owning node), reached by URL with their password like a remote instance,
so tasks, batches and their results stay here.

Agents are named `ocm-agent-<node id>` in the `ocm` namespace, detached (they outlive the
driver), pinned to their node, and never restarted by Ray: `reconcile` recreates a missing
one, which adopts the instances its host's registry still runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..errors import ConflictError, OcmError, StateError, UsageError
from ..instances import credentials
from ..instances import spec as specs
from ..instances.fleet import Fleet
from ..models import InstanceRecord, InstanceSpec, State
from .agent import HostAgent
from .hosts import Host, place

NAMESPACE = "ocm"
AGENT_PREFIX = "ocm-agent-"
STATE_FILE = "cluster.json"
#: How long one call to an agent may take before the agent counts as gone.
CALL_TIMEOUT = 30.0
LOST = "host lost"


def ray_module() -> ModuleType:
    """Ray, imported on first use, with its own logging kept off the user's terminal."""
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise UsageError(
            "Ray is not installed: pip install 'opencode-manager[ray]' (Ray 2.60)"
        ) from None
    return ray


@dataclass
class HostReport:
    """One node as `ocm cluster ls` shows it."""

    node_id: str
    address: str
    alive: bool
    agent: str  # "up", "created" (just now), "recreated" (it was gone), "missing"
    agent_pid: int | None = None
    home: str | None = None
    free_bytes: int | None = None
    instances: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # found running by a new agent

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ClusterReport:
    address: str
    hosts: list[HostReport] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # instances marked lost with their host
    stopped: list[str] = field(default_factory=list)  # recorded running, not run by its host

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "hosts": [h.to_dict() for h in self.hosts],
            "lost": self.lost,
            "stopped": self.stopped,
        }


def saved_address(fleet: Fleet) -> str | None:
    path = fleet.settings.home / STATE_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(
            f"cannot read {path}: {exc}; run `ocm cluster up --address ADDR`"
        ) from None
    address = data.get("address") if isinstance(data, dict) else None
    return address if isinstance(address, str) and address else None


def save_address(fleet: Fleet, address: str) -> None:
    fleet.settings.ensure_home()
    path = fleet.settings.home / STATE_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"address": address}) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StateError(f"cannot write {path}: {exc.strerror or exc}") from exc


class Link:
    """A connection to the cluster for one command (sync: run it in a worker thread)."""

    def __init__(self, fleet: Fleet, address: str | None = None) -> None:
        self.fleet = fleet
        chosen = address or saved_address(fleet)
        if not chosen:
            raise UsageError("no cluster yet: run `ocm cluster up --address HOST:PORT` first")
        self.address = chosen
        self.ray = ray_module()

    def connect(self) -> None:
        if self.ray.is_initialized():
            return
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"invalid --address {self.address!r}: expected HOST:PORT")
        try:  # Ray itself would retry a dead address for minutes
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        except OSError as exc:
            raise ConflictError(
                f"nothing answers at {self.address} ({exc.strerror or exc}): is the Ray head "
                "up, and is that its GCS port (6379 by default)?"
            ) from None
        with _quiet_stderr():  # Ray's C++ core logs to fd 2 while it connects
            try:
                self.ray.init(
                    address=self.address,
                    namespace=NAMESPACE,
                    log_to_driver=False,
                    logging_level=logging.ERROR,
                    include_dashboard=False,
                )
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
                raise ConflictError(
                    f"cannot reach the Ray cluster at {self.address}: {_first_line(exc)}"
                ) from None

    # -- hosts and agents ------------------------------------------------------------------
    def nodes(self) -> list[dict[str, Any]]:
        self.connect()
        return [n for n in self.ray.nodes() if n.get("Alive")]

    def alive_ids(self) -> set[str]:
        return {str(n["NodeID"]) for n in self.nodes()}

    def _handle(self, node_id: str) -> Any | None:
        try:
            return self.ray.get_actor(AGENT_PREFIX + node_id, namespace=NAMESPACE)
        except ValueError:
            return None

    def _call(
        self, handle: Any, method: str, *args: Any, wait: float = CALL_TIMEOUT, **kwargs: Any
    ) -> Any:
        """A method of an agent, its answer within `wait` seconds; the agent's own OcmError
        comes back as it was raised."""
        ref = getattr(handle, method).remote(*args, **kwargs)
        try:
            return self.ray.get(ref, timeout=wait)
        except OcmError:
            raise
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, OcmError):
                raise cause from None  # the agent's own error, as the agent said it
            raise ConflictError(f"host agent call {method} failed: {_first_line(exc)}") from None

    def _create(self, node: dict[str, Any]) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node_id = str(node["NodeID"])
        actor = self.ray.remote(num_cpus=0, max_restarts=0, max_concurrency=16)(HostAgent)
        return actor.options(
            name=AGENT_PREFIX + node_id,
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(node_id, str(node["NodeManagerAddress"]))

    def reconcile(self) -> ClusterReport:
        """One agent per alive node (a missing or dead one is created again and adopts its
        host's instances), driver rows for every instance an agent runs, and rows of lost
        hosts marked lost."""
        report = ClusterReport(address=self.address)
        # Rows recorded running before the agents are asked: one that a concurrent
        # `ocm start --cluster` records meanwhile is not in an earlier hello, yet it runs.
        running_before = {r.name for r in self.fleet.records() if r.state is State.RUNNING}
        nodes = self.nodes()
        for node in nodes:
            node_id = str(node["NodeID"])
            handle = self._handle(node_id)
            state = "up"
            hello: dict[str, Any] | None = None
            if handle is not None:
                try:
                    hello = self._call(handle, "hello")
                except OcmError:
                    with contextlib.suppress(Exception):
                        self.ray.kill(handle)
                    handle, state = None, "recreated"
            if handle is None:
                if state == "up":  # none was there: new, or gone since an earlier `up`?
                    known = any(r.spec.node == node_id for r in self.fleet.records())
                    state = "recreated" if known else "created"
                handle = self._create(node)
                hello = self._call(handle, "hello")
            assert hello is not None
            host = HostReport(
                node_id=node_id, address=str(node["NodeManagerAddress"]), alive=True,
                agent=state, agent_pid=hello["pid"], home=hello["home"],
                free_bytes=hello["free_bytes"],
                instances=[i["name"] for i in hello["instances"]],
            )  # fmt: skip
            for described in hello["instances"]:
                self._adopt(described)
            if state != "up":  # a new agent found these running: they are its own now
                host.adopted = list(host.instances)
            report.hosts.append(host)
        alive = {h.node_id for h in report.hosts}
        listed = {name for h in report.hosts for name in h.instances}
        for record in self.fleet.records():
            owner = record.spec.node
            if not owner or record.state is not State.RUNNING:
                continue
            if owner not in alive:
                self.fleet.registry.mark_crashed(record.name, f"{LOST}: node {owner[:12]}")
                report.lost.append(record.name)
            elif record.name not in listed and record.name in running_before:
                # Its host runs it no more: a stop whose driver was killed before recording it.
                self.fleet.registry.mark_stopped(record.name)
                report.stopped.append(record.name)
        return report

    def survey(self) -> ClusterReport:
        """Hosts, agents and instances as they are: nothing created, adopted or marked."""
        report = ClusterReport(address=self.address)
        for node in self.nodes():
            node_id = str(node["NodeID"])
            host = HostReport(node_id, str(node["NodeManagerAddress"]), True, "missing")
            handle = self._handle(node_id)
            if handle is not None:
                try:
                    hello = self._call(handle, "hello")
                except OcmError:
                    host.agent = "not answering"
                else:
                    host.agent, host.agent_pid = "up", hello["pid"]
                    host.home, host.free_bytes = hello["home"], hello["free_bytes"]
                    host.instances = [i["name"] for i in hello["instances"]]
            report.hosts.append(host)
        alive = {h.node_id for h in report.hosts}
        report.lost = [
            r.name for r in self.fleet.records() if r.spec.node and r.spec.node not in alive
        ]
        return report

    def _adopt(self, described: dict[str, Any]) -> None:
        """Record (or refresh) an instance an agent runs; a local or remote instance of
        that name, or another host's, is left alone."""
        name = str(described["name"])
        existing = self.fleet.registry.find(name)
        if existing is None:
            record_cluster(self.fleet, described)
        elif existing.spec.node == described["node_id"]:
            self.fleet.registry.update(
                name, state=State.RUNNING, url=described["url"], port=described["port"],
                error=None,
            )  # fmt: skip

    def hosts(self) -> list[Host]:
        report = self.reconcile()
        return [
            Host(h.node_id, h.address, h.free_bytes or 0, len(h.instances)) for h in report.hosts
        ]

    # -- instances -------------------------------------------------------------------------
    def start(
        self,
        *,
        name: str | None,
        count: int,
        directory: str,
        env: Sequence[str] = (),
        per_host: int | None = None,
        spread: bool = False,
        timeout: float = 120.0,
    ) -> list[str]:
        """Place `count` instances over the hosts and start them through their agents."""
        specs.parse_env(env)
        if name is not None:
            specs.validate_name(name)
        placement = place(self.hosts(), count, per_host=per_host, spread=spread)
        taken = set(self.fleet.registry.names(self.fleet.registry.db))
        if name is None:
            names = specs.next_generated_names(taken, count)
        else:
            names = [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]
        clash = [n for n in names if n in taken]
        if clash:
            raise ConflictError(f"an instance named {clash[0]!r} already exists")
        by_node: dict[str, list[str]] = {}
        for chosen, node_id in zip(names, placement, strict=True):
            by_node.setdefault(node_id, []).append(chosen)
        refs = {
            node_id: self._agent(node_id).start.remote(
                group, directory=directory, env=list(env), timeout=timeout
            )
            for node_id, group in by_node.items()
        }
        started: list[dict[str, Any]] = []
        problems: list[str] = []
        for ref in refs.values():
            try:
                started += self.ray.get(ref, timeout=timeout + CALL_TIMEOUT)
            except Exception as exc:
                cause = getattr(exc, "cause", None)
                problems.append(str(cause) if isinstance(cause, OcmError) else _first_line(exc))
        if problems:
            self._undo(started)
            raise ConflictError(f"cluster start failed: {problems[0]}")
        for described in started:
            record_cluster(self.fleet, described)
        return [d["name"] for d in started]

    def _undo(self, started: list[dict[str, Any]]) -> None:
        by_node: dict[str, list[str]] = {}
        for d in started:
            by_node.setdefault(d["node_id"], []).append(d["name"])
        for node_id, names in by_node.items():
            with contextlib.suppress(Exception):
                self._call(self._agent(node_id), "forget", names)

    def _agent(self, node_id: str) -> Any:
        handle = self._handle(node_id)
        if handle is None:
            raise ConflictError(
                f"no host agent on node {node_id[:12]}: run `ocm cluster up` (it recreates "
                "agents), or the host is gone"
            )
        return handle

    def owner(self, record: InstanceRecord) -> Any:
        assert record.spec.node is not None
        if record.spec.node not in self.alive_ids():
            raise ConflictError(f"{record.name}: its host is lost (node {record.spec.node[:12]})")
        return self._agent(record.spec.node)

    def stop(self, records: Sequence[InstanceRecord], timeout: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for record in records:
            out += self._call(
                self.owner(record), "stop", [record.name], timeout, wait=timeout + CALL_TIMEOUT
            )
            self.fleet.registry.mark_stopped(record.name)
        return out

    def restart(self, records: Sequence[InstanceRecord], timeout: float) -> list[str]:
        for record in records:
            again = self._call(
                self.owner(record), "restart", [record.name], timeout, wait=2 * timeout
            )
            for described in again:
                self.fleet.registry.update(
                    record.name, state=State.RUNNING, url=described["url"],
                    port=described["port"], error=None, stopped_at=None,
                )  # fmt: skip
        return [r.name for r in records]

    def forget(self, records: Sequence[InstanceRecord]) -> list[str]:
        alive = self.alive_ids()
        for record in records:
            if record.spec.node in alive:
                self._call(self._agent(str(record.spec.node)), "forget", [record.name])
            self.fleet.registry.delete(record.name)
            credentials.delete_password(self.fleet.settings, record.name)
        return [r.name for r in records]

    def logs(self, record: InstanceRecord, lines: int) -> list[str]:
        result: list[str] = self._call(self.owner(record), "logs", record.name, lines)
        return result

    def status(self, record: InstanceRecord) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self.owner(record), "status", record.name)
        return result

    def down(self, timeout: float) -> ClusterReport:
        """Stop every instance through its agent (process group, as `ocm stop`), then end the
        agents with `ray.kill`; rows of the driver are forgotten."""
        report = ClusterReport(address=self.address)
        for node in self.nodes():
            node_id = str(node["NodeID"])
            handle = self._handle(node_id)
            host = HostReport(node_id, str(node["NodeManagerAddress"]), True, "missing")
            if handle is not None:
                stopped = self._call(handle, "stop_all", timeout, wait=timeout + CALL_TIMEOUT)
                host.instances = [s["name"] for s in stopped]
                if host.instances:
                    self._call(handle, "forget", host.instances)
                self.ray.kill(handle)
                host.agent = "stopped"
            report.hosts.append(host)
        for record in self.fleet.records():
            if record.spec.node:
                self.fleet.registry.delete(record.name)
                credentials.delete_password(self.fleet.settings, record.name)
        return report


def record_cluster(fleet: Fleet, described: dict[str, Any]) -> None:
    """A driver row for an instance an agent runs: reached by URL with its password."""
    url = str(described["url"])
    spec = InstanceSpec(
        name=str(described["name"]),
        dir=str(described.get("directory") or ""),
        port=described.get("port"),
        hostname=url.split("//", 1)[-1].rsplit(":", 1)[0],
        auth=described.get("password") is not None,
        remote=True,
        node=str(described["node_id"]),
        restart="never",
    )
    registry = fleet.registry
    with registry.transaction() as db:
        registry.add_remote(db, spec, url=url, version=str(described.get("version") or "?"))
        if described.get("password"):
            credentials.write_password(fleet.settings, spec.name, str(described["password"]))


def host_lost(fleet: Fleet, record: InstanceRecord) -> bool:
    """Whether a cluster instance's node has left the cluster (False when unsure)."""
    if not record.spec.node:
        return False
    if record.state is State.CRASHED and (record.error or "").startswith(LOST):
        return True  # `ocm cluster up` saw it go
    try:
        link = Link(fleet)
        return record.spec.node not in link.alive_ids()
    except OcmError:
        return False


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null for a moment (the CLI's one-line errors are
    raised afterwards, so they still show)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0][:300]
