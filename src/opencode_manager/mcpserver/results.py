"""What the MCP tools return: one TypedDict per result shape, from which the SDK derives each
tool's `outputSchema` (and docs/mcp.md its Result tables).

The records are compact (`records` makes them): each fact once, and a key whose value is
null or empty left out, so such a key is `NotRequired` here and its type is what it holds
when present. The SDK validates a tool's return value through its annotation and sends what
comes out as `structuredContent`. A plain TypedDict would silently drop keys it does not
declare, so every shape here is open (`extra="allow"`, `additionalProperties: true` in the
schema): a key a record's `to_dict()` grows still reaches the client.
tests/mcpserver/test_results.py pins each record's declared keys to what its `to_dict()`
produces, so the schema cannot drift either.

Values are checked too: a declared type that does not fit the value fails the call, so a type
here is only as narrow as the value is sure to be. Raw OpenCode data (messages, diffs, todos,
tool calls) stays an open `dict` or `Any`.
"""

# No `from __future__ import annotations`: TypedDict reads `NotRequired` from the evaluated
# annotations (`__required_keys__` would otherwise count every key as required).
from typing import Annotated, Any

from pydantic import ConfigDict, Field, with_config
from typing_extensions import NotRequired, TypedDict

OPEN = ConfigDict(extra="allow")  # keys not declared here pass through (see the docstring)


# -- records: nested in several results (docs/mcp.md lists them once, under "Types") ----------
@with_config(OPEN)
class LifecycleEvent(TypedDict):
    """One lifecycle event of an instance (`ocm events`)."""

    instance: NotRequired[
        Annotated[str, Field(description="The instance it happened to (absent inside its record)")]
    ]
    at: Annotated[float, Field(description="When (Unix time, seconds)")]
    type: Annotated[
        str,
        Field(
            description="started, healthy, unhealthy, crashed, exited, recycled, restarted, "
            "errored, stopped or keeper_error"
        ),
    ]
    detail: NotRequired[Annotated[str, Field(description="What else is known (exit code, reason)")]]
    id: NotRequired[
        Annotated[
            int, Field(description="Its id (in events_list): pass the largest back as `after`")
        ]
    ]


@with_config(OPEN)
class InstanceInfo(TypedDict):
    """An instance as `ocm ls --json` shows it (a key left out is unknown or empty)."""

    name: Annotated[str, Field(description="Its name (oc-1...), or host:port for a foreign one")]
    status: Annotated[
        str,
        Field(
            description="starting, running, unhealthy, stopping, stopped, crashed, errored, "
            "foreign, or unreachable (a remote instance that does not answer)"
        ),
    ]
    managed: Annotated[
        bool, Field(description="In ocm's registry: started here, or added as a remote")
    ]
    pid: NotRequired[Annotated[int, Field(description="The server's process id")]]
    port: NotRequired[Annotated[int, Field(description="The port it listens on")]]
    url: NotRequired[Annotated[str, Field(description="Its base URL")]]
    hostname: NotRequired[Annotated[str, Field(description="The address it binds")]]
    version: NotRequired[Annotated[str, Field(description="OpenCode's version")]]
    line: NotRequired[Annotated[int, Field(description="OpenCode's line: 1 or 2")]]
    service: NotRequired[
        Annotated[bool, Field(description="A foreign server that is the user's OpenCode 2 service")]
    ]
    healthy: NotRequired[Annotated[bool, Field(description="It answered its health check")]]
    started_at: NotRequired[Annotated[float, Field(description="When it started (Unix time)")]]
    uptime_s: NotRequired[Annotated[float, Field(description="Seconds since it started")]]
    restarts: Annotated[int, Field(description="How often its keeper restarted it")]
    rss_bytes: NotRequired[
        Annotated[int, Field(description="Memory of the server and its children")]
    ]
    cpu_percent: NotRequired[Annotated[float, Field(description="CPU, as last sampled")]]
    log: NotRequired[Annotated[str, Field(description="Its log file")]]
    auth: NotRequired[Annotated[bool, Field(description="It wants a password")]]
    keeper_pid: NotRequired[Annotated[int, Field(description="Its keeper's process id")]]
    supervised: NotRequired[Annotated[bool, Field(description="A keeper is alive to restart it")]]
    keeper_answering: NotRequired[Annotated[bool, Field(description="The keeper's loop is alive")]]
    keeper_error: NotRequired[Annotated[str, Field(description="A problem the keeper reported")]]
    error: NotRequired[Annotated[str, Field(description="Why it is not running, if known")]]
    last_exit: NotRequired[Annotated[str, Field(description="How the server last ended")]]
    owner: Annotated[
        str,
        Field(
            description="ocm (started here), remote (added by URL: ocm runs none of its "
            "processes, lifecycle tools refuse it), cluster (on a Ray host, through its "
            "agent) or foreign"
        ),
    ]
    directory: NotRequired[Annotated[str, Field(description="Its project directory")]]


