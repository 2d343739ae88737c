"""A git worktree per task: parallel agents on one repository never edit the same files.

Before the prompt, `git worktree add` a fresh worktree of the task's repository at a base
commit on a new branch, under `$OCM_HOME/worktrees/`; the task runs there. Afterwards what the
agent changed is committed on that branch (unless told not to) and the result records the
repository, worktree, branch, base and head commits and the files changed, as git computes
them. The user's own checkout is never touched: only `git worktree add` and branch
creation write to the repository's metadata.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConflictError, NotFoundError, OcmError, UsageError
from ..models import TaskRecord

# Who commits the agent's work when the repository names nobody (a CI runner, a fresh box).
_IDENTITY = ("-c", "user.name=opencode-manager", "-c", "user.email=ocm@localhost")
_BRANCH_PREFIX = "ocm/"
_STATUS = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "C": "copied",
           "T": "type changed"}  # fmt: skip


@dataclass
class WorktreeRequest:
    """What `--worktree` asked for (kept in the task record until the worktree exists)."""

    base: str | None = None  # a commit-ish; None: the repository's HEAD
    branch: str | None = None  # None: ocm/<task id>
    commit: bool = True  # commit the agent's changes on the branch afterwards


@dataclass
class Worktree:
    """A task's worktree, as recorded in its result (`worktree` in `ocm result --json`)."""

    repository: str  # the repository's top-level directory (the user's checkout)
    path: str  # the worktree, under $OCM_HOME/worktrees/
    branch: str
    base: str  # the commit the worktree started from
    subdir: str = ""  # where in the repository the task runs (its --dir, relative)
    head: str | None = None  # the commit holding the agent's changes, once finished
    committed: bool = False
    commit: bool = True  # whether changes are committed at the end
    files: list[dict[str, str]] = field(default_factory=list)  # {"status", "path"}
    diff: str | None = None  # `git diff --binary base head`: what `ocm result --patch` prints
    note: str | None = None  # e.g. uncommitted changes in the checkout were not included

    @property
    def directory(self) -> str:
        """The directory the task runs in."""
        return str(Path(self.path, self.subdir)) if self.subdir else self.path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Worktree:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def git(*args: str, cwd: str | Path, check: bool = True) -> str:
    """Run git; its stdout, or an OcmError with git's own first line of complaint."""
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )  # fmt: skip
    except FileNotFoundError:
        raise OcmError("git is not installed; --worktree needs it") from None
    if check and proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise OcmError(
            f"git {args[0]} failed: {lines[0] if lines else 'exit ' + str(proc.returncode)}"
        )
    return proc.stdout


def _ok(*args: str, cwd: str | Path) -> bool:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, check=False
        ).returncode == 0  # fmt: skip
    except FileNotFoundError:
        raise OcmError("git is not installed; --worktree needs it") from None


def validate_branch(branch: str, cwd: str | Path) -> None:
    if not _ok("check-ref-format", "--branch", branch, cwd=cwd):
        raise UsageError(f"invalid --branch {branch!r}: not a valid git branch name")


