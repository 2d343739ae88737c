"""The dashboard's web app: pages, forms and live streams over the async facade.

Every route but /login and /static needs the session cookie (401 otherwise: a "paste your
link" page for a browser, plain text for a stream). Every POST needs the session's CSRF token
(403 otherwise). Hosts other than the one we listen on are refused (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import (
    AsyncManager,
    BatchOptions,
    ConflictError,
    NotFoundError,
    OcmError,
    Settings,
    TaskOptions,
    TaskRecord,
    UsageError,
    __version__,
    decode_batch_file,
)
from ..fronts import EventFilter
from . import views
from .auth import COOKIE, Session, Sessions
from .diffview import diff_lines, patch_of
from .feed import Feed, View
from .history import polyline

HERE = Path(__file__).parent
REFRESH_S = 2.0  # how often live fragments are re-rendered
MAX_EVENTS = 200  # lines kept on the live events page (the page trims too)
FEED_READY_S = 5.0  # the longest the events page waits for the feed's first history
# What a form's action did, shown on the page it leads to (fixed texts: nothing of the
# request is echoed into the page).
NOTICES = {
    "aborted": "You aborted this task.",
    "cancelled": "You cancelled this batch: its running tasks were aborted, the rest cancelled.",
}
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]  # fmt: skip


class Dashboard:
    """One dashboard: its settings, login sessions, sample history and templates."""

    def __init__(self, settings: Settings, token: str) -> None:
        self.settings = settings
        self.sessions = Sessions(token)
        self.jobs: set[asyncio.Task[Any]] = set()  # tasks and batches followed here
        self.feed = Feed()  # the events page's history and live rows
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(views.FILTERS)
        self.env.globals["version"] = __version__

    # -- plumbing ---------------------------------------------------------------------------
    def app(self, hosts: list[str]) -> ASGIApp:
        routes = [
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/", self.fleet),
            Route("/instances", self.start, methods=["POST"]),
            Route("/instances/{name}", self.instance),
            Route("/instances/{name}/stop", self.stop, methods=["POST"]),
            Route("/instances/{name}/restart", self.restart, methods=["POST"]),
            Route("/instances/{name}/password", self.password, methods=["POST"]),
            Route("/events", self.events),
            Route("/tasks", self.tasks),
            Route("/tasks/new", self.submit_task, methods=["POST"]),
            Route("/tasks/{task_id}", self.task),
            Route("/tasks/{task_id}/abort", self.abort_task, methods=["POST"]),
            Route("/batches", self.batches),
            Route("/batches/new", self.submit_batch, methods=["POST"]),
            Route("/batches/{batch_id}", self.batch),
            Route("/batches/{batch_id}/cancel", self.cancel_batch, methods=["POST"]),
            Route("/stream/fleet", self.stream_fleet),
            Route("/stream/tasks", self.stream_tasks),
            Route("/stream/instances/{name}", self.stream_instance),
            Route("/stream/events", self.stream_events),
            Route("/stream/tasks/{task_id}", self.stream_task),
            Route("/stream/batches/{batch_id}", self.stream_batch),
            Route("/api/fleet", self.api_fleet),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        app = Starlette(
            routes=routes,
            lifespan=self._lifespan,
            exception_handlers={
                OcmError: self._ocm_error,  # type: ignore[dict-item]
                _Forbidden: _forbidden,  # type: ignore[dict-item]
            },
        )
        # Outermost first: a Host we do not serve is refused before anything else.
        return TrustedHostMiddleware(_Guard(app, self.sessions), allowed_hosts=hosts)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.feed = Feed()  # its queues and events belong to this loop
        feed = asyncio.create_task(self._run_feed(self.feed))
        try:
            yield
        finally:
            feed.cancel()
            await asyncio.gather(feed, return_exceptions=True)
            for job in list(self.jobs):
                job.cancel()
            await asyncio.gather(*self.jobs, return_exceptions=True)

    async def _run_feed(self, feed: Feed) -> None:
        async with AsyncManager(self.settings) as manager:
            await feed.run(manager)

    def render(self, request: Request, template: str, code: int = 200, **context: Any) -> Response:
        session: Session | None = request.scope.get("ocm_session")
        notice = NOTICES.get(request.query_params.get("done") or "")
        page = self.env.get_template(template).render(
            request=request, csrf=session.csrf if session else "", notice=notice, **context
        )
        return HTMLResponse(page, status_code=code)

    def fragment(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    async def _ocm_error(self, request: Request, exc: OcmError) -> Response:
        status = 400
        if isinstance(exc, (NotFoundError, ConflictError)):
            status = 404 if isinstance(exc, NotFoundError) else 409
        if request.url.path.startswith(("/stream", "/api")):
            return PlainTextResponse(str(exc), status_code=status)
        return self.render(request, "error.html", code=status, message=str(exc),
                           back=_back(request))  # fmt: skip

    async def _form(self, request: Request) -> FormData:
        """The POST's form, once its CSRF token is checked (403 otherwise)."""
        form = await request.form()
        session: Session = request.scope["ocm_session"]
        given = request.headers.get("x-csrf-token") or form.get("csrf")
        if not isinstance(given, str) or not Sessions.csrf_ok(session, given):
            raise _Forbidden()
        return form

    def _confirmed(self, form: FormData) -> bool:
        """A destructive form asks first: with scripts the browser's confirm dialog sets
        `confirmed`; without, the first POST shows a page whose form sets it."""
        return form.get("confirmed") == "yes"

    # -- login ------------------------------------------------------------------------------
    async def login(self, request: Request) -> Response:
        if request.method == "GET" and "token" not in request.query_params:
            return self.render(request, "login.html", code=401, error=None)
        if request.method == "GET":
            given = request.query_params.get("token")
        else:
            form = await request.form()
            pasted = str(form.get("link") or "")
            given = pasted.rsplit("token=", 1)[-1].split("&")[0] if "token=" in pasted else pasted
        session = self.sessions.open(given)
        if session is None:
            return self.render(request, "login.html", code=401, error="That link is not valid.")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="strict", path="/")
        return response

    async def logout(self, request: Request) -> Response:
        await self._form(request)
        self.sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- fleet ------------------------------------------------------------------------------
    async def fleet(self, request: Request) -> Response:
        async with AsyncManager(self.settings) as manager:
            fleet = await views.fleet(manager)
        return self.render(request, "fleet.html", fleet=fleet, stream="/stream/fleet")

    async def api_fleet(self, request: Request) -> Response:
        async with AsyncManager(self.settings) as manager:
            frame = await manager.top()
        return JSONResponse(frame.to_dict())

    async def start(self, request: Request) -> Response:
        form = await self._form(request)
        name = str(form.get("name") or "").strip() or None
        directory = str(form.get("dir") or "").strip() or None
        try:
            count = int(str(form.get("count") or "1"))
        except ValueError:
            raise UsageError(f"invalid count {form.get('count')!r}: a number") from None
        async with AsyncManager(self.settings) as manager:
            await manager.start(name, count=count, directory=directory)
        return RedirectResponse("/", status_code=303)

    async def stop(self, request: Request) -> Response:
        await self._form(request)
        async with AsyncManager(self.settings) as manager:
            await manager.stop([request.path_params["name"]])
        return RedirectResponse(_back(request), status_code=303)

    async def restart(self, request: Request) -> Response:
        await self._form(request)
        async with AsyncManager(self.settings) as manager:
            await manager.restart([request.path_params["name"]])
        return RedirectResponse(_back(request), status_code=303)

    async def password(self, request: Request) -> Response:
        """The instance's credentials for OpenCode's own web UI, on request only (a POST with
        the CSRF token): never in a page, a URL or a log."""
        await self._form(request)
        async with AsyncManager(self.settings) as manager:
            env = await manager.env(request.path_params["name"])
        return JSONResponse(
            {
                "username": env.get("OPENCODE_SERVER_USERNAME", ""),
                "password": env.get("OPENCODE_SERVER_PASSWORD", ""),
            }
        )

    # -- an instance ------------------------------------------------------------------------
    async def instance(self, request: Request) -> Response:
        name = request.path_params["name"]
        level = request.query_params.get("level") or None
        async with AsyncManager(self.settings) as manager:
            detail = await views.instance(manager, name, level)
            chart = await self._chart(manager, detail.report.info.name)
        return self.render(
            request, "instance.html", d=detail, level=level or "", chart=chart,
            stream=f"/stream/instances/{quote(name)}" + (f"?level={quote(level)}" if level else ""),
        )  # fmt: skip

    @staticmethod
    async def _chart(manager: AsyncManager, name: str) -> dict[str, Any]:
        """The keeper's samples of the last 30 minutes as two small line charts."""
        samples = await manager.samples(name)
        cpu = [s.cpu_percent for s in samples]
        rss = [float(s.rss_bytes) if s.rss_bytes is not None else None for s in samples]
        last = samples[-1] if samples else None
        return {
            "cpu": polyline(cpu),
            "rss": polyline(rss),
            "count": len(samples),
            "since": samples[0].at if samples else None,
            "cpu_now": last.cpu_percent if last else None,
            "rss_now": last.rss_bytes if last else None,
            "cpu_max": max((c for c in cpu if c is not None), default=None),
            "rss_max": max((int(r) for r in rss if r is not None), default=None),
        }

    # -- events -----------------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        """The feed's recent rows (lifecycle and OpenCode events), then live ones."""
        params = request.query_params
        async with AsyncManager(self.settings) as manager:
            view = await self._view(manager, request)
            infos = await manager.instances(include_foreign=False, probe_health=False,
                                            measure_cpu=False)  # fmt: skip
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(self.feed.ready.wait(), FEED_READY_S)
        last = self.feed.last
        rows = [e.row for e in self.feed.recent(view, limit=MAX_EVENTS)]
        query = {k: v for k, v in params.items() if v and k in ("instance", "type", "session")}
        stream = "/stream/events?" + urlencode({**query, "after": last})
        return self.render(
            request, "events.html", stream=stream, rows=rows, keep=MAX_EVENTS,
            instance=params.get("instance", ""), type=params.get("type", ""),
            session=params.get("session", ""), instances=sorted(i.name for i in infos),
            sessions=self.feed.sessions()[:50],
        )  # fmt: skip

    @staticmethod
    async def _view(manager: AsyncManager, request: Request) -> View:
        """The events a page asked for: one instance (by name, port or URL), type globs, a
        session."""
        params = request.query_params
        ref = params.get("instance") or None
        name = (await manager.resolve(ref)).name if ref else None
        types = tuple(t.strip() for t in (params.get("type") or "").split(",") if t.strip())
        return View(name, EventFilter(types=types, session=params.get("session") or None))

    # -- tasks and batches ------------------------------------------------------------------
    async def tasks(self, request: Request) -> Response:
        status, instance = _task_filter(request)
        async with AsyncManager(self.settings) as manager:
            found = await views.tasks(manager, status, instance)
        query = urlencode({k: v for k, v in (("status", status), ("instance", instance)) if v})
        return self.render(
            request, "tasks.html", found=found, status=status or "", instance=instance or "",
            statuses=views.TASK_STATUSES, stream="/stream/tasks" + (f"?{query}" if query else ""),
        )  # fmt: skip

    async def submit_task(self, request: Request) -> Response:
        form = await self._form(request)
        prompt = str(form.get("prompt") or "")
        timeout = str(form.get("timeout") or "").strip()
        try:
            seconds = float(timeout) if timeout else None
        except ValueError:
            raise UsageError(f"invalid timeout {timeout!r}: seconds") from None
        budget = str(form.get("max_cost") or "").strip()
        try:
            max_cost = float(budget) if budget else None
        except ValueError:
            raise UsageError(f"invalid max cost {budget!r}: USD") from None
        fallback = str(form.get("fallback") or "").strip()
        options = TaskOptions(
            instance=str(form.get("instance") or "") or None,
            model=str(form.get("model") or "").strip() or None,
            agent=str(form.get("agent") or "").strip() or None,
            timeout=seconds,
            max_cost=max_cost,
            fallbacks=[fallback] if fallback else [],
        )
        async with AsyncManager(self.settings) as manager:
            started = await manager.run(prompt, options, detach=True)
        self._follow(lambda m: m.wait(started.id))
        return RedirectResponse(f"/tasks/{started.id}", status_code=303)

    def _follow(self, work: Callable[[AsyncManager], Awaitable[Any]]) -> None:
        """Follow a task or batch to its end in this process (its state is in the registry:
        `ocm wait` or `ocm batch resume` finish it if the dashboard stops first)."""

        async def run() -> None:
            with contextlib.suppress(OcmError):
                async with AsyncManager(self.settings) as manager:
                    await work(manager)

        job = asyncio.create_task(run())
        self.jobs.add(job)
        job.add_done_callback(self.jobs.discard)

    async def task(self, request: Request) -> Response:
        async with AsyncManager(self.settings) as manager:
            record = await manager.task(request.path_params["task_id"])
        return self.render(request, "task.html", **self._task_context(record),
                           stream=f"/stream/tasks/{quote(record.id)}")  # fmt: skip

    async def abort_task(self, request: Request) -> Response:
        """Abort a running task (after the confirm step); its page then shows the result."""
        form = await self._form(request)
        task_id = request.path_params["task_id"]
        async with AsyncManager(self.settings) as manager:
            if not self._confirmed(form):
                record = views.abortable(await manager.task(task_id))
                return self.render(
                    request, "confirm.html", title=f"Abort task {record.id}?",
                    action=f"/tasks/{quote(record.id)}/abort", button="Abort it",
                    back=f"/tasks/{quote(record.id)}", keep="Keep it running",
                    detail=f"Its turn on {record.instance or 'its instance'} stops now; "
                    "what it did so far stays in its session.", quoted=record.prompt,
                )  # fmt: skip
            await views.abort_task(manager, task_id)
        return RedirectResponse(f"/tasks/{quote(task_id)}?done=aborted", status_code=303)

    def _task_context(self, record: TaskRecord) -> dict[str, Any]:
        changes = [
            {**change, "lines": diff_lines(patch_of(change))}
            for change in record.diff
            if isinstance(change, dict)
        ]
        return {"t": record, "changes": changes}

    async def batches(self, request: Request) -> Response:
        async with AsyncManager(self.settings) as manager:
            found = await manager.batches()
        return self.render(request, "batches.html", batches=list(reversed(found)))

    async def submit_batch(self, request: Request) -> Response:
        form = await self._form(request)
        upload = form.get("file")
        if isinstance(upload, UploadFile) and upload.filename:
            data, source = await upload.read(), upload.filename
        else:
            data, source = str(form.get("text") or "").encode(), "dashboard"
        if not data.strip():
            raise UsageError("no tasks: choose a batch file or paste JSONL")
        text = decode_batch_file(data, source=source)
        try:
            per_instance = int(str(form.get("per_instance") or "2"))
        except ValueError:
            raise UsageError("invalid per-instance limit: a number") from None
        async with AsyncManager(self.settings) as manager:
            created = await manager.batch_create(
                text, BatchOptions(per_instance=per_instance), source=source
            )
        self._follow(lambda m: m.batch_run(created.id))
        return RedirectResponse(f"/batches/{created.id}", status_code=303)

    async def batch(self, request: Request) -> Response:
        async with AsyncManager(self.settings) as manager:
            found = await views.batch(manager, request.path_params["batch_id"])
        return self.render(request, "batch.html", b=found.summary, errors=found.errors,
                           stream=f"/stream/batches/{quote(found.summary.id)}")  # fmt: skip

    async def cancel_batch(self, request: Request) -> Response:
        """Cancel a batch (after the confirm step): running tasks aborted, the rest cancelled."""
        form = await self._form(request)
        batch_id = request.path_params["batch_id"]
        async with AsyncManager(self.settings) as manager:
            if not self._confirmed(form):
                found = views.cancellable(await manager.batch_show(batch_id))
                left = found.total - found.done
                return self.render(
                    request, "confirm.html", title=f"Cancel batch {found.id}?",
                    action=f"/batches/{quote(found.id)}/cancel", button="Cancel it",
                    back=f"/batches/{quote(found.id)}", keep="Keep it running",
                    detail=f"{left} of its {found.total} tasks are not finished: the running "
                    "ones are aborted, the others never start.", quoted=None,
                )  # fmt: skip
            await manager.batch_cancel(batch_id)
        return RedirectResponse(f"/batches/{quote(batch_id)}?done=cancelled", status_code=303)

    # -- live streams (server-sent events: `swap` replaces an element, `append` adds) --------
    def _polled(
        self,
        request: Request,
        target: str,
        render: Callable[[AsyncManager], Awaitable[tuple[str, bool]]],
        period: float = REFRESH_S,
    ) -> Response:
        """A stream that re-renders `target` every `period` seconds, through one facade,
        until `render` says it is done (a finished task or batch)."""

        async def frames() -> AsyncIterator[str]:
            async with AsyncManager(self.settings) as manager:
                while True:
                    html, done = await render(manager)
                    yield _swap(target, html)
                    if done:
                        return
                    await asyncio.sleep(period)  # the next frame

        return _sse(request, frames())

    async def stream_fleet(self, request: Request) -> Response:
        async def render(manager: AsyncManager) -> tuple[str, bool]:
            fleet = await views.fleet(manager)
            html = self.fragment("_fleet_tables.html", fleet=fleet, csrf=_csrf(request))
            return html, False

        return self._polled(request, "fleet-live", render)

    async def stream_tasks(self, request: Request) -> Response:
        status, instance = _task_filter(request)

        async def render(manager: AsyncManager) -> tuple[str, bool]:
            found = await views.tasks(manager, status, instance)
            return self.fragment("_tasks_live.html", found=found), False

        return self._polled(request, "tasks-live", render)

    async def stream_instance(self, request: Request) -> Response:
        name = request.path_params["name"]
        level = request.query_params.get("level") or None

        async def render(manager: AsyncManager) -> tuple[str, bool]:
            detail = await views.instance(manager, name, level)
            chart = await self._chart(manager, detail.report.info.name)
            html = self.fragment("_instance_live.html", d=detail, chart=chart,
                                 level=level or "")  # fmt: skip
            return html, False

        return self._polled(request, "instance-live", render)

    async def stream_events(self, request: Request) -> Response:
        """The feed's rows after the page's last one (`after`, or the browser's
        Last-Event-ID when it reconnects), then each new one."""
        async with AsyncManager(self.settings) as manager:
            view = await self._view(manager, request)
        after = max(_int(request.query_params.get("after")),
                    _int(request.headers.get("last-event-id")))  # fmt: skip

        async def lines() -> AsyncIterator[str]:
            with self.feed.subscribe() as queue:
                sent = after
                for entry in self.feed.recent(view, after=after):
                    sent = entry.seq
                    yield self._event_message(entry.row)
                while True:
                    entry = await queue.get()
                    if entry.seq > sent and view.accepts(entry):
                        sent = entry.seq
                        yield self._event_message(entry.row)

        return _sse(request, lines())

    def _event_message(self, row: views.EventRow) -> str:
        html = self.fragment("_event.html", e=row)
        return f"id: {row.seq}\n" + _append("events-live", html, MAX_EVENTS)

    async def stream_task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]

        async def render(manager: AsyncManager) -> tuple[str, bool]:
            record = await manager.task(task_id)
            html = self.fragment("_task_live.html", **self._task_context(record),
                                 csrf=_csrf(request))  # fmt: skip
            return html, record.status.final

        return self._polled(request, "task-live", render, REFRESH_S / 2)

    async def stream_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]

        async def render(manager: AsyncManager) -> tuple[str, bool]:
            found = await views.batch(manager, batch_id)
            html = self.fragment("_batch_live.html", b=found.summary, errors=found.errors,
                                 csrf=_csrf(request))  # fmt: skip
            return html, found.summary.status.final

        return self._polled(request, "batch-live", render)