@with_config(OPEN)
class FleetRow(TypedDict):
    """One instance in a fleet frame (a key left out is unknown)."""

    name: Annotated[str, Field(description="Instance name")]
    status: Annotated[str, Field(description="As in instances_list")]
    pid: NotRequired[Annotated[int, Field(description="The server's process id")]]
    uptime_s: NotRequired[Annotated[float, Field(description="Seconds since it started")]]
    restarts: Annotated[int, Field(description="Restarts by its keeper")]
    cpu_percent: NotRequired[Annotated[float, Field(description="CPU, as last sampled")]]
    rss_bytes: NotRequired[
        Annotated[int, Field(description="Memory of the server and its children")]
    ]
    connections: NotRequired[Annotated[int, Field(description="Established TCP connections")]]
    busy: NotRequired[Annotated[int, Field(description="Sessions working now")]]
    idle: NotRequired[Annotated[int, Field(description="Sessions not working")]]
    sessions: NotRequired[Annotated[int, Field(description="Sessions in its project")]]
    last_event: NotRequired[
        Annotated[LifecycleEvent, Field(description="Its latest lifecycle event")]
    ]
    version: NotRequired[
        Annotated[str, Field(description="The OpenCode version it runs (1.x or 2.x)")]
    ]


@with_config(OPEN)
class FleetTotals(TypedDict):
    """A fleet frame's sums over its instances."""

    instances: Annotated[int, Field(description="Managed instances")]
    running: Annotated[int, Field(description="Of which running")]
    cpu_percent: Annotated[float, Field(description="CPU, summed")]
    rss_bytes: Annotated[int, Field(description="Memory, summed")]
    busy: Annotated[int, Field(description="Busy sessions")]
    sessions: Annotated[int, Field(description="All sessions")]


