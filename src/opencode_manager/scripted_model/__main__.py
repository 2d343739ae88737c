"""``python -m opencode_manager.scripted_model``: run a standalone scripted model server."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .server import DEFAULT_HOST, serve_forever


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m opencode_manager.scripted_model",
        description="Scripted OpenAI-compatible chat-completions server for offline OpenCode.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free port)")
    args = parser.parse_args(argv)
    serve_forever(args.host, args.port)


if __name__ == "__main__":
    main()
