"""`python -m opencode_manager.keeper --home H [--detach] NAME`: the per-instance supervisor.

With --detach the process forks before anything else, prints the child's PID and exits: the
caller reaps it at once, and the keeper (the child) is nobody's child, so long-lived callers
never collect zombies. The fork comes before the heavy imports, while we are single-threaded.
"""

from __future__ import annotations

import os
import sys


def _detach() -> None:
    pid = os.fork()
    if pid:
        os.write(1, f"{pid}\n".encode())
        os._exit(0)
    # The child: the caller's pipe is not ours to keep open (the log takes stdout later).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


if __name__ == "__main__":
    if "--detach" in sys.argv[1:]:
        _detach()
    from .loop import main

    sys.exit(main())
