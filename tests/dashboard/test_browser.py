"""The dashboard in a real Chromium (Playwright), against a real `ocm dashboard` process and two
instances of the scripted model: sign in, watch the fleet and its totals live, stop an
instance, run tasks and watch the list update, abort a task, open the events page on its
history, run a batch (its errors with their message) and cancel one, read a diff; the same
pages on a phone (390 px: no sideways scrolling to reach a row's buttons); pages still read
without scripts, and abort asks on a page of its own there; and the login token is nowhere
but in the one line that hands it to the person who started the dashboard.

Screenshots of every page land in the test's tmp_path (`screens/`, the phone's in
`screens/phone-*`); their paths are printed.
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
from typing import Protocol

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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

CHROMIUM = "/usr/bin/chromium"  # Playwright cannot download its own browser here
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
LIVE_MS = 60_000  # the longest a live update may take to show


class Shot(Protocol):
    def __call__(self, page: Page, name: str, *, full: bool = True) -> None: ...


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
        # Cold (no warm-up): the page shows the bootstrap chatter of a first prompt, which
        # a warm-up would have spent before the dashboard was watching.
        run_ocm("start", "-n", "2", "--no-warm", "--dir", str(repo), *env_args, check=True)
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

    def shot(page: Page, name: str, *, full: bool = True) -> None:
        shots[name] = screens / f"{name}.png"
        page.screenshot(path=shots[name], full_page=full)

    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    base = dashboard.base

    _sign_in(browser, page, dashboard, shot)
    _watch_the_fleet(page, shot)
    _stop_an_instance_with_its_button(page, shot)
    _run_a_task_from_the_form(page, base, shot)
    _watch_the_tasks_list(page, base, shot)
    aborted = _abort_a_task(page, base, shot)
    _see_events_arrive(page, base, aborted, shot)
    _read_a_diff(page, base, shot)
    _look_at_an_instance(page, base, shot)
    _run_a_batch(page, base, shot)
    _cancel_a_batch(page, base, shot)
    _on_a_phone(browser, context, base, shot)
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
    expect(page.locator("#total-instances")).to_contain_text("2 running")
    _live(page)
    page.evaluate("window.notReloaded = true")
    started = run_ocm("run", "--async", "-i", "oc-1", "SLEEP 8 busy for the picture", check=True)
    busy = page.locator("#fleet-table tr[data-instance=oc-1] td").nth(8)
    expect(busy).to_contain_text("1 busy", timeout=LIVE_MS)
    expect(page.locator("#total-sessions .value")).to_have_text("1 busy", timeout=LIVE_MS)
    expect(page.locator("#total-tasks")).to_contain_text("1 running", timeout=LIVE_MS)
    # The fleet's CPU and memory over time: the sum of both keepers' samples.
    chart = page.locator("#fleet-chart")
    expect(chart).to_contain_text("the sum over 2 instances", timeout=LIVE_MS)
    expect(chart.locator("polyline.rss")).to_have_attribute(
        "points", re.compile(r"\d+\.\d,\d+\.\d \d+\.\d,\d+\.\d"), timeout=LIVE_MS
    )
    assert page.evaluate("window.notReloaded") is True
    page.set_viewport_size({"width": 1280, "height": 720})
    shot(page, "fleet-busy")  # the README's picture
    page.set_viewport_size(VIEWPORT)
    run_ocm("wait", started.stdout.split()[0], check=True, timeout=60)
    expect(busy).to_contain_text("0 busy", timeout=LIVE_MS)
    expect(page.locator("#total-tasks")).to_contain_text("1 completed", timeout=LIVE_MS)


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
    expect(page.locator("#total-instances")).to_contain_text("1 stopped", timeout=LIVE_MS)
    expect(page.locator("#total-instances")).to_contain_text("1 running")
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


def _watch_the_tasks_list(page: Page, base: str, shot: Shot) -> None:
    """/tasks updates live: a task started elsewhere shows up and finishes without a reload;
    its prompt is text, never markup. The filters pick from known instances and statuses."""
    page.goto(base + "/tasks")
    _live(page)
    page.evaluate("window.notReloaded = true")
    prompt = 'SLEEP 3 <img src=x id="xss-probe"> live row'
    started = run_ocm("run", "--async", "-i", "oc-1", prompt, check=True)
    row = page.locator(f"#tasks-table tr[data-task={started.stdout.split()[0]}]")
    expect(row).to_contain_text("<img src=x", timeout=LIVE_MS)
    expect(row.locator(".status")).to_have_text("completed", timeout=LIVE_MS)
    expect(page.locator("#xss-probe")).to_have_count(0)
    assert page.evaluate("window.notReloaded") is True
    shot(page, "tasks-live")

    filters = page.locator("#task-filters")
    expect(filters.locator("select[name=instance] option")).to_have_text(["all", "oc-1", "oc-2"])
    assert "aborted" in filters.locator("select[name=status] option").all_inner_texts()
    filters.locator("select[name=instance]").select_option("oc-2")
    filters.locator("button[type=submit]").click()
    expect(page).to_have_url(base + "/tasks?status=&instance=oc-2")
    expect(page.locator("#tasks-table tbody")).to_have_text("No tasks yet.")
    _live(page)  # the filtered list is live too
    filters.locator("select[name=instance]").select_option("oc-1")
    filters.locator("select[name=status]").select_option("completed")
    filters.locator("button[type=submit]").click()
    expect(page).to_have_url(base + "/tasks?status=completed&instance=oc-1")
    statuses = page.locator("#tasks-table tbody .status")
    expect(statuses).to_have_count(3)  # the busy one, the form's, the live row's: all on oc-1
    assert set(statuses.all_inner_texts()) == {"completed"}


def _abort_a_task(page: Page, base: str, shot: Shot) -> str:
    """A running task's page has an abort button: it asks first (no keeps it running), then
    the turn stops and the page says so."""
    started = run_ocm("run", "--async", "-i", "oc-1", "SLEEP 120 abort me", check=True)
    task_id = started.stdout.split()[0]
    page.goto(f"{base}/tasks/{task_id}")
    expect(page.locator("#task-status")).to_have_text("running")
    button = page.locator("#abort-task button")
    asked: list[str] = []

    def answer(yes: bool) -> Callable[[Dialog], None]:
        def reply(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.accept() if yes else dialog.dismiss()

        return reply

    page.evaluate("window.notReloaded = true")
    page.once("dialog", answer(False))
    button.click()
    expect(page.locator("#task-status")).to_have_text("running")
    assert page.evaluate("window.notReloaded") is True  # the form was not sent
    shot(page, "task-running")
    page.once("dialog", answer(True))
    button.click()
    expect(page).to_have_url(f"{base}/tasks/{task_id}?done=aborted", timeout=LIVE_MS)
    expect(page.locator("#notice")).to_have_text("You aborted this task.")
    expect(page.locator("#task-status")).to_have_text("aborted", timeout=LIVE_MS)
    expect(page.locator("#task-error")).to_contain_text("Aborted")
    expect(page.locator("#abort-task")).to_have_count(0)
    assert asked == [f"Abort task {task_id}? Its turn stops now."] * 2
    shot(page, "task-aborted")
    result = run_ocm("result", task_id, "--json", check=True).json()
    assert result["status"] == "aborted"
    return str(result["session_id"])


def _see_events_arrive(page: Page, base: str, aborted: str, shot: Shot) -> None:
    """/events opens on what already happened (the keepers' lifecycle events, the events of
    tasks that ran before), then appends new events as they happen, without a reload."""
    page.goto(base + "/events")
    # Before any live update: rendered with the page.
    history = page.locator("#events-live tr.event")
    assert history.count() > 5, history.all_inner_texts()
    stopped = page.locator('tr.event[data-type="ocm.stopped"]').filter(has_text="oc-2")
    expect(stopped).to_contain_text("stopped: on request")
    assert page.locator('tr.event[data-type="ocm.healthy"]').count() >= 2
    # The aborted task's session, from before the page was opened.
    earlier = page.locator("tr.event").filter(has_text=aborted)
    assert earlier.count() >= 2, history.all_inner_texts()
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
    seqs = [int(x) for x in history.evaluate_all("rows => rows.map(r => r.dataset.seq)")]
    assert seqs == sorted(set(seqs)), seqs  # history and live rows: each once, in order
    shot(page, "events", full=False)
    # Bootstrap chatter is left out, as `ocm monitor` leaves it out, unless asked for.
    assert page.locator('tr.event[data-type="plugin.added"]').count() == 0
    page.goto(base + "/events?type=plugin.*")
    expect(page.locator('tr.event[data-type="plugin.added"]').first).to_be_visible()
    # The instance filter is a pick-list of the fleet's instances.
    page.goto(base + "/events")
    filters = page.locator("#event-filters")
    expect(filters.locator("select[name=instance] option")).to_have_text(["all", "oc-1", "oc-2"])
    filters.locator("select[name=instance]").select_option("oc-2")
    filters.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/events\?instance=oc-2"))
    expect(page.locator("tr.event").first).to_be_visible()
    instances = page.locator("tr.event").evaluate_all("rows => rows.map(r => r.dataset.instance)")
    assert set(instances) == {"oc-2"}, instances


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
    """A batch from the form; a task the model failed shows the model's message."""
    page.goto(base + "/batches")
    page.locator("#submit-batch summary").click()
    lines = [{"id": "greet", "prompt": "hello batch"}, {"id": "echo", "prompt": "BASH: echo b"},
             {"id": "bad", "prompt": "ERR400 NORETRY"}]  # fmt: skip
    page.fill("#submit-batch textarea[name=text]", "\n".join(json.dumps(x) for x in lines))
    page.click("#submit-batch button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(base) + r"/batches/[^/]+$"))
    expect(page.locator("#batch-status")).to_have_text("completed", timeout=LIVE_MS)
    expect(page.locator("#batch-live tbody tr")).to_have_count(3)
    expect(page.locator("#cancel-batch")).to_have_count(0)  # nothing left to cancel
    bad = page.locator("#batch-live tbody tr").filter(has_text="bad")
    expect(bad.locator(".status")).to_have_text("failed")
    expect(bad.locator("td.error")).to_contain_text("scripted error 400 from scripted model")
    shot(page, "batch")
    page.goto(base + "/batches")
    expect(page.locator("main table tbody tr")).to_have_count(1)
    shot(page, "batches")


def _cancel_a_batch(page: Page, base: str, shot: Shot) -> None:
    """A running batch's page has a cancel button: it asks, then the running task is aborted
    and the rest never start."""
    page.goto(base + "/batches")
    page.locator("#submit-batch summary").click()
    lines = [{"id": f"slow-{i}", "prompt": f"SLEEP 120 slow {i}"} for i in range(3)]
    page.fill("#submit-batch textarea[name=text]", "\n".join(json.dumps(x) for x in lines))
    page.fill("#submit-batch input[name=per_instance]", "1")
    page.click("#submit-batch button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(base) + r"/batches/[^/?]+$"))
    batch_url = page.url
    rows = page.locator("#batch-live tbody tr")
    expect(rows.locator(".status").first).to_have_text("running", timeout=LIVE_MS)
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.locator("#cancel-batch button").click()
    expect(page).to_have_url(batch_url + "?done=cancelled", timeout=LIVE_MS)
    expect(page.locator("#notice")).to_contain_text("You cancelled this batch")
    expect(page.locator("#batch-status")).to_have_text("cancelled")
    expect(rows.locator(".status")).to_have_text(["aborted", "cancelled", "cancelled"])
    expect(page.locator("#cancel-batch")).to_have_count(0)
    assert [a.split("?")[0][:13] for a in asked] == ["Cancel batch "], asked
    shot(page, "batch-cancelled")


def _fits(page: Page, what: str) -> None:
    """Nothing on the page reaches past the screen's right edge (no sideways scrolling)."""
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= PHONE["width"], f"{what}: {wide} px wide on a {PHONE['width']} px screen"


def _on_a_phone(browser: Browser, signed_in: BrowserContext, base: str, shot: Shot) -> None:
    """At 390 px each fleet row keeps its name, status and buttons on screen; the totals, the
    chart, the filters and the abort button are there; no page scrolls sideways."""
    context = browser.new_context(
        viewport=PHONE, storage_state=signed_in.storage_state(), is_mobile=True, has_touch=True
    )
    page = context.new_page()
    page.goto(base + "/")
    _live(page)
    for name in ("oc-1", "oc-2"):
        row = page.locator(f"#fleet-table tr[data-instance={name}]")
        cells = [row.locator("td.name a"), row.locator("td .status"),
                 *row.locator("td.actions button").all()]  # fmt: skip
        assert len(cells) == (4 if name == "oc-1" else 3), name  # oc-1: stop and restart
        for cell in cells:
            expect(cell).to_be_in_viewport()
        # One snapshot of the row: the live view may swap the table between two separate
        # look-ups, and a swapped-out element has no box.
        boxes = row.evaluate(
            """row => [row.querySelector('td.name a'), row.querySelector('td .status'),
                       ...row.querySelectorAll('td.actions button')]
                      .map(cell => { const r = cell.getBoundingClientRect();
                                     return {x: r.x, width: r.width}; })"""
        )
        assert len(boxes) == len(cells), (name, boxes)
        for box in boxes:
            assert box["x"] >= 0, (name, box)
            assert box["x"] + box["width"] <= PHONE["width"], (name, box)
    expect(page.locator("#fleet-table tr[data-instance=oc-1] .phone-only")).to_contain_text("MiB")
    expect(page.locator("#total-instances")).to_be_visible()
    expect(page.locator("#fleet-chart svg").first).to_be_visible()
    _fits(page, "/")
    shot(page, "phone-fleet")

    started = run_ocm("run", "--async", "-i", "oc-1", "SLEEP 120 abort from a phone", check=True)
    task_id = started.stdout.split()[0]
    page.goto(base + "/tasks")
    _live(page)
    expect(page.locator(f"#tasks-table tr[data-task={task_id}]")).to_be_visible(timeout=LIVE_MS)
    expect(page.locator("#task-filters select[name=instance]")).to_be_in_viewport()
    _fits(page, "/tasks")
    shot(page, "phone-tasks")
    page.goto(f"{base}/tasks/{task_id}")
    button = page.locator("#abort-task button")
    expect(button).to_be_in_viewport()
    page.once("dialog", lambda dialog: dialog.accept())
    button.tap()
    expect(page.locator("#task-status")).to_have_text("aborted", timeout=LIVE_MS)
    _fits(page, "a task")
    shot(page, "phone-task")

    for path, name in [("/events", "events"), ("/batches", "batches"),
                       ("/instances/oc-1", "instance")]:  # fmt: skip
        page.goto(base + path)
        _fits(page, path)
        shot(page, f"phone-{name}", full=name != "events")
    page.goto(base + "/batches")
    page.locator("main table tbody tr a").first.click()  # the newest: the cancelled one
    expect(page.locator("#batch-status")).to_have_text("cancelled")
    _fits(page, "a batch")
    shot(page, "phone-batch")
    context.close()


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
    # The events page has its history without scripts too.
    page.goto(base + "/events")
    expect(page.locator('tr.event[data-type="ocm.stopped"]')).to_have_count(1)

    # Abort asks on a page of its own: "keep it running" keeps it; "abort it" aborts.
    started = run_ocm("run", "--async", "-i", "oc-1", "SLEEP 120 abort without scripts",
                      check=True)  # fmt: skip
    task_id = started.stdout.split()[0]
    page.goto(f"{base}/tasks/{task_id}")
    page.locator("#abort-task button").click()
    expect(page.locator("h1")).to_have_text(f"Abort task {task_id}?")
    expect(page.locator("#confirm")).to_contain_text("SLEEP 120 abort without scripts")
    shot(page, "abort-confirm-no-script")
    page.get_by_role("link", name="Keep it running").click()
    expect(page).to_have_url(f"{base}/tasks/{task_id}")
    expect(page.locator("#task-status")).to_have_text("running")
    page.locator("#abort-task button").click()
    page.get_by_role("button", name="Abort it").click()
    expect(page).to_have_url(f"{base}/tasks/{task_id}?done=aborted")
    expect(page.locator("#notice")).to_have_text("You aborted this task.")
    expect(page.locator("#task-status")).to_have_text("aborted")
    context.close()
