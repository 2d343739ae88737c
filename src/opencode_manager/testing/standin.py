"""A process that stands for an OpenCode server in a registry row, for fleets whose HTTP is
faked (`testing.opencode`): ocm finds an instance's server alive by its PID and start time,
and that needs a live process.

``python -m opencode_manager.testing.standin serve`` does nothing until its stdin closes (so
it ends with the test process that holds the pipe, however that ends). Its argv reads like
a server's (an ``opencode...`` program followed by ``serve``: `process.is_server_argv`).
"""

from __future__ import annotations

import sys


def main() -> None:
    sys.stdin.buffer.read()  # until the parent closes the pipe (or dies)


if __name__ == "__main__":
    main()
