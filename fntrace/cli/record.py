"""``fntrace record``: its options, where the program starts among its arguments,
and the RecordConfig they make.

The recording itself is fntrace/recording/record.py, which takes the
RecordConfig (fntrace/recording/config.py) and never sees argparse.  ``run``
(run.py) shares the trace options defined here.  ``--`` and ``-m MODULE`` are
handled in one place, :func:`split_command`, before argparse sees anything.
"""

from __future__ import annotations

import argparse

from fntrace.cli.formatter import Formatter
from fntrace.recording.config import RecordConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.tracing.instance import Instance

__all__ = ["FLAGS", "VALUED", "add_parser", "add_trace_options", "config_of", "main",
           "serve_live", "split_command"]

#: ``fntrace record --help``'s description.
DESCRIPTION = """``fntrace record``: run a program traced, streaming the trace to a file.

The program runs as ``python script.py args`` (or ``python -m module``)
would: its argv, ``__main__``, sys.path[0], standard streams, exit code, and
the way it dies (an uncaught exception prints the program's traceback without
fntrace's frames and exits 1; SIGINT and SIGTERM kill it with the same signal
once the file is finished).  Options mirror the instance files.  With
``--follow`` every child process (forked, or a new Python interpreter: see
follow.py) records its own file ``PATH.<pid>`` with the same options.
"""

#: The option strings of record and run that take a value (filled as the parsers are
#: built): what :func:`split_command` must skip to find where the program starts.
VALUED: set[str] = set()
#: Those that take none.
FLAGS: set[str] = {"-h", "--help"}

EXAMPLES = """\
examples:
  fntrace record -- examples/shop.py                 function_graph trace into fntrace.dat
  fntrace record -t function -F '__main__:*' -o shop.dat examples/shop.py --fast
                                                     the script's own functions (it runs as
                                                     __main__); --fast is the script's
  fntrace record --args --retval -D 3 -m json.tool --sort-keys f.json
                                                     everything after -m MODULE is the
                                                     program's, as with python
  fntrace record -T '__main__:checkout:traceoff' -- examples/shop.py
                                                     stop recording at checkout
  fntrace info fntrace.dat                           what was recorded
  fntrace replay fntrace.dat -F '__main__:*' --until 0.5
                                                     the script's calls in the first 0.5 s
"""


