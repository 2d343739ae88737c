"""Run the scripted model app with uvicorn, in a background thread or as a blocking process."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from types import FrameType, TracebackType
from typing import TextIO

import uvicorn

from ..sockets import listener
from .app import RequestLog, create_app
from .faults import Faults

DEFAULT_HOST = "127.0.0.1"


class ScriptedModelServer:
    """A scripted OpenAI-compatible server running in a daemon thread."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        requests: RequestLog | None = None,
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.requests = requests if requests is not None else RequestLog()
        self.faults = Faults()  # trouble on demand: `faults.add(503, seconds=20)`
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._failure: BaseException | None = None

    @property
    def port(self) -> int:
        """The port actually bound (resolved when started with port 0)."""
        if self._port is None:
            raise RuntimeError("scripted model server is not running")
        return self._port

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL (``…/v1``) for OpenCode's provider config."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        """Whether the server thread is up and listening."""
        return self._port is not None and self._thread is not None and self._thread.is_alive()

    def start(self) -> ScriptedModelServer:
        """Start serving; return once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("scripted model server already started")
        config = uvicorn.Config(
            create_app(self.requests, self.faults),
            host=self.host,
            port=self._requested_port,
            log_level="warning",
            access_log=False,
            # Leave the host process's logging configuration alone.
            log_config=None,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        # Bind here, so a taken port is a clear error (ConflictError) raised to the caller.
        sock = listener(self.host, self._requested_port)
        server = uvicorn.Server(config)
        self._server = server
        self._failure = None
        thread = threading.Thread(
            target=self._run, args=(server, sock), name="scripted-model-server", daemon=True
        )
        self._thread = thread
        thread.start()

        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive():
                self._thread = None
                raise RuntimeError(
                    f"scripted model server failed to start on {self.host}:{self._requested_port}"
                ) from self._failure
            if time.monotonic() >= deadline:
                self._abort(server, thread)
                raise TimeoutError("scripted model server did not start in time")
            # uvicorn offers no thread-safe readiness event, so poll its flag briefly.
            thread.join(0.01)
        port = sock.getsockname()[1]
        assert isinstance(port, int)
        self._port = port
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # uvicorn reports its failures via SystemExit
            self._failure = exc
        finally:
            sock.close()

    def _abort(self, server: uvicorn.Server, thread: threading.Thread) -> None:
        server.should_exit = True
        thread.join(self._shutdown_timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(self._shutdown_timeout)
        self._thread = None

    def stop(self) -> None:
        """Stop serving and wait for the thread; safe to call more than once."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._abort(server, thread)
        self._server = None
        self._port = None

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(host: str = DEFAULT_HOST, port: int = 0, *, out: TextIO | None = None) -> None:
    """Serve until SIGINT/SIGTERM, announcing the base URL on one line of ``out``."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    is_main = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        if is_main
        else {}
    )
    try:
        with ScriptedModelServer(host, port) as server:
            stream = out if out is not None else sys.stdout
            print(f"scripted model listening on {server.base_url}", file=stream, flush=True)
            # A timeout keeps the wait responsive to signals and to the server thread dying.
            while not stop.wait(0.5):
                if not server.running:
                    raise RuntimeError("scripted model server stopped unexpectedly")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
