"""Shell completion (click's): instance names and task, batch and session ids, from the
registry alone."""

from __future__ import annotations

import os
import time
from pathlib import Path

from opencode_manager.models import BatchStatus, InstanceSpec, TaskRecord, TaskStatus
from opencode_manager.registry import Registry
from opencode_manager.tasks.store import Batch, TaskStore

from helpers import Ocm


def _complete(ocm: Ocm, line: str) -> list[str]:
    words = line.split(" ")
    result = ocm(
        env={"_OCM_COMPLETE": "bash_complete", "COMP_WORDS": line,
             "COMP_CWORD": str(len(words) - 1)},
    )  # fmt: skip
    assert result.returncode == 0, str(result)
    return [row.split(",", 1)[1] for row in result.stdout.splitlines() if row]


def _seed() -> None:
    home = Path(os.environ["OCM_HOME"])
    home.mkdir(mode=0o700, exist_ok=True)
    registry = Registry(home / "registry.db")
    with registry.transaction() as db:
        for name in ("api", "apple", "web"):
            registry.reserve(db, InstanceSpec(name=name, dir="/"), port=None)
    store = TaskStore(registry)
    now = time.time()
    task = TaskRecord(id="t-abc", prompt="p", status=TaskStatus.COMPLETED, created_at=now,
                      session_id="ses_xyz", batch_id="b-123")  # fmt: skip
    store.add_batch(
        Batch(id="b-123", status=BatchStatus.COMPLETED, created_at=now, updated_at=now), [task]
    )
    registry.close()


def test_names_and_ids_complete(ocm: Ocm) -> None:
    _seed()
    assert sorted(_complete(ocm, "ocm stop ap")) == ["api", "apple"]
    assert sorted(_complete(ocm, "ocm logs ")) == ["api", "apple", "web"]
    assert _complete(ocm, "ocm run -i w") == ["web"]
    assert _complete(ocm, "ocm wait t-") == ["t-abc"]
    assert _complete(ocm, "ocm batch show b") == ["b-123"]
    assert _complete(ocm, "ocm session show ses") == ["ses_xyz"]


def test_completion_without_a_registry_completes_nothing(ocm: Ocm) -> None:
    assert _complete(ocm, "ocm stop ") == []
    assert not (Path(os.environ["OCM_HOME"]) / "registry.db").exists()
