"""``fntrace info``: its options; the description is fntrace/analysis/info.py's."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "main"]


def add_parser(sub: Any) -> None:
    info = sub.add_parser(
        "info", help="describe a trace file: program, threads, events, lost events",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  fntrace info fntrace.dat\n")
    info.add_argument("file", help="trace file written by fntrace record")
    info.set_defaults(handler=main)


def main(ns: argparse.Namespace) -> int:
    from fntrace.analysis.info import info

    return info(ns.file)
