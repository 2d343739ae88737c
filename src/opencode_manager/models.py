"""Plain data: what an instance should be (spec), what the registry says it is (record), and
what we tell users (info). No I/O here and no imports from the rest of the package."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .supervision import DEFAULTS, RestartPolicy

DEFAULT_USERNAME = "opencode"


class TextEnum(str, enum.Enum):
    """One of a fixed set of words, shown as its word: str(), f-strings, templates and
    JSON all give the value, as `enum.StrEnum` (Python 3.11+) does. A field that held such a
    word as a bare string becomes one of these without changing any output."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class State(str, enum.Enum):
    """What the registry records about a managed instance (written by keepers and the manager)."""

    STARTING = "starting"  # keeper launched, server not yet healthy
    RUNNING = "running"  # server answered its health check; keeper supervising
    STOPPING = "stopping"  # a stop was requested and is under way
    STOPPED = "stopped"  # stopped on request; nothing of it runs
    CRASHED = "crashed"  # server exited on its own, or failed to start
    ERRORED = "errored"  # crashed too often (flapping limit): no longer restarted


class Status(str, enum.Enum):
    """What `ocm ls` shows: the recorded state reconciled with the processes actually seen."""

    STARTING = "starting"
    RUNNING = "running"  # alive and healthy
    UNHEALTHY = "unhealthy"  # alive, but its health check fails
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"  # exited without being asked to, or its PID now belongs to a stranger
    ERRORED = "errored"  # gave up restarting it (flapping limit); `ocm restart` to try again
    FOREIGN = "foreign"  # an `opencode serve` we did not start: shown, never signalled
    UNREACHABLE = "unreachable"  # a remote instance that does not answer (see remote.py)


@dataclass(frozen=True)
class ProcessIdentity:
    """A PID is only ours together with its start time (PIDs get reused, start times do not)
    and what the process is: `cmd`, when set, is what its argv must say (process.argv_is)."""

    pid: int
    create_time: float
    cmd: str | None = None

    def to_json(self) -> list[Any]:
        return [self.pid, self.create_time, self.cmd]

    @classmethod
    def from_json(cls, data: Any) -> ProcessIdentity | None:
        try:
            pid, ctime, *rest = data
            return cls(int(pid), float(ctime), str(rest[0]) if rest and rest[0] else None)
        except (TypeError, ValueError):
            return None


#: What a keeper's and a server's argv say (see ProcessIdentity.cmd, process.argv_is).
KEEPER_CMD = "opencode_manager.keeper"
SERVER_CMD = "serve"


class EventKind(str, enum.Enum):
    """Lifecycle events the keepers (and ocm) record per instance (`ocm events`)."""

    STARTED = "started"  # a server process was spawned
    HEALTHY = "healthy"  # it answered its first health check
    UNHEALTHY = "unhealthy"  # a health check was missed
    CRASHED = "crashed"  # it exited on its own, or failed to start
    EXITED = "exited"  # it exited cleanly on its own (code 0)
    RECYCLED = "recycled"  # ended on purpose: memory or age limit, or a wedge
    RESTARTED = "restarted"  # the keeper starts it again after backoff
    ERRORED = "errored"  # too many restarts: given up
    STOPPED = "stopped"  # stopped on request
    KEEPER_ERROR = "keeper_error"  # the keeper hit a problem (registry, disk) or died
    REJOINED = "rejoined"  # the registry was replaced (`ocm restore`): the keeper wrote its state


@dataclass(frozen=True)
class LifecycleEvent:
    """One row of `ocm events`."""

    instance: str
    time: float
    kind: str  # an EventKind value (kept a string: older registries may hold others)
    detail: str | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        # `at` and `type` are the uniform names (`*_at` timestamps, `type` as in OpenCode's
        # events); `time` and `kind` stay for one release, for scripts that read them.
        return {
            "instance": self.instance,
            "at": self.time,
            "type": self.kind,
            "detail": self.detail,
            "time": self.time,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class ResourceSample:
    """The server's CPU and memory as its keeper measured them at one health check."""

    at: float
    cpu_percent: float | None
    rss_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "cpu_percent": self.cpu_percent, "rss_bytes": self.rss_bytes}


