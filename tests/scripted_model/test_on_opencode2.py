"""The scripted model drives a real OpenCode 2 server: a `BASH: echo hi` turn runs its `shell`.

OpenCode 2 is the `opencode2_bin` fixture: OCM_TEST_OPENCODE2, or where scripts/setup installs
it (`ocm install --version 2.1.2` into .cache/ocm). The server is driven over its own API (no
ocm dialect for 2.x tasks exists yet), wired to the scripted model through a project
opencode.json, as the 1.x tests are.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opencode_manager.instances.ports import ephemeral_port
from opencode_manager.scripted_model import ScriptedModelServer, opencode_config

from helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def opencode2(opencode2_bin: str) -> str:
    version = subprocess.run(
        [opencode2_bin, "--version"], capture_output=True, text=True, timeout=60, check=False
    ).stdout.strip()
    assert version.startswith("opencode v2."), f"{opencode2_bin} is not OpenCode 2: {version!r}"
    return opencode2_bin


@pytest.fixture
def server(opencode2: str, model: ScriptedModelServer, tmp_path: Path) -> Iterator[httpx.Client]:
    """An `opencode serve` (2.x) in a project wired to the scripted model, and a client."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "opencode.json").write_text(json.dumps(opencode_config(model.base_url)))
    port = ephemeral_port("127.0.0.1")
    password = secrets.token_urlsafe(18)
    log = (tmp_path / "serve.out").open("wb")
    proc = subprocess.Popen(
        [opencode2, "serve", "--hostname", "127.0.0.1", "--port", str(port)],
        cwd=project,
        env={**os.environ, "OPENCODE_SERVER_PASSWORD": password},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", auth=("opencode", password), timeout=30
    )
    try:

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.out").read_text()
            try:
                info = client.get("/api/info")
            except httpx.TransportError:
                return False
            # 503 while the server is still starting; then its identity.
            return info.status_code == 200 and str(info.json()["version"]).startswith("2.")

        wait_for(ready, timeout=90, interval=0.2, message="OpenCode 2 to answer /api/info")
        yield client
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


def _messages(client: httpx.Client, session: str) -> list[dict[str, Any]]:
    found = client.get(f"/api/session/{session}/message", params={"order": "asc"})
    found.raise_for_status()
    messages = found.json()["data"]
    assert isinstance(messages, list)
    return messages


def test_a_bash_turn_runs_the_shell_tool_on_opencode_2(
    server: httpx.Client, model: ScriptedModelServer
) -> None:
    created = server.post("/api/session", json={"title": "scripted on 2.x"})
    created.raise_for_status()
    session = created.json()["data"]["id"]
    model.requests.clear()
    admitted = server.post(f"/api/session/{session}/prompt", json={"text": "BASH: echo hi"})
    admitted.raise_for_status()

    def finished() -> list[dict[str, Any]] | None:
        messages = _messages(server, session)
        return messages if messages and messages[-1]["type"] == "idle" else None

    messages = wait_for(finished, timeout=60, message="the turn to end (an idle entry)")
    assert isinstance(messages, list)
    assert messages[-1]["outcome"] == "succeeded", messages[-1]
    tools = [
        part
        for message in messages
        if message["type"] == "assistant"
        for part in message["content"]
        if part["type"] == "tool"
    ]
    assert [(t["name"], t["state"]["status"]) for t in tools] == [("shell", "completed")]
    assert tools[0]["state"]["input"] == {"command": "echo hi"}
    assert tools[0]["state"]["content"] == [{"type": "text", "text": "hi\n"}]
    texts = [
        part["text"]
        for message in messages
        if message["type"] == "assistant"
        for part in message["content"]
        if part["type"] == "text"
    ]
    assert texts == ["Tool said: hi\n"]
    # The model was asked twice: the call (offered `shell`, no `bash`), then the follow-up.
    turn = [r for r in model.requests.entries() if r["path"] == "/v1/chat/completions"]
    assert [(r["behaviour"], r["followup"]) for r in turn] == [("bash", False), ("bash", True)]


def _turn(client: httpx.Client, model_id: str, text: str) -> list[dict[str, Any]]:
    """One turn on `scripted/<model_id>` in a new session, followed to its idle entry."""
    created = client.post(
        "/api/session", json={"model": {"id": model_id, "providerID": "scripted"}}
    )
    created.raise_for_status()
    session = created.json()["data"]["id"]
    client.post(f"/api/session/{session}/prompt", json={"text": text}).raise_for_status()

    def finished() -> list[dict[str, Any]] | None:
        messages = _messages(client, session)
        return messages if messages and messages[-1]["type"] == "idle" else None

    messages = wait_for(finished, timeout=60, message=f"the turn of {text!r} to end")
    assert isinstance(messages, list)
    return messages


def test_price_refusal_and_trouble_on_opencode_2(
    server: httpx.Client, model: ScriptedModelServer
) -> None:
    from opencode_manager.limits import Spend, SpendFold, Trouble, classify

    # A priced model: OpenCode 2 computes the step's cost from the config's price.
    priced = _turn(server, "good", "USAGE 100000 2000 price me")
    [step] = [m for m in priced if m["type"] == "assistant"]
    assert step["cost"] == pytest.approx(0.33)
    assert priced[-1]["outcome"] == "succeeded"
    assert Spend.of(step["tokens"], step["cost"]).tokens == 102000
    fold = SpendFold()
    event = {"type": "session.step.ended",
             "data": {"assistantMessageID": step["id"], "tokens": step["tokens"],
                      "cost": step["cost"]}}  # fmt: skip
    assert fold.feed(event) == Spend(100000, 2000, 0, 0, 0, step["cost"])
    # The broken model refuses: a provider.invalid-request, classified as refused.
    refused = _turn(server, "broken", "hello")
    found = classify(refused[-1]["error"])
    assert found is not None
    assert (found.trouble, found.status, found.name) == (
        Trouble.REFUSED, 400, "provider.invalid-request"
    )  # fmt: skip
    # A rate limit (NORETRY: OpenCode 2 would retry 10 times over ~80 s) is transient,
    # with the retry-after the model asked for.
    limited = _turn(server, "good", "RATELIMIT 3 0.5 NORETRY once")
    found = classify(limited[-1]["error"])
    assert found is not None
    assert (found.trouble, found.name, found.retry_after) == (
        Trouble.TRANSIENT, "provider.rate-limit", 0.5
    )  # fmt: skip
    down = _turn(server, "good", "OUTAGE 60 NORETRY down")
    found = classify(down[-1]["error"])
    assert found is not None
    assert (found.trouble, found.status) == (Trouble.TRANSIENT, 503)
    asked = [(r["model"], r["behaviour"], r["status"]) for r in model.requests.entries()
             if r["has_tools"]]  # fmt: skip
    assert ("broken", "broken", 400) in asked
    assert ("good", "ratelimit", 429) in asked
    assert ("good", "outage", 503) in asked
