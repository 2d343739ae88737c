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

A cluster start leaves nothing running that no registry lists. Its driver rows are written
first (`starting`, claimed by this process, tagged with the start), then the agents are
asked; each host records what it starts in its own registry before its keeper runs. A start
that fails on any host, outlives its deadline, is interrupted, or cannot be recorded here is
undone on every host it went to (`HostAgent.discard`: by tag, idempotent) and its rows are
forgotten; a row whose host could not confirm the undo stays, so that `ocm stop --all`,
`ocm cluster up` and `ocm cluster down` reach what may still run there. A driver killed
outright leaves its `starting` rows: `cluster up` adopts what their hosts run and forgets
the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import process
from ..errors import (
    ConflictError,
    Interrupted,
    NotFoundError,
    OcmError,
    ServerError,
    StartError,
    StateError,
    UsageError,
)
from ..instances import credentials, lifecycle
from ..instances import spec as specs
from ..instances.fleet import Fleet
from ..models import InstanceRecord, InstanceSpec, State
from ..supervision import RestartPolicy
from .agent import START_TAG, HostAgent, started_by
from .deadlines import CALL_VARIABLE, Deadlines
from .hosts import Host, place

NAMESPACE = "ocm"
AGENT_PREFIX = "ocm-agent-"
STATE_FILE = "cluster.json"
LOST = "host lost"
#: How often the driver looks at its cancel flag and deadlines while agents work.
POLL = 0.2