@dataclass(frozen=True)
class InstanceSpec:
    """Everything needed to (re)start one instance; stored as JSON in the registry."""

    name: str
    dir: str
    port: int | None = None  # explicit port; None means allocate (range) or let the OS pick
    port_range: tuple[int, int] | None = None
    hostname: str = "127.0.0.1"
    cors: tuple[str, ...] = ()
    log_level: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    auth: bool = True
    shared_data: bool = False
    opencode: str | None = None  # binary path resolved at start time
    # The binary chosen for this instance (`ocm start --opencode`, a fleet file's `opencode`):
    # a version `ocm install` put in $OCM_HOME ("2.1.2") or an absolute path. None: the
    # resolution order (--opencode/OCM_OPENCODE, PATH, ~/.opencode/bin, managed) at each start.
    binary: str | None = None
    # supervision (see supervision.py, whose DEFAULTS these are)
    restart: RestartPolicy = DEFAULTS.policy
    max_restarts: int = DEFAULTS.max_restarts  # within restart_window seconds, then errored
    restart_window: float = DEFAULTS.window
    health_interval: float = DEFAULTS.health_interval  # liveness probe period
    max_memory: int | None = DEFAULTS.max_memory  # bytes, server and children: recycle above
    max_age: float | None = DEFAULTS.max_age  # seconds: recycle when older
    log_max_size: int = DEFAULTS.log_max_size  # rotate the captured output above this
    log_keep: int = DEFAULTS.log_keep  # rotated files kept
    # warm the server up before it is reported running (keeper/warmup.py): `--no-warm`,
    # a fleet file's `warm = false`
    warm: bool = True
    # from a fleet file (instances/fleetfile.py): its project, and defaults for tasks
    project: str | None = None
    model: str | None = None  # provider/model for tasks that name none
    agent: str | None = None
    # a remote instance (`ocm remote add`): a server on another host, reached by its URL
    remote: bool = False
    username: str = DEFAULT_USERNAME  # for Basic auth; the password is stored 0600
    node: str | None = None  # on a Ray cluster: the node whose host agent runs it

    def __post_init__(self) -> None:
        # A policy given by its word ("never") is the enum, so every reader compares alike.
        object.__setattr__(self, "restart", RestartPolicy(self.restart))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> InstanceSpec:
        data: dict[str, Any] = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        data = {k: v for k, v in data.items() if k in known}
        if data.get("port_range") is not None:
            low, high = data["port_range"]
            data["port_range"] = (int(low), int(high))
        data["cors"] = tuple(data.get("cors") or ())
        data["env"] = tuple((str(k), str(v)) for k, v in (data.get("env") or ()))
        return cls(**data)


class DesiredState(TextEnum):
    """What ocm asks of an instance's keeper (the row's desired state)."""

    RUNNING = "running"  # keep the server up (the default, and what a restart asks)
    STOPPED = "stopped"  # a stop was requested (with its timeout): end the server


class Owner(TextEnum):
    """Who runs an instance, as `ocm ls` shows it."""

    OCM = "ocm"  # started here: a keeper on this host supervises it
    REMOTE = "remote"  # added by URL (`ocm remote add`): never signalled
    CLUSTER = "cluster"  # run by a Ray host agent on another node
    FOREIGN = "foreign"  # an `opencode serve` we did not start: shown, never signalled


@dataclass
class InstanceRecord:
    """One row of the registry's `instances` table."""

    name: str
    spec: InstanceSpec
    state: State
    created_at: float
    updated_at: float
    keeper: ProcessIdentity | None = None
    server: ProcessIdentity | None = None
    port: int | None = None
    url: str | None = None
    version: str | None = None
    restarts: int = 0
    last_exit: str | None = None
    error: str | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    cpu_percent: float | None = None  # sampled by the keeper
    rss_bytes: int | None = None
    sampled_at: float | None = None
    # Desired state, written by ocm and acted on by the keeper's reconcile loop.
    desired: DesiredState = DesiredState.RUNNING
    stop_timeout: float | None = None  # seconds between SIGTERM and SIGKILL for that stop
    start_timeout: float | None = None  # how long the first start may take
    # What the keeper reports about itself.
    heartbeat_at: float | None = None  # the keeper's loop was alive then
    keeper_error: str | None = None  # its last problem (registry, disk) or why it died
    adopted: tuple[ProcessIdentity, ...] = ()  # orphans re-parented to it (subreaper)
    starter: ProcessIdentity | None = None  # the `ocm start` that is bringing it up
    launch_token: str | None = None  # marker in the server's environment, inherited by its tools


