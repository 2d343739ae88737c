"""Issue 23: a secret an agent committed into a worktree file stays out of every patch ocm
shows: `ocm result --patch`, the dashboard's task page (its diff), MCP `task_get`. Real git
repositories and an OCM_HOME holding an instance's password; no server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from mcp import Client
from starlette.testclient import TestClient

from opencode_manager import Settings
from opencode_manager.dashboard.app import Dashboard
from opencode_manager.mcpserver.tools import build_server
from opencode_manager.models import TaskRecord, TaskStatus
from opencode_manager.redaction import REDACTED
from opencode_manager.registry import Registry
from opencode_manager.tasks import worktree as wt
from opencode_manager.tasks.store import TaskStore

from helpers import Ocm

GIT = ["git", "-c", "user.email=t@example.test", "-c", "user.name=t"]
SECRET = "pw-" + "7f3a9c1e5b2d4f6a8c0e2b4d6f8a1c3e"  # an instance password, as ocm makes them
TOKEN = "login-token-for-the-test"


@pytest.fixture
def task_with_a_secret(tmp_path: Path) -> tuple[Settings, TaskRecord]:
    """A finished worktree task whose agent wrote an instance's password into a file it
    committed, stored as a record made before the password existed (unredacted)."""
    settings = Settings.load(home=Path(os.environ["OCM_HOME"]))
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "a.txt").write_text("original\n")
    subprocess.run([*GIT, "add", "."], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=repo, check=True)
    tree = wt.create(settings.worktrees_dir, str(repo), wt.WorktreeRequest(), "t-sec")
    (Path(tree.path) / "config.env").write_text(f"PASSWORD={SECRET}\n")
    tree = wt.finish(tree, wt.commit_message("t-sec", "write the config"))
    assert SECRET in (tree.diff or "")
    record = TaskRecord(
        id="t-sec", prompt="write the config", status=TaskStatus.COMPLETED, created_at=1.0,
        worktree=tree.to_dict(), text="done",
        diff=[{"file": "config.env", "before": "", "after": f"PASSWORD={SECRET}\n",
               "additions": 1, "deletions": 0}],
    )  # fmt: skip
    TaskStore(Registry(settings.registry_path)).add(record)  # no secrets known: kept as is
    settings.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (settings.secrets_dir / "oc-1.password").write_text(SECRET + "\n")
    return settings, record


def test_result_patch_leaves_the_secret_out(
    ocm: Ocm, task_with_a_secret: tuple[Settings, TaskRecord]
) -> None:
    shown = ocm("result", "t-sec", "--patch", check=True)
    assert SECRET not in shown.stdout
    assert f"+PASSWORD={REDACTED}" in shown.stdout
    assert "diff --git a/config.env b/config.env" in shown.stdout  # still a patch
    as_json = ocm("result", "t-sec", "--json", check=True)
    assert SECRET not in as_json.stdout


def test_the_dashboard_task_page_leaves_the_secret_out(
    task_with_a_secret: tuple[Settings, TaskRecord],
) -> None:
    settings, _ = task_with_a_secret
    app = Dashboard(settings, TOKEN).app(["127.0.0.1"])
    with TestClient(app, base_url="http://127.0.0.1:8766", follow_redirects=False) as client:
        assert client.get("/login", params={"token": TOKEN}).status_code == 303
        for path in ("/tasks/t-sec", "/tasks"):
            page = client.get(path)
            assert page.status_code == 200, page.text
            assert SECRET not in page.text
        assert "config.env" in client.get("/tasks/t-sec").text  # the diff is shown


@pytest.mark.anyio
async def test_mcp_task_get_leaves_the_secret_out(
    task_with_a_secret: tuple[Settings, TaskRecord],
) -> None:
    settings, _ = task_with_a_secret
    async with Client(build_server(settings)) as client:
        got = await client.call_tool("task_get", {"task_id": "t-sec"})
    text = "".join(getattr(block, "text", "") for block in got.content)
    assert "config.env" in text
    assert SECRET not in text
    assert SECRET not in str(got.structured_content)
