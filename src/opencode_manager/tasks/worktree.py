"""A git worktree per task: parallel agents on one repository never edit the same files.

Before the prompt, `git worktree add` a fresh worktree of the task's repository at a base
commit on a new branch, under `$OCM_HOME/worktrees/`; the task runs there. Afterwards what the
agent changed is committed on that branch (unless told not to) and the result records the
repository, worktree, branch, base and head commits and the files changed, as git computes
them. The user's own checkout is never touched: only `git worktree add` and branch
creation write to the repository's metadata.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConflictError, NotFoundError, OcmError, UsageError
from ..models import Leftover, Swept, TaskRecord
from ..redaction import redact

if TYPE_CHECKING:
    from .store import TaskStore

# Who commits the agent's work when the repository names nobody (a CI runner, a fresh box).
_IDENTITY = ("-c", "user.name=opencode-manager", "-c", "user.email=ocm@localhost")
_BRANCH_PREFIX = "ocm/"
#: In the repository's git directory: ocm processes adding or removing worktrees of one
#: repository take turns (`repository_lock`).
LOCK_FILE = "ocm-worktrees.lock"
LOCK_WAIT_S = 60.0
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
    import subprocess  # here: `ocm worktrees` lists records and runs no git

    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )  # fmt: skip
    except FileNotFoundError:
        if not Path(cwd).is_dir():
            raise OcmError(f"{cwd} is gone") from None
        raise OcmError("git is not installed; --worktree needs it") from None
    if check and proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise OcmError(
            f"git {args[0]} failed: {lines[0] if lines else 'exit ' + str(proc.returncode)}"
        )
    return proc.stdout


def _ok(*args: str, cwd: str | Path) -> bool:
    import subprocess

    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, check=False
        ).returncode == 0  # fmt: skip
    except FileNotFoundError:
        raise OcmError("git is not installed; --worktree needs it") from None


@contextlib.contextmanager
def repository_lock(top: str | Path, *, wait: float = LOCK_WAIT_S) -> Iterator[None]:
    """One `git worktree add` or `remove` at a time per repository, across threads and
    processes. git does not serialise them itself: an add that lists the worktrees while
    another add is half way fails ("failed to read .git/worktrees/<name>/commondir"; 19 of
    240 adds, 48 at a time, on git 2.39).

    The lock (fcntl, on a file in the repository's common git directory) lives with what
    it guards: every ocm process meets the same one whatever its OCM_HOME and whatever path
    it names the repository by (a symlink, a subdirectory, one of its worktrees). The file
    is empty and stays (deleting a lock file others may hold is a race); git ignores it,
    and the checkout is never touched. A holder that dies releases it with its descriptor.
    """
    common = Path(git("rev-parse", "--git-common-dir", cwd=top).strip())
    path = (common if common.is_absolute() else Path(top) / common) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OcmError(f"cannot open the worktree lock {path}: {exc.strerror or exc}") from exc
    try:
        import fcntl  # here: `ocm worktrees` takes no lock

        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OcmError(
                        f"another process has held {path} for {wait:g}s; is a git command "
                        "stuck in that repository?"
                    ) from None
                time.sleep(0.02)  # polling the lock, with the deadline above
        yield
    finally:
        os.close(fd)


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
    with repository_lock(top):
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


def remove(tree: Worktree, *, force: bool = False) -> None:
    """Remove the worktree (the branch, holding the agent's commit, is kept). Without
    `force`, git itself refuses a worktree with changes not committed (a second guard
    behind `uncommitted`, for changes made since it was looked at)."""
    with repository_lock(tree.repository):
        if Path(tree.path).exists():
            flags = ["--force"] if force else []
            git("worktree", "remove", *flags, tree.path, cwd=tree.repository)
        else:
            git("worktree", "prune", cwd=tree.repository, check=False)


def has_own_commits(tree: Worktree) -> bool:
    """Its branch holds commits that its base does not."""
    count = git("rev-list", "--count", f"{tree.base}..{tree.branch}", cwd=tree.repository,
                check=False)  # fmt: skip
    return count.strip() not in ("", "0")


def is_merged(tree: Worktree) -> bool:
    """Its branch has commits of its own, and they are merged into the repository's current
    HEAD. A branch still at its base (a --no-commit task, whose changes wait uncommitted in
    the worktree, or an agent that changed nothing) has nothing merged: it is an ancestor of
    HEAD only because it never moved."""
    return has_own_commits(tree) and _ok(
        "merge-base", "--is-ancestor", tree.branch, "HEAD", cwd=tree.repository
    )


def uncommitted(tree: Worktree) -> list[str]:
    """The paths in the worktree whose changes are not committed on its branch (staged,
    unstaged or untracked; ignored files are not work). Empty when the worktree is gone."""
    if not Path(tree.path).is_dir():
        return []
    return _changes(Path(tree.path))


def _changes(path: Path) -> list[str]:
    listing = git("status", "--porcelain", "--untracked-files=all", cwd=path)
    return [line[3:] for line in listing.splitlines() if line.strip()]


def commit_message(task_id: str, prompt: str) -> str:
    first = re.sub(r"\s+", " ", prompt).strip()
    if len(first) > 60:
        first = first[:57] + "..."
    return f"ocm task {task_id}: {first}\n\nCommitted by opencode-manager after the agent's turn."


def unsettled(record: TaskRecord) -> bool:
    """The task has ended and what its agent changed in its worktree is not recorded yet."""
    return bool(record.status.final and record.worktree and record.worktree.get("head") is None)


def settle(record: TaskRecord) -> None:
    """Record in a finished task's record what its agent changed in the worktree: committed
    on the branch (unless --no-commit) and listed (`finish`). A failure is recorded as the
    worktree's `error`, never raised: the task's own result must still be kept. When to
    call it is the runner's business (`runner.settling`)."""
    if not unsettled(record):
        return
    assert record.worktree is not None
    tree = Worktree.from_dict(record.worktree)
    message = commit_message(record.task_id or record.id, record.prompt)
    try:
        record.worktree = finish(tree, message).to_dict()
    except OcmError as exc:
        record.worktree = {**record.worktree, "error": str(exc)}


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


@dataclass
class Kept:
    """A worktree `ocm worktree rm` left in place, and why."""

    task: str
    reason: str


@dataclass
class WorktreeRemoval:
    """What `ocm worktree rm` did: the task ids whose worktrees went, and those kept."""

    removed: list[str] = field(default_factory=list)
    kept: list[Kept] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def remove_chosen(
    records: list[TaskRecord],
    ids: list[str],
    *,
    merged: bool,
    older_than: float | None,
    now: float,
    force: bool = False,
) -> WorktreeRemoval:
    """`ocm worktree rm`: choose (`choose`), remove (`remove_all`), and with `merged`, also
    say which worktrees hold work that was never committed, so none is passed over
    silently (a --no-commit task's branch is its base, which HEAD contains)."""
    chosen = choose(records, ids, merged=merged, older_than=older_than, now=now)
    done = remove_all(chosen, force=force)
    if merged:
        picked = {r.id for r in chosen}
        done.kept += _unmerged_work([r for r in records if r.id not in picked])
    return done


def _unmerged_work(records: list[TaskRecord]) -> list[Kept]:
    found = []
    for record in records:
        if not record.status.final or record.worktree is None:
            continue
        tree = Worktree.from_dict(record.worktree)
        try:
            changes = [] if has_own_commits(tree) else uncommitted(tree)
        except OcmError:
            continue
        if changes:
            why = f"no commits of its own, so nothing is merged; {_unsaved(tree, changes)}"
            found.append(Kept(record.id, f"{why}; commit them in {tree.path}"))
    return found


def remove_all(records: list[TaskRecord], *, force: bool = False) -> WorktreeRemoval:
    """Remove the worktrees of these tasks; unless `force`, one holding uncommitted changes
    is kept (they are an agent's work, nowhere else: a --no-commit task's changes wait
    there), and so is one that git refuses to remove, each with the reason."""
    done = WorktreeRemoval()
    for record in records:
        assert record.worktree is not None
        tree = Worktree.from_dict(record.worktree)
        try:
            changes = [] if force else uncommitted(tree)
            if changes:
                why = f"{_unsaved(tree, changes)}; commit them in {tree.path}, or --force"
                done.kept.append(Kept(record.id, f"{why} removes them"))
                continue
            remove(tree, force=force)
        except OcmError as exc:
            done.kept.append(Kept(record.id, f"{exc}; nothing was removed"))
            continue
        done.removed.append(record.id)
    return done


def _unsaved(tree: Worktree, changes: list[str]) -> str:
    """ "2 uncommitted changes (the task ran with --no-commit): a.txt, b.txt"."""
    why = " (the task ran with --no-commit)" if not tree.commit else ""
    return _listed(changes, "uncommitted change", why)


def _listed(paths: list[str], noun: str, why: str = "") -> str:
    """ "2 uncommitted files: a.txt, b.txt" (the first three named)."""
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    plural = "s" if len(paths) != 1 else ""
    return f"{len(paths)} {noun}{plural}{why}: {shown}"


def orphans(root: Path, known: set[str]) -> list[Path]:
    """Worktree directories under root whose task ocm no longer records."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name not in known)


def _repository_of(path: Path) -> Path | None:
    """The checkout a worktree belongs to, from its `.git` pointer (None: not a worktree)."""
    dot_git = path / ".git"
    if not dot_git.is_file():
        return None
    try:
        pointer = dot_git.read_text().strip().removeprefix("gitdir:").strip()
    except (OSError, UnicodeDecodeError):
        return None
    common = Path(pointer).parent.parent  # <repo>/.git/worktrees/<name> -> <repo>/.git
    return common.parent if common.name == ".git" else common


def orphan_work(path: Path) -> str | None:
    """What removing an orphan worktree would lose, in words ("2 uncommitted files: a.txt,
    b.txt; 1 unmerged commit on ocm/t-1"), or None when it holds nothing of its own.

    Its task record is gone, so this asks git: changes not committed (staged, unstaged,
    untracked; ignored files are not work), and commits at its HEAD that the repository's
    HEAD does not contain. When git cannot tell (its repository is gone), that is said too:
    nothing ocm cannot vouch for is deleted without --force."""
    repository = _repository_of(path)
    if repository is None:
        if not any(path.iterdir()):
            return None  # an empty directory: a `git worktree add` that never got going
        return "not a git worktree, so ocm cannot tell what it holds"
    if not repository.is_dir():
        return f"its repository {repository} is gone, so ocm cannot tell what it holds"
    try:
        changes = _changes(path)
        head = git("rev-parse", "--verify", "--quiet", "HEAD", cwd=path, check=False).strip()
        branch = git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=path, check=False).strip()
        ahead = 0
        if head:
            count = git("rev-list", "--count", f"HEAD..{head}", cwd=repository, check=False)
            ahead = int(count.strip() or 0)
    except (OcmError, ValueError) as exc:
        return f"git cannot tell what it holds ({exc})"
    said = []
    if changes:
        said.append(_listed(changes, "uncommitted file"))
    if ahead:
        where = f"on {branch}" if branch else "on a detached HEAD, which no branch keeps"
        plural = "s" if ahead != 1 else ""
        said.append(f"{ahead} unmerged commit{plural} {where} (not in {repository}'s HEAD)")
    return "; ".join(said) or None


def remove_orphan(path: Path, *, force: bool = False) -> None:
    """Remove a worktree whose task record is gone: through git when its repository is
    still there (so `git worktree list` stays consistent), else just the directory.
    Without `force`, git refuses a worktree with changes (an OcmError, and nothing is
    removed): the second guard behind `orphan_work`, for changes made since."""
    repository = _repository_of(path)
    if repository is not None and repository.is_dir():
        try:
            with repository_lock(repository):
                flags = ["--force"] if force else []
                git("worktree", "remove", *flags, str(path), cwd=repository)
                git("worktree", "prune", cwd=repository, check=False)
        except OcmError:
            if not force:
                raise
    if path.exists():
        import shutil

        shutil.rmtree(path, ignore_errors=True)


# -- the recorded worktrees, as the facade asks for them ----------------------------------------
def rows(store: TaskStore) -> list[WorktreeRow]:
    """`ocm worktrees`: every task worktree: task, branch, status, whether it is still on
    disk, files."""
    return [row(r) for r in store.with_worktrees()]


def remove_recorded(
    store: TaskStore,
    task_ids: Sequence[str] = (),
    *,
    merged: bool = False,
    older_than: float | None = None,
    force: bool = False,
    now: float | None = None,
) -> WorktreeRemoval:
    """`ocm worktree rm` over the recorded task worktrees (`remove_chosen`)."""
    return remove_chosen(
        store.with_worktrees(), list(task_ids), merged=merged, older_than=older_than,
        now=time.time() if now is None else now, force=force,
    )  # fmt: skip


def task_patch(store: TaskStore, task_id: str) -> str:
    """A worktree task's changes as a patch `git apply` accepts on its base commit, with
    every secret ocm holds replaced (an agent may have written one into a file it changed;
    git reads the files themselves, so this is the patch's own redaction, as the record's
    `diff` gets when it is stored)."""
    record = store.get(task_id)
    if record.worktree is None:
        raise UsageError(f"task {task_id} did not run in a worktree (ocm run --worktree)")
    return redact(patch(Worktree.from_dict(record.worktree)), store.secrets())


def orphan_sweep(store: TaskStore, root: Path) -> Callable[[bool, bool], Swept]:
    """`ocm cleanup`'s pass over the task worktrees under `root` (a `lifecycle.Sweep`): those
    whose task is no longer recorded are removed (with dry_run, only listed), except those
    holding work (`orphan_work`: uncommitted files, unmerged commits), which are kept unless
    `force`; either way each is named with what it holds."""

    def sweep(dry_run: bool, force: bool) -> Swept:
        known = set(store.recent_ids("task", 1 << 30))
        done = Swept()
        for path in orphans(root, known):
            work = orphan_work(path)
            if work is not None and not force:
                done.kept.append(Leftover(str(path), work))
                continue
            if not dry_run:
                try:
                    remove_orphan(path, force=force)
                except OcmError as exc:  # git found changes made since it was looked at
                    done.kept.append(Leftover(str(path), f"{exc}; nothing was removed"))
                    continue
            if work is not None:
                done.forced.append(Leftover(str(path), work))
            done.removed.append(str(path))
        return done

    return sweep
