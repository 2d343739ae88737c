"""The in-process library call, timed inside one Python process (interpreter start excluded).

Run by the dispatch benchmark as ``python -m bench.library_probe --runs N PROMPT`` in the
benchmark's isolated environment; prints one JSON object: the first call in the process (it
includes the package's lazy imports), then `runs` timed ``Manager().run()`` calls and `runs`
timed ``await AsyncManager().run()`` calls in one event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from opencode_manager import AsyncManager, Manager
from opencode_manager.models import TaskRecord, TaskStatus


def _checked(record: TaskRecord) -> None:
    if record.status is not TaskStatus.COMPLETED:
        raise SystemExit(f"library call ended {record.status.value}: {record.error}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.library_probe")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("prompt")
    args = parser.parse_args()
    out: dict[str, object] = {}
    with Manager() as manager:
        start = time.perf_counter()
        _checked(manager.run(args.prompt))
        out["first_call_s"] = time.perf_counter() - start

        sync_times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            _checked(manager.run(args.prompt))
            sync_times.append(time.perf_counter() - start)
        out["run_s"] = sync_times

    async def timed_arun() -> list[float]:
        times = []
        async with AsyncManager() as ocm:
            for _ in range(args.runs):
                start = time.perf_counter()
                _checked(await ocm.run(args.prompt))
                times.append(time.perf_counter() - start)
        return times

    out["arun_s"] = asyncio.run(timed_arun())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