@with_config(OPEN)
class TaskRecord(TypedDict):
    """A task and, once it ended, its result (the durable result record; a key left out is
    null or empty)."""

    id: NotRequired[
        Annotated[
            str,
            Field(description="The task id (t-...); inside a task handle it is its `task_id`"),
        ]
    ]
    prompt: Annotated[str, Field(description="What was asked")]
    status: Annotated[
        str,
        Field(
            description="pending, queued (waiting for a slot of its provider), running, "
            "completed, failed, aborted, timed_out, cancelled or budget_exceeded"
        ),
    ]
    created_at: Annotated[float, Field(description="When it was recorded (Unix time)")]
    batch_id: NotRequired[Annotated[str, Field(description="Its batch, if any")]]
    task_id: NotRequired[Annotated[str, Field(description="The id its batch file gave it")]]
    pinned: NotRequired[Annotated[str, Field(description="The instance its batch file tied it to")]]
    instance: NotRequired[Annotated[str, Field(description="The instance it ran on")]]
    url: NotRequired[Annotated[str, Field(description="That instance's URL")]]
    session_id: NotRequired[Annotated[str, Field(description="Its OpenCode session (ses_...)")]]
    directory: NotRequired[Annotated[str, Field(description="Where the agent worked")]]
    model: NotRequired[Annotated[str, Field(description="provider/model, if chosen")]]
    agent: NotRequired[Annotated[str, Field(description="The OpenCode agent, if chosen")]]
    timeout: NotRequired[Annotated[float, Field(description="Its deadline, in seconds")]]
    max_retries: NotRequired[Annotated[int, Field(description="Provider retries allowed")]]
    attempts: Annotated[int, Field(description="How often it was sent")]
    prompted: Annotated[bool, Field(description="The prompt reached the server")]
    sending: Annotated[bool, Field(description="Being sent right now")]
    message_id: NotRequired[
        Annotated[str, Field(description="Its prompt message id (msg_...), chosen before sending")]
    ]
    text: NotRequired[Annotated[str, Field(description="The answer text")]]
    steps: Annotated[int, Field(description="Model steps taken")]
    tool_calls: NotRequired[
        Annotated[list[dict[str, Any]], Field(description="Tools the agent called")]
    ]
    todos: NotRequired[
        Annotated[list[Any], Field(description="The agent's todo list, as OpenCode keeps it")]
    ]
    diff: NotRequired[
        Annotated[list[Any], Field(description="Files changed, as OpenCode reports them")]
    ]
    tokens: NotRequired[
        Annotated[dict[str, Any], Field(description="Tokens used (input, output, cache...)")]
    ]
    cost: Annotated[float, Field(description="Cost in USD, as the provider reports it")]
    error: NotRequired[Annotated[dict[str, Any], Field(description="Why it failed, if it did")]]
    asks: NotRequired[
        Annotated[
            list[dict[str, Any]],
            Field(description="Permissions and questions, and their answers"),
        ]
    ]
    on_ask: Annotated[str, Field(description="What was done with asks: reject, approve, leave")]
    started_at: NotRequired[Annotated[float, Field(description="When it was sent (Unix time)")]]
    finished_at: NotRequired[Annotated[float, Field(description="When it ended (Unix time)")]]
    worktree: NotRequired[Annotated[dict[str, Any], Field(description="Its git worktree, if any")]]
    schema: NotRequired[
        Annotated[dict[str, Any], Field(description="JSON schema the answer had to fit, if any")]
    ]
    structured: NotRequired[
        Annotated[Any, Field(description="The answer's object, if a schema was given")]
    ]
    duration_s: NotRequired[Annotated[float, Field(description="Seconds from sent to ended")]]
    queue: NotRequired[
        Annotated[
            dict[str, Any],
            Field(description="While queued: {provider, model, place, reason, scope, since}"),
        ]
    ]
    turns: NotRequired[
        Annotated[
            list[dict[str, Any]],
            Field(description="Each turn sent: its model, status, error and what followed"),
        ]
    ]
    max_cost: NotRequired[Annotated[float, Field(description="Its budget in USD, if any")]]
    max_tokens: NotRequired[Annotated[int, Field(description="Its token budget, if any")]]
    priority: NotRequired[Annotated[int, Field(description="Its place in its provider's queue")]]
    recover: NotRequired[
        Annotated[int, Field(description="Continuations allowed after provider errors")]
    ]
    fallbacks: NotRequired[Annotated[list[str], Field(description="Fallback models, in order")]]
    key: NotRequired[Annotated[str, Field(description="Its idempotent submission key")]]
    provider: NotRequired[Annotated[str, Field(description="The provider whose slots it takes")]]
    step_models: NotRequired[
        Annotated[list[str], Field(description="The model that produced each step, in order")]
    ]
    continuation: NotRequired[
        Annotated[str, Field(description="What the turn being sent says, if not the prompt")]
    ]