class _Forbidden(Exception):
    pass


class _Guard:
    """Pure ASGI, outermost: the session cookie for every route but /login and /static (401
    without it), security headers on every answer, 403 for a POST without its CSRF token."""

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  *SECURITY_HEADERS]}  # fmt: skip
            await send(message)

        if path != "/login" and not path.startswith("/static/"):
            session = self.sessions.find(Request(scope).cookies.get(COOKIE))
            if session is None:
                await _unauthorized(scope, receive, send_with_headers)
                return
            scope["ocm_session"] = session
        await self.app(scope, receive, send_with_headers)


async def _forbidden(request: Request, exc: _Forbidden) -> Response:
    return PlainTextResponse("403: missing or wrong CSRF token", status_code=403)


async def _unauthorized(scope: Scope, receive: Receive, send: Send) -> None:
    path: str = scope["path"]
    if scope["method"] == "GET" and not path.startswith(("/stream", "/api")):
        response: Response = RedirectResponse("/login", status_code=303)
        # A browser goes to the "paste your link" page; the answer itself says 401.
        response = HTMLResponse(
            '<!doctype html><meta http-equiv="refresh" content="0; url=/login">'
            '<title>ocm dashboard</title><p>Sign in: <a href="/login">paste your link</a>.',
            status_code=401,
        )
    else:
        response = PlainTextResponse("401: sign in with the dashboard's link", status_code=401)
    await response(scope, receive, send)


