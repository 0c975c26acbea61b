"""Ops flags, as the kernel's FTRACE_OPS_FL_* (only those that mean something here)."""

from __future__ import annotations

import enum

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

    SAVE_REGS = 1
    SAVE_REGS_IF_SUPPORTED = 2
    RECURSION = 4
    IPMODIFY = 8
    PERMANENT = 16


class Event:
    """The ``fregs.event`` values: what brought a callback in.

    Entry side (``func``): START (a call, or a generator's first run),
    RESUME (a generator/coroutine continued after a yield or await),
    THROW (continued by ``throw()``/``close()``, an exception delivered into it).
    Exit side (``ret``): RETURN (final return), YIELD (suspension: ``yield``
    or ``await`` that suspends), UNWIND (left by an exception).
    """

    START = "start"
    RESUME = "resume"
    THROW = "throw"
    RETURN = "return"
    YIELD = "yield"
    UNWIND = "unwind"
