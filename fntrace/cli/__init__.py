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

``fntrace COMMAND ...`` builds (and imports) COMMAND's parser alone: the
subcommands' modules import argparse helpers, option tables and sometimes the
layers they call (tempfile, typing), which ``fntrace record`` would otherwise pay
for before the program starts.  Without a known COMMAND (``--help``, nothing,
a typo) every subcommand is built, so the list and the errors are the same.
"""

from __future__ import annotations

# First: in the fntrace command, Ctrl-C while the rest imports is one line (startup.py).
from fntrace.recording import startup

# isort: split
import argparse
import importlib
import signal
import sys

from fntrace.cli.formatter import Formatter
from fntrace.core import accel
from fntrace.core.version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

#: The subcommands, each the module of the same name in this package, in the order
#: of `fntrace --help`'s list.
COMMANDS = ("funcs", "ctl", "attach", "run", "record", "replay", "info", "report", "dump",
            "view")

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The fntrace command's parser: with ``command`` one of COMMANDS, only that
    subcommand's (its module alone imported); otherwise every subcommand's."""
    parser = argparse.ArgumentParser(
        prog="fntrace", description="Function tracing for Python, after the kernel's ftrace.",
        formatter_class=Formatter, epilog=EXAMPLES)
    parser.add_argument("--version", action="version",
                        version=f"fntrace {__version__} ({accel.status()})")
    names = (command,) if command in COMMANDS else COMMANDS
    # One subcommand alone still names them all in the usage line of an error
    # (`fntrace record --bogus`), as argparse does when it has them all.
    metavar = None if len(names) > 1 else "{" + ",".join(COMMANDS) + "}"
    sub = parser.add_subparsers(dest="command", required=True, metavar=metavar)
    for name in names:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # fntrace's own work; the program's never gets here
        sys.stderr.write(startup.MESSAGE)
        return 128 + signal.SIGINT


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args[0] if args else None)
    program = None
    if args and args[0] in ("record", "run"):
        from fntrace.cli.record import split_command

        # argparse would take the program's own options (-q, -o...) as fntrace's:
        # the program and its arguments are cut off first, where python would.
        own, program = split_command(args[1:])
        args = [args[0], *own]
    ns = parser.parse_args(args)
    if program is not None:
        if ns.argv:  # a second program named before the first (cannot happen)
            parser.error("give the program once")
        ns.module, ns.argv = program
    if ns.command not in ("record", "run"):
        startup.release()  # record and run release it just before the program starts
    return int(ns.handler(ns))
