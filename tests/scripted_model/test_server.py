"""Tests of ScriptedModelServer running uvicorn in a background thread."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

import opencode_manager.scripted_model as scripted_model
from opencode_manager import ConflictError
from opencode_manager.scripted_model import (
    MODEL,
    ScriptedModelServer,
    opencode_config,
    opencode_env,
)


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_start_serve_stop_on_port_zero() -> None:
    server = ScriptedModelServer()
    server.start()
    try:
        assert server.running
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.base_url == f"{server.url}/v1"
        response = httpx.get(f"{server.base_url}/models", timeout=5)
        assert response.json()["data"][0]["id"] == "scripted-model"
        assert server.requests.entries()[-1]["path"] == "/v1/models"
        port = server.port
    finally:
        server.stop()
    assert not server.running
    assert not port_open(port)
    server.stop()  # idempotent


def test_context_manager_and_request_log() -> None:
    with ScriptedModelServer() as server:
        response = httpx.post(
            f"{server.base_url}/chat/completions",
            json={"stream": False, "messages": [{"role": "user", "content": "hi"}]},
            timeout=5,
        )
        assert response.json()["choices"][0]["message"]["content"] == "Scripted Title"
        remote = httpx.get(f"{server.url}/_scripted/requests", timeout=5).json()
        assert remote == server.requests.entries()
        port = server.port
    assert not port_open(port)


def test_port_not_available_before_start() -> None:
    with pytest.raises(RuntimeError):
        _ = ScriptedModelServer().port


def test_slow_request_does_not_block_others() -> None:
    with ScriptedModelServer() as server:
        done = threading.Event()

        def slow() -> None:
            httpx.post(
                f"{server.base_url}/chat/completions",
                json={
                    "stream": True,
                    "tools": [{}],
                    "messages": [{"role": "user", "content": "SLEEPHDR 2"}],
                },
                timeout=10,
            )
            done.set()

        worker = threading.Thread(target=slow, daemon=True)
        worker.start()
        assert server.requests.wait_for(lambda es: any(e["behaviour"] == "sleephdr" for e in es), 5)
        start = time.monotonic()
        httpx.get(f"{server.base_url}/models", timeout=5).raise_for_status()
        assert time.monotonic() - start < 1
        assert not done.is_set()
        worker.join(10)
        assert done.is_set()


def test_busy_port_fails_to_start() -> None:
    with ScriptedModelServer() as first:
        second = ScriptedModelServer(port=first.port)
        with pytest.raises(ConflictError, match=f"port {first.port} is in use"):
            second.start()
        assert not second.running


def test_opencode_config() -> None:
    config = opencode_config("http://127.0.0.1:1234/v1")
    provider = config["provider"]["scripted"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"]["baseURL"] == "http://127.0.0.1:1234/v1"
    assert "scripted-model" in provider["models"]
    assert config["model"] == config["small_model"] == MODEL == "scripted/scripted-model"
    env = opencode_env("http://x/v1")
    assert env["OPENCODE_DISABLE_MODELS_FETCH"] == "1"
    assert '"baseURL": "http://x/v1"' in env["OPENCODE_CONFIG_CONTENT"]


def test_module_entry_point() -> None:
    src = pathlib.Path(scripted_model.__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "opencode_manager.scripted_model", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        prefix = "scripted model listening on "
        assert line.startswith(prefix), line
        base_url = line[len(prefix) :]
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        assert httpx.get(f"{base_url}/models", timeout=5).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
