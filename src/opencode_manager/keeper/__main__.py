"""`python -m opencode_manager.keeper --home H NAME`: the per-instance supervisor process."""

from __future__ import annotations

import sys

from .loop import main

if __name__ == "__main__":
    sys.exit(main())
