"""The dashboard's web app in process, on an empty OCM_HOME: who gets in, what a POST needs,
which Host is answered, and the headers every answer carries."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from opencode_manager import BatchStatus, Manager, Settings, TaskRecord, TaskStatus
from opencode_manager.dashboard.app import Dashboard
from opencode_manager.dashboard.auth import COOKIE
from opencode_manager.tasks.store import Batch

TOKEN = "login-token-for-the-test"
BASE = "http://127.0.0.1:8766"
DUMMY = "no-such-thing"


def _app(settings: Settings | None = None) -> ASGIApp:
    """The app on this test's (empty) OCM_HOME."""
    return Dashboard(settings or Settings.load(), TOKEN).app(["127.0.0.1", "localhost"])


def _starlette(app: ASGIApp) -> Starlette:
    """The router inside the middleware the dashboard wraps it in."""
    while not isinstance(app, Starlette):
        app = app.app  # type: ignore[attr-defined]
    return app


def _endpoints() -> list[tuple[str, str]]:
    """(method, path) for every route the app has, path parameters filled in."""
    found = []
    # Collected before any test's OCM_HOME exists: a home nothing here reads or writes.
    unused = Settings.load(home="/nonexistent/ocm-home", environ={})
    for route in _starlette(_app(unused)).routes:
        if isinstance(route, Mount):
            assert route.path == "/static", f"a new mount to check: {route.path}"
            continue
        assert isinstance(route, Route), route
        path = route.path_format
        for param in route.param_convertors:
            path = path.replace(f"{{{param}}}", DUMMY)
        assert "{" not in path, path
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, path))
    return found


ENDPOINTS = _endpoints()
POSTS = [path for method, path in ENDPOINTS if method == "POST" and path != "/login"]


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(_app(), base_url=BASE, follow_redirects=False) as client:
        yield client


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    response = client.get("/login", params={"token": TOKEN})
    assert response.status_code == 303, response.text
    assert client.cookies.get(COOKIE)
    return client


def _csrf(client: TestClient) -> str:
    page = client.get("/batches")
    assert page.status_code == 200, page.text
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert match is not None, page.text
    return match.group(1)


