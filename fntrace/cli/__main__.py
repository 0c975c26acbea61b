"""``python -m fntrace.cli``: the fntrace command, as it was when cli was one module."""

from __future__ import annotations

import sys

from fntrace.cli import main

sys.exit(main())