@dataclass
class InstanceInfo:
    """The public view of an instance, as `ocm ls --json` prints it."""

    name: str
    status: Status
    managed: bool
    pid: int | None
    port: int | None
    url: str | None
    hostname: str | None
    version: str | None
    healthy: bool | None
    started_at: float | None
    uptime_s: float | None
    restarts: int
    rss_bytes: int | None
    cpu_percent: float | None
    log: str | None
    dir: str | None
    auth: bool | None
    keeper_pid: int | None = None
    supervised: bool | None = None  # a keeper is alive (None: nothing to supervise)
    keeper_answering: bool | None = None  # its loop is alive (heartbeat fresh, not frozen)
    keeper_error: str | None = None  # a problem the keeper reported (registry, disk, crash)
    error: str | None = None
    last_exit: str | None = None
    owner: Owner = Owner.OCM
    line: int | None = None  # the OpenCode line of its version: 1 or 2 (None: unknown)
    service: bool = False  # a foreign server that is the user's OpenCode 2 background service

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["owner"] = self.owner.value
        data["directory"] = self.dir  # the uniform name; `dir` stays for one release
        return data


def derive_status(
    state: State, *, keeper_alive: bool, server_alive: bool, healthy: bool | None
) -> Status:
    """Reconcile what the registry says with what is running (pure; see tests)."""
    if state in (State.STOPPED, State.CRASHED, State.ERRORED):
        # A recorded end is final; a live server here would be a stranger reusing the PID,
        # which the caller already filtered out by start time.
        return {
            State.STOPPED: Status.STOPPED,
            State.CRASHED: Status.CRASHED,
            State.ERRORED: Status.ERRORED,
        }[state]
    if state is State.STOPPING:
        return Status.STOPPING if (server_alive or keeper_alive) else Status.STOPPED
    if state is State.STARTING:
        if keeper_alive or server_alive:
            return Status.STARTING
        return Status.CRASHED
    # RUNNING
    if not server_alive:
        # With its keeper alive, the keeper is ending it or about to start it again, and has
        # not recorded which yet (at once, unless the disk is full: then it stays until it
        # can); without one, nothing of it runs.
        return Status.STOPPING if keeper_alive else Status.CRASHED
    if healthy is False:
        return Status.UNHEALTHY
    return Status.RUNNING


class BatchStatus(TextEnum):
    """Where a batch is. `interrupted` is derived: running, but its runner process is gone."""

    RUNNING = "running"
    COMPLETED = "completed"  # every task reached a final status
    CANCELLED = "cancelled"  # cancelled on request; unstarted tasks were cancelled
    INTERRUPTED = "interrupted"  # its runner died: `ocm batch resume` finishes it

    @property
    def final(self) -> bool:
        return self in (BatchStatus.COMPLETED, BatchStatus.CANCELLED)


class TaskStatus(str, enum.Enum):
    """Where a task is. All but the first three are final."""

    PENDING = "pending"  # recorded, not sent yet
    #: Waiting for a slot of its provider (a limit is full, or its breaker is open); its
    #: place in the queue is in the record's `queue`.
    QUEUED = "queued"
    RUNNING = "running"  # its prompt was (or is being) sent
    COMPLETED = "completed"
    FAILED = "failed"  # the model or the server reported an error
    ABORTED = "aborted"  # aborted on request (Ctrl-C, `ocm session abort`)
    TIMED_OUT = "timed_out"  # past its deadline: aborted by us
    CANCELLED = "cancelled"  # never started: its batch was cancelled
    #: Passed its --max-cost/--max-tokens: interrupted by us, its spend in the record.
    BUDGET_EXCEEDED = "budget_exceeded"

    @property
    def final(self) -> bool:
        return self not in (TaskStatus.PENDING, TaskStatus.QUEUED, TaskStatus.RUNNING)


class AskPolicy(str, enum.Enum):
    """What a task's runner does with the agent's permission and question asks."""

    REJECT = "reject"  # nobody is there to answer (the default)
    APPROVE = "approve"  # approve once, pick each question's first option
    LEAVE = "leave"  # leave them pending: somebody else answers (an MCP client, a person)