def ray_module() -> ModuleType:
    """Ray, imported on first use, with its own logging kept off the user's terminal."""
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # A start given up on may still answer later (with the error of its undo): ocm has
    # dealt with it, so Ray must not print it when the reference is dropped.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
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
    abandoned: list[str] = field(default_factory=list)  # a killed start's rows, run nowhere

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "hosts": [h.to_dict() for h in self.hosts],
            "lost": self.lost,
            "stopped": self.stopped,
            "abandoned": self.abandoned,
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
            raise NotFoundError("no cluster yet: run `ocm cluster up --address HOST:PORT` first")
        self.address = chosen
        self.ray = ray_module()
        self.deadlines = Deadlines.from_environ(fleet.settings.environ)

    def connect(self) -> None:
        if self.ray.is_initialized():
            return
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"invalid --address {self.address!r}: expected HOST:PORT")
        try:  # Ray itself would retry a dead address for minutes
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
        except OSError as exc:
            raise ServerError(
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
                raise ServerError(
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
        self, handle: Any, method: str, *args: Any, wait: float | None = None, **kwargs: Any
    ) -> Any:
        """A method of an agent, its answer within `wait` seconds (default: the call margin);
        the agent's own OcmError comes back as it was raised."""
        ref = getattr(handle, method).remote(*args, **kwargs)
        return self._answer(ref, method, self.deadlines.call if wait is None else wait)

    def _answer(self, ref: Any, method: str, wait: float) -> Any:
        try:
            return self.ray.get(ref, timeout=wait)
        except Exception as exc:
            # Ray raises the agent's error as a class derived from both RayTaskError and the
            # error's own class, whose text is Ray's traceback: take the error itself.
            cause = getattr(exc, "cause", None)
            if isinstance(cause, OcmError):
                raise cause from None  # the agent's own error, as the agent said it
            if isinstance(exc, OcmError):
                raise
            if isinstance(exc, TimeoutError):  # Ray's GetTimeoutError
                raise ServerError(
                    f"the host agent did not answer {method} within {wait:.0f} s (a loaded "
                    f"host? {CALL_VARIABLE} gives every call more time)"
                ) from None
            raise ServerError(f"host agent call {method} failed: {_first_line(exc)}") from None

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

    def reconcile(self, cancel: threading.Event | None = None) -> ClusterReport:
        """One agent per alive node (a missing or dead one is created again and adopts its
        host's instances), driver rows for every instance an agent runs, and rows of lost
        hosts marked lost. Setting `cancel` (Ctrl-C) stops between hosts: the hosts done
        stay done, and nothing is marked lost (the hosts not reached are not gone)."""
        report = ClusterReport(address=self.address)
        # Rows recorded running before the agents are asked: one that a concurrent
        # `ocm start --cluster` records meanwhile is not in an earlier hello, yet it runs.
        before = self.fleet.records()
        running_before = {r.name for r in before if r.state is State.RUNNING}
        # Rows of starts whose driver is gone (killed before it recorded or undid them).
        abandoned_before = {
            r.name
            for r in before
            if r.spec.node and r.state is State.STARTING and not process.is_alive(r.starter)
        }
        nodes = self.nodes()
        for done, node in enumerate(nodes):
            if cancel is not None and cancel.is_set():
                raise Interrupted(
                    f"cluster up interrupted: {done} of {len(nodes)} hosts reconciled, the "
                    "others untouched (nothing marked lost); `ocm cluster up` finishes"
                )
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
            if not owner or record.state not in (State.RUNNING, State.STARTING):
                continue
            if owner not in alive:
                self.fleet.registry.mark_crashed(record.name, f"{LOST}: node {owner[:12]}")
                report.lost.append(record.name)
            elif record.name in listed:
                continue
            elif record.state is State.RUNNING and record.name in running_before:
                # Its host runs it no more: a stop whose driver was killed before recording it.
                self.fleet.registry.mark_stopped(record.name)
                report.stopped.append(record.name)
            elif record.name in abandoned_before and not process.is_alive(record.starter):
                # A start whose driver died: its host runs nothing of it (what it may have
                # left in its host's registry is undone by tag), so the row goes. An agent
                # that cannot say so now leaves it for the next `cluster up`.
                try:
                    self._abandon(record, lifecycle.DEFAULT_STOP_TIMEOUT)
                except OcmError:
                    continue
                report.abandoned.append(record.name)
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
        if not described.get("url"):
            return  # still coming up on its host: the next `cluster up` records it
        existing = self.fleet.registry.find(name)
        if existing is None:
            record_cluster(self.fleet, described)
        elif existing.spec.node == described["node_id"]:
            record_started(self.fleet, described)  # a killed start's row too, with its password

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
        timeout: float = lifecycle.DEFAULT_START_TIMEOUT,
        cancel: threading.Event | None = None,
        opencode: str | None = None,
    ) -> list[str]:
        """Place `count` instances over the hosts and start them through their agents, all
        or nothing (see the module's docstring); setting `cancel` undoes the start and
        raises Interrupted. `opencode`: the binary on every host (a version each host has
        installed, or an absolute path there), as `ocm start --opencode` takes it."""
        if timeout <= 0:
            raise UsageError(f"invalid --timeout {timeout:g}: must be above 0")
        # A version is checked here (its line); a path is the host's: it must say where.
        if (
            opencode is not None
            and not os.path.isabs(opencode)
            and (specs.parse_binary(opencode, Path("/")) != opencode.strip())
        ):
            raise UsageError(
                f"invalid --opencode {opencode}: on a cluster give a version the hosts "
                "installed (`ocm install --version`) or an absolute path on the hosts"
            )
        if any(key == START_TAG for key, _ in specs.parse_env(env)):
            raise UsageError(f"--env {START_TAG} is ocm's own: it tags a cluster start")
        if name is not None:
            specs.validate_name(name)
        hosts = self.hosts()
        placement = place(hosts, count, per_host=per_host, spread=spread)
        tag = secrets.token_hex(6)
        plan = self._reserve(name, count, placement, hosts, directory, tag, timeout)
        try:
            started = self._start_on_hosts(
                _groups(plan), tag, directory, env, timeout, cancel, opencode
            )
            for described in started:
                record_started(self.fleet, described)
        except BaseException as exc:
            self._give_up(plan, tag, exc)
            raise  # a KeyboardInterrupt or SystemExit, once the start is undone
        return list(plan)

    def _reserve(
        self,
        name: str | None,
        count: int,
        placement: list[str],
        hosts: Sequence[Host],
        directory: str,
        tag: str,
        timeout: float,
    ) -> dict[str, str]:
        """The driver rows, `starting` and claimed by this process, in one transaction (the
        names are chosen inside it, so a concurrent start cannot take them): what a driver
        killed from here on leaves, for `stop --all` and `cluster up` to act on. Returns
        each name's node, in order."""
        registry = self.fleet.registry
        address = {h.node_id: h.address for h in hosts}
        me = process.identity_of(os.getpid())
        plan: dict[str, str] = {}
        with registry.transaction() as db:
            taken = set(registry.names(db))
            if name is None:
                names = specs.next_generated_names(taken, count)
            else:
                names = [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]
            clash = [n for n in names if n in taken]
            if clash:
                raise ConflictError(f"an instance named {clash[0]!r} already exists")
            for chosen, node_id in zip(names, placement, strict=True):
                spec = InstanceSpec(
                    name=chosen, dir=directory, hostname=address.get(node_id, "?"),
                    env=((START_TAG, tag),), remote=True, node=node_id, restart=RestartPolicy.NEVER,
                )  # fmt: skip
                registry.reserve(db, spec, port=None, starter=me, start_timeout=timeout)
                plan[chosen] = node_id
        return plan

    def _start_on_hosts(
        self,
        plan: dict[str, list[str]],
        tag: str,
        directory: str,
        env: Sequence[str],
        timeout: float,
        cancel: threading.Event | None,
        opencode: str | None = None,
    ) -> list[dict[str, Any]]:
        """Ask every host's agent at once; each answer within its own deadline (its health
        timeout, plus a launch per instance and the call margin)."""
        asked = time.monotonic()
        pending: dict[Any, str] = {}
        for node_id, group in plan.items():
            ref = self._agent(node_id).start.remote(
                group, directory=directory, env=list(env), timeout=timeout, tag=tag,
                undo_timeout=self.deadlines.undo_stop, opencode=opencode,
            )  # fmt: skip
            pending[ref] = node_id
        started: list[dict[str, Any]] = []
        while pending:
            if cancel is not None and cancel.is_set():
                raise Interrupted("start interrupted")
            waited = time.monotonic() - asked
            for node_id in pending.values():
                allowed = self.deadlines.start(timeout, len(plan[node_id]))
                if waited > allowed:
                    raise StartError(
                        f"the host agent on {self._where(node_id)} did not finish starting "
                        f"{', '.join(plan[node_id])} within {allowed:.0f} s (--timeout "
                        f"{timeout:g} plus margins; a loaded host needs a longer --timeout "
                        f"or {CALL_VARIABLE})"
                    )
            ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=POLL)
            for ref in ready:
                node_id = pending.pop(ref)
                started += self._answer(
                    ref, f"start on {self._where(node_id)}", self.deadlines.call
                )
        return started

    def _give_up(self, plan: dict[str, str], tag: str, exc: BaseException) -> None:
        """Undo a start that failed, then raise one line that says why and what is left.
        (A KeyboardInterrupt or SystemExit is left for the caller to raise again.)"""
        left = self._undo_start(_groups(plan), tag)
        if not isinstance(exc, Exception):
            return
        if left:
            where = ", ".join(sorted({self._where(plan[n]) for n in left}))
            outcome = (
                f"{', '.join(n for n in plan if n in left)} may still run on {where}: "
                "`ocm stop --all` or `ocm cluster down` stops them"
            )
        else:
            outcome = f"{', '.join(plan)} stopped and removed"
        if isinstance(exc, Interrupted):
            raise Interrupted(f"start interrupted: {outcome}") from None
        reason = str(exc) if isinstance(exc, OcmError) else _first_line(exc)
        kind = type(exc) if isinstance(exc, OcmError) else ConflictError
        raise kind(f"cluster start failed: {reason}; {outcome}") from None

    def _undo_start(self, plan: dict[str, list[str]], tag: str) -> set[str]:
        """Ask every agent of the start to undo it, all at once, each within its deadline;
        forget the rows of the hosts that did. Returns the names that may still run."""
        left: set[str] = set()
        pending: dict[Any, str] = {}
        for node_id, group in plan.items():
            try:
                handle = self._agent(node_id)
                ref = handle.discard.remote(group, tag, self.deadlines.undo_stop)
            except Exception:
                left |= set(group)
                continue
            pending[ref] = node_id
        asked = time.monotonic()
        undone: list[str] = []
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1, timeout=POLL)
            for ref in ready:
                node_id = pending.pop(ref)
                try:
                    self._answer(ref, "discard", self.deadlines.call)
                except OcmError:
                    left |= set(plan[node_id])
                else:
                    undone += plan[node_id]
            waited = time.monotonic() - asked
            for ref, node_id in list(pending.items()):
                if waited > self.deadlines.undo(len(plan[node_id])):
                    del pending[ref]  # it may still do it: its rows stay until it is seen
                    left |= set(plan[node_id])
        for name in undone:
            with contextlib.suppress(OcmError):  # a row left behind is forgotten by `cluster up`
                self.fleet.registry.delete(name)
                credentials.delete_password(self.fleet.settings, name)
        for name in left:
            with contextlib.suppress(OcmError):
                self.fleet.registry.mark_start_in_doubt(
                    name, "a failed start; it may still run on its host"
                )
        return left

    def _abandon(self, record: InstanceRecord, timeout: float) -> dict[str, Any]:
        """A `starting` row (a start that never finished): undo it on its host by its start's
        tag, then forget the row. As `ocm stop` reports it."""
        tag = started_by(record)
        if tag is not None:
            self._call(
                self.owner(record), "discard", [record.name], tag, timeout,
                wait=self.deadlines.undo(1),
            )  # fmt: skip
        self.fleet.registry.delete(record.name)
        credentials.delete_password(self.fleet.settings, record.name)
        return {
            "name": record.name, "was": State.STARTING.value, "status": State.STOPPED.value,
            "via": lifecycle.StopVia.AGENT.value,
        }  # fmt: skip

    def _where(self, node_id: str) -> str:
        """A host as errors name it: its address and node."""
        with contextlib.suppress(Exception):
            for node in self.nodes():
                if str(node["NodeID"]) == node_id:
                    return f"{node['NodeManagerAddress']} (node {node_id[:12]})"
        return f"node {node_id[:12]}"

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
            if record.state is State.STARTING:
                out.append(self._abandon(record, timeout))
                continue
            out += self._call(
                self.owner(record), "stop", [record.name], timeout,
                wait=self.deadlines.stop(timeout, 1),
            )  # fmt: skip
            self.fleet.registry.mark_stopped(record.name)
        return out

    def restart(self, records: Sequence[InstanceRecord], timeout: float) -> list[str]:
        for record in records:
            again = self._call(
                self.owner(record), "restart", [record.name], timeout,
                wait=self.deadlines.restart(timeout, lifecycle.DEFAULT_STOP_TIMEOUT, 1),
            )  # fmt: skip
            for described in again:
                self.fleet.registry.mark_running_on_host(
                    record.name, url=described["url"], port=described["port"]
                )
        return [r.name for r in records]

    def forget(self, records: Sequence[InstanceRecord]) -> list[str]:
        alive = self.alive_ids()
        for record in records:
            if record.state is State.STARTING and record.spec.node in alive:
                self._abandon(record, lifecycle.DEFAULT_STOP_TIMEOUT)
                continue
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
        agents with `ray.kill`; rows of the driver are forgotten. A node whose agent is gone
        gets a new one first: its keepers outlived the old one, and it adopts them."""
        report = ClusterReport(address=self.address)
        for node in self.nodes():
            node_id = str(node["NodeID"])
            handle = self._handle(node_id)
            host = HostReport(node_id, str(node["NodeManagerAddress"]), True, "stopped")
            if handle is None:
                handle = self._create(node)
            hello = self._call(handle, "hello")
            wait = self.deadlines.stop(timeout, len(hello["instances"]))
            stopped = self._call(handle, "stop_all", timeout, wait=wait)
            host.instances = [s["name"] for s in stopped]
            if host.instances:
                self._call(handle, "forget", host.instances)
            self.ray.kill(handle)
            report.hosts.append(host)
        for record in self.fleet.records():
            if record.spec.node:
                self.fleet.registry.delete(record.name)
                credentials.delete_password(self.fleet.settings, record.name)
        return report


def up(
    fleet: Fleet, address: str | None = None, *, cancel: threading.Event | None = None
) -> ClusterReport:
    """`ocm cluster up`: connect to the cluster at `address` (kept for later commands) and
    reconcile one host agent per alive node (`cancel`: see `Link.reconcile`)."""
    link = Link(fleet, address)
    try:
        report = link.reconcile(cancel)
    except Interrupted:
        save_address(fleet, link.address)  # connected: the next `cluster up` needs no address
        raise
    save_address(fleet, link.address)
    return report


def survey(fleet: Fleet) -> ClusterReport:
    """`ocm cluster ls`: hosts, agents and instances per host, as they are."""
    return Link(fleet).survey()


def down(fleet: Fleet, timeout: float) -> ClusterReport:
    """`ocm cluster down`: stop every cluster instance through its agent, then the agents."""
    return Link(fleet).down(timeout)


def record_started(fleet: Fleet, described: dict[str, Any]) -> None:
    """A driver row (reserved `starting`, or already running) set running with what its
    agent says: URL, port, version, and its password (0600), written first."""
    name = str(described["name"])
    row = fleet.registry.get(name)
    if described.get("password"):
        credentials.write_password(fleet.settings, name, str(described["password"]))
    url = str(described["url"])
    spec = dataclasses.replace(
        row.spec,
        dir=str(described.get("directory") or row.spec.dir),
        port=described.get("port"),
        hostname=url.split("//", 1)[-1].rsplit(":", 1)[0],
        auth=described.get("password") is not None,
    )
    fleet.registry.mark_running_on_host(
        name, url=url, port=described.get("port"),
        version=str(described.get("version") or "?"), spec=spec,
    )  # fmt: skip


def _groups(plan: dict[str, str]) -> dict[str, list[str]]:
    """A start's names by node."""
    groups: dict[str, list[str]] = {}
    for name, node_id in plan.items():
        groups.setdefault(node_id, []).append(name)
    return groups


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
        restart=RestartPolicy.NEVER,
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
