"""Unit tests: the keeper drives a server of the line its binary's version says (fake seams).

The row's version is the binary's (lifecycle stores it at reservation); the fake probe answers
the way that line's health route would (client/readiness.py verdicts), or as scripted: a 2.x
server's 503s while it boots, a failed boot (500), an answer that is no OpenCode API at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from opencode_manager.client.readiness import Phase, Verdict
from opencode_manager.keeper import loop
from opencode_manager.keeper.loop import Keeper
from opencode_manager.lines import Line
from opencode_manager.models import InstanceRecord, InstanceSpec, State
from opencode_manager.registry import Registry
from opencode_manager.settings import Settings
from opencode_manager.supervision import Limits, RestartPolicy
from opencode_manager.testing.keeper import FakeHost, FakeProbe, FakeServer, FakeSpawner

pytestmark = [pytest.mark.timeout(30), pytest.mark.anyio]

FAST = Limits(
    policy=RestartPolicy.ON_FAILURE,
    max_restarts=3,
    window=60.0,
    health_interval=0.01,
    health_timeout=0.1,
    recycle_grace=0.05,
)
STARTING = Verdict(Phase.STARTING, Line.V2, "2.1.2", "/api/info answered 503 service_starting", 1.0)


class Harness:
    def __init__(
        self, tmp_path: Path, version: str | None, start_timeout: float | None, **spec: Any
    ) -> None:
        self.settings = Settings.load(home=tmp_path / "ocm", environ={"HOME": str(tmp_path)})
        self.settings.ensure_home()
        self.registry = Registry(self.settings.registry_path)
        with self.registry.transaction() as db:
            self.registry.reserve(
                db, InstanceSpec(name="k", dir=str(tmp_path), **spec), port=None,
                token="t0k3n", version=version, start_timeout=start_timeout,
            )  # fmt: skip
        self.spawner = FakeSpawner()
        self.probe = FakeProbe(self.spawner, version=version or "1.18.33")
        self.keeper = Keeper(
            self.settings,
            self.registry.get("k"),
            Registry(self.settings.registry_path, timeout=0.05),
            spawner=self.spawner,
            probe=self.probe,
            host=FakeHost(),
            limits=FAST,
            capture_stdio=False,
        )
        self.task: asyncio.Task[int] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.keeper.run(signals=False))

    def record(self) -> InstanceRecord:
        return self.registry.get("k")

    def log(self) -> str:
        return self.settings.log_path("k").read_text()

    async def until(self, check: Callable[[], Any], timeout: float = 10.0) -> None:
        async def poll() -> None:
            while not check():
                await asyncio.sleep(0.005)

        await asyncio.wait_for(poll(), timeout)

    async def running(self) -> FakeServer:
        server = await self.spawner.started(1)
        await self.until(lambda: self.record().state is State.RUNNING)
        return server

    async def finish(self) -> int:
        assert self.task is not None
        return await asyncio.wait_for(self.task, 10.0)


Make = Callable[..., Harness]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Make]:
    made: list[Harness] = []

    def make(
        version: str | None = "2.1.2",
        *,
        script: tuple[Verdict, ...] = (),
        answer: Verdict | None = None,
        start_timeout: float | None = None,
        **spec: Any,
    ) -> Harness:
        h = Harness(tmp_path, version, start_timeout, **spec)
        h.probe.script = list(script)
        h.probe.answer = answer
        made.append(h)
        h.start()
        return h

    yield make
    for h in made:
        if h.task is not None and not h.task.done():
            h.keeper.request_stop()
            await asyncio.wait_for(h.task, 10.0)
        h.registry.close()


async def test_a_2x_server_booting_is_waited_for_and_then_driven_as_2x(harness: Make) -> None:
    h = harness(script=(STARTING, STARTING), log_level="INFO")
    server = await h.running()
    assert h.record().version == "2.1.2"
    assert h.probe.expected[:3] == [Line.V2, Line.V2, Line.V2]  # /api/info, not /global/health
    # 2.x refuses the upper-case levels 1.x takes.
    assert server.argv[server.argv.index("--log-level") + 1] == "info"
    # The warm-up speaks 2.x: the shell turn in a session of its own (nothing pins a model
    # here, so no text turn in the directory), deleted afterwards.
    assert [(m, t) for m, t, _ in h.probe.calls] == [
        ("POST", "/api/session"),
        ("POST", "/api/session/ses_fake1/prompt"),
        ("POST", "/api/experimental/session/ses_fake1/wait"),
        ("GET", "/api/session/ses_fake1"),
        ("DELETE", "/api/session/ses_fake1"),
    ]
    assert "warmed up in" in h.log()
    assert "shell turn; 1/1 steps" in h.log()
    h.keeper.request_stop()
    assert await h.finish() == 0
    assert h.probe.disposed == []  # 2.x has no dispose route: SIGTERM is its graceful stop
    assert server.terminations  # it was signalled
    assert h.record().state is State.STOPPED


async def test_a_1x_server_keeps_its_warm_up_and_dispose(harness: Make) -> None:
    h = harness("1.18.33", log_level="INFO")
    server = await h.running()
    assert h.probe.expected[0] is Line.V1
    assert server.argv[server.argv.index("--log-level") + 1] == "INFO"
    await h.until(lambda: len(h.probe.warmed) == 6)  # 3 reads, the shell turn's 3 calls
    h.keeper.request_stop()
    assert await h.finish() == 0
    assert h.probe.disposed == [server.url]


async def test_503_is_asked_again_soon_not_after_a_whole_retry_after(harness: Make) -> None:
    h = harness(script=(STARTING,) * 6)
    loop_ = asyncio.get_running_loop()
    began = loop_.time()
    await h.running()
    # retry-after says 1 s; each wait is capped (loop.RETRY_AFTER_CAP), so six 503s take
    # about 1.5 s, not 6 s.
    assert loop_.time() - began < 6 * 1.0


async def test_a_failed_2x_boot_fails_the_start_at_once(harness: Make) -> None:
    failed = Verdict(
        Phase.FAILED, Line.V2, "2.1.2", "/api/info answered 500: it could not boot (service_failed)"
    )
    h = harness(answer=failed, start_timeout=60)
    assert await h.finish() == 1
    record = h.record()
    assert record.state is State.CRASHED
    assert record.error == "/api/info answered 500: it could not boot (service_failed)"
    assert h.spawner.servers[0].terminations  # ended, not left running


async def test_a_server_of_another_line_than_its_binary_is_refused_at_once(harness: Make) -> None:
    h = harness(answer=Verdict(Phase.READY, Line.V1, "1.18.33"), start_timeout=60)
    assert await h.finish() == 1
    error = h.record().error or ""
    assert error == "the binary says 2.1.2, but the server answers as OpenCode 1.x 1.18.33"


async def test_no_api_at_all_fails_the_start_with_what_each_route_answered(
    harness: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "NOT_API_GRACE", 0.3)
    html = Verdict(Phase.NOT_API, detail="/api/info answered HTML, /global/health answered HTML")
    h = harness(None, answer=html, start_timeout=60)
    assert await h.finish() == 1
    error = h.record().error or ""
    assert error.startswith("no OpenCode API answered at http://127.0.0.1:"), error
    assert error.endswith("/api/info answered HTML, /global/health answered HTML"), error
    assert h.probe.expected[0] is None  # no version in the row: the server is asked which


async def test_a_2x_server_still_booting_at_the_deadline_says_so(harness: Make) -> None:
    h = harness(answer=STARTING, start_timeout=0.5)
    assert await h.finish() == 1
    error = h.record().error or ""
    assert error.startswith("this looks like OpenCode 2.x 2.1.2, but it was still starting"), error


async def test_the_password_a_2x_server_prints_never_reaches_the_log(harness: Make) -> None:
    h = harness(script=(STARTING,))
    server = await h.spawner.started(1)
    server.say("server password s2eUEr5xQ9wLkT3v")
    await h.running()
    await h.until(lambda: "server password [redacted]" in h.log())
    assert "s2eUEr5xQ9wLkT3v" not in h.log()
    assert "s2eUEr5xQ9wLkT3v" not in "\n".join(h.keeper.log.tail)


async def test_a_2x_server_that_stops_answering_its_api_is_recycled(harness: Make) -> None:
    h = harness()
    server = await h.running()
    h.probe.answer = Verdict(Phase.NOT_API, detail="/api/info answered HTML")
    await h.until(lambda: len(h.spawner.servers) == 2)
    assert server.returncode is not None
    assert any(e.kind == "unhealthy" for e in h.registry.events("k"))
