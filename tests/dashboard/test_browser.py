"""The dashboard in a real Chromium (Playwright), against a real `ocm dashboard` process and two
instances of the scripted model: sign in, watch the fleet live, stop an instance, run tasks and
a batch, read a diff; pages still read without scripts; and the login token is nowhere but in
the one line that hands it to the person who started the dashboard.

Screenshots of every page land in the test's tmp_path (`screens/`); their paths are printed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from helpers import run_ocm, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHROMIUM = "/usr/bin/chromium"  # Playwright cannot download its own browser here
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
LIVE_MS = 60_000  # the longest a live update may take to show

Shot = Callable[[Page, str], None]


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    base: str
    link: str
    token: str

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium", pytrace=False
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def project(model_env: list[str], tmp_path: Path) -> Iterator[Path]:
    """A git repository with two instances of the scripted model working in it."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README").write_text("a project\n")
    git = ["git", "-c", "user.email=t@example.test", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    env_args = [arg for item in model_env for arg in ("--env", item)]
    try:
        run_ocm("start", "-n", "2", "--dir", str(repo), *env_args, check=True)
        yield repo
    finally:
        run_ocm("stop", "--all")


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Served]:
    """`ocm dashboard --port 0` as a user starts it; its output goes to files we read."""
    out, err = tmp_path / "dashboard.out", tmp_path / "dashboard.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "opencode_manager", "dashboard", "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        )  # fmt: skip
    try:

        def link() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"ocm dashboard exited {proc.returncode}: {err.read_text()}")
            found = re.search(r"sign in with (http://\S+)", err.read_text())
            return found.group(1) if found else None

        url = str(wait_for(link, timeout=60, message="the dashboard's sign-in line"))
        base, _, token = url.partition("/login?token=")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base), url
        assert f"ocm dashboard: serving {base}\n" in err.read_text()
        yield Served(proc, out, err, base, url, token)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_the_dashboard_in_a_browser(
    project: Path, dashboard: Served, browser: Browser, tmp_path: Path
) -> None:
    screens = tmp_path / "screens"
    shots: dict[str, Path] = {}

    def shot(page: Page, name: str) -> None:
        shots[name] = screens / f"{name}.png"
        page.screenshot(path=shots[name], full_page=True)

    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    base = dashboard.base

    _sign_in(browser, page, dashboard, shot)
    _watch_the_fleet(page, shot)
    _stop_an_instance_with_its_button(page, shot)
    _run_a_task_from_the_form(page, base, shot)
    _see_events_arrive(page, base, shot)
    _read_a_diff(page, base, shot)
    _look_at_an_instance(page, base, shot)
    _run_a_batch(page, base, shot)
    _read_without_scripts(browser, context, base, shot)
    context.close()

    print("screenshots:", *(str(p) for p in shots.values()), sep="\n  ")
    assert {p.stat().st_size > 10_000 for p in shots.values()} == {True}

    # SIGTERM stops it cleanly.
    dashboard.proc.send_signal(signal.SIGTERM)
    assert dashboard.proc.wait(timeout=30) == 0, dashboard.output()
    output = dashboard.output()
    assert "Traceback" not in output, output
    # The token is in the one line that hands it over, and nowhere else: not in the output,
    # not in any log or record (OCM_HOME and the instances' HOME), only in its own 0600 file.
    assert [line for line in output.splitlines() if dashboard.token in line] == [
        f"ocm dashboard: sign in with {dashboard.link}"
    ]
    home = Path(os.environ["OCM_HOME"])
    token_file = home / "dashboard-token"
    assert token_file.read_text().strip() == dashboard.token
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert (home / "logs").is_dir()
    leaked = [
        str(path)
        for path in tmp_path.rglob("*")
        if path.is_file()
        and path not in (token_file, dashboard.err)
        and dashboard.token.encode() in path.read_bytes()
    ]
    assert leaked == []