@with_config(OPEN)
class TaskBrief(TypedDict):
    """A task in a list: what was asked and how it went (task_get has the rest)."""

    id: Annotated[str, Field(description="The task id (t-...)")]
    status: Annotated[str, Field(description="As in the task record")]
    instance: NotRequired[Annotated[str, Field(description="The instance it ran on")]]
    session_id: NotRequired[Annotated[str, Field(description="Its OpenCode session")]]
    prompt: Annotated[str, Field(description="What was asked")]
    text: NotRequired[Annotated[str, Field(description="The answer text")]]
    error: NotRequired[Annotated[dict[str, Any], Field(description="Why it failed, if it did")]]
    batch_id: NotRequired[Annotated[str, Field(description="Its batch, if any")]]
    created_at: Annotated[float, Field(description="When it was recorded (Unix time)")]
    finished_at: NotRequired[Annotated[float, Field(description="When it ended (Unix time)")]]
    duration_s: NotRequired[Annotated[float, Field(description="Seconds from sent to ended")]]


@with_config(OPEN)
class TaskOutcome(TypedDict):
    """One task of a batch, in brief."""

    id: NotRequired[Annotated[str, Field(description="The id its batch file gave it")]]
    task: Annotated[str, Field(description="Its task id (t-...), for task_get")]
    status: Annotated[str, Field(description="As in the task record")]
    instance: NotRequired[Annotated[str, Field(description="The instance it ran on")]]
    duration_s: NotRequired[Annotated[float, Field(description="Seconds from sent to ended")]]
    error: NotRequired[Annotated[str, Field(description="Why it failed, in one line")]]


@with_config(OPEN)
class BatchBrief(TypedDict):
    """A batch with its counts."""

    id: Annotated[str, Field(description="The batch id (b-...)")]
    status: Annotated[str, Field(description="running, completed, cancelled or interrupted")]
    source: NotRequired[Annotated[str, Field(description="Its batch file, or mcp")]]
    created_at: Annotated[float, Field(description="When it was created (Unix time)")]
    finished_at: NotRequired[Annotated[float, Field(description="When its last task ended")]]
    total: Annotated[int, Field(description="Tasks in it")]
    done: Annotated[int, Field(description="Tasks that ended")]
    counts: NotRequired[Annotated[dict[str, int], Field(description="Tasks by status")]]
    duration_s: NotRequired[Annotated[float, Field(description="Seconds from created to finished")]]


@with_config(OPEN)
class AskQuestion(TypedDict):
    """One question of a question ask."""

    question: NotRequired[Annotated[str, Field(description="The question")]]
    header: NotRequired[Annotated[str, Field(description="Its short title")]]
    options: NotRequired[
        Annotated[list[Any], Field(description="The option labels to choose from")]
    ]
    multiple: Annotated[bool, Field(description="More than one option may be chosen")]


@with_config(OPEN)
class PendingAsk(TypedDict):
    """A permission or question the agent waits on (OpenCode holds the turn until answered)."""

    instance: Annotated[str, Field(description="The instance the session is on")]
    kind: Annotated[str, Field(description="permission or question")]
    id: Annotated[str, Field(description="Its id (per_... or que_...), to answer it")]
    session_id: Annotated[str, Field(description="The session (or subagent session) asking")]
    permission: NotRequired[
        Annotated[str, Field(description="A permission: what it wants (bash, edit...)")]
    ]
    patterns: NotRequired[
        Annotated[list[Any], Field(description="A permission: what it applies to")]
    ]
    replies: NotRequired[
        Annotated[list[str], Field(description="A permission: the replies it takes")]
    ]
    questions: NotRequired[
        Annotated[list[AskQuestion], Field(description="A question ask: its questions")]
    ]