def inspect(directory: str, request: WorktreeRequest, task_id: str) -> tuple[Path, str, str]:
    """Check the repository before anything is created: (top level, base commit, branch).

    Clear errors for: not a git repository, no commits, an unknown --base, a branch that
    exists already."""
    where = Path(directory)
    if not where.is_dir():
        raise UsageError(f"--dir {directory}: no such directory")
    if not _ok("rev-parse", "--is-inside-work-tree", cwd=where):
        raise UsageError(f"--worktree: {directory} is not inside a git repository")
    top = Path(git("rev-parse", "--show-toplevel", cwd=where).strip())
    if not _ok("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=top):
        raise UsageError(f"--worktree: the repository {top} has no commits yet; commit once first")
    base_ref = request.base or "HEAD"
    if not _ok("rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}", cwd=top):
        raise UsageError(f"invalid --base {base_ref!r}: no such commit in {top}")
    base = git("rev-parse", "--verify", f"{base_ref}^{{commit}}", cwd=top).strip()
    branch = request.branch or f"{_BRANCH_PREFIX}{task_id}"
    validate_branch(branch, top)
    if _ok("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=top):
        raise ConflictError(f"branch {branch} exists already in {top}; choose another --branch")
    return top, base, branch


def create(root: Path, directory: str, request: WorktreeRequest, task_id: str) -> Worktree:
    """`git worktree add` a fresh worktree for the task under root (created on demand)."""
    top, base, branch = inspect(directory, request, task_id)
    subdir = os.path.relpath(Path(directory).resolve(), top.resolve())
    path = root / task_id
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        raise ConflictError(f"worktree {path} exists already")
    git("worktree", "add", "--quiet", "-b", branch, str(path), base, cwd=top)
    note = None
    if request.base is None and git("status", "--porcelain", cwd=top).strip():
        note = (f"uncommitted changes in {top} are not in the worktree (it starts at HEAD "
                f"{base[:12]}); commit them first to include them")  # fmt: skip
    return Worktree(
        repository=str(top), path=str(path), branch=branch, base=base,
        subdir="" if subdir == "." else subdir, commit=request.commit, note=note,
    )  # fmt: skip


def finish(tree: Worktree, message: str) -> Worktree:
    """Record what the agent changed: commit it on the branch (unless `commit` is off) and
    list the files changed against the base, as git sees them (new and deleted files too)."""
    path = tree.path
    if not Path(path).is_dir():
        return tree  # removed meanwhile: nothing to record
    git("add", "--all", cwd=path)
    staged = not _ok("diff", "--cached", "--quiet", cwd=path)
    if staged and tree.commit:
        git(*_IDENTITY, "commit", "--quiet", "--no-verify", "-m", message, cwd=path)
        tree.committed = True
    tree.head = git("rev-parse", "HEAD", cwd=path).strip()
    if tree.committed or not staged:
        listing = git("diff", "--name-status", "--no-renames", tree.base, tree.head, cwd=path)
    else:
        listing = git("diff", "--cached", "--name-status", "--no-renames", tree.base, cwd=path)
    tree.files = _files(listing)
    tree.diff = patch(tree)
    return tree


def _files(listing: str) -> list[dict[str, str]]:
    files = []
    for line in listing.splitlines():
        if not line.strip():
            continue
        code, _, name = line.partition("\t")
        files.append({"status": _STATUS.get(code[:1], code), "path": name})
    return files


def patch(tree: Worktree) -> str:
    """The agent's changes as a patch that `git apply` accepts on the base."""
    if tree.committed and tree.head:
        if not _ok("cat-file", "-e", f"{tree.head}^{{commit}}", cwd=tree.repository):
            raise NotFoundError(f"commit {tree.head[:12]} is gone from {tree.repository}")
        return git("diff", "--binary", "--no-renames", tree.base, tree.head, cwd=tree.repository)
    if not Path(tree.path).is_dir():
        raise NotFoundError(f"worktree {tree.path} was removed and its changes not committed")
    git("add", "--all", cwd=tree.path)
    return git("diff", "--cached", "--binary", "--no-renames", tree.base, cwd=tree.path)


def remove(tree: Worktree) -> None:
    """Remove the worktree (the branch, holding the agent's commit, is kept)."""
    if Path(tree.path).exists():
        git("worktree", "remove", "--force", tree.path, cwd=tree.repository)
    else:
        git("worktree", "prune", cwd=tree.repository, check=False)


def is_merged(tree: Worktree) -> bool:
    """Its branch is merged into the repository's current HEAD."""
    return _ok("merge-base", "--is-ancestor", tree.branch, "HEAD", cwd=tree.repository)


def commit_message(task_id: str, prompt: str) -> str:
    first = re.sub(r"\s+", " ", prompt).strip()
    if len(first) > 60:
        first = first[:57] + "..."
    return f"ocm task {task_id}: {first}\n\nCommitted by opencode-manager after the agent's turn."


def settling(
    save: Callable[[TaskRecord], Awaitable[None]],
) -> Callable[[TaskRecord], Awaitable[None]]:
    """Wrap a task's persist callback: when the task reaches a final status, its worktree's
    changes are committed and listed first (once), so every path that ends a task (run,
    wait, result, batch) records them."""

    async def persist(record: TaskRecord) -> None:
        if record.status.final and record.worktree and record.worktree.get("head") is None:
            tree = Worktree.from_dict(record.worktree)
            message = commit_message(record.task_id or record.id, record.prompt)
            try:
                record.worktree = (await asyncio.to_thread(finish, tree, message)).to_dict()
            except OcmError as exc:
                record.worktree = {**record.worktree, "error": str(exc)}
        await save(record)

    return persist


@dataclass
class WorktreeRow:
    """`ocm worktrees`: one task's worktree."""

    task: str
    status: str  # the task's
    branch: str
    path: str
    present: bool  # the worktree directory still exists
    repository: str
    base: str
    head: str | None
    files: int  # changed against the base
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row(record: TaskRecord) -> WorktreeRow:
    assert record.worktree is not None
    tree = Worktree.from_dict(record.worktree)
    return WorktreeRow(
        task=record.id, status=record.status.value, branch=tree.branch, path=tree.path,
        present=Path(tree.path).is_dir(), repository=tree.repository, base=tree.base,
        head=tree.head, files=len(tree.files), created_at=record.created_at,
    )  # fmt: skip


def choose(
    records: list[TaskRecord],
    ids: list[str],
    *,
    merged: bool,
    older_than: float | None,
    now: float,
) -> list[TaskRecord]:
    """The tasks whose worktrees `ocm worktree rm` removes: by task id, merged branches,
    or older than a duration; a running task's worktree is refused by id, skipped otherwise."""
    if not ids and not merged and older_than is None:
        raise UsageError("which worktrees? give task ids, --merged or --older-than")
    by_id = {r.id: r for r in records}
    chosen: dict[str, TaskRecord] = {}
    for task_id in ids:
        record = by_id.get(task_id)
        if record is None:
            raise NotFoundError(f"no worktree for task {task_id!r}; see `ocm worktrees`")
        if not record.status.final:
            raise ConflictError(
                f"task {task_id} is still {record.status.value}; its worktree stays"
            )
        chosen[task_id] = record
    for record in records:
        if not record.status.final or record.id in chosen or record.worktree is None:
            continue
        tree = Worktree.from_dict(record.worktree)
        if (merged and is_merged(tree)) or (
            older_than is not None and now - record.created_at > older_than
        ):
            chosen[record.id] = record
    return list(chosen.values())


def orphans(root: Path, known: set[str]) -> list[Path]:
    """Worktree directories under root whose task ocm no longer records."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name not in known)


def remove_orphan(path: Path) -> None:
    """Remove a worktree whose task record is gone: through git when its repository is
    still there (so `git worktree list` stays consistent), else just the directory."""
    dot_git = path / ".git"
    repository: Path | None = None
    if dot_git.is_file():
        pointer = dot_git.read_text().strip().removeprefix("gitdir:").strip()
        common = Path(pointer).parent.parent  # <repo>/.git/worktrees/<name> -> <repo>/.git
        repository = common.parent if common.name == ".git" else common
    if repository is not None and repository.is_dir():
        git("worktree", "remove", "--force", str(path), cwd=repository, check=False)
        git("worktree", "prune", cwd=repository, check=False)
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)