def test_the_routes_are_the_ones_checked_here() -> None:
    """Every route below is checked by enumeration; this pins that the list is not empty and
    that both pages and streams are in it."""
    paths = {path for _, path in ENDPOINTS}
    assert {"/", "/tasks", "/tasks/new", "/stream/fleet", "/api/fleet", "/login"} <= paths
    assert len(POSTS) >= 7


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_without_the_cookie_every_route_is_401(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 401, (method, path, response.text)
    if path.startswith(("/stream", "/api")) or (method == "POST" and path != "/login"):
        assert response.headers["content-type"].startswith("text/plain")
    else:  # a browser is sent to (or shown) the page that asks for the link
        assert "/login" in response.text


@pytest.mark.parametrize(
    "path", ["/nowhere", "/instances/x/y", "/static", "/staticx/a", "/login/x"]
)
def test_without_the_cookie_unknown_paths_are_401_too(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.post(path).status_code == 401


@pytest.mark.parametrize("path", ["/static/..%2fapp.py", "/static/%2e%2e/app.py", "/static/x"])
def test_static_files_are_only_the_static_files(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "import" not in response.text


def test_a_forged_cookie_is_401(client: TestClient) -> None:
    client.cookies.set(COOKIE, "made-up")
    assert client.get("/").status_code == 401
    client.cookies.set(COOKIE, TOKEN)  # the login token is not a session
    assert client.get("/").status_code == 401


def test_static_files_need_no_cookie(client: TestClient) -> None:
    for name in ("dashboard.css", "dashboard.js"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["x-content-type-options"] == "nosniff"


def test_a_wrong_login_token_is_401(client: TestClient) -> None:
    response = client.get("/login", params={"token": "wrong"})
    assert response.status_code == 401
    assert "not valid" in response.text
    assert COOKIE not in response.headers.get("set-cookie", "")
    pasted = client.post("/login", data={"link": f"{BASE}/login?token=wrong"})
    assert pasted.status_code == 401
    assert not client.cookies.get(COOKIE)


def test_the_right_token_gives_a_strict_httponly_cookie(client: TestClient) -> None:
    response = client.get("/login", params={"token": TOKEN})
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes
    assert TOKEN not in cookie  # the cookie is a session, not the token
    assert client.get("/").status_code == 200


def test_a_pasted_link_or_token_signs_in(client: TestClient) -> None:
    for pasted in (f"{BASE}/login?token={TOKEN}", TOKEN):
        client.cookies.clear()
        response = client.post("/login", data={"link": pasted})
        assert response.status_code == 303, pasted
        assert client.get("/tasks").status_code == 200


@pytest.mark.parametrize("path", POSTS)
def test_a_post_without_the_csrf_token_is_403(signed_in: TestClient, path: str) -> None:
    response = signed_in.post(path, data={"prompt": "x", "name": "x"})
    assert response.status_code == 403, (path, response.text)
    assert "CSRF" in response.text


@pytest.mark.parametrize("path", POSTS)
def test_a_post_with_a_wrong_csrf_token_is_403(signed_in: TestClient, path: str) -> None:
    assert signed_in.post(path, data={"csrf": "wrong"}).status_code == 403
    assert signed_in.post(path, headers={"x-csrf-token": "wrong"}).status_code == 403


def test_another_sessions_csrf_token_is_403(client: TestClient) -> None:
    assert client.get("/login", params={"token": TOKEN}).status_code == 303
    csrf = _csrf(client)
    with TestClient(client.app, base_url=BASE, follow_redirects=False) as second:
        assert second.get("/login", params={"token": TOKEN}).status_code == 303
        assert _csrf(second) != csrf
        assert second.post("/tasks/new", data={"csrf": csrf}).status_code == 403


def test_the_right_csrf_token_passes(signed_in: TestClient) -> None:
    csrf = _csrf(signed_in)
    # An empty prompt gets past the CSRF check to a readable error page.
    response = signed_in.post("/tasks/new", data={"csrf": csrf, "prompt": ""})
    assert response.status_code == 400, response.text
    assert 'id="error"' in response.text
    assert "empty prompt" in response.text
    assert "Traceback" not in response.text
    # The header works as well as the form field.
    batch = signed_in.post("/batches/new", data={"text": ""}, headers={"X-CSRF-Token": csrf})
    assert batch.status_code == 400
    assert "no tasks" in batch.text


def test_the_error_pages_back_link_stays_on_this_site(signed_in: TestClient) -> None:
    csrf = _csrf(signed_in)
    for referer, back in [(f"{BASE}/tasks?status=failed", "/tasks?status=failed"),
                          ("https://elsewhere.example.test/tasks", "/"), (None, "/")]:  # fmt: skip
        headers = {"referer": referer} if referer else {}
        page = signed_in.post("/tasks/new", data={"csrf": csrf, "prompt": ""}, headers=headers)
        assert page.status_code == 400
        assert f'<a href="{back}" data-back>Back</a>' in page.text
        assert "javascript:" not in page.text  # the CSP would block it


def test_a_bad_number_is_a_readable_400(signed_in: TestClient) -> None:
    csrf = _csrf(signed_in)
    response = signed_in.post("/instances", data={"csrf": csrf, "count": "many"})
    assert response.status_code == 400
    assert "invalid count" in response.text


def test_logout_ends_the_session(signed_in: TestClient) -> None:
    csrf = _csrf(signed_in)
    response = signed_in.post("/logout", data={"csrf": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    signed_in.cookies.clear()
    assert signed_in.get("/").status_code == 401


def test_a_logged_out_cookie_is_401(client: TestClient) -> None:
    assert client.get("/login", params={"token": TOKEN}).status_code == 303
    cookie = client.cookies[COOKIE]
    csrf = _csrf(client)
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    client.cookies.set(COOKIE, cookie)  # replayed
    assert client.get("/").status_code == 401


@pytest.mark.parametrize("host", ["evil.example.test", "127.0.0.1.evil.example.test", "0.0.0.0"])
def test_a_wrong_host_is_400(signed_in: TestClient, host: str) -> None:
    response = signed_in.get("/", headers={"host": host})
    assert response.status_code == 400
    login = signed_in.get("/login", params={"token": TOKEN}, headers={"host": host})
    assert login.status_code == 400
    assert "set-cookie" not in login.headers


def test_localhost_is_answered(signed_in: TestClient) -> None:
    assert signed_in.get("/tasks", headers={"host": "localhost:8766"}).status_code == 200


@pytest.mark.parametrize("path", ["/", "/events", "/tasks", "/batches", "/api/fleet"])
def test_the_pages_render_on_an_empty_home(signed_in: TestClient, path: str) -> None:
    response = signed_in.get(path)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/instances/nope", "/tasks/t-nope", "/batches/b-nope"])
def test_unknown_things_are_404_pages(signed_in: TestClient, path: str) -> None:
    response = signed_in.get(path)
    assert response.status_code == 404, response.text
    assert 'id="error"' in response.text


@pytest.mark.parametrize("path", ["/", "/login", "/nowhere", "/static/dashboard.css"])
def test_security_headers(client: TestClient, path: str) -> None:
    headers = client.get(path).headers
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"


def test_pages_carry_the_csrf_token_but_never_the_login_token(signed_in: TestClient) -> None:
    page = signed_in.get("/tasks")
    csrf = _csrf(signed_in)
    assert f'name="csrf" value="{csrf}"' in page.text
    for path in ("/", "/tasks", "/events", "/batches", "/api/fleet"):
        assert TOKEN not in signed_in.get(path).text


def _remote_in_registry(port: int) -> None:
    """A remote instance as `ocm remote add` records it, at a URL where nothing answers."""
    from opencode_manager.instances.fleet import Fleet
    from opencode_manager.models import InstanceSpec

    fleet = Fleet(Settings.load())
    spec = InstanceSpec(name="far", dir="/srv/p", port=port, hostname="127.0.0.1", remote=True)
    with fleet.registry.transaction() as db:
        fleet.registry.add_remote(db, spec, url=f"http://127.0.0.1:{port}", version="1.18.33")
    fleet.close()


def test_a_remote_instance_is_shown_without_lifecycle_buttons(signed_in: TestClient) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _remote_in_registry(port)
    page = signed_in.get("/")
    assert page.status_code == 200, page.text
    row = re.search(r'<tr data-instance="far">(.*?)</tr>', page.text, flags=re.S)
    assert row is not None, page.text
    assert "unreachable" in row.group(1)
    assert "/stop" not in row.group(1)
    assert "/restart" not in row.group(1)
    detail = signed_in.get("/instances/far")
    assert detail.status_code == 200
    assert "remote instance at" in detail.text
    assert "/instances/far/restart" not in detail.text
    # A forged POST is refused by the library, in one readable line.
    refused = signed_in.post("/instances/far/restart", data={"csrf": _csrf(signed_in)})
    assert refused.status_code in (400, 409), refused.text
    assert "is a remote instance" in refused.text


# -- abort, cancel, live lists, history, filters ------------------------------------------------
XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


def _store_task(task_id: str, status: TaskStatus, **fields: object) -> None:
    """A task record as a front stores it (no server needed to read or show it)."""
    from opencode_manager.instances.fleet import Fleet
    from opencode_manager.tasks.store import TaskStore

    fleet = Fleet(Settings.load())
    record = TaskRecord(id=task_id, prompt=XSS + " do it", status=status,
                        created_at=time.time(), **fields)  # type: ignore[arg-type]  # fmt: skip
    TaskStore(fleet.registry).add(record)
    fleet.close()


def _store_batch(batch_id: str, prompts: list[str]) -> Batch:
    """A batch as `batch_create` records it, its runner not started (it reads as
    interrupted: `ocm batch resume` would run it)."""
    from opencode_manager.instances.fleet import Fleet
    from opencode_manager.tasks.store import TaskStore

    fleet = Fleet(Settings.load())
    now = time.time()
    batch = Batch(
        id=batch_id, status=BatchStatus.RUNNING, created_at=now, updated_at=now, source="t"
    )
    records = [
        TaskRecord(
            id=f"t-{batch_id}-{i}",
            prompt=p,
            status=TaskStatus.PENDING,
            created_at=now,
            batch_id=batch_id,
        )
        for i, p in enumerate(prompts)
    ]
    TaskStore(fleet.registry).add_batch(batch, records)
    fleet.close()
    return batch


def test_abort_asks_first_on_a_page_that_needs_no_script(signed_in: TestClient) -> None:
    _store_task("t-run", TaskStatus.RUNNING, instance="oc-gone", session_id="ses_x",
                prompted=True)  # fmt: skip
    csrf = _csrf(signed_in)
    page = signed_in.post("/tasks/t-run/abort", data={"csrf": csrf})
    assert page.status_code == 200, page.text
    assert "Abort task t-run?" in page.text
    form = re.search(r'<form method="post" action="/tasks/t-run/abort".*?</form>', page.text,
                     flags=re.S)  # fmt: skip
    assert form is not None, page.text
    assert f'name="csrf" value="{csrf}"' in form.group(0)
    assert 'name="confirmed" value="yes"' in form.group(0)
    assert '<a class="button" href="/tasks/t-run">Keep it running</a>' in page.text
    assert "<script>alert" not in page.text  # the prompt is shown, as text
    assert "&lt;script&gt;alert(2)" in page.text
    assert signed_in.get("/tasks/t-run").text.count('id="task-status">running<') == 1
    # Confirmed: the abort is tried, and says why it cannot be done here.
    done = signed_in.post("/tasks/t-run/abort", data={"csrf": csrf, "confirmed": "yes"})
    assert done.status_code == 404, done.text
    assert "oc-gone" in done.text


def test_a_running_tasks_page_has_the_abort_form(signed_in: TestClient) -> None:
    _store_task("t-run", TaskStatus.RUNNING, instance="oc-gone", session_id="ses_x",
                prompted=True)  # fmt: skip
    _store_task("t-done", TaskStatus.COMPLETED, instance="oc-gone", session_id="ses_y",
                prompted=True)  # fmt: skip
    running = signed_in.get("/tasks/t-run").text
    assert 'action="/tasks/t-run/abort"' in running
    assert 'data-confirm="Abort task t-run? Its turn stops now."' in running
    assert 'name="confirmed" value=""' in running  # the script's confirm fills it in
    assert "/abort" not in signed_in.get("/tasks/t-done").text


def test_aborting_a_finished_task_is_a_readable_409(signed_in: TestClient) -> None:
    _store_task("t-done", TaskStatus.COMPLETED, instance="oc-gone", session_id="ses_y",
                prompted=True)  # fmt: skip
    for confirmed in ("", "yes"):
        page = signed_in.post("/tasks/t-done/abort",
                              data={"csrf": _csrf(signed_in), "confirmed": confirmed})  # fmt: skip
        assert page.status_code == 409, page.text
        assert "task t-done is already completed" in page.text


def test_cancel_a_batch_without_scripts_asks_then_cancels(signed_in: TestClient) -> None:
    batch = _store_batch("b-test", ["one", "two"])
    csrf = _csrf(signed_in)
    page = signed_in.get(f"/batches/{batch.id}")
    assert f'action="/batches/{batch.id}/cancel"' in page.text
    asked = signed_in.post(f"/batches/{batch.id}/cancel", data={"csrf": csrf})
    assert asked.status_code == 200, asked.text
    assert f"Cancel batch {batch.id}?" in asked.text
    assert "2 of its 2 tasks are not finished" in asked.text
    with Manager(Settings.load()) as manager:
        assert manager.batch_show(batch.id).status.value == "interrupted"  # untouched so far
    done = signed_in.post(f"/batches/{batch.id}/cancel", data={"csrf": csrf, "confirmed": "yes"})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == f"/batches/{batch.id}?done=cancelled"
    shown = signed_in.get(done.headers["location"]).text
    assert 'id="notice"' in shown
    assert "You cancelled this batch" in shown
    assert 'id="batch-status">cancelled<' in shown
    assert "/cancel" not in shown  # nothing left to cancel
    again = signed_in.post(f"/batches/{batch.id}/cancel", data={"csrf": csrf, "confirmed": "yes"})
    assert again.status_code == 409
    assert "already cancelled" in again.text


def test_a_notice_is_one_of_ours_never_the_request_echoed(signed_in: TestClient) -> None:
    page = signed_in.get("/tasks", params={"done": "<script>alert(1)</script>"})
    assert page.status_code == 200
    assert 'id="notice"' not in page.text
    assert "alert(1)" not in page.text


def test_the_tasks_list_is_live_filtered_by_pick_lists_and_escaped(
    signed_in: TestClient,
) -> None:
    _store_task("t-a", TaskStatus.COMPLETED, instance="oc-a")
    _store_task("t-b", TaskStatus.FAILED, instance="oc-b")
    page = signed_in.get("/tasks")
    assert 'data-stream="/stream/tasks"' in page.text
    instances = re.search(r'<select name="instance">(.*?)</select>', page.text.split(
        'id="task-filters"')[1], flags=re.S)  # fmt: skip
    assert instances is not None
    assert re.findall(r'<option value="([^"]*)"', instances.group(1)) == ["", "oc-a", "oc-b"]
    assert "<script>alert" not in page.text
    assert "<img src=x" not in page.text
    only_a = signed_in.get("/tasks", params={"instance": "oc-a", "status": "completed"})
    assert 'data-task="t-a"' in only_a.text
    assert 'data-task="t-b"' not in only_a.text
    assert 'data-stream="/stream/tasks?status=completed&amp;instance=oc-a"' in only_a.text
    assert '<option value="oc-a" selected>' in only_a.text
    assert '<option value="completed" selected>' in only_a.text
    bad = signed_in.get("/tasks", params={"status": "nonsense"})
    assert bad.status_code == 400
    assert "unknown status &#39;nonsense&#39;: one of pending, queued, running" in bad.text


def test_the_events_page_opens_on_the_keepers_history() -> None:
    from opencode_manager.instances.fleet import Fleet

    fleet = Fleet(Settings.load())
    fleet.registry.add_event("oc-a", "started", "port 4096")
    fleet.registry.add_event("oc-a", "stopped", "on request <b>")
    fleet.close()
    with TestClient(_app(), base_url=BASE, follow_redirects=False) as client:
        assert client.get("/login", params={"token": TOKEN}).status_code == 303
        page = client.get("/events")
        assert page.status_code == 200, page.text
        rows = re.findall(r'<tr class="event" data-type="([^"]+)" data-seq="(\d+)"', page.text)
        assert rows == [("ocm.started", "1"), ("ocm.stopped", "2")]
        assert "stopped: on request &lt;b&gt;" in page.text
        assert 'data-stream="/stream/events?after=2"' in page.text
        # An instance filter names a known instance, or says it does not know it.
        unknown = client.get("/events", params={"instance": "nope"})
        assert unknown.status_code == 404
        assert 'id="error"' in unknown.text


def test_a_batch_shows_its_tasks_error_messages_not_only_their_class(
    signed_in: TestClient,
) -> None:
    from opencode_manager.instances.fleet import Fleet
    from opencode_manager.tasks.store import TaskStore

    _store_batch("b-err", ["ERR400", "fine"])
    fleet = Fleet(Settings.load())
    store = TaskStore(fleet.registry)
    failed = store.get("t-b-err-0")
    failed.status, failed.finished_at = TaskStatus.FAILED, time.time()
    failed.error = {"name": "APIError", "data": {"message": "scripted error 400 <from> model",
                                                  "statusCode": 400}}  # fmt: skip
    store.save(failed)
    fleet.close()
    page = signed_in.get("/batches/b-err")
    assert page.status_code == 200, page.text
    row = re.search(r'<tr data-task="t-b-err-0">(.*?)</tr>', page.text, flags=re.S)
    assert row is not None, page.text
    assert "APIError: scripted error 400 &lt;from&gt; model" in row.group(1)


def test_the_run_form_checks_its_budget_and_fallback(signed_in: TestClient) -> None:
    csrf = _csrf(signed_in)
    page = signed_in.get("/tasks").text
    assert 'name="max_cost"' in page
    assert 'name="fallback"' in page
    bad = signed_in.post("/tasks/new", data={"csrf": csrf, "prompt": "x", "max_cost": "lots"})
    assert bad.status_code == 400
    assert "invalid max cost" in bad.text
    zero = signed_in.post("/tasks/new", data={"csrf": csrf, "prompt": "x", "max_cost": "0"})
    assert zero.status_code == 400
    assert "invalid --max-cost 0: must be above 0" in zero.text
    fell = signed_in.post("/tasks/new", data={"csrf": csrf, "prompt": "x", "fallback": "nope"})
    assert fell.status_code == 400
    assert "expected PROVIDER/MODEL" in fell.text