class Noting:
    """An ArgumentParser's add_argument that also notes which options take a value."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_argument(self, *names: str, **kw: Any) -> argparse.Action:
        action = self.parser.add_argument(*names, **kw)
        (FLAGS if action.nargs == 0 else VALUED).update(action.option_strings)
        return action


def add_trace_options(parser: argparse.ArgumentParser, default_tracer: str | None) -> None:
    """The options record and run share; they mirror the instance files."""
    p = Noting(parser)
    p.add_argument("-t", "--tracer", default=default_tracer,
                   choices=("function", "function_graph"),
                   help=f"default {default_tracer or 'function (nop with --live alone)'}")
    p.add_argument("-F", "--filter", action="append", metavar="PATTERN",
                   help="set_ftrace_filter pattern (repeatable)")
    p.add_argument("-N", "--notrace", action="append", metavar="PATTERN",
                   help="set_ftrace_notrace pattern (repeatable)")
    p.add_argument("-G", "--graph-function", action="append", metavar="PATTERN",
                   help="set_graph_function pattern (repeatable)")
    p.add_argument("--graph-notrace", action="append", metavar="PATTERN",
                   help="set_graph_notrace pattern (repeatable)")
    p.add_argument("-D", "--max-depth", type=int, metavar="N", help="max_graph_depth")
    p.add_argument("--thresh", type=int, metavar="USECS", help="tracing_thresh (µs)")
    p.add_argument("--args", action="store_true", help="arguments (func-args, funcgraph-args)")
    p.add_argument("--retval", action="store_true",
                   help="return values (function_graph)")
    p.add_argument("--repr-call", action="store_true",
                   help="show --args/--retval values with the program's own __repr__ "
                   "(it runs the program's code; by default values are shown without)")
    p.add_argument("--tasks", action="store_true",
                   help="note which asyncio task runs each call (the task column, replay "
                   "--task); costs each task step a few hundred instructions, each task "
                   "a few Python calls")
    p.add_argument("--buffer-size", type=int, metavar="KIB", help="buffer_size_kb per thread")
    p.add_argument("--no-overwrite", action="store_true",
                   help="drop new events when a buffer is full (default: drop oldest)")
    p.add_argument("-T", "--trigger", action="append", metavar="FUNC:CMD[:N]",
                   help="function trigger, e.g. 'mod:f:traceoff' (repeatable)")
    p.add_argument("--thread", action="append", type=int, metavar="TID",
                   help="trace only this thread id (set_ftrace_pid; repeatable)")
    p.add_argument("--clock", default="mono", help="trace_clock (default mono, which "
                   "several processes share)")
    p.add_argument("--live", action="store_true", help="also serve fntrace ctl PID")
    p.add_argument("--inject", action="append", metavar="SPEC",
                   help="fail a function: 'FUNC:raise=OSError(\"disk full\"):probability=10' "
                   "or 'FUNC:retval=0:times=3' (repeatable)")
    p.add_argument("--otel", action="append", metavar="SPEC",
                   help="OpenTelemetry spans for the functions of 'PATTERN... [KEY=EXPR...]' "
                   "(docs/otel.md; repeatable)")
    # Where the program starts is found by split_command, as python finds it: these
    # two only document it (and receive it from fntrace.cli.main).
    parser.add_argument("-m", dest="module", metavar="MODULE",
                        help="run a module, as python -m; every later argument is the "
                        "program's (a -- right after MODULE is skipped)")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="script.py [args...]",
                        help="the program and its arguments (a leading -- is optional; every "
                        "argument after the script is the program's)")


def _unique_long(token: str) -> str | None:
    """The long option ``token`` abbreviates (argparse accepts unique prefixes)."""
    name = token.split("=", 1)[0]
    if name in VALUED or name in FLAGS:
        return name
    hits = [o for o in VALUED | FLAGS if o.startswith("--") and o.startswith(name)]
    return hits[0] if len(hits) == 1 else None


def split_command(args: list[str]) -> tuple[list[str], tuple[str | None, list[str]] | None]:
    """Split ``record``/``run``'s arguments where the program starts, as python does.

    Returns fntrace's own arguments and, if a program was named, ``(module,
    argv)``: after ``-m MODULE`` or the script path every argument is the
    program's (``fntrace record -m black -q -`` as ``python -m black -q -``).
    A ``--`` before the program, or right after ``-m MODULE``, is fntrace's end
    of options (``-m black -- -q -`` also works); any later one is the
    program's.  An option that takes a value skips it (``-o x.dat``,
    ``-ox.dat``, ``--output=x.dat``, ``--outp x.dat`` as argparse abbreviates).
    """
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            rest = args[i + 1:]
            return args[:i], ((None, rest) if rest else None)
        if tok == "-m" or (tok.startswith("-m") and not tok.startswith("--")):
            module = tok[2:] or (args[i + 1] if i + 1 < len(args) else None)
            if module is None:
                return args, None  # argparse says "-m: expected one argument"
            start = i + 1 if tok[2:] else i + 2
            if args[start:start + 1] == ["--"]:
                start += 1  # `-m black -- -q -`: fntrace's end of options, as it always was
            return args[:i], (module, args[start:])
        if tok == "-" or not tok.startswith("-"):
            return args[:i], (None, args[i:])
        if tok.startswith("--"):
            name = _unique_long(tok)
            takes = name in VALUED and "=" not in tok
        else:
            takes = tok[:2] in VALUED and len(tok) == 2
        i += 2 if takes else 1
    return args, None


def add_parser(sub: Any) -> None:
    rec = sub.add_parser(
        "record", help="run a program traced, writing a trace file",
        description=DESCRIPTION, formatter_class=Formatter,
        epilog=EXAMPLES)
    noting = Noting(rec)
    noting.add_argument("-o", "--output", default="fntrace.dat", metavar="PATH",
                        help="trace file to write (default fntrace.dat)")
    noting.add_argument("--follow", action="store_true",
                        help="trace child processes too (fork, multiprocessing, Python "
                        "subprocesses), each into PATH.<pid>")
    noting.add_argument("--compress", choices=("lz4", "zlib", "none"),
                        help="the event chunks' compression (default: lz4 with fntrace's "
                        "C extension, about a sixth of zlib's CPU for 17-40%% more bytes; "
                        "zlib without it)")
    add_trace_options(rec, "function_graph")
    rec.set_defaults(handler=main, command_name="record")


def config_of(ns: argparse.Namespace) -> RecordConfig:
    """The RecordConfig of record's or run's parsed options (each field is the
    option of the same name; repeatable ones not given are empty)."""
    values: dict[str, Any] = {}
    for name, default in RecordConfig.defaults().items():
        value = getattr(ns, name)
        values[name] = tuple(value or ()) if isinstance(default, tuple) else value
    return RecordConfig(**values)


def serve_live(inst: Instance) -> None:
    """``--live``: a control server whose top level is the recording instance."""
    from fntrace.control import listen

    listen().tree.adopt_top(inst)


def main(ns: argparse.Namespace) -> int:
    from fntrace.recording.record import record

    return record(config_of(ns), serve_live)