def _back(request: Request) -> str:
    """Where a form came from (same origin only), else the fleet."""
    referer = request.headers.get("referer") or ""
    origin = f"{request.url.scheme}://{request.url.netloc}"
    return referer[len(origin) :] if referer.startswith(origin + "/") else "/"


def _task_filter(request: Request) -> tuple[str | None, str | None]:
    status = request.query_params.get("status") or None
    if status is not None and status not in views.TASK_STATUSES:
        raise UsageError(f"unknown status {status!r}: one of {', '.join(views.TASK_STATUSES)}")
    return status, request.query_params.get("instance") or None


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


def _csrf(request: Request) -> str:
    session: Session | None = request.scope.get("ocm_session")
    return session.csrf if session else ""


def _swap(target: str, html: str) -> str:
    return f"event: swap\ndata: {json.dumps({'target': target, 'html': html})}\n\n"


def _append(target: str, html: str, keep: int) -> str:
    data = json.dumps({"target": target, "html": html, "keep": keep})
    return f"event: append\ndata: {data}\n\n"


def _sse(request: Request, items: AsyncIterator[str]) -> Response:
    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"  # the browser reconnects after 2 s
        beat = asyncio.ensure_future(anext_or_none(items))
        try:
            while True:
                done, _ = await asyncio.wait({beat}, timeout=15)
                if await request.is_disconnected():
                    return
                if not done:
                    yield ": keep-alive\n\n"
                    continue
                item = beat.result()
                if item is None:  # the end (a finished task): the page stops reconnecting
                    yield "event: end\ndata: {}\n\n"
                    return
                yield item
                beat = asyncio.ensure_future(anext_or_none(items))
        finally:
            beat.cancel()
            with contextlib.suppress(BaseException):
                await beat
            with contextlib.suppress(BaseException):
                await items.aclose()  # type: ignore[attr-defined]

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"x-accel-buffering": "no"})  # fmt: skip


async def anext_or_none(items: AsyncIterator[str]) -> str | None:
    try:
        return await items.__anext__()
    except StopAsyncIteration:
        return None
