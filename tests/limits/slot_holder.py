"""A process that takes provider slots (run by test_slot_holders.py, not collected).

    python slot_holder.py REGISTRY PROVIDER --turns N --hold S --counter FILE
        N turns, each: take a slot, count itself in FILE (flock), hold S seconds, leave.
    python slot_holder.py REGISTRY PROVIDER --forever --ttl S --ready FILE
        take one slot (leases of S seconds), write FILE, and hold it until killed.

The counter is the independent witness: it records the most holders ever seen at once.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import signal
from pathlib import Path

from opencode_manager.limits import Slots
from opencode_manager.registry import Registry


def bump(counter: Path, delta: int) -> None:
    with counter.open("r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        state = json.loads(handle.read() or '{"now": 0, "max": 0, "turns": 0}')
        state["now"] += delta
        state["max"] = max(state["max"], state["now"])
        state["turns"] += delta > 0
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(state))


async def turns(slots: Slots, provider: str, count: int, hold: float, counter: Path) -> None:
    for turn in range(count):
        async with slots.take(provider, "m", f"{os.getpid()}-{turn}"):
            bump(counter, +1)
            await asyncio.sleep(hold)  # the turn's work
            bump(counter, -1)


async def forever(slots: Slots, provider: str, ready: Path) -> None:
    async with slots.take(provider, "m", f"{os.getpid()}-forever"):
        ready.write_text(str(os.getpid()))
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("registry")
    parser.add_argument("provider")
    parser.add_argument("--turns", type=int, default=1)
    parser.add_argument("--hold", type=float, default=0.1)
    parser.add_argument("--counter")
    parser.add_argument("--forever", action="store_true")
    parser.add_argument("--ttl", type=float, default=30.0)
    parser.add_argument("--ready")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    registry = Registry(Path(args.registry))
    slots = Slots(registry, ttl=args.ttl)
    try:
        if args.forever:
            asyncio.run(forever(slots, args.provider, Path(args.ready)))
        else:
            asyncio.run(turns(slots, args.provider, args.turns, args.hold, Path(args.counter)))
    finally:
        registry.close()


if __name__ == "__main__":
    main()
