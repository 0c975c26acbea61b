"""``fntrace run``: record's options (record.py) with a text output instead of a file.

The recording itself is fntrace/recording/record.py's ``run``.
"""

from __future__ import annotations

import argparse

from fntrace.cli.formatter import Formatter
from fntrace.cli.record import Noting, add_trace_options, config_of, serve_live

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["add_parser", "main"]

RUN_EXAMPLES = """\
examples:
  fntrace run -- examples/shop.py                    every call, live (function tracer)
  fntrace run -t function_graph -F '*:mod:__main__' --args --retval -- examples/shop.py
  fntrace run -F 'json.*:*' -o trace.txt -m json.tool f.json
                                                     the json package into trace.txt
  fntrace run -o - -m json.tool f.json               the trace reaches the terminal even
                                                     though json.tool closes sys.stdout
  fntrace run --inject 'store:save:raise=OSError("disk full"):interval=2' -- app.py
  fntrace run --live -- server.py                    untraced until steered with fntrace ctl
"""


def add_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="run a program traced, printing the trace live (trace_pipe)",
        description="Run a program as record does, printing the trace as it is made "
        "(the instance's trace_pipe) to stdout or -o FILE.",
        formatter_class=Formatter, epilog=RUN_EXAMPLES)
    Noting(run).add_argument("-o", "--output", metavar="FILE",
                              help="write the trace to FILE (- or none: the terminal)")
    add_trace_options(run, None)
    run.set_defaults(handler=main, command_name="run", follow=False, compress=None)


def main(ns: argparse.Namespace) -> int:
    from fntrace.recording.record import run

    return run(config_of(ns), serve_live)
