"""``fntrace replay``: its options, made into fntrace/analysis/replay.py's ReplayOptions."""

from __future__ import annotations

import argparse
from typing import Any

from fntrace.cli.formatter import Formatter
from fntrace.cli.selection import add_options

__all__ = ["add_parser", "main"]

#: ``fntrace replay --help``'s description.
DESCRIPTION = """``fntrace replay FILE``: a recorded trace as the live ``trace`` file shows it.

Records are turned back into ring-buffer events (with light stand-ins for
Function objects) and rendered by the recorded tracer's own renderer through
a throwaway instance carrying the recorded options, so the text is the live
format by construction.  Filters (-F/-N, with set_ftrace_filter semantics:
only matching functions), depth, time range and threads apply at read time.
Several processes (files of ``--follow``) are merged and each line is
labelled with its pid.
"""

EXAMPLES = """\
examples:
  fntrace replay fntrace.dat                        the whole trace
  fntrace replay fntrace.dat -F '__main__:*' -N '*:_*'
                                                    the script's functions, no private ones
  fntrace replay fntrace.dat --depth 2 --from 0.5s --to 1.5s --thread 4242
  fntrace replay fntrace.dat --task worker-1 --task-column
                                                    one asyncio task, and its column
  fntrace replay fntrace.dat --srcline              each call with /* FILE:LINE */

The window selects events: those recorded between --from and --to (an exit
whose entry came before --from is shown alone).
"""


def add_parser(sub: Any) -> None:
    rep = sub.add_parser("replay", help="print a recorded trace as text",
                         description=DESCRIPTION, epilog=EXAMPLES,
                         formatter_class=Formatter)
    rep.add_argument("file", help="trace file written by fntrace record")
    rep.add_argument("-F", "--filter", action="append", metavar="PATTERN",
                     help="show only functions matching (repeatable, set_ftrace_filter syntax)")
    rep.add_argument("-N", "--notrace", action="append", metavar="PATTERN",
                     help="hide functions matching (repeatable)")
    rep.add_argument("--depth", type=int, metavar="N",
                     help="function_graph: show nesting levels 0..N-1 only")
    add_options(rep, "events")
    rep.add_argument("--task", metavar="NAME|N",
                     help="only the events of this asyncio task (its name or number)")
    rep.add_argument("--task-column", action="store_true",
                     help="function_graph: the asyncio task column (options/funcgraph-task; "
                     "shown anyway when the file has task notes, recorded with --tasks)")
    rep.add_argument("-o", "--output", metavar="FILE", help="write the text to FILE")
    rep.add_argument("--srcline", action="store_true",
                     help="end each line that names a called function with its source "
                          "location, /* FILE:LINE */ (the file as the code object names "
                          "it, the line its def; nothing for files recorded before "
                          "fntrace kept locations)")
    rep.set_defaults(handler=main)


def main(ns: argparse.Namespace) -> int:
    from fntrace.analysis.replay import ReplayOptions, replay

    return replay(ReplayOptions(ns.file, tuple(ns.filter or ()), tuple(ns.notrace or ()),
                                ns.depth, ns.start, ns.end, tuple(ns.thread or ()),
                                ns.output, ns.task, ns.task_column, ns.srcline))
