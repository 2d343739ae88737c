"""The end-of-batch summary stays short: what did not complete (at most 20), then counts."""

from __future__ import annotations

import pytest

from opencode_manager import BatchStatus, BatchSummary, TaskOutcome
from opencode_manager.cli.batches import _report


def _summary(failed: int, completed: int) -> BatchSummary:
    tasks = [TaskOutcome(f"ok{i}", f"t-ok{i}", "completed", "oc-1", 1.0, None)
             for i in range(completed)]  # fmt: skip
    tasks += [TaskOutcome(f"bad{i}", f"t-bad{i}", "failed", "oc-2", 2.0,
                          "\x1b[31mProviderError\x1b[0m: boom\n  at stack (x.ts:1)")
              for i in range(failed)]  # fmt: skip
    counts = {k: v for k, v in (("completed", completed), ("failed", failed)) if v}
    return BatchSummary(id="b-1", status=BatchStatus.COMPLETED, source="f", created_at=0.0,
                        finished_at=1.0, total=failed + completed, done=failed + completed,
                        counts=counts, duration_s=3.0, tasks=tasks)  # fmt: skip


def test_only_what_did_not_complete_is_listed_and_capped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _report(_summary(failed=25, completed=500), as_json=None)
    lines = capsys.readouterr().out.splitlines()
    assert not any("ok1" in line for line in lines)
    rows = [line for line in lines if line.startswith("bad")]
    assert len(rows) == 20
    assert rows[0].split()[-2:] == ["ProviderError:", "boom"]  # one line, no colour codes
    assert "... and 5 more not completed: `ocm results --batch b-1 --all`" in lines
    assert lines[-1] == "batch b-1: completed; 525 tasks: 500 completed, 25 failed in 3.0 s"


def test_an_all_completed_batch_prints_just_its_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _report(_summary(failed=0, completed=3), as_json=None)
    assert capsys.readouterr().out == "batch b-1: completed; 3 tasks: 3 completed in 3.0 s\n"


def test_batch_show_lists_every_task(capsys: pytest.CaptureFixture[str]) -> None:
    _report(_summary(failed=1, completed=3), as_json=None, every_task=True)
    out = capsys.readouterr().out
    assert all(f"ok{i}" in out for i in range(3))
    assert "bad0" in out
