"""``fntrace ctl`` and ``fntrace attach``: the command-line side of live control.

Every failure is one line on stderr and exit status 1 (argparse usage errors:
2); a trace_pipe stream ends with status 0 on Ctrl-C or when the target exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

from fntrace.control.client import Client, pid_alive, scan
from fntrace.control.protocol import ControlError

__all__ = ["add_parsers"]

_MKDIR = ("mkdir", "rmdir")


def _pid(text: str | None, cmd: str) -> int:
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


def _ctl(ns: argparse.Namespace) -> int:
    if ns.list:
        if ns.pid is not None:
            raise SystemExit("fntrace ctl: --list takes no PID")
        for pid, state in scan():
            _print(f"{pid:>8}  {state}\n")
        return 0
    pid = _pid(ns.pid, "ctl")
    if ns.file is None:
        raise SystemExit("fntrace ctl: give a FILE (or ls, mkdir, rmdir, trace_pipe)")
    for flag, name in ((ns.append, "--append"), (ns.check, "--check")):
        if flag and (ns.value is None or ns.file in ("ls", *_MKDIR)):
            raise SystemExit(f"fntrace ctl: {name} needs a FILE and a VALUE to write")
    try:
        with Client(pid) as client:
            if ns.file == "ls":
                names = client.ls(ns.value or "")
                _print("".join(f"{n}\n" for n in names))
            elif ns.file in _MKDIR:
                if ns.value is None:
                    raise SystemExit(f"fntrace ctl: {ns.file} needs a DIR (instances/NAME)")
                getattr(client, ns.file)(ns.value)
            elif ns.value is not None:
                client.write(ns.file, ns.value, append=ns.append)
                if ns.check:
                    # Asked in the target, where its modules are loaded.
                    said = client.read("control/unmatched")
                    sys.stderr.write("".join(f"fntrace ctl: {line}\n"
                                             for line in said.splitlines()))
            elif ns.file.rstrip("/").rsplit("/", 1)[-1] == "trace_pipe":
                return _stream(client, ns.file)
            else:
                _print(client.read(ns.file))
    except ControlError as exc:
        raise SystemExit(f"fntrace ctl: {exc}") from None
    return 0


_ATTACH_CODE = """\
import sys
try:
    import fntrace.control
except ImportError:
    sys.path.append({root!r})
    import fntrace.control
fntrace.control.listen()
"""


def _attach(ns: argparse.Namespace) -> int:
    pid = _pid(ns.pid, "attach")
    remote_exec: Any = getattr(sys, "remote_exec", None)
    if sys.version_info < (3, 14) or remote_exec is None:
        raise SystemExit(
            f"fntrace attach: needs Python 3.14+ (sys.remote_exec), this is "
            f"{sys.version.split()[0]}: start the target under fntrace "
            "(`fntrace run --live ...`) or have it call fntrace.control.listen()")
    if not pid_alive(pid):
        raise SystemExit(f"fntrace attach: no such process: {pid}")
    try:
        with Client(pid, timeout=2.0):
            print(f"fntrace attach: process {pid} is already controllable")
            return 0
    except ControlError:
        pass
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fd, script = tempfile.mkstemp(prefix="fntrace-attach-", suffix=".py")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_ATTACH_CODE.format(root=root))
        try:
            remote_exec(pid, script)
        except (OSError, RuntimeError) as exc:
            raise SystemExit(
                f"fntrace attach: cannot run code in process {pid}: {exc} (needs the same "
                "uid, ptrace permission (kernel.yama.ptrace_scope 0, or CAP_SYS_PTRACE), a "
                "Python 3.14+ target without -X disable_remote_debug)") from None
        deadline = time.monotonic() + ns.timeout
        while time.monotonic() < deadline:
            try:
                with Client(pid, timeout=2.0) as client:
                    client.hello()
                print(f"fntrace attach: process {pid} is now controllable: fntrace ctl {pid} ...")
                return 0
            except ControlError:
                time.sleep(0.1)
        raise SystemExit(f"fntrace attach: process {pid} did not start the control server "
                         f"within {ns.timeout:g} s (it runs the code at its next bytecode "
                         "boundary; a process blocked in a system call runs it later)")
    finally:
        os.unlink(script)


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
ATTACH_EXAMPLES = """\
examples:
  fntrace attach 1234 && fntrace ctl 1234 current_tracer function
"""


def add_parsers(sub: Any) -> None:
    """Add ``ctl`` and ``attach`` to the fntrace command's subparsers."""
    ctl = sub.add_parser(
        "ctl", help="read or write the trace files of a running process",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=CTL_EXAMPLES,
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
    ctl.set_defaults(handler=_ctl)
    attach = sub.add_parser(
        "attach", help="start live control in a running process (Python 3.14+)",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=ATTACH_EXAMPLES,
        description="Run fntrace.control.listen() inside process PID through "
                    "sys.remote_exec (Python 3.14+; same uid and ptrace permission).")
    attach.add_argument("pid", metavar="PID")
    attach.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the server to come up (default 10)")
    attach.set_defaults(handler=_attach)