@with_config(OPEN)
class SessionRow(TypedDict):
    """An OpenCode session and the instance it lives on."""

    instance: Annotated[str, Field(description="The instance it is on")]
    id: Annotated[str, Field(description="The session id (ses_...)")]
    title: NotRequired[Annotated[str, Field(description="Its title")]]
    status: Annotated[str, Field(description="idle, busy or retry")]
    directory: NotRequired[Annotated[str, Field(description="Its project directory")]]
    parent_id: NotRequired[Annotated[str, Field(description="The session that started it")]]
    created_at: NotRequired[Annotated[float, Field(description="When it was created (Unix time)")]]
    updated_at: NotRequired[Annotated[float, Field(description="When it last changed (Unix time)")]]
    raw: NotRequired[
        Annotated[
            dict[str, Any],
            Field(description="The session as OpenCode sends it (sessions_list with raw: true)"),
        ]
    ]


@with_config(OPEN)
class StopResult(TypedDict):
    """What stopping did to one instance."""

    name: Annotated[str, Field(description="The instance")]
    was: Annotated[str, Field(description="Its status before")]
    status: Annotated[str, Field(description="Its status now")]
    via: Annotated[str, Field(description="Who ended the server: keeper, or ocm directly")]
    signalled: Annotated[int, Field(description="Processes sent SIGTERM")]
    killed: Annotated[int, Field(description="Processes that needed SIGKILL")]
    port_freed: NotRequired[Annotated[bool, Field(description="Its port is free again")]]


@with_config(OPEN)
class SessionCounts(TypedDict):
    """An instance's sessions, counted."""

    total: Annotated[int, Field(description="Sessions in its project")]
    busy: Annotated[int, Field(description="Working now")]
    idle: Annotated[int, Field(description="Not working")]
    busy_ids: NotRequired[Annotated[list[str], Field(description="The busy ones' ids")]]


@with_config(OPEN)
class TaskTotals(TypedDict):
    """Every stored task, summed."""

    tasks: Annotated[dict[str, int], Field(description="Tasks by status")]
    tokens: Annotated[
        dict[str, int],
        Field(description="Tokens: input, output, reasoning, cache_read, cache_write"),
    ]
    cost: Annotated[float, Field(description="Cost in USD")]


# -- tool results -------------------------------------------------------------------------------
@with_config(OPEN)
class FleetFrame(TypedDict):
    """Every managed instance with its figures, and the totals."""

    taken_at: Annotated[float, Field(description="When it was read (Unix time)")]
    instances: Annotated[list[FleetRow], Field(description="One row per managed instance")]
    totals: Annotated[FleetTotals, Field(description="Sums over the instances")]


@with_config(OPEN)
class Metrics(FleetFrame):
    """The fleet frame, plus the stored tasks' totals."""

    tasks: Annotated[TaskTotals, Field(description="Every stored task, summed")]


@with_config(OPEN)
class InstanceList(TypedDict):
    """Instances, each as `ocm ls --json` shows it."""

    instances: Annotated[list[InstanceInfo], Field(description="One per instance")]


@with_config(OPEN)
class InstanceDetail(InstanceInfo):
    """An instance as instances_list shows it, plus everything worth knowing about it (a key
    left out is unknown or empty)."""

    created_at: NotRequired[Annotated[float, Field(description="When ocm first recorded it")]]
    stopped_at: NotRequired[Annotated[float, Field(description="When it last stopped")]]
    events: NotRequired[
        Annotated[list[LifecycleEvent], Field(description="Its recent lifecycle events")]
    ]
    last_event: NotRequired[
        Annotated[
            LifecycleEvent,
            Field(description="Its latest event, when `events` does not end with it"),
        ]
    ]
    recent_errors: NotRequired[Annotated[list[str], Field(description="Error lines from its log")]]
    processes: NotRequired[
        Annotated[
            list[dict[str, Any]], Field(description="The server and its children (pid, rss...)")
        ]
    ]
    tree_rss_bytes: Annotated[int, Field(description="Memory of all those processes")]
    connections: NotRequired[
        Annotated[dict[str, int], Field(description="TCP connections by state")]
    ]
    sessions: NotRequired[Annotated[SessionCounts, Field(description="Its sessions, counted")]]
    mcp: NotRequired[Annotated[dict[str, Any], Field(description="Its MCP servers' status")]]
    lsp: NotRequired[Annotated[list[Any], Field(description="Its language servers")]]
    api_errors: NotRequired[Annotated[list[str], Field(description="What its API did not answer")]]
    settings: NotRequired[
        Annotated[dict[str, Any], Field(description="How it was started (env: keys only)")]
    ]


