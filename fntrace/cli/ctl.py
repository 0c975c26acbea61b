"""``fntrace ctl``: read or write the tracefs files of a running process
(fntrace/control/client.py speaks to its server).

Every failure is one line on stderr and exit status 1 (argparse usage errors:
2); a trace_pipe stream ends with status 0 on Ctrl-C or when the target exits.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from fntrace.cli.formatter import Formatter

if TYPE_CHECKING:
    from fntrace.control.client import Client

__all__ = ["add_parser", "ctl", "main", "parse_pid"]

_MKDIR = ("mkdir", "rmdir")


def parse_pid(text: str | None, cmd: str) -> int:
    """The PID argument of ``fntrace CMD`` (one line and exit 1 if it is not one)."""
    if text is None:
        raise SystemExit(f"fntrace {cmd}: give a PID")
    if not text.isdigit() or int(text) <= 0:
        raise SystemExit(f"fntrace {cmd}: not a process id: {text!r}")
    return int(text)


def _print(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `fntrace ctl PID trace | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None


def _stream(client: Client, path: str) -> int:
    lines = client.pipe(path)
    try:
        for line in lines:
            _print(line)
    except KeyboardInterrupt:
        pass
    finally:
        lines.close()
    return 0


def ctl(pid_text: str | None, file: str | None, value: str | None, *, list_all: bool = False,
        append: bool = False, check: bool = False) -> int:
    """What ``fntrace ctl`` does: list, read, write, stream (see the parser's help)."""
    from fntrace.control.client import Client, scan
    from fntrace.control.protocol import ControlError

    if list_all:
        if pid_text is not None:
            raise SystemExit("fntrace ctl: --list takes no PID")
        for pid, state in scan():
            _print(f"{pid:>8}  {state}\n")
        return 0
    pid = parse_pid(pid_text, "ctl")
    if file is None:
        raise SystemExit("fntrace ctl: give a FILE (or ls, mkdir, rmdir, trace_pipe)")
    for flag, name in ((append, "--append"), (check, "--check")):
        if flag and (value is None or file in ("ls", *_MKDIR)):
            raise SystemExit(f"fntrace ctl: {name} needs a FILE and a VALUE to write")
    try:
        with Client(pid) as client:
            if file == "ls":
                names = client.ls(value or "")
                _print("".join(f"{n}\n" for n in names))
            elif file in _MKDIR:
                if value is None:
                    raise SystemExit(f"fntrace ctl: {file} needs a DIR (instances/NAME)")
                getattr(client, file)(value)
            elif value is not None:
                client.write(file, value, append=append)
                if check:
                    # Asked in the target, where its modules are loaded.
                    said = client.read("control/unmatched")
                    sys.stderr.write("".join(f"fntrace ctl: {line}\n"
                                             for line in said.splitlines()))
            elif file.rstrip("/").rsplit("/", 1)[-1] == "trace_pipe":
                return _stream(client, file)
            else:
                _print(client.read(file))
    except ControlError as exc:
        raise SystemExit(f"fntrace ctl: {exc}") from None
    return 0


def main(ns: argparse.Namespace) -> int:
    return ctl(ns.pid, ns.file, ns.value, list_all=ns.list, append=ns.append, check=ns.check)


CTL_EXAMPLES = """\
examples:
  fntrace ctl --list                                   processes that can be steered
  fntrace ctl 1234 set_ftrace_filter 'myapp.db:*'      trace only myapp.db
  fntrace ctl 1234 set_ftrace_filter 'myapp.api:*' -a  ... and myapp.api too
  fntrace ctl --check 1234 set_ftrace_filter 'myapp.*' ... and say if it matches nothing
  fntrace ctl 1234 control/unmatched                   patterns that match no function
  fntrace ctl 1234 current_tracer function_graph       start tracing
  fntrace ctl 1234 trace_pipe                          stream the trace until Ctrl-C
  fntrace ctl 1234 ls options                          list a directory
  fntrace ctl 1234 mkdir instances/slow                a second, independent instance
  fntrace ctl 1234 current_tracer nop                  stop: no instrumentation left
"""
def add_parser(sub: Any) -> None:
    ctl = sub.add_parser(
        "ctl", help="read or write the trace files of a running process",
        formatter_class=Formatter, epilog=CTL_EXAMPLES,
        description="Steer a process that serves live control (fntrace run --live, or "
                    "fntrace.control.listen()). FILE is a tracefs path (current_tracer, "
                    "set_ftrace_filter, instances/NAME/trace...); with VALUE it is written. "
                    "Also: ls [DIR], mkdir instances/NAME, rmdir instances/NAME, trace_pipe "
                    "(streams until Ctrl-C).")
    ctl.add_argument("--list", action="store_true",
                     help="list the controllable processes of this user (stale sockets "
                          "of dead processes are removed)")
    ctl.add_argument("-a", "--append", action="store_true",
                     help="append VALUE (the shell's >>) instead of replacing")
    ctl.add_argument("--check", action="store_true",
                     help="after writing, say which patterns match no function loaded in "
                          "the process (and what was probably meant): control/unmatched")
    ctl.add_argument("pid", nargs="?", metavar="PID")
    ctl.add_argument("file", nargs="?", metavar="FILE")
    ctl.add_argument("value", nargs="?", metavar="VALUE")
    ctl.set_defaults(handler=main)
