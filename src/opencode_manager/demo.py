"""`ocm demo`: the main job end to end, offline, on the bundled scripted model."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rich.console import Console

from . import process
from .client import Endpoint, OpencodeClient
from .errors import OcmError
from .manager import Manager
from .models import ProcessIdentity, State
from .scripted_model import ScriptedModelServer, opencode_config

PROMPTS = (
    "Hello! Introduce yourself in one line.",
    "BASH: echo hello from the fleet && ls",
    "TODO: plan the release",
    "REASON about the weather",
)


def _say(console: Console | None, text: str) -> None:
    if console is not None:
        console.print(text, markup=False, highlight=False)


def run_demo(manager: Manager, *, count: int = 3, console: Console | None = None) -> dict[str, Any]:
    """Start a fleet wired to the scripted model, give each a task, show results, stop all."""
    if count < 1 or count > 8:
        raise OcmError("demo fleet size must be between 1 and 8")
    base = "demo"
    names = [base] if count == 1 else [f"{base}-{i}" for i in range(1, count + 1)]
    _forget_old_demo(manager, names)
    project = manager.settings.home / "demo" / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "README.md").write_text("A scratch project for `ocm demo`.\n")
    with ScriptedModelServer() as model:
        model_url = model.base_url
        _say(console, f"scripted model listening on {model_url}")
        env = [
            "OPENCODE_CONFIG_CONTENT=" + json.dumps(opencode_config(model_url)),
            "OPENCODE_DISABLE_MODELS_FETCH=1",
        ]
        t0 = time.monotonic()
        if console is not None:
            with console.status(f"starting {count} OpenCode server(s)…") as status:
                infos = manager.start(
                    base,
                    count=count,
                    directory=str(project),
                    env=env,
                    progress=lambda n, p: status.update(f"{n}: {p}"),
                )
        else:
            infos = manager.start(base, count=count, directory=str(project), env=env)
        start_seconds = time.monotonic() - t0
        for info in infos:
            _say(console, f"  {info.name} healthy at {info.url} (pid {info.pid})")
        tree: list[ProcessIdentity] = []
        try:
            t1 = time.monotonic()
            with ThreadPoolExecutor(max_workers=count) as pool:
                endpoints = [manager.endpoint(manager.registry.get(i.name)) for i in infos]
                futures = [
                    pool.submit(_task, info.name, endpoint, PROMPTS[i % len(PROMPTS)])
                    for i, (info, endpoint) in enumerate(zip(infos, endpoints, strict=True))
                ]
                if console is not None:
                    with console.status(f"running {count} task(s)…"):
                        tasks = [f.result() for f in futures]
                else:
                    tasks = [f.result() for f in futures]
            task_seconds = time.monotonic() - t1
            tree = _fleet_processes(manager, names)
        finally:
            t2 = time.monotonic()
            if console is not None:
                with console.status("stopping the fleet…"):
                    manager.stop(names)
            else:
                manager.stop(names)
            stop_seconds = time.monotonic() - t2
            manager.remove(names)
    leftover = sum(1 for ident in tree if process.is_alive(ident))
    return {
        "fleet": count,
        "model": model_url,
        "start_seconds": round(start_seconds, 2),
        "task_seconds": round(task_seconds, 2),
        "stop_seconds": round(stop_seconds, 2),
        "tasks": tasks,
        "processes_checked": len(tree),
        "leftover_processes": leftover,
    }


def _task(name: str, endpoint: Endpoint | None, prompt: str) -> dict[str, Any]:
    if endpoint is None:
        raise OcmError(f"{name} has no URL", instance=name)
    started = time.monotonic()
    with OpencodeClient(endpoint, timeout=120.0) as client:
        session = client.create_session(title=f"demo on {name}")
        client.prompt(session.id, prompt)
        history = client.messages(session.id)
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


def _fleet_processes(manager: Manager, names: list[str]) -> list[ProcessIdentity]:
    """Every process of the fleet right now (servers, children, keepers), to check later."""
    found: list[ProcessIdentity] = []
    for record in manager.records():
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


def _forget_old_demo(manager: Manager, names: list[str]) -> None:
    """A demo interrupted earlier may have left records: stop and forget them."""
    for record in manager.records():
        if record.name in names or record.name.startswith("demo-") or record.name == "demo":
            if record.state is not State.STOPPED and (
                process.is_alive(record.keeper) or process.is_alive(record.server)
            ):
                manager.stop([record.name])
            manager.remove([record.name])