@dataclass
class TaskRecord:
    """One task and, once it ended, its result (the durable result record)."""

    id: str
    prompt: str
    status: TaskStatus
    created_at: float
    batch_id: str | None = None
    task_id: str | None = None  # the id given in a batch file
    pinned: str | None = None  # the instance a batch file tied it to
    instance: str | None = None
    url: str | None = None
    session_id: str | None = None
    directory: str | None = None
    model: str | None = None
    agent: str | None = None
    timeout: float | None = None
    max_retries: int | None = None  # provider retries allowed before the task fails
    attempts: int = 0
    prompted: bool = False  # the prompt reached the server: never send it again
    sending: bool = False  # recorded just before sending: resume looks at the session first
    #: The user message's id, chosen by ocm and recorded before the prompt is sent: a send
    #: whose answer was lost is looked up by it (tasks/delivery.py).
    message_id: str | None = None
    text: str = ""
    steps: int = 0
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    todos: list[Any] = field(default_factory=list)
    diff: list[Any] = field(default_factory=list)
    tokens: dict[str, Any] = field(default_factory=dict)
    cost: float = 0.0
    error: dict[str, Any] | None = None
    asks: list[dict[str, Any]] = field(default_factory=list)  # permissions/questions answered
    on_ask: str = AskPolicy.REJECT.value  # what the runner does with asks (AskPolicy)
    started_at: float | None = None
    finished_at: float | None = None
    worktree: dict[str, Any] | None = None  # its git worktree (tasks/worktree.py), if any
    schema: dict[str, Any] | None = None  # JSON schema for a structured answer (--schema)
    structured: Any = None  # the answer's object, validated against `schema`
    # -- provider control (tasks/control.py; PRODUCT §10) --
    priority: int = 0  # its place in a provider's queue: higher first, then submission order
    max_cost: float | None = None  # the budget: interrupted past it (budget_exceeded)
    max_tokens: int | None = None
    recover: int | None = None  # continuations after transient provider errors (None: default)
    fallbacks: list[str] = field(default_factory=list)  # models to go on with, in order
    key: str | None = None  # its idempotent submission key (`--key`)
    provider: str | None = None  # the provider whose slots it takes (its model's)
    #: While it waits for a slot: {provider, model, place, reason, scope, since}.
    queue: dict[str, Any] | None = None
    #: Each turn sent for it: the first, and every continuation after provider trouble or on
    #: a fallback model: {model, message_id, status, steps, step_models, tokens, cost, error,
    #: trouble, action, delay, reason, started_at, ended_at}.
    turns: list[dict[str, Any]] = field(default_factory=list)
    #: The provider/model that produced each step of the task, in order.
    step_models: list[str] = field(default_factory=list)
    #: The text of the turn being sent when it is not the prompt (a continuation).
    continuation: str | None = None

    @property
    def sent_text(self) -> str:
        """What the turn being sent says: a continuation's text, else the task's prompt."""
        return self.continuation or self.prompt

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return round(self.finished_at - self.started_at, 3)

    def to_dict(self) -> dict[str, Any]:
        """`asdict(self)` with the status as text and the duration: every field copied (so
        the dict can be changed freely). Fields hold JSON data, copied here at a fifth of
        asdict's cost (a store write and every read command's output make one); anything
        else found in them takes asdict's own way."""
        data: dict[str, Any] = {}
        for name in _TASK_FIELD_NAMES:
            value = _json_copy(getattr(self, name))
            if value is _NOT_JSON:
                data = asdict(self)
                break
            data[name] = value
        data["status"] = self.status.value
        data["duration_s"] = self.duration_s
        return data


_NOT_JSON = object()
_TASK_FIELD_NAMES = tuple(f.name for f in fields(TaskRecord))


def _json_copy(value: Any) -> Any:
    """A deep copy of JSON data (exact dicts, lists, text, numbers, None; and enum members,
    which copying keeps as they are); `_NOT_JSON` if anything else is found in it."""
    kind = type(value)
    if kind is dict:
        copied = {}
        for key, item in value.items():
            item = _json_copy(item)
            if item is _NOT_JSON or type(key) is not str:
                return _NOT_JSON
            copied[key] = item
        return copied
    if kind is list:
        items = [_json_copy(item) for item in value]
        return _NOT_JSON if any(item is _NOT_JSON for item in items) else items
    if value is None or kind in (str, int, float, bool) or isinstance(value, enum.Enum):
        return value
    return _NOT_JSON


@dataclass
class Leftover:
    """A path `ocm cleanup` found with work in it: kept (or, with force, removed anyway),
    and what it holds (`reason`, e.g. "2 uncommitted files: a.txt, b.txt")."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Swept:
    """What one cleanup sweep removed (or would remove), kept because it holds work, or
    removed with `force` although it held work (also in `removed`)."""

    removed: list[str] = field(default_factory=list)
    kept: list[Leftover] = field(default_factory=list)
    forced: list[Leftover] = field(default_factory=list)
