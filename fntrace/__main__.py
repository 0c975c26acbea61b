"""``python -m fntrace``: the fntrace command."""

from __future__ import annotations

import sys

from fntrace.cli import main

sys.exit(main())
