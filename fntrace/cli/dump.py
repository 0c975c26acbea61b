"""``fntrace dump``: its options; the writers are fntrace/analysis/dump.py's."""

from __future__ import annotations

import argparse
from typing import Any

from fntrace.cli import selection
from fntrace.cli.formatter import Formatter

__all__ = ["add_parser", "main"]

#: ``fntrace dump --help``'s description.
DESCRIPTION = """``fntrace dump``: a recorded trace for other tools — Chrome JSON and folded stacks.

``--chrome OUT.json`` writes the Trace Event Format (a JSON object with
``traceEvents``) that Perfetto UI and chrome://tracing open: a process track
per pid and a thread track per thread, named by metadata events (``ph: M``);
each function segment is one complete ``X`` event (begin and duration),
written when its exit is read (so the file streams; events are in the order
calls end, which both viewers sort), with the arguments, the return value,
yielded value or exception in its ``args``.  A generator's runs are separate
slices.  An exit whose entry is not in the file (tracing_thresh) begins at
its exit minus its duration; an entry still open at the end of the trace ends
at the trace's last timestamp with ``unfinished`` in its args.  Trace markers
are thread-scoped instant events (``ph: i``), and so are the calls of a
function-tracer recording, which has no durations.  Timestamps are µs from
the earliest record (from the recording's start with tracing_thresh, where a
slice may begin before the first record, or with --from).  A name ending in
``.gz`` (``OUT.json.gz``, which both viewers open) is written gzip-compressed.
Each function's ``X`` and call event has its source ``file`` and first ``line``
in ``args`` (where the trace file keeps them: not in files written before
fntrace kept locations).

Source locations in the other formats: speedscope frames' ``file``/``line``,
Perfetto's interned ``SourceLocation`` on each slice begin, pstats keys
``(file, line, "module:qualname")``.

``--folded OUT.txt`` writes folded stacks for flamegraph.pl, inferno or
speedscope: ``outer;inner;leaf NS``, one line per unique stack, the value being
the self time in ns summed over every run of that stack (a function-tracer
recording gives ``caller;callee CALLS`` instead).  ``--threads`` prefixes each
stack with its thread, ``name-tid``.
"""

EXAMPLES = """\
examples:
  fntrace record -t function_graph --args --retval -- app.py
  fntrace dump --chrome trace.json          open trace.json in https://ui.perfetto.dev
                                            or chrome://tracing
  fntrace dump fntrace.dat --folded out.folded && flamegraph.pl out.folded > fg.svg
  fntrace dump --folded - --threads | inferno-flamegraph > fg.svg
                                            one flame per thread, to stdout (-)
  fntrace dump --perfetto trace.pftrace     Perfetto's own format (large traces load)
  fntrace dump --speedscope out.json --pstats out.prof
                                            speedscope; snakeviz or python -m pstats
  fntrace dump --chrome slice.json --from 1.5s --to 2s --thread MainThread
                                            half a second of one thread, for a viewer

With --from/--to a call running at --from begins there (its entry is not in
the slice: a complete X event from --from), one running at --to ends there,
so slices still nest; Chrome timestamps then count from the recording's start.
"""


def add_parser(sub: Any) -> None:
    """Add the ``dump`` subcommand to the fntrace command's subparsers."""
    p = sub.add_parser("dump", help="write a trace as Chrome JSON (Perfetto) or folded stacks",
                       description=DESCRIPTION, epilog=EXAMPLES,
                       formatter_class=Formatter)
    p.add_argument("file", nargs="?", default="fntrace.dat",
                   help="trace file (default fntrace.dat); files of children "
                        "recorded with --follow are merged")
    p.add_argument("--chrome", metavar="OUT.json",
                   help="write the Trace Event Format to OUT.json (- for stdout)")
    p.add_argument("--folded", metavar="OUT.txt",
                   help="write folded stacks (self ns per stack) to OUT.txt (- for stdout)")
    p.add_argument("--speedscope", metavar="OUT.json",
                   help="write a speedscope profile, one per thread (- for stdout)")
    p.add_argument("--perfetto", metavar="OUT.pftrace",
                   help="write Perfetto's native protobuf trace (- for stdout)")
    p.add_argument("--pstats", metavar="OUT.prof",
                   help="write a pstats file (cProfile's) for snakeviz and pstats (- for stdout)")
    p.add_argument("--threads", action="store_true",
                   help="folded: start each stack with its thread (name-tid)")
    selection.add_options(p, "the calls")
    p.set_defaults(handler=main)


def main(ns: argparse.Namespace) -> int:
    from fntrace.analysis.dump import dump
    return dump(ns.file, ns.chrome, ns.folded, ns.threads, ns.speedscope, ns.perfetto,
                ns.pstats, selection.selected(ns, "dump"))
