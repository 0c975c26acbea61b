"""The ``fntrace`` command (also ``python -m fntrace``).

``fntrace run [options] -- script.py args…`` or ``fntrace run [options] -m
module args…`` runs a program as ``python script.py args`` would (argv,
``__main__``, sys.path[0], exit code) with one function-tracer ops
registered, printing a line per call in the kernel function tracer's format::

    MainThread-1234  [000]  0.000123: shop:Cart.total <-shop:checkout

``fntrace funcs [-F PAT] [-m MODULE]`` prints available_filter_functions
(optionally after importing modules, filtered like set_ftrace_filter).

``fntrace ctl PID FILE [VALUE]`` steers a process started with ``run --live``
(or that called ``fntrace.control.listen()``); ``fntrace attach PID`` starts
that server in an unprepared process on Python 3.14+ (docs/control.md).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from . import __version__
from .core.filter import Filter, parse
from .core.flags import Event
from .core.ops import Ops
from .core.regs import FtraceRegs
from .core.symbols import Function, available_filter_functions

EXAMPLES = """\
examples:
  fntrace run -- examples/shop.py                 trace every function of the program
  fntrace run -F 'shop:*' --args -- examples/shop.py
                                                  only module shop, with arguments
  fntrace run -F '*:mod:json.*' -m json.tool f.json
                                                  only the json package, running a module
  fntrace funcs -m json -F 'json.decoder:*'       list traceable functions
  fntrace run --live -- app.py                    run app.py, steerable with fntrace ctl
  fntrace ctl 1234 set_ftrace_filter 'myapp.db:*' set a filter in process 1234
  fntrace ctl 1234 current_tracer function_graph  start tracing it
  fntrace ctl 1234 trace_pipe                     stream its trace until Ctrl-C
"""


def _safe_repr(value: Any, limit: int = 60) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not stop the trace
        text = f"<repr failed: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FunctionPrinter:
    """The function tracer, printing live: one line per function entry."""

    def __init__(self, out: IO[str], args: bool, retval: bool) -> None:
        self.out = out
        self.show_args = args
        self.show_retval = retval
        self.t0 = time.perf_counter_ns()
        self.cpus: dict[int, int] = {}
        self.lock = threading.Lock()

    def _prefix(self) -> str:
        thread = threading.current_thread()
        tid = threading.get_native_id()
        cpu = self.cpus.setdefault(tid, len(self.cpus))
        ts = (time.perf_counter_ns() - self.t0) / 1e9
        return f"{thread.name[:16]:>16}-{tid:<7} [{cpu:03d}] {ts:12.6f}: "

    def _write(self, line: str) -> None:
        with self.lock:
            self.out.write(line)

    def entry(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        name = ip.name
        if fregs.event != Event.START:
            name += f" [{fregs.event}]"
        if self.show_args and fregs.event == Event.START:
            args = ", ".join(f"{k}={_safe_repr(v)}" for k, v in fregs.arguments.items())
            name = f"{ip.name}({args})"
        caller = f" <-{parent.name}" if parent is not None else ""
        self._write(f"{self._prefix()}{name}{caller}\n")

    def exit(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        if fregs.event == Event.UNWIND:
            exc = fregs.exception
            what = f"raised {type(exc).__name__}" if exc is not None else "raised"
        else:
            what = f"{fregs.event} {_safe_repr(fregs.return_value)}"
        self._write(f"{self._prefix()}{ip.name} -> {what}\n")


def _run_program(ns: argparse.Namespace) -> int:
    if not ns.module and not ns.argv:
        raise SystemExit("fntrace run: nothing to run: give -- script.py [args] or -m module")
    try:
        filt = Filter(parse(ns.filter or ()))
        notrace = Filter(parse(ns.notrace or ()))
        from .inject import parse_inject_spec, start_specs

        specs = [parse_inject_spec(s) for s in ns.inject or ()]
    except ValueError as exc:
        raise SystemExit(f"fntrace run: {exc}") from None
    if ns.module is None and not os.path.exists(ns.argv[0]):
        raise SystemExit(f"fntrace run: {ns.argv[0]}: no such file")
    if ns.live:
        from . import control

        try:
            control.listen()
        except OSError as exc:
            raise SystemExit(f"fntrace run: --live: {exc}") from None
    out: IO[str] = open(ns.output, "w", encoding="utf-8") if ns.output else sys.stdout
    printer = FunctionPrinter(out, ns.args, ns.retval)
    from .core import engine

    ops = Ops(printer.entry, ret=printer.exit if ns.retval else None, filter=filt,
              notrace=notrace)
    if ns.module is not None:
        sys.argv = [ns.module, *ns.argv]
        sys.path.insert(0, os.getcwd())
    else:
        sys.argv = list(ns.argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(ns.argv[0])))
    code = 0
    # --live alone prints nothing: tracing is started from outside with fntrace ctl.
    printing = not ns.live or bool(ns.filter or ns.notrace or ns.args or ns.retval)
    if printing:
        engine.register(ops)
    stop_injections = start_specs(specs, lambda line: printer._write(printer._prefix() + line))
    try:
        if ns.module is not None:
            runpy.run_module(ns.module, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(ns.argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    finally:
        stop_injections()
        if printing:
            engine.unregister(ops)
        out.flush()
        if out is not sys.stdout:
            out.close()
    return code


def _funcs(ns: argparse.Namespace) -> int:
    import importlib

    for name in ns.module or ():
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise SystemExit(f"fntrace funcs: cannot import {name}: {exc}") from None
    try:
        filt = Filter(parse(ns.filter or ()))
    except ValueError as exc:
        raise SystemExit(f"fntrace funcs: {exc}") from None
    for full in available_filter_functions():
        module, _, qualname = full.partition(":")
        if filt.selects(module, qualname):
            print(full)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fntrace", description="Function tracing for Python, after the kernel's ftrace.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    parser.add_argument("--version", action="version", version=f"fntrace {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a program, printing its function calls live",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    run.add_argument("-F", "--filter", action="append", metavar="PATTERN",
                     help="set_ftrace_filter pattern (repeatable): glob, !glob, glob:mod:MOD")
    run.add_argument("-N", "--notrace", action="append", metavar="PATTERN",
                     help="set_ftrace_notrace pattern (repeatable); wins over --filter")
    run.add_argument("--args", action="store_true", help="show arguments (func-args)")
    run.add_argument("--retval", action="store_true", help="show returns, yields and raises")
    run.add_argument("-o", "--output", metavar="FILE", help="write the trace to FILE")
    run.add_argument("--inject", action="append", metavar="SPEC",
                     help="fail a function (repeatable): "
                          "'FUNC:raise=OSError(\"disk full\"):probability=10' or "
                          "'FUNC:retval=0:times=3' (also interval, space, seed)")
    run.add_argument("--live", action="store_true",
                     help="serve live control (fntrace ctl PID ...); alone, print nothing")
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- script.py [args...]")
    run.set_defaults(handler=_run_program)
    funcs = sub.add_parser("funcs", help="list available_filter_functions")
    funcs.add_argument("-m", "--module", action="append", help="import MODULE first")
    funcs.add_argument("-F", "--filter", action="append", metavar="PATTERN")
    funcs.set_defaults(handler=_funcs)
    from .control.cli import add_parsers

    add_parsers(sub)
    from . import info, record, replay

    record.add_parser(sub)
    replay.add_parser(sub)
    info.add_parser(sub)
    from . import dump, report

    report.add_parser(sub)
    dump.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if getattr(ns, "argv", None) and ns.argv[0] == "--":
        ns.argv = ns.argv[1:]
    return int(ns.handler(ns))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
