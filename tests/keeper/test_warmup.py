"""Unit tests: the warm-up's plan and sequence over an injected call and clock (no server),
and the keeper running it before `running` (fake spawner and probe)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.errors import ServerRefused, ServerUnreachable
from opencode_manager.instances.warmprovider import MODEL_ID, PROVIDER_ID
from opencode_manager.keeper import warmup
from opencode_manager.keeper.loop import Keeper
from opencode_manager.keeper.warmup import READ_STEPS, TITLE, Read, Turn, plan, warm_up
from opencode_manager.lines import Line
from opencode_manager.models import InstanceSpec, State
from opencode_manager.registry import Registry
from opencode_manager.settings import Settings
from opencode_manager.supervision import Limits
from opencode_manager.testing.keeper import FakeHost, FakeProbe, FakeSpawner

pytestmark = [pytest.mark.timeout(20), pytest.mark.anyio]


class Clock:
    """Time moves only when a fake call says it took some."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Server:
    """A fake server for `warm_up`'s call: answers each line's session calls as it would."""

    def __init__(self, clock: Clock, *, step: float = 0.0) -> None:
        self.clock = clock
        self.step = step
        self.calls: list[tuple[str, str, Any]] = []
        self.fail: dict[str, Exception] = {}  # a target prefix -> what its call raises
        self.hang: str | None = None  # a target prefix whose call never answers

    async def __call__(
        self, method: str, target: str, body: object, timeout: float, keep: bool
    ) -> Any:
        self.calls.append((method, target, body))
        self.clock.now += self.step
        for prefix, exc in self.fail.items():
            if target.startswith(prefix):
                raise exc
        if self.hang and target.startswith(self.hang):
            await asyncio.Event().wait()
        if method == "POST" and target.split("?")[0] == "/session":
            return {"id": f"ses_{len(self.calls)}"}
        if method == "POST" and target == "/api/session":
            return {"data": {"id": f"ses_{len(self.calls)}"}}
        if target.endswith("/message"):
            return {"info": {"finish": "stop"}, "parts": []}
        if method == "GET" and target.startswith("/api/session/"):
            return {"data": {"outcome": "succeeded"}}
        return None


def test_the_plan_turns_in_the_directory_only_where_the_provider_is() -> None:
    both = plan(Line.V1, "/p", "/s", provided=True)
    assert both == [Turn("text turn", "/p", "ocm warm-up"), Turn("shell turn", "/s", "BASH: true")]
    # Not provided: 1.x falls back to the read-only bootstrap of the directory; 2.x has none.
    v1 = plan(Line.V1, "/my p", "/s", provided=False)
    assert [s.label for s in v1] == [*READ_STEPS, "shell turn"]
    assert isinstance(v1[0], Read)
    assert v1[0].target == "/config?directory=%2Fmy%20p"
    assert plan(Line.V2, "/p", "/s", provided=False) == [Turn("shell turn", "/s", "BASH: true")]
    assert plan(Line.V2, "/p", None, provided=False) == []  # a re-warm has no shell turn


async def test_a_1x_turn_is_titled_names_the_warm_up_model_and_is_deleted() -> None:
    clock = Clock()
    server = Server(clock, step=0.25)
    steps = plan(Line.V1, "/p", "/s", provided=True)
    result = await warm_up(server, Line.V1, steps, budget=10.0, clock=clock)
    assert result.done == ("text turn", "shell turn")
    assert not result.failed
    methods = [(m, t.split("?")[0]) for m, t, _ in server.calls]
    assert methods == [
        ("POST", "/session"), ("POST", "/session/ses_1/message"), ("DELETE", "/session/ses_1"),
        ("POST", "/session"), ("POST", "/session/ses_4/message"), ("DELETE", "/session/ses_4"),
    ]  # fmt: skip
    created = server.calls[0]
    assert created[1] == "/session?directory=%2Fp"
    assert created[2]["title"] == TITLE  # titled: OpenCode makes no title call
    message = server.calls[1][2]
    assert message["model"] == {"providerID": PROVIDER_ID, "modelID": MODEL_ID}
    assert server.calls[3][1] == "/session?directory=%2Fs"
    assert server.calls[4][2]["parts"][0]["text"] == "BASH: true"
    assert result.seconds == pytest.approx(1.5)
    assert "text turn, shell turn; 2/2 steps" in result.describe()


