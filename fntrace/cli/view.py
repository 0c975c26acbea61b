"""``fntrace view``: a trace in the bundled speedscope viewer (fntrace/analysis/view.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fntrace.cli.formatter import Formatter

__all__ = ["add_parser", "main"]


def add_parser(sub: Any) -> None:
    """Add the ``view`` subcommand to the fntrace command's subparsers."""
    p = sub.add_parser(
        "view", help="open a trace in the bundled speedscope viewer (local, no internet)",
        description="Convert trace files to a speedscope profile (one per thread) and serve "
                    "the viewer and the profile on 127.0.0.1 until Ctrl-C.",
        epilog="examples:\n  fntrace view shop.dat\n  fntrace view --no-browser --port 8000 "
               "fntrace.dat\n", formatter_class=Formatter)
    p.add_argument("file", nargs="*", default=["fntrace.dat"],
                   help="trace files (default fntrace.dat); files of children recorded "
                        "with --follow are added")
    p.add_argument("--port", type=int, default=0,
                   help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--no-browser", action="store_true",
                   help="print the address instead of opening a browser")
    p.set_defaults(handler=main)


def main(ns: argparse.Namespace) -> int:
    from fntrace.analysis.view import view
    from fntrace.formats.tracefile import TraceFileError

    try:
        return view(ns.file, port=ns.port, open_browser=not ns.no_browser)
    except (OSError, TraceFileError) as exc:
        print(f"fntrace view: {exc}", file=sys.stderr)
        return 1
