"""A git worktree per task, on real git repositories: the module alone (no server), then
through `ocm run --worktree` on the shared fleet."""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from opencode_manager.errors import ConflictError, OcmError, UsageError
from opencode_manager.instances.fleet import Fleet as RegistryFleet
from opencode_manager.models import TaskRecord, TaskStatus
from opencode_manager.tasks import worktree as wt

from conftest import Fleet
from helpers import Ocm, assert_one_line_error, invoke_ocm

GIT = ["git", "-c", "user.email=t@example.test", "-c", "user.name=t"]


def _repo(path: Path) -> Path:
    path.mkdir()
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=path, check=True)
    (path / "a.txt").write_text("original\n")
    (path / "gone.txt").write_text("to be deleted\n")
    subprocess.run([*GIT, "add", "."], cwd=path, check=True)
    subprocess.run([*GIT, "commit", "-qm", "init"], cwd=path, check=True)
    return path


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout  # fmt: skip


def test_a_task_worktree_holds_exactly_its_changes(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    head = _git(repo, "rev-parse", "HEAD").strip()
    tree = wt.create(tmp_path / "wts", str(repo), wt.WorktreeRequest(), "t-1")
    assert (tree.branch, tree.base, tree.subdir) == ("ocm/t-1", head, "")
    work = Path(tree.directory)
    (work / "a.txt").write_text("changed\n")
    (work / "new.txt").write_text("new\n")
    (work / "gone.txt").unlink()
    done = wt.finish(tree, wt.commit_message("t-1", "change things"))
    assert done.committed
    assert sorted((f["status"], f["path"]) for f in done.files) == [
        ("added", "new.txt"), ("deleted", "gone.txt"), ("modified", "a.txt")]  # fmt: skip
    assert _git(repo, "status", "--porcelain") == ""  # the user's checkout: untouched
    assert _git(repo, "rev-parse", "HEAD").strip() == head
    assert _git(repo, "log", "-1", "--format=%s", "ocm/t-1").startswith("ocm task t-1:")
    patch = wt.patch(done)
    assert patch == _git(repo, "diff", "--binary", "--no-renames", head, "ocm/t-1")
    assert done.diff == patch  # recorded in the result too
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "apply", "--check"], cwd=clone, input=patch, text=True, check=True)
    wt.remove(done)
    assert _git(repo, "worktree", "list").count("\n") == 1  # no stale entry
    assert "ocm/t-1" in _git(repo, "branch", "--list", "ocm/t-1")  # the work stays