async def test_a_2x_turn_creates_with_the_model_prompts_waits_and_deletes() -> None:
    clock = Clock()
    server = Server(clock)
    result = await warm_up(server, Line.V2, [Turn("t", "/p", "hi")], budget=10.0, clock=clock)
    assert result.done == ("t",)
    assert [(m, t) for m, t, _ in server.calls] == [
        ("POST", "/api/session"),
        ("POST", "/api/session/ses_1/prompt"),
        ("POST", "/api/experimental/session/ses_1/wait"),
        ("GET", "/api/session/ses_1"),
        ("DELETE", "/api/session/ses_1"),
    ]
    created = server.calls[0][2]
    assert created["title"] == TITLE
    assert created["location"] == {"directory": "/p"}
    assert created["model"] == {"id": MODEL_ID, "providerID": PROVIDER_ID}


async def test_a_turn_that_ended_badly_is_reported_and_its_session_still_deleted() -> None:
    clock = Clock()
    server = Server(clock)

    async def failing(method: str, target: str, body: object, timeout: float, keep: bool) -> Any:
        answer = await server(method, target, body, timeout, keep)
        if target.endswith("/message"):
            return {"info": {"error": {"data": {"message": "no such model"}}}}
        return answer

    steps = plan(Line.V1, "/p", "/s", provided=True)
    result = await warm_up(failing, Line.V1, steps, budget=10.0, clock=clock)
    assert result.failed == ("text turn: no such model", "shell turn: no such model")
    assert [t for m, t, _ in server.calls if m == "DELETE"] == ["/session/ses_1", "/session/ses_4"]


async def test_a_failing_step_is_reported_and_the_rest_still_run() -> None:
    clock = Clock()
    server = Server(clock)
    server.fail["/agent"] = ServerRefused("/agent failed with HTTP 500", status_code=500)
    steps = plan(Line.V1, "/p", None, provided=False)
    result = await warm_up(server, Line.V1, steps, budget=10.0, clock=clock)
    assert result.done == ("/config", "/config/providers")
    assert result.failed == ("/agent: /agent failed with HTTP 500",)
    assert "failed: /agent" in result.describe()


async def test_the_budget_bounds_the_whole_warm_up() -> None:
    clock, timeouts = Clock(), []

    async def call(method: str, target: str, body: object, timeout: float, keep: bool) -> Any:
        timeouts.append(timeout)
        clock.now += 3.0  # every call is slow
        if clock.now - 100.0 > 5.0:
            raise ServerUnreachable("timed out")
        return {}

    steps = plan(Line.V1, "/p", None, provided=False)
    result = await warm_up(call, Line.V1, steps, budget=5.0, clock=clock)
    assert timeouts == [5.0, 2.0]  # each call gets only what is left
    assert result.done == ("/config",)
    assert result.timed_out
    assert not result.failed
    assert "budget spent" in result.describe()


async def test_a_cancelled_turn_is_interrupted_and_its_session_deleted() -> None:
    server = Server(Clock())
    server.hang = "/session/ses_1/message"
    warming = asyncio.create_task(
        warm_up(server, Line.V1, [Turn("t", "/p", "hi")], budget=10.0, clock=Clock())
    )
    while len(server.calls) < 2:
        await asyncio.sleep(0.001)  # polled; the test's timeout is the deadline
    warming.cancel()
    with pytest.raises(asyncio.CancelledError):
        await warming
    assert [(m, t) for m, t, _ in server.calls[2:]] == [
        ("POST", "/session/ses_1/abort"),
        ("DELETE", "/session/ses_1"),
    ]


def test_a_1x_directory_is_warmed_again_before_its_runner_expires() -> None:
    assert not warmup.rewarm_due(Line.V1, 0.0, warmup.REWARM_AFTER - 1)
    assert warmup.rewarm_due(Line.V1, 0.0, warmup.REWARM_AFTER)
    assert not warmup.rewarm_due(Line.V2, 0.0, 10 * warmup.REWARM_AFTER)  # kept for good
    assert warmup.REWARM_AFTER < 60 * 60  # OpenCode 1.x drops it after 60 idle minutes


def _keeper(
    tmp_path: Path, label: str, budget: str = "15", limits: Limits | None = None, **spec: Any
) -> Any:
    environ = {"HOME": str(tmp_path), "OCM_WARMUP_TIMEOUT": budget}
    settings = Settings.load(home=tmp_path / label, environ=environ)
    settings.ensure_home()
    registry = Registry(settings.registry_path)
    with registry.transaction() as db:
        spec_ = InstanceSpec(name="w", dir=str(tmp_path), **spec)
        registry.reserve(db, spec_, port=None, token="t")
    spawner = FakeSpawner()
    probe = FakeProbe(spawner)
    keeper = Keeper(
        settings,
        registry.get("w"),
        registry,
        spawner=spawner,
        probe=probe,
        host=FakeHost(),
        capture_stdio=False,
        limits=limits,
    )
    return keeper, registry, spawner, probe


