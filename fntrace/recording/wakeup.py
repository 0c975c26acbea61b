"""The signal wakeup fd, shared by a recording and the traced program.

A recording makes its writer's wake pipe the process's signal wakeup fd, so
the writer hears of a SIGTERM whose Python handler cannot run (record.py,
``_hear_signals``).  There is one such slot per process and the program may
use it too (asyncio does; multiprocessing's forkserver sets one and its forked
workers clear it).  So while a recording runs, ``signal.set_wakeup_fd`` is
replaced by :func:`set_wakeup_fd`, which keeps the program's view exactly as
untraced — the same return values (the fd the *program* set before, never
fntrace's pipe), the same exceptions, raised by the real function — while
fntrace holds the slot whenever the program leaves it empty:

* the program sets an fd of its own: the slot is the program's, signals reach
  its fd as untraced, and fntrace hears nothing (the program set it to be woken
  by signals, so its loop wakes and the handler runs);
* the program clears it (``-1``): fntrace's pipe goes back in the slot.

A forked child keeps the program's fd, or gets its own recording's pipe
(:func:`move_to`).  Standard library only; nothing here imports fntrace.
"""

from __future__ import annotations

import functools
import operator
import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["installed", "move_to", "set_wakeup_fd", "take"]

_real = signal.set_wakeup_fd


class _Slot:
    """Who the wakeup fd belongs to, in this process."""

    installed = False
    #: The fd the program set last (what would be set now untraced); -1: none.
    program_fd = -1
    #: fntrace's pipe while a recording wants the slot; -1: fntrace wants nothing.
    ours = -1


_slot = _Slot()


def installed() -> bool:
    """Whether :func:`take` replaced ``signal.set_wakeup_fd`` in this process."""
    return _slot.installed


@functools.wraps(_real)
def set_wakeup_fd(*args: Any, **kwargs: Any) -> int:
    # The real call first: it validates the arguments, the thread and the fd and raises
    # exactly what the program would get untraced, and it sets the program's fd.
    _real(*args, **kwargs)
    fd = args[0]
    fd = fd if type(fd) is int else operator.index(fd)  # accepted: it is an index
    previous, _slot.program_fd = _slot.program_fd, fd
    if fd == -1 and _slot.ours != -1:
        # Cleared: the slot is empty, so it is fntrace's again.  Main thread only (the
        # real call checked), and running bytecode: a signal between the two calls
        # has its handler run at the next instruction, nothing is missed.
        _real(_slot.ours, warn_on_full_buffer=False)
    return previous


def take(pipe: int) -> bool:
    """Hold the wakeup slot for ``pipe`` unless the program already set an fd, and
    put :func:`set_wakeup_fd` in the program's ``signal`` module.  False (nothing
    changed) outside the main thread, where no wakeup fd can be set."""
    if _slot.installed:  # a second recording in this process (run in-process)
        try:
            if _slot.program_fd == -1:
                _real(pipe, warn_on_full_buffer=False)
        except ValueError:
            return False
        _slot.ours = pipe
        return True
    try:
        before = _real(pipe, warn_on_full_buffer=False)
    except ValueError:
        return False
    if before != -1:
        _real(before)  # set before fntrace started (an embedding program): theirs
    _slot.program_fd = before
    _slot.ours = pipe
    _slot.installed = True
    signal.set_wakeup_fd = set_wakeup_fd
    return True


def move_to(pipe: int) -> None:
    """fntrace's pipe is now ``pipe`` (-1: none): in a forked child, its own
    recording's pipe, or none when the child is not recorded; at the end of the
    recording, none.  The slot changes only if fntrace holds it; a program's fd
    stays set, as it would untraced."""
    if not _slot.installed:
        return
    _slot.ours = pipe
    if _slot.program_fd == -1:
        try:
            _real(pipe, warn_on_full_buffer=False)
        except ValueError:  # not the main thread (os._exit from a thread): left as is
            pass