def test_no_commit_leaves_the_changes_staged_in_the_worktree(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    tree = wt.create(tmp_path / "wts", str(repo / "sub"), wt.WorktreeRequest(commit=False), "t-2")
    assert tree.subdir == "sub"
    Path(tree.directory).mkdir(exist_ok=True)
    (Path(tree.directory) / "x.txt").write_text("x\n")
    done = wt.finish(tree, "m")
    assert not done.committed
    assert done.head == done.base
    assert done.files == [{"status": "added", "path": "sub/x.txt"}]
    assert "sub/x.txt" in wt.patch(done)


def test_clear_errors_before_anything_is_created(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(UsageError, match="is not inside a git repository"):
        wt.create(tmp_path / "wts", str(plain), wt.WorktreeRequest(), "t-3")
    empty = tmp_path / "empty"
    empty.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=empty, check=True)
    with pytest.raises(UsageError, match="has no commits yet"):
        wt.create(tmp_path / "wts", str(empty), wt.WorktreeRequest(), "t-3")
    repo = _repo(tmp_path / "repo")
    with pytest.raises(UsageError, match="invalid --base 'nope'"):
        wt.create(tmp_path / "wts", str(repo), wt.WorktreeRequest(base="nope"), "t-3")
    with pytest.raises(ConflictError, match="branch main exists already"):
        wt.create(tmp_path / "wts", str(repo), wt.WorktreeRequest(branch="main"), "t-3")
    with pytest.raises(UsageError, match="invalid --branch"):
        wt.create(tmp_path / "wts", str(repo), wt.WorktreeRequest(branch="a..b"), "t-3")
    assert not (tmp_path / "wts").exists()
    (repo / "a.txt").write_text("dirty\n")  # `ocm run` prints the note on stderr
    tree = wt.create(tmp_path / "wts", str(repo), wt.WorktreeRequest(), "t-4")
    assert tree.note is not None
    assert "uncommitted changes" in tree.note  # said, not silently dropped


def _task(root: Path, repo: Path, task_id: str, *, status: TaskStatus = TaskStatus.COMPLETED,
          write: str | None = None, commit: bool = True) -> TaskRecord:  # fmt: skip
    """A task that ran in a worktree under `root` and (if `write`) changed a file, finished
    as ocm finishes it."""
    tree = wt.create(root, str(repo), wt.WorktreeRequest(commit=commit), task_id)
    if write is not None:
        (Path(tree.directory) / write).write_text(f"{task_id}\n")
    if status.final:
        tree = wt.finish(tree, wt.commit_message(task_id, "p"))
    return TaskRecord(id=task_id, prompt="p", status=status, created_at=100.0,
                      worktree=tree.to_dict())  # fmt: skip


def test_rm_choices_refuse_a_running_task(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    records = [
        _task(tmp_path / "wts", repo, "t-a", write="a-new.txt"),
        _task(tmp_path / "wts", repo, "t-b", status=TaskStatus.RUNNING),
        _task(tmp_path / "wts", repo, "t-c"),  # changed nothing: its branch is its base
    ]
    _git(repo, "merge", "--ff-only", "-q", "ocm/t-a")
    with pytest.raises(ConflictError, match="still running"):
        wt.choose(records, ["t-b"], merged=False, older_than=None, now=200.0)
    with pytest.raises(UsageError, match="which worktrees"):
        wt.choose(records, [], merged=False, older_than=None, now=200.0)
    old = wt.choose(records, [], merged=False, older_than=50.0, now=200.0)
    assert [r.id for r in old] == ["t-a", "t-c"]
    merged = wt.choose(records, [], merged=True, older_than=None, now=200.0)
    assert [r.id for r in merged] == ["t-a"]  # t-c is at main's HEAD, with nothing merged


def test_rm_merged_keeps_a_no_commit_tasks_changes(tmp_path: Path) -> None:
    """Issue 23: a --no-commit task's branch equals its base, so it counted as merged, and
    its worktree, the only place its changes were, went with --force."""
    repo = _repo(tmp_path / "repo")
    records = [
        _task(tmp_path / "wts", repo, "t-nc", write="work.txt", commit=False),
        _task(tmp_path / "wts", repo, "t-done", write="done.txt"),
    ]
    _git(repo, "merge", "--ff-only", "-q", "ocm/t-done")
    work = Path(records[0].worktree["path"]) / "work.txt"  # type: ignore[index]
    chosen = wt.choose(records, [], merged=True, older_than=None, now=200.0)
    assert [r.id for r in chosen] == ["t-done"]
    done = wt.remove_chosen(records, [], merged=True, older_than=None, now=200.0, force=True)
    assert done.removed == ["t-done"]  # --force: for what --merged chose, and nothing else
    [kept] = done.kept
    assert kept.task == "t-nc"
    assert kept.reason.startswith("no commits of its own, so nothing is merged; 1 uncommitted "
                                  "change (the task ran with --no-commit): work.txt")  # fmt: skip
    assert work.read_text() == "t-nc\n"  # still there
    (work.parent / "more.txt").write_text("unstaged, untracked\n")
    named = wt.remove_chosen(records, ["t-nc"], merged=False, older_than=None, now=200.0)
    assert named.removed == []
    assert named.kept[0].reason.startswith("2 uncommitted changes")
    assert named.kept[0].reason.endswith("or --force removes them")
    forced = wt.remove_all([records[0]], force=True)
    assert forced.removed == ["t-nc"]
    assert not work.exists()
    assert _git(repo, "worktree", "list").count("\n") == 1


def test_ocm_worktree_rm_says_what_it_kept_and_why(ocm: Ocm, tmp_path: Path) -> None:
    import os

    from opencode_manager.registry import Registry
    from opencode_manager.tasks.store import TaskStore

    home = Path(os.environ["OCM_HOME"])
    repo = _repo(tmp_path / "repo")
    root = home / "worktrees"
    store = TaskStore(Registry(home / "registry.db"))
    nc = _task(root, repo, "t-nc", write="work.txt", commit=False)
    assert nc.worktree is not None
    assert nc.worktree["path"].startswith(str(root))
    store.add(nc)
    merged = ocm("worktree", "rm", "--merged")
    assert merged.returncode == 0, str(merged)
    assert (
        "kept the worktree of t-nc: no commits of its own, so nothing is merged; 1 uncommitted "
        "change (the task ran with --no-commit): work.txt; commit them in" in merged.stderr
    )
    assert Path(nc.worktree["path"], "work.txt").exists()
    named = ocm("worktree", "rm", "t-nc", "--json")
    assert named.returncode == 4, str(named)  # asked for by name, and not done
    assert named.json()["removed"] == []
    assert named.json()["kept"][0]["task"] == "t-nc"
    forced = ocm("worktree", "rm", "t-nc", "--force", "--json", check=True)
    assert forced.json() == {"removed": ["t-nc"], "kept": []}
    assert not Path(nc.worktree["path"]).exists()


@pytest.mark.integration
def test_run_worktree_end_to_end(fleet: Fleet, tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    head = _git(repo, "rev-parse", "HEAD").strip()
    env = fleet.env
    result = invoke_ocm("run", "-i", "oc-1", "--dir", str(repo), "--worktree", "WRITE: b.txt",
                     "--json", env=env)  # fmt: skip
    assert result.returncode == 0, str(result)
    record = json.loads(result.stdout)
    tree = record["worktree"]
    assert tree["branch"] == f"ocm/{record['id']}"
    assert tree["base"] == head
    assert tree["committed"] is True
    assert tree["files"] == [{"status": "added", "path": "b.txt"}]
    assert tree["diff"] == _git(repo, "diff", "--binary", "--no-renames", head, tree["branch"])
    assert record["directory"] == tree["path"]
    assert _git(repo, "status", "--porcelain") == ""
    assert _git(repo, "rev-parse", "HEAD").strip() == head
    changed = _git(repo, "diff", "--name-only", f"{head}..{tree['branch']}").split()
    assert changed == ["b.txt"]
    patch = invoke_ocm("result", record["id"], "--patch", env=env, check=True).stdout
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "apply", "--check"], cwd=clone, input=patch, text=True, check=True)
    listed = invoke_ocm("worktrees", "--json", env=env, check=True).json()
    mine = [row for row in listed if row["task"] == record["id"]]
    assert mine
    assert mine[0]["present"] is True
    assert mine[0]["files"] == 1
    assert_one_line_error(
        invoke_ocm("run", "-i", "oc-1", "--dir", str(tmp_path), "--worktree", "hi", env=env),
        2, "is not inside a git repository",
    )  # fmt: skip
    assert_one_line_error(
        invoke_ocm("run", "--branch", "x", "hi", env=env), 2, "go with --worktree"
    )
    removed = invoke_ocm("worktree", "rm", record["id"], "--json", env=env, check=True).json()
    assert removed == {"removed": [record["id"]], "kept": []}
    assert _git(repo, "worktree", "list").count("\n") == 1
    loose = invoke_ocm("run", "-i", "oc-1", "--dir", str(repo), "--worktree", "--no-commit",
                       "WRITE: c.txt", "--json", env=env, check=True).json()  # fmt: skip
    kept = invoke_ocm("worktree", "rm", "--merged", "--json", env=env, check=True).json()
    assert loose["id"] not in kept["removed"]
    assert loose["id"] in [k["task"] for k in kept["kept"]]
    assert Path(loose["worktree"]["path"], "c.txt").exists()  # the agent's work: still there
    (repo / "a.txt").write_text("work in progress\n")  # the user's own uncommitted work
    dirty = invoke_ocm("run", "-i", "oc-1", "--dir", str(repo), "--worktree", "hello", env=env,
                       check=True)  # fmt: skip
    assert f"note: uncommitted changes in {repo} are not in the worktree" in dirty.stderr
    assert (repo / "a.txt").read_text() == "work in progress\n"  # left as it was


@pytest.mark.integration
def test_a_batch_of_six_on_one_repository_keeps_every_change_apart(
    fleet: Fleet, tmp_path: Path
) -> None:
    repo = _repo(tmp_path / "repo")
    head = _git(repo, "rev-parse", "HEAD").strip()
    files = ["one.txt", "two.txt", "three.txt", "four.txt", "a.txt", "a.txt"]  # two edit a.txt
    batch = tmp_path / "tasks.jsonl"
    batch.write_text("".join(
        json.dumps({"id": f"w{i}", "prompt": f"WRITE: {name}", "dir": str(repo)}) + "\n"
        for i, name in enumerate(files)
    ))  # fmt: skip
    result = invoke_ocm("batch", str(batch), "--worktree", "-i", "oc-1", "-i", "oc-2",
                     "--per-instance", "2", "--json", env=fleet.env)  # fmt: skip
    assert result.returncode == 0, str(result)
    summary = json.loads(result.stdout)
    assert summary["counts"] == {"completed": 6}
    assert {t["instance"] for t in summary["tasks"]} == {"oc-1", "oc-2"}
    for outcome, name in zip(summary["tasks"], files, strict=True):
        record = invoke_ocm("result", outcome["task"], "--json", env=fleet.env, check=True).json()
        tree = record["worktree"]
        assert tree["base"] == head
        changed = _git(repo, "diff", "--name-only", f"{head}..{tree['branch']}").split()
        assert changed == [name], (outcome["id"], changed)  # exactly its own change
        assert [f["path"] for f in tree["files"]] == changed
    assert _git(repo, "status", "--porcelain") == ""  # the user's checkout: untouched
    assert _git(repo, "rev-parse", "HEAD").strip() == head
    removed = invoke_ocm("worktree", "rm", "--merged", "--older-than", "0s", "--json",
                      env=fleet.env, check=True).json()  # fmt: skip
    assert len(removed["removed"]) >= 6
    assert _git(repo, "worktree", "list").count("\n") == 1  # no stale entries


CONCURRENT_ADDS = 64  # without the lock, 6 runs of 6 failed here, up to 28 of the 64 adds


def test_many_concurrent_adds_on_one_repository_all_succeed(tmp_path: Path) -> None:
    """Issue 23: `git worktree add` run concurrently on one repository failed now and then
    ("failed to read .git/worktrees/<name>/commondir"): a batch adds them all at once."""
    repo = _repo(tmp_path / "repo")
    root = tmp_path / "wts"
    start = threading.Barrier(CONCURRENT_ADDS)

    def add(i: int) -> str | None:
        start.wait(timeout=60)
        try:
            wt.create(root, str(repo), wt.WorktreeRequest(), f"t-{i}")
        except OcmError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(CONCURRENT_ADDS) as pool:
        failures = [f for f in pool.map(add, range(CONCURRENT_ADDS)) if f]
    assert failures == []
    assert _git(repo, "worktree", "list").count("\n") == CONCURRENT_ADDS + 1
    records = [TaskRecord(id=f"t-{i}", prompt="p", status=TaskStatus.COMPLETED, created_at=1.0,
                          worktree=wt.Worktree(repository=str(repo), path=str(root / f"t-{i}"),
                                               branch=f"ocm/t-{i}", base="x").to_dict())
               for i in range(CONCURRENT_ADDS)]  # fmt: skip
    with ThreadPoolExecutor(8) as pool:  # removals take turns with adds, and with each other
        removed = list(pool.map(lambda r: wt.remove_all([r]).removed, records))
    assert sum(len(r) for r in removed) == CONCURRENT_ADDS
    assert _git(repo, "worktree", "list").count("\n") == 1


def test_cleanup_removes_worktrees_of_forgotten_tasks_through_git(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    root = tmp_path / "wts"
    kept = wt.create(root, str(repo), wt.WorktreeRequest(), "t-kept")
    gone = wt.create(root, str(repo), wt.WorktreeRequest(), "t-gone")
    assert wt.orphans(root, {"t-kept"}) == [Path(gone.path)]
    wt.remove_orphan(Path(gone.path))
    assert not Path(gone.path).exists()
    listed = _git(repo, "worktree", "list")
    assert listed.count("\n") == 2  # the checkout and t-kept: no stale entry
    assert kept.path in listed
    assert wt.orphans(root, {"t-kept"}) == []


def test_the_recorded_worktrees_rows_patch_removal_and_cleanup_sweep(
    tmp_path: Path, home_fleet: RegistryFleet
) -> None:
    """What the facade asks of this module, on a task store (no server, no facade)."""
    from opencode_manager.tasks.store import TaskStore

    store = TaskStore(home_fleet.registry)
    repo = _repo(tmp_path / "repo")
    root = tmp_path / "wts"
    store.add(_task(root, repo, "t-old", write="old.txt"))
    store.add(TaskRecord(id="t-plain", prompt="p", status=TaskStatus.COMPLETED, created_at=1.0))
    gone = wt.create(root, str(repo), wt.WorktreeRequest(), "t-gone")  # its task forgotten
    assert [(r.task, r.present, r.files) for r in wt.rows(store)] == [("t-old", True, 1)]
    assert "+t-old" in wt.task_patch(store, "t-old")
    with pytest.raises(UsageError, match="did not run in a worktree"):
        wt.task_patch(store, "t-plain")

    sweep = wt.orphan_sweep(store, root)
    assert sweep(True, False).removed == [gone.path]
    assert Path(gone.path).exists()
    assert sweep(False, False).removed == [gone.path]
    assert not Path(gone.path).exists()
    assert sweep(False, False).removed == []

    assert wt.remove_recorded(store, older_than=1000.0, now=200.0).removed == []
    assert wt.remove_recorded(store, older_than=50.0, now=200.0).removed == ["t-old"]
    assert [r.present for r in wt.rows(store)] == [False]


def test_ocm_cleanup_prunes_orphaned_worktrees(ocm: Ocm, tmp_path: Path) -> None:
    import os

    home = Path(os.environ["OCM_HOME"])
    repo = _repo(tmp_path / "repo")
    tree = wt.create(home / "worktrees", str(repo), wt.WorktreeRequest(), "t-orphan")
    dry = ocm("cleanup", "--dry-run", "--json", check=True).json()
    assert tree.path in dry["removed_files"]
    assert Path(tree.path).exists()
    ocm("cleanup", check=True)
    assert not Path(tree.path).exists()
    assert _git(repo, "worktree", "list").count("\n") == 1


def _orphans_holding_work(repo: Path, root: Path) -> dict[str, Path]:
    """Four worktrees whose tasks are forgotten: one clean, one with uncommitted files, one
    with a commit of its own, one whose commit was merged into the checkout's HEAD."""
    trees = {n: wt.create(root, str(repo), wt.WorktreeRequest(), f"t-{n}")
             for n in ("clean", "dirty", "ahead", "merged")}  # fmt: skip
    dirty = Path(trees["dirty"].path)
    (dirty / "a.txt").write_text("changed, never committed\n")
    (dirty / "new.txt").write_text("untracked\n")
    for name in ("ahead", "merged"):
        path = Path(trees[name].path)
        (path / f"{name}.txt").write_text(f"{name}\n")
        _git(path, "add", ".")
        _git(path, "commit", "-qm", name)
    _git(repo, "merge", "--ff-only", "-q", "ocm/t-merged")
    return {n: Path(t.path) for n, t in trees.items()}


def test_the_orphan_sweep_keeps_worktrees_holding_work(
    tmp_path: Path, home_fleet: RegistryFleet
) -> None:
    """Issue 23: `ocm cleanup` removed every worktree whose task was forgotten with
    `git worktree remove --force` and rmtree, uncommitted files and unmerged commits too."""
    from opencode_manager.tasks.store import TaskStore

    repo = _repo(tmp_path / "repo")
    paths = _orphans_holding_work(repo, tmp_path / "wts")
    sweep = wt.orphan_sweep(TaskStore(home_fleet.registry), tmp_path / "wts")
    dry = sweep(True, False)
    assert dry.removed == [str(paths["clean"]), str(paths["merged"])]
    kept = {Path(k.path).name: k.reason for k in dry.kept}
    assert kept == {
        "t-ahead": f"1 unmerged commit on ocm/t-ahead (not in {repo}'s HEAD)",
        "t-dirty": "2 uncommitted files: a.txt, new.txt",
    }
    assert all(p.exists() for p in paths.values())
    done = sweep(False, False)
    assert (done.removed, done.kept) == (dry.removed, dry.kept)
    assert [p.name for p in paths.values() if p.exists()] == ["t-dirty", "t-ahead"]
    assert (paths["dirty"] / "new.txt").read_text() == "untracked\n"
    forced = sweep(False, True)
    assert forced.removed == [str(paths["ahead"]), str(paths["dirty"])]
    assert {Path(f.path).name: f.reason for f in forced.forced} == kept
    assert not any(p.exists() for p in paths.values())
    assert "ocm/t-ahead" in _git(repo, "branch", "--list", "ocm/t-ahead")  # its commit stays
    assert _git(repo, "worktree", "list").count("\n") == 1


def test_an_orphan_git_cannot_vouch_for_is_kept(tmp_path: Path) -> None:
    """A worktree whose repository is gone, or a directory that is no worktree, may hold
    anything: kept unless forced; an empty directory is no work."""
    repo = _repo(tmp_path / "repo")
    root = tmp_path / "wts"
    tree = wt.create(root, str(repo), wt.WorktreeRequest(), "t-lost")
    (root / "t-plain").mkdir()
    (root / "t-plain" / "notes.txt").write_text("mine\n")
    (root / "t-empty").mkdir()
    subprocess.run(["rm", "-rf", str(repo)], check=True)
    assert wt.orphan_work(Path(tree.path)) == (
        f"its repository {repo} is gone, so ocm cannot tell what it holds"
    )
    plain = wt.orphan_work(root / "t-plain")
    assert plain == "not a git worktree, so ocm cannot tell what it holds"
    assert wt.orphan_work(root / "t-empty") is None


def test_ocm_cleanup_names_each_worktree_it_keeps_and_what_force_removed(
    ocm: Ocm, tmp_path: Path
) -> None:
    import os

    home = Path(os.environ["OCM_HOME"])
    repo = _repo(tmp_path / "repo")
    paths = _orphans_holding_work(repo, home / "worktrees")
    dry = ocm("cleanup", "--dry-run", "--json", check=True).json()
    assert str(paths["clean"]) in dry["removed_files"]
    assert [Path(k["path"]).name for k in dry["kept"]] == ["t-ahead", "t-dirty"]
    assert dry["kept"][1]["reason"] == "2 uncommitted files: a.txt, new.txt"
    assert dry["forced"] == []
    shown = ocm("cleanup", "--dry-run", check=True)
    assert (
        f"would keep {paths['dirty']}: 2 uncommitted files: a.txt, new.txt; --force "
        "removes it" in shown.stderr
    )
    assert all(p.exists() for p in paths.values())
    done = ocm("cleanup", check=True)
    assert f"removed {paths['clean']}\n" in done.stdout
    assert f"kept {paths['ahead']}: 1 unmerged commit on ocm/t-ahead" in done.stderr
    assert f"kept {paths['dirty']}: 2 uncommitted files" in done.stderr
    assert paths["dirty"].exists()
    assert paths["ahead"].exists()
    forced = ocm("cleanup", "--force", check=True)
    assert (f"removed {paths['dirty']} (--force; it held 2 uncommitted files: a.txt, new.txt)"
            in forced.stdout)  # fmt: skip
    assert not paths["dirty"].exists()
    assert not paths["ahead"].exists()
    assert ocm("cleanup", "--json", check=True).json()["kept"] == []
