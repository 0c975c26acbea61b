"""``fntrace funcs``: list available_filter_functions, optionally after importing
modules, filtered like set_ftrace_filter."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from fntrace.cli.formatter import Formatter

__all__ = ["add_parser", "list_functions", "main"]


def list_functions(modules: Sequence[str], patterns: Sequence[str]) -> int:
    """Import ``modules``, then print every traceable function ``patterns`` select."""
    import importlib

    from fntrace.core.filter import Filter, parse
    from fntrace.core.symbols import available_filter_functions

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise SystemExit(f"fntrace funcs: cannot import {name}: {exc}") from None
    try:
        filt = Filter(parse(patterns))
    except ValueError as exc:
        raise SystemExit(f"fntrace funcs: {exc}") from None
    for full in available_filter_functions():
        module, _, qualname = full.partition(":")
        if filt.selects(module, qualname):
            print(full)
    if filt.lines:
        from fntrace.core import hints

        for msg in hints.report(filt.lines, hints.loaded(), "-F"):
            print(f"fntrace funcs: {msg}", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    funcs = sub.add_parser(
        "funcs", help="list available_filter_functions",
        formatter_class=Formatter,
        epilog="examples:\n  fntrace funcs -m json -F 'json.decoder:*'\n"
               "  fntrace funcs -m myapp -F '*:mod:myapp.*'\n")
    funcs.add_argument("-m", "--module", action="append", help="import MODULE first")
    funcs.add_argument("-F", "--filter", action="append", metavar="PATTERN")
    funcs.set_defaults(handler=main)


def main(ns: argparse.Namespace) -> int:
    return list_functions(ns.module or (), ns.filter or ())
