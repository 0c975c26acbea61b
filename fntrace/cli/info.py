"""``fntrace info``: its options; the description is fntrace/analysis/info.py's."""

from __future__ import annotations

import argparse
from typing import Any

from fntrace.cli.formatter import Formatter

__all__ = ["add_parser", "main"]


def add_parser(sub: Any) -> None:
    info = sub.add_parser(
        "info", help="describe a trace file: program, threads, events, lost events",
        formatter_class=Formatter,
        description="What a trace file holds. A file whose recording finished cleanly is "
                    "described from its footer (its size does not matter); one without "
                    "(a crashed or cut recording, or an older fntrace's) is read whole, "
                    "with the percentage read shown on a terminal.",
        epilog="example:\n  fntrace info fntrace.dat\n")
    info.add_argument("file", help="trace file written by fntrace record")
    info.add_argument("--scan", action="store_true",
                      help="read every chunk (checking each one's checksum) instead of "
                           "trusting the footer")
    info.set_defaults(handler=main)


def main(ns: argparse.Namespace) -> int:
    from fntrace.analysis.info import info

    return info(ns.file, ns.scan)
