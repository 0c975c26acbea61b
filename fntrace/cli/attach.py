"""``fntrace attach``: start live control inside a running process (Python 3.14+,
``sys.remote_exec``), for ``fntrace ctl`` to steer it."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

from fntrace.cli.ctl import parse_pid
from fntrace.cli.formatter import Formatter

__all__ = ["add_parser", "attach", "main"]

_ATTACH_CODE = """\
import sys
try:
    import fntrace.control
except ImportError:
    sys.path.append({root!r})
    import fntrace.control
fntrace.control.listen()
"""


def attach(pid_text: str, timeout: float) -> int:
    """What ``fntrace attach`` does: start the server in the process, wait for it."""
    from fntrace.control.client import Client, pid_alive
    from fntrace.control.protocol import ControlError

    pid = parse_pid(pid_text, "attach")
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with Client(pid, timeout=2.0) as client:
                    client.hello()
                print(f"fntrace attach: process {pid} is now controllable: fntrace ctl {pid} ...")
                return 0
            except ControlError:
                time.sleep(0.1)
        raise SystemExit(f"fntrace attach: process {pid} did not start the control server "
                         f"within {timeout:g} s (it runs the code at its next bytecode "
                         "boundary; a process blocked in a system call runs it later)")
    finally:
        os.unlink(script)



ATTACH_EXAMPLES = """\
examples:
  fntrace attach 1234 && fntrace ctl 1234 current_tracer function
"""



def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "attach", help="start live control in a running process (Python 3.14+)",
        formatter_class=Formatter, epilog=ATTACH_EXAMPLES,
        description="Run fntrace.control.listen() inside process PID through "
                    "sys.remote_exec (Python 3.14+; same uid and ptrace permission).")
    parser.add_argument("pid", metavar="PID")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the server to come up (default 10)")
    parser.set_defaults(handler=main)


def main(ns: argparse.Namespace) -> int:
    return attach(ns.pid, ns.timeout)
