"""The ``fntrace`` command (also ``python -m fntrace``): one module per subcommand.

This package is the only place that knows argparse.  Each subcommand's module
holds its parser and turns the parsed options into typed calls of the layer
that does the work: ``record`` and ``run`` (record.py, run.py) build a
RecordConfig for fntrace/recording/; ``replay``, ``report``, ``dump`` and
``info`` call fntrace/analysis/, which reads trace files; ``ctl`` and
``attach`` (ctl.py, attach.py) steer a running process through
fntrace/control/'s client; ``funcs`` (funcs.py) lists
available_filter_functions.  A subcommand's module imports the work it calls
only when it runs, so ``fntrace --version`` or ``--help`` loads little.
"""

from __future__ import annotations

# First: in the fntrace command, Ctrl-C while the rest imports is one line (startup.py).
from fntrace.recording import startup

# isort: split
import argparse
import signal
import sys
from collections.abc import Sequence

from fntrace.cli import attach, ctl, dump, funcs, info, record, replay, report, run, view
from fntrace.core import accel
from fntrace.core.version import __version__

__all__ = ["build_parser", "main"]

EXAMPLES = """\
examples:
  fntrace run -- examples/shop.py                 trace every function of the program
  fntrace run -F '__main__:*' --args -- examples/shop.py
                                                  only the script's own functions (a script
                                                  runs as __main__), with arguments
  fntrace run -F '*:mod:json.*' -m json.tool f.json
                                                  only the json package (json.* covers json
                                                  itself), running a module
  fntrace funcs -m json -F 'json.decoder:*'       list traceable functions
  fntrace run --live -- app.py                    run app.py, steerable with fntrace ctl
  fntrace ctl 1234 set_ftrace_filter 'myapp.db:*' set a filter in process 1234
  fntrace ctl 1234 current_tracer function_graph  start tracing it
  fntrace ctl 1234 trace_pipe                     stream its trace until Ctrl-C
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fntrace", description="Function tracing for Python, after the kernel's ftrace.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    parser.add_argument("--version", action="version",
                        version=f"fntrace {__version__} ({accel.status()})")
    sub = parser.add_subparsers(dest="command", required=True)
    # The order of `fntrace --help`'s list.
    for command in (funcs, ctl, attach, run, record, replay, info, report, dump, view):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # fntrace's own work; the program's never gets here
        sys.stderr.write(startup.MESSAGE)
        return 128 + signal.SIGINT


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    program = None
    if args and args[0] in ("record", "run"):
        # argparse would take the program's own options (-q, -o...) as fntrace's:
        # the program and its arguments are cut off first, where python would.
        own, program = record.split_command(args[1:])
        args = [args[0], *own]
    ns = parser.parse_args(args)
    if program is not None:
        if ns.argv:  # a second program named before the first (cannot happen)
            parser.error("give the program once")
        ns.module, ns.argv = program
    if ns.command not in ("record", "run"):
        startup.release()  # record and run release it just before the program starts
    return int(ns.handler(ns))
