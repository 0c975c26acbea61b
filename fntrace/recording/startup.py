"""Ctrl-C while the ``fntrace`` command itself starts: one line and exit 130.

Importing fntrace and preparing a recording take a noticeable fraction of a
second, and a Ctrl-C landing then used to print a KeyboardInterrupt traceback
from deep inside fntrace's imports, which tells the user nothing.  When this
process *is* the fntrace command (``python -m fntrace`` or the ``fntrace``
script, never a program that merely imports fntrace), :func:`guard` turns
SIGINT into "fntrace: interrupted" and exit status 130 (128 + SIGINT, what a
shell reports) until :func:`release` gives SIGINT back to Python's default
handler, just before the traced program starts (or a subcommand that handles
Ctrl-C itself runs).  The exit is a SystemExit, so exit handlers still finish a
trace file already opened.

The package imports this module first, which calls :func:`guard`.

``FNTRACE_TEST_SIGINT=<point>`` makes the process send itself SIGINT at that
point (``import``: during the package's imports; ``start``: once a recording
is set up, before the program runs) so that tests can interrupt start-up at a
known place instead of racing a timer.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

__all__ = ["checkpoint", "guard", "release", "running_as_command"]

TEST_ENV = "FNTRACE_TEST_SIGINT"
MESSAGE = "fntrace: interrupted\n"


def running_as_command() -> bool:
    """True when this interpreter was started as the fntrace command."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":  # python -m PKG: argv[0] is "-m" while PKG's __init__ runs
        orig = list(getattr(sys, "orig_argv", ()))
        for i, arg in enumerate(orig):
            if arg == "-m":
                return orig[i + 1: i + 2] == ["fntrace"]
            if arg.startswith("-m"):
                return arg[2:] == "fntrace"
        return False
    return os.path.basename(argv0) == "fntrace"


def _interrupted(signum: int, frame: FrameType | None) -> None:
    try:
        os.write(2, MESSAGE.encode())
    except OSError:
        pass
    raise SystemExit(128 + signal.SIGINT)


def guard() -> None:
    """In the fntrace command, Ctrl-C ends start-up with one line (see module doc)."""
    if not running_as_command():
        return
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupted)
    except ValueError:  # not the main thread: cannot be the command's start-up
        return
    checkpoint("import")


def release() -> None:
    """SIGINT back to Python's own handler (KeyboardInterrupt), as the program expects."""
    try:
        if signal.getsignal(signal.SIGINT) is _interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:
        pass


#: The point a test asked for, read once: a checkpoint runs while the tracer is
#: armed, where reading os.environ would be stdlib code for it to look at.
_POINT = os.environ.get(TEST_ENV)


def checkpoint(point: str) -> None:
    """Send SIGINT to this process if a test asked for it at ``point``."""
    if _POINT == point:
        os.kill(os.getpid(), signal.SIGINT)


guard()  # on import: fntrace/__init__ imports this module before anything else
