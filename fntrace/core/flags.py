"""Ops flags, as the kernel's FTRACE_OPS_FL_* (only those that mean something here).

The enum is for the user (``Flags.SAVE_REGS | Flags.RECURSION``, a readable
repr); the core tests the plain ints of :mod:`fntrace.core.flagbits`, so that
``import fntrace`` does not import ``enum`` (which costs more than the core).
"""

from __future__ import annotations

import enum

from fntrace.core import flagbits
from fntrace.core.flagbits import Event

__all__ = ["Event", "Flags"]


class Flags(enum.IntFlag):
    """What an ops asks of the core.

    SAVE_REGS: callbacks get the full frame through ``get_regs(fregs)``; the
        site is served by the regs trampoline while this ops is there.
    SAVE_REGS_IF_SUPPORTED: the same; never refused (fntrace can always give it),
        kept so kernel-shaped code ports unchanged.
    RECURSION: the core keeps the callback from re-entering itself on a thread
        and counts each refused entry in ``ops.nmissed``.
    IPMODIFY: the callback may redirect the call or skip the body
        (``fregs.set_instruction_pointer`` / ``override_function_with_return``).
        One per function; needs a non-empty filter and no notrace set.
    PERMANENT: the ops cannot be turned off by ``set_ftrace_enabled(False)``;
        turning ftrace off is refused while one is registered.
    """

    SAVE_REGS = flagbits.SAVE_REGS
    SAVE_REGS_IF_SUPPORTED = flagbits.SAVE_REGS_IF_SUPPORTED
    RECURSION = flagbits.RECURSION
    IPMODIFY = flagbits.IPMODIFY
    PERMANENT = flagbits.PERMANENT
