"""`ocm demo`: the main job end to end, offline, on the bundled scripted model."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from . import process
from .errors import OcmError
from .instances import lifecycle
from .instances.fleet import Fleet, is_live
from .instances.inventory import fresh
from .instances.spec import build_specs
from .models import InstanceRecord, ProcessIdentity
from .scripted_model import ScriptedModelServer, opencode_config

Say = Callable[[str], None]

PROMPTS = (
    "Hello! Introduce yourself in one line.",
    "BASH: echo hello from the fleet && ls",
    "TODO: plan the release",
    "REASON about the weather",
)


def _say(say: Say | None, text: str) -> None:
    if say is not None:
        say(text)


async def run_demo(fleet: Fleet, *, count: int = 3, say: Say | None = None) -> dict[str, Any]:
    """Start a fleet wired to the scripted model, give each a task, show results, stop all."""
    if count < 1 or count > 8:
        raise OcmError("demo fleet size must be between 1 and 8")
    base = "demo"
    names = [base] if count == 1 else [f"{base}-{i}" for i in range(1, count + 1)]
    await asyncio.to_thread(_forget_old_demo, fleet, names)
    project = fleet.settings.home / "demo" / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "README.md").write_text("A scratch project for `ocm demo`.\n")
    with ScriptedModelServer() as model:
        model_url = model.base_url
        _say(say, f"scripted model listening on {model_url}")
        env = [
            "OPENCODE_CONFIG_CONTENT=" + json.dumps(opencode_config(model_url)),
            "OPENCODE_DISABLE_MODELS_FETCH=1",
            # Offline, OpenCode's npm install of its plugin package would retry for about 75 s
            # before the first prompt of each instance: fail at once instead.
            "npm_config_fetch_retries=0",
        ]
        _say(say, f"starting {count} OpenCode server(s)…")
        t0 = time.monotonic()
        specs = build_specs(name=base, count=count, directory=str(project), env=env)
        await asyncio.to_thread(lifecycle.start, fleet, specs)
        infos = await fresh(fleet, names)  # each answered its health check
        start_seconds = time.monotonic() - t0
        for info in infos:
            _say(say, f"  {info.name} healthy at {info.url} (pid {info.pid})")
        tree: list[ProcessIdentity] = []
        try:
            _say(say, f"running {count} task(s)…")
            t1 = time.monotonic()
            records = [r for r in await asyncio.to_thread(fleet.records) if r.name in names]
            tasks = await asyncio.gather(
                *(
                    _task(fleet, record, PROMPTS[i % len(PROMPTS)])
                    for i, record in enumerate(records)
                )
            )
            task_seconds = time.monotonic() - t1
            tree = _fleet_processes(records, names)
        finally:
            _say(say, "stopping the fleet…")
            t2 = time.monotonic()
            await asyncio.to_thread(lifecycle.stop, fleet, names)
            stop_seconds = time.monotonic() - t2
            await asyncio.to_thread(lifecycle.remove, fleet, names)
    leftover = sum(1 for ident in tree if process.is_alive(ident))
    return {
        "fleet": count,
        "model": model_url,
        "start_seconds": round(start_seconds, 2),
        "task_seconds": round(task_seconds, 2),
        "stop_seconds": round(stop_seconds, 2),
        "tasks": list(tasks),
        "processes_checked": len(tree),
        "leftover_processes": leftover,
    }


async def _task(fleet: Fleet, record: InstanceRecord, prompt: str) -> dict[str, Any]:
    name = record.name
    started = time.monotonic()
    client = fleet.client(record, timeout=120.0)  # ConflictError without a URL
    session = await client.create_session(title=f"demo on {name}")
    await client.prompt(session.id, prompt)
    history = await client.messages(session.id)
    tools: list[str] = []
    reply = ""
    for message in history:
        if message.role != "assistant":
            continue
        for part in message.parts:
            if part.type == "tool" and part.tool:
                tools.append(part.tool)
            elif part.type == "text" and part.text:
                reply = part.text.strip()
    return {
        "instance": name,
        "session": session.id,
        "prompt": prompt,
        "reply": reply,
        "tools": tools,
        "seconds": round(time.monotonic() - started, 2),
    }


def _fleet_processes(records: list[InstanceRecord], names: list[str]) -> list[ProcessIdentity]:
    """Every process of the fleet right now (servers, children, keepers), to check later."""
    found: list[ProcessIdentity] = []
    for record in records:
        if record.name not in names:
            continue
        for ident in (record.keeper, record.server):
            proc = process.verified(ident)
            if proc is None:
                continue
            for member in [proc, *process.descendants(proc)]:
                member_id = process.identity_of(member.pid)
                if member_id is not None:
                    found.append(member_id)
    return found


def _forget_old_demo(fleet: Fleet, names: list[str]) -> None:
    """A demo interrupted earlier may have left records: stop and forget them."""
    for record in fleet.records():
        if record.name in names or record.name.startswith("demo-") or record.name == "demo":
            if is_live(record):
                lifecycle.stop(fleet, [record.name])
            lifecycle.remove(fleet, [record.name])