@with_config(OPEN)
class LogLines(TypedDict):
    """Lines of an instance's log."""

    lines: Annotated[list[str], Field(description="Oldest first")]


@with_config(OPEN)
class EventList(TypedDict):
    """Lifecycle events, and the cursor to ask for newer ones."""

    events: Annotated[list[LifecycleEvent], Field(description="Oldest first, each with its id")]
    cursor: Annotated[int | None, Field(description="Pass back as `after` for newer ones")]


@with_config(OPEN)
class SessionList(TypedDict):
    """Sessions."""

    sessions: Annotated[list[SessionRow], Field(description="Oldest update first")]


@with_config(OPEN)
class SessionDetail(TypedDict):
    """A session with a page of its messages, its todos, diff and pending asks."""

    session: Annotated[SessionRow, Field(description="The session")]
    messages: Annotated[
        list[dict[str, Any]], Field(description="This page of messages, as OpenCode sends them")
    ]
    total_messages: Annotated[int, Field(description="Messages in the session")]
    next_offset: Annotated[int | None, Field(description="`offset` of the next page, if any")]
    todos: Annotated[list[Any], Field(description="The agent's todo list")]
    diff: Annotated[list[dict[str, Any]], Field(description="Files changed, per user message")]
    asks: Annotated[list[PendingAsk], Field(description="What it waits on, oldest first")]


@with_config(OPEN)
class TaskList(TypedDict):
    """Stored tasks, in brief."""

    tasks: Annotated[list[TaskBrief], Field(description="Newest last")]


@with_config(OPEN)
class BatchSummary(BatchBrief):
    """A batch with its counts and every task's outcome."""

    tasks: Annotated[list[TaskOutcome], Field(description="Each task, in batch-file order")]


@with_config(OPEN)
class BatchList(TypedDict):
    """Batches, in brief."""

    batches: Annotated[list[BatchBrief], Field(description="Every batch")]


@with_config(OPEN)
class TaskHandle(TypedDict):
    """A task followed for up to `wait_s` seconds: its record, ended or not, and what to do
    next."""

    done: Annotated[bool, Field(description="It ended")]
    task_id: Annotated[str, Field(description="Its id, for task_wait and task_get")]
    record: Annotated[
        TaskRecord, Field(description="Its record as it stands (its id is `task_id`)")
    ]
    next: NotRequired[
        Annotated[str, Field(description="What to call next, while it has not ended")]
    ]
    asks: NotRequired[
        Annotated[list[PendingAsk], Field(description="Asks left for you that it waits on")]
    ]


@with_config(OPEN)
class BatchStarted(TypedDict):
    """A batch that started running in this server process."""

    batch_id: Annotated[str, Field(description="Its id, for batch_get")]
    total: Annotated[int, Field(description="Tasks in it")]
    status: Annotated[
        str, Field(description="running; with a key used before: that batch's status")
    ]
    next: Annotated[str, Field(description="What to call to follow it")]


@with_config(OPEN)
class PermissionReply(TypedDict):
    """A permission ask, answered."""

    answered: Annotated[PendingAsk, Field(description="The ask as it was")]
    reply: Annotated[str, Field(description="once, always or reject")]


@with_config(OPEN)
class QuestionAnswer(TypedDict):
    """A question ask, answered or rejected."""

    answered: Annotated[PendingAsk, Field(description="The ask as it was")]
    answers: Annotated[
        list[list[str]] | None, Field(description="The labels chosen, one list per question")
    ]
    rejected: Annotated[bool, Field(description="It was declined instead")]


@with_config(OPEN)
class StopList(TypedDict):
    """Instances stopped."""

    stopped: Annotated[list[StopResult], Field(description="One per instance")]