async def _until_running(keeper: Keeper, registry: Registry, spawner: FakeSpawner) -> Any:
    task = asyncio.create_task(keeper.run(signals=False))
    await spawner.started(1)
    while registry.get("w").state is not State.RUNNING:
        await asyncio.sleep(0.005)  # polled; the test's timeout is the deadline
    return task


async def test_the_keeper_warms_up_before_running_and_not_when_turned_off(
    tmp_path: Path,
) -> None:
    cases: tuple[tuple[str, str, dict[str, Any]], ...] = (
        ("on", "15", {}),
        ("zero", "0", {}),
        ("off", "15", {"warm": False}),
    )
    for label, budget, spec in cases:
        keeper, registry, spawner, probe = _keeper(tmp_path, label, budget, **spec)
        task = await _until_running(keeper, registry, spawner)
        methods = [(m, t.split("?")[0]) for m, t, _ in probe.calls]
        if label == "on":
            # Nothing pins a model here: the read-only bootstrap, then the shell turn in the
            # keeper's throw-away directory (configured for the warm-up model alone).
            assert methods[:3] == [("GET", path) for path in READ_STEPS]
            assert methods[3:] == [
                ("POST", "/session"),
                ("POST", "/session/ses_fake1/message"),
                ("DELETE", "/session/ses_fake1"),
            ]
            scratch = probe.calls[3][1].split("directory=")[1].replace("%2F", "/")
            assert scratch.startswith(str(tmp_path / label))
            assert not Path(scratch).exists()  # made for the turn and removed
            log = keeper.settings.log_path("w").read_text()
            assert "(/config, /agent, /config/providers, shell turn; 4/4 steps, " in log
            assert "1.50 s of server CPU)" in log  # 6 calls of 0.25 s each (the fake's)
            env = spawner.servers[0].env
            assert "ocm-warmup" not in env.get("OPENCODE_CONFIG_CONTENT", "")
        else:
            assert probe.calls == []
        if label == "off":
            assert keeper.model is None  # no port of its own either
        keeper.request_stop()
        assert await asyncio.wait_for(task, 5.0) == 0
        registry.close()


async def test_the_provider_is_added_only_where_a_layer_pins_the_model(tmp_path: Path) -> None:
    config = tmp_path / "opencode.json"
    config.write_text('{"model": "mine/big", // the user\'s\n "provider": {"mine": {}},}')
    keeper, registry, spawner, probe = _keeper(tmp_path, "pinned")
    task = await _until_running(keeper, registry, spawner)
    content = json.loads(spawner.servers[0].env["OPENCODE_CONFIG_CONTENT"])
    assert PROVIDER_ID in content["provider"]
    assert "model" not in content  # the user's `model` (in their file) stays the default
    assert probe.calls[0][1] == "/session?directory=" + str(tmp_path).replace("/", "%2F")
    assert probe.calls[1][2]["model"]["providerID"] == PROVIDER_ID
    keeper.request_stop()
    assert await asyncio.wait_for(task, 5.0) == 0
    registry.close()


async def test_a_quiet_1x_directory_is_warmed_again_and_a_busy_one_is_not(
    tmp_path: Path,
) -> None:
    (tmp_path / "opencode.json").write_text('{"model": "mine/big"}')
    keeper, registry, spawner, probe = _keeper(
        tmp_path, "again", limits=Limits(health_interval=0.01)
    )
    keeper.rewarm_after = 0.3
    task = await _until_running(keeper, registry, spawner)
    first = len(probe.calls)
    assert first == 6  # the text turn and the shell turn, 3 calls each

    def creations() -> list[str]:
        return [t for m, t, _ in probe.calls if m == "POST" and t.startswith("/session?")]

    while len(creations()) < 3:
        await asyncio.sleep(0.01)  # polled; the test's timeout is the deadline
    again = probe.calls[first]
    assert again[1] == "/session?directory=" + str(tmp_path).replace("/", "%2F")  # no shell turn
    assert probe.calls[first + 1][2]["model"]["providerID"] == PROVIDER_ID

    # A session busy in the directory is a turn: the runner is in use, no warm-up is due.
    asked = 0
    busy = probe.busy

    async def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal asked
        asked += 1
        answer: dict[str, Any] = await busy(*args, **kwargs)
        return answer

    probe.busy = counted
    probe.busy_sessions = {"ses_user": {"type": "busy"}}
    seen = len(creations())
    while asked < 5:  # five more times due, each time found busy
        await asyncio.sleep(0.01)  # polled; the test's timeout is the deadline
    assert len(creations()) <= seen + 1  # at most one that had begun before the session
    keeper.request_stop()
    assert await asyncio.wait_for(task, 5.0) == 0
    registry.close()
