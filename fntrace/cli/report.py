"""``fntrace report``: its options; the table is made by fntrace/analysis/report.py."""

from __future__ import annotations

import argparse
from typing import Any

from fntrace.analysis.sort_keys import SORT_KEYS
from fntrace.cli import selection
from fntrace.cli.formatter import Formatter

__all__ = ["add_parser", "main", "positive"]

EXAMPLES = """\
Calls are counted at their start (a generator's resumptions are not calls);
total is inclusive time summed over calls (a recursive function's nested calls
count again, as in uftrace), self excludes the functions called; avg, min and
max are per call.  Needs a function_graph recording for times.  A recording
with asyncio task notes (record --tasks) adds Run and Wait: the coroutine calls
that suspended, their wall time split into time run and time waited.

examples:
  fntrace record -t function_graph -- app.py && fntrace report
                                            record, then the table by total time
  fntrace report -s self --limit 20 fntrace.dat
                                            the 20 functions with most self time
  fntrace report --threads trace.dat        one table per thread
  fntrace report --srcline                  each function with its [FILE:LINE]
  fntrace report old.dat --diff new.dat     compare two runs (old.dat is the base),
                                            fitted to the terminal ($COLUMNS)
  fntrace report old.dat --diff new.dat --wide
                                            every column, whole names
  fntrace report --from 1.5s --to 2s --thread MainThread
                                            the calls of one thread in that half second

With --from/--to a call running at --from counts its time from --from, one
running at --to its time up to --to (as if it returned then); calls are the
calls started in the window, plus those whose entry came before it that end in it.
"""


def add_parser(sub: Any) -> None:
    """Add the ``report`` subcommand to the fntrace command's subparsers."""
    p = sub.add_parser("report", help="per-function table (calls, total, self, avg, min, max)",
                       description="Per-function numbers of a recorded trace.",
                       formatter_class=Formatter, epilog=EXAMPLES)
    p.add_argument("file", nargs="?", default="fntrace.dat",
                   help="trace file (default fntrace.dat); files of children "
                        "recorded with --follow are merged")
    p.add_argument("-s", "--sort", choices=SORT_KEYS, default="total",
                   help="sort by this column, largest first (name: A-Z); default total")
    p.add_argument("--limit", type=positive, metavar="N", help="show the first N functions")
    p.add_argument("--threads", action="store_true", help="one table per thread")
    p.add_argument("--diff", metavar="OTHER",
                   help="compare with OTHER (the new run; FILE is the base)")
    p.add_argument("--wide", action="store_true",
                   help="--diff: every column (base, new, diff, %% of total, self and calls) "
                        "and whole names, whatever the terminal's width")
    p.add_argument("--srcline", action="store_true",
                   help="show each function's source location: name [FILE:LINE] "
                        "(files recorded before fntrace kept locations: the name alone)")
    p.add_argument("--by-task", action="store_true",
                   help="one row per asyncio task (recorded with --tasks): state, creator, "
                        "calls, and its coroutine's wall time, time run and time waited")
    selection.add_options(p, "the calls")
    p.set_defaults(handler=main)


def positive(text: str) -> int:
    """``--limit``: a whole number, at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def main(ns: argparse.Namespace) -> int:
    from fntrace.analysis.report import report

    if ns.by_task:
        from fntrace.analysis.task_report import by_task

        return by_task(ns.file)

    return report(ns.file, ns.sort, ns.limit, ns.threads, ns.diff, ns.wide, ns.srcline,
                  selection.selected(ns, "report"))