def _sign_in(browser: Browser, page: Page, dashboard: Served, shot: Shot) -> None:
    """Without the cookie a page sends you to /login; a wrong link is refused; the right one
    signs in and lands on the fleet."""
    stranger = browser.new_context(viewport=VIEWPORT)
    lost = stranger.new_page()
    lost.goto(dashboard.base + "/")
    expect(lost).to_have_url(dashboard.base + "/login")
    expect(lost.locator("h1")).to_have_text("Sign in")
    shot(lost, "login")
    lost.goto(dashboard.base + "/login?token=not-the-token")
    expect(lost.locator("main")).to_contain_text("That link is not valid.")
    lost.fill("input[name=link]", dashboard.link)  # pasting the link works too
    lost.click("main button[type=submit]")
    expect(lost).to_have_url(dashboard.base + "/")
    stranger.close()

    page.goto(dashboard.link)
    expect(page).to_have_url(dashboard.base + "/")  # the token is out of the address bar
    cookies = {c["name"]: c for c in page.context.cookies()}
    cookie = cookies["ocm_dashboard"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["value"] != dashboard.token


def _live(page: Page) -> None:
    expect(page.locator("#live-state")).to_have_text("live", timeout=LIVE_MS)


def _watch_the_fleet(page: Page, shot: Shot) -> None:
    """Both instances listed; a task started elsewhere shows up live as a busy session."""
    for name in ("oc-1", "oc-2"):
        row = page.locator(f"#fleet-table tr[data-instance={name}]")
        expect(row.locator("td").nth(1)).to_have_text("running")
    _live(page)
    page.evaluate("window.notReloaded = true")
    started = run_ocm("run", "--async", "-i", "oc-1", "SLEEP 8 busy for the picture", check=True)
    busy = page.locator("#fleet-table tr[data-instance=oc-1] td").nth(8)
    expect(busy).to_contain_text("1 busy", timeout=LIVE_MS)
    assert page.evaluate("window.notReloaded") is True
    page.set_viewport_size({"width": 1280, "height": 720})
    shot(page, "fleet-busy")  # the README's picture
    page.set_viewport_size(VIEWPORT)
    run_ocm("wait", started.stdout.split()[0], check=True, timeout=60)
    expect(busy).to_contain_text("0 busy", timeout=LIVE_MS)


def _stop_an_instance_with_its_button(page: Page, shot: Shot) -> None:
    """The stop button asks first: no stops nothing, yes stops oc-2."""
    asked: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    row = page.locator("#fleet-table tr[data-instance=oc-2]")
    page.once("dialog", dismiss)
    row.locator("button.danger").click()
    expect(row.locator("td").nth(1)).to_have_text("running")
    assert page.evaluate("window.notReloaded") is True  # the form was not sent
    page.once("dialog", accept)
    row.locator("button.danger").click()
    expect(row.locator("td").nth(1)).to_have_text("stopped", timeout=LIVE_MS)
    expect(row.locator("button.danger")).to_have_count(0)
    expect(row.locator("td").nth(2)).to_have_text("-")  # no health to report, not "failing"
    expect(page.locator("#fleet-table tr[data-instance=oc-1] td").nth(1)).to_have_text("running")
    assert asked == ["Stop oc-2?", "Stop oc-2?"]
    _live(page)
    shot(page, "fleet")


def _run_a_task_from_the_form(page: Page, base: str, shot: Shot) -> None:
    """A prompt sent from /tasks; its page fills in live: the tool call, then the answer."""
    page.goto(base + "/tasks")
    form = page.locator("#submit-task")
    expect(form.locator("select[name=instance] option")).to_have_text(["least busy", "oc-1"])
    # A bad prompt gets a readable error; Back returns to the form.
    form.locator("textarea[name=prompt]").fill("   ")
    form.locator("button[type=submit]").click()
    expect(page.locator("#error")).to_contain_text("empty prompt")
    page.get_by_role("link", name="Back").click()
    expect(page).to_have_url(base + "/tasks")

    form.locator("textarea[name=prompt]").fill("BASH: echo from-the-browser")
    form.locator("select[name=instance]").select_option("oc-1")
    form.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(re.escape(base) + r"/tasks/t-[0-9a-f]+$"))
    tool = page.locator("details.tool").filter(has_text="echo from-the-browser")
    expect(tool.locator("summary code")).to_have_text("bash", timeout=LIVE_MS)
    expect(page.locator("#task-text")).to_have_text("Tool said: from-the-browser", timeout=LIVE_MS)
    expect(page.locator("#task-status")).to_have_text("completed", timeout=LIVE_MS)
    expect(tool.locator("pre").last).to_have_text("from-the-browser")
    # A finished task's stream ends, and the page stops listening (no reconnecting).
    expect(page.locator("#live-state")).to_have_text("done", timeout=LIVE_MS)
    shot(page, "task")
    page.goto(base + "/tasks")
    expect(page.locator("#tasks-table tbody tr").first).to_contain_text("echo from-the-browser")
    shot(page, "tasks")


