"""The stored records as the read commands see them, without the facade.

`ocm results`, `result`, `batch ls`, `batch show` and `worktrees` print what the registry
holds: a query of a millisecond. Built through the facade they would also pay for its event
loop, the HTTP client and the lifecycle machinery (several times the interpreter's own
start). `Records` opens the same registry the same way (`registry.open_registry`) and reads
it through the same `TaskStore` and the same functions the facade delegates to, so the two
paths cannot disagree; it loads neither asyncio nor httpx.

One thing a read may need a server for: a task still recorded as running may have ended
while its `ocm run` was gone (a closed terminal). The facade asks the task's server
(`dispatch.refresh_task`, `list_tasks`, by store.py's `may_have_ended` and `listed_stale`),
and ends a standalone task left `queued` by a killed process (`left_queued`); `Records`
answers None for such a read, and the caller takes the facade's path for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..models import TaskRecord
from ..registry import Registry, open_registry
from ..secretbook import SecretBook
from ..settings import Settings
from .store import TaskStore, left_queued, listed_stale, may_have_ended
from .summary import BatchSummary, list_batches, summary

if TYPE_CHECKING:
    from .worktree import WorktreeRow


class Records:
    """Task, batch and worktree records of one OCM_HOME, read straight from its registry."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self._registry: Registry | None = None
        self._store: TaskStore | None = None

    @property
    def store(self) -> TaskStore:
        """The store, over the registry opened on first use (as the facade's fleet opens it)."""
        if self._store is None:
            self._registry = open_registry(self.settings)
            self._store = TaskStore(self._registry, secrets=SecretBook(self.settings).values)
        return self._store

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None
            self._store = None

    def task(self, task_id: str) -> TaskRecord | None:
        """A task's stored record; None when its server must be asked first (see
        `may_have_ended`: then the facade's `task` is the answer)."""
        record = self.store.get(task_id)
        return None if may_have_ended(record) else record

    def tasks(
        self, *, batch_id: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[TaskRecord] | None:
        """Stored task records, oldest first (the newest `limit`); None when a server must be
        asked about one of them first (see `listed_stale`), or a queued one may have been left
        by its process (`left_queued`): then the facade's `tasks`."""
        records = self.store.list_tasks(batch_id=batch_id, status=status, limit=limit)
        if any(listed_stale(r) or left_queued(r) for r in records):
            return None
        return records

    def count_tasks(self, *, batch_id: str | None = None, status: str | None = None) -> int:
        return self.store.count_tasks(batch_id=batch_id, status=status)

    def batches(self, *, limit: int | None = None) -> list[BatchSummary]:
        """Every batch with its counts (not its tasks), oldest first (the newest `limit`)."""
        return list_batches(self.store, limit=limit)

    def count_batches(self) -> int:
        return self.store.count_batches()

    def batch(self, batch_id: str) -> BatchSummary:
        """One batch with its tasks."""
        return summary(self.store, batch_id)

    def batch_exists(self, batch_id: str) -> None:
        """Raise NotFoundError (the message `batch show` gives) unless the batch is stored."""
        self.store.batch(batch_id)

    def worktrees(self) -> list[WorktreeRow]:
        """Every task worktree (`ocm worktrees`)."""
        from . import worktree  # here: git and subprocess for the worktree reads alone

        return worktree.rows(self.store)

    def patch(self, task_id: str) -> str:
        """A worktree task's changes as a patch (`ocm result --patch`)."""
        from . import worktree

        return worktree.task_patch(self.store, task_id)
