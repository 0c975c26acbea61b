"""A forked child's first look at a code object never waits for a lock of its parent.

threading's own after-fork hook (registered before fntrace's) runs Python code in
the child, whose first call reaches the engine's discovery before fntrace's hooks
could renew anything: CPython's test_threading test_is_alive_after_fork hung there
under the profiler (3.12) and under `fntrace record` (3.13).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import needs_fork

ROOT = str(Path(__file__).resolve().parent.parent)

PROGRAM = textwrap.dedent("""
    import os, threading

    def first_in_child():  # never called before the fork: its first look is there
        return 7

    # As threading's own hook: registered before fntrace, run before fntrace's.
    os.register_at_fork(after_in_child=first_in_child)

    import fntrace
    from fntrace.core import engine, symbols

    seen = []
    ops = fntrace.Ops(lambda ip, parent, op, fregs: seen.append(ip.name),
                      filter="__main__:first_in_child")
    fntrace.register(ops)
    # The first round holds nothing: every code the parent runs below (events,
    # threads, fork and its hooks) has had its first look before a lock is held.
    for lock in (None, symbols._lock, engine._lock):
        held, release = threading.Event(), threading.Event()

        def hold(lock=lock, held=held, release=release):
            if lock is None:
                held.set()
                release.wait()
                return
            with lock:          # another thread holds it at the fork
                held.set()
                release.wait()

        t = threading.Thread(target=hold)
        t.start()
        held.wait()
        pid = os.fork()
        if pid == 0:
            os._exit(7 if seen else 1)  # first_in_child ran (traced) in the at-fork hook
        release.set()
        t.join()
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
""")


@needs_fork
def test_child_first_look_takes_no_lock_held_at_fork(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="ignore::DeprecationWarning")
    for pure in ("", "1"):
        env["FNTRACE_PURE"] = pure
        res = subprocess.run([sys.executable, str(prog)], env=env, capture_output=True,
                             text=True, timeout=120)
        assert (res.returncode, res.stdout.split()) == (0, ["7", "7", "7"]), res.stderr