def _see_events_arrive(page: Page, base: str, shot: Shot) -> None:
    """/events appends a task's events as they happen, without a reload."""
    page.goto(base + "/events")
    _live(page)
    attached = page.locator('tr.event[data-type="ocm.attached"]').filter(has_text="oc-1")
    expect(attached.first).to_be_visible(timeout=LIVE_MS)  # watching oc-1 from here on
    page.evaluate("window.notReloaded = true")
    started = run_ocm("run", "--async", "-i", "oc-1", "hello live", check=True)
    task_id, session, _ = started.stdout.split()
    ours = page.locator('tr.event[data-type^="session."]').filter(has_text=session)
    expect(ours.first).to_be_visible(timeout=LIVE_MS)
    idle = page.locator('tr.event[data-type="session.idle"], tr.event[data-type="session.status"]')
    expect(idle.filter(has_text=session).last).to_be_visible(timeout=LIVE_MS)
    assert page.evaluate("window.notReloaded") is True
    run_ocm("wait", task_id, check=True, timeout=60)
    shot(page, "events")


def _read_a_diff(page: Page, base: str, shot: Shot) -> None:
    """A task that writes a file in the git project: its page shows the coloured diff."""
    result = run_ocm("run", "-i", "oc-1", "WRITE: notes.txt", "--async", check=True)
    task_id = result.stdout.split()[0]
    page.goto(f"{base}/tasks/{task_id}")
    diff = page.locator('.diff[data-file="notes.txt"]')
    expect(diff.locator(".d-add")).to_have_text(["+scripted content"], timeout=LIVE_MS)
    expect(diff.locator(".diff-file")).to_contain_text("+1")
    expect(page.locator("#task-status")).to_have_text("completed", timeout=LIVE_MS)
    expect(page.locator("#live-state")).to_have_text("done", timeout=LIVE_MS)
    shot(page, "task-diff")
    run_ocm("wait", task_id, check=True, timeout=60)


def _look_at_an_instance(page: Page, base: str, shot: Shot) -> None:
    """An instance's page: details, the CPU and memory chart, its log."""
    page.goto(base + "/instances/oc-1")
    expect(page.locator("h1")).to_contain_text("oc-1")
    chart = page.locator("#chart")
    expect(chart.locator("svg")).to_have_count(2)
    expect(chart.locator("polyline.rss")).to_have_attribute(
        "points", re.compile(r"\d+\.\d,\d+\.\d"), timeout=LIVE_MS
    )
    expect(page.locator("#log")).to_contain_text("healthy at", timeout=LIVE_MS)
    _live(page)
    # A long log shows its newest lines, after live updates too.
    at_the_end = """() => { const p = document.getElementById("log");
        return p.scrollHeight > p.clientHeight
            && p.scrollHeight - p.scrollTop - p.clientHeight < 8; }"""
    page.wait_for_function(at_the_end, timeout=LIVE_MS)
    shot(page, "instance")


def _run_a_batch(page: Page, base: str, shot: Shot) -> None:
    page.goto(base + "/batches")
    page.locator("#submit-batch summary").click()
    lines = [{"id": "greet", "prompt": "hello batch"}, {"id": "echo", "prompt": "BASH: echo b"}]
    page.fill("#submit-batch textarea[name=text]", "\n".join(json.dumps(x) for x in lines))
    page.click("#submit-batch button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(base) + r"/batches/[^/]+$"))
    expect(page.locator("#batch-status")).to_have_text("completed", timeout=LIVE_MS)
    expect(page.locator("#batch-live tbody tr")).to_have_count(2)
    shot(page, "batch")
    page.goto(base + "/batches")
    expect(page.locator("main table tbody tr")).to_have_count(1)
    shot(page, "batches")


def _read_without_scripts(
    browser: Browser, signed_in: BrowserContext, base: str, shot: Shot
) -> None:
    """With JavaScript off the pages still read (no live updates)."""
    context = browser.new_context(
        java_script_enabled=False, viewport=VIEWPORT, storage_state=signed_in.storage_state()
    )  # the same cookie
    page = context.new_page()
    page.goto(base + "/")
    expect(page.locator("#fleet-table tr[data-instance=oc-1] td").nth(1)).to_have_text("running")
    expect(page.locator("#fleet-table tr[data-instance=oc-2] td").nth(1)).to_have_text("stopped")
    expect(page.locator("#live-state")).to_have_text("static")
    shot(page, "fleet-no-script")
    context.close()
