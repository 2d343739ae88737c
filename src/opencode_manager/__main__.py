"""`python -m opencode_manager` runs the CLI."""

import sys

from .cli import main

sys.exit(main())
