"""The ops flags as plain ints, and the ``fregs.event`` values: what the core tests.

:class:`fntrace.Flags` (``fntrace/core/flags.py``) is the same bits as an
``enum.IntFlag`` for the user; the core reads only these ints, because importing
``enum`` would be a fifth of ``import fntrace``'s cost and an IntFlag's ``&``
runs Python code.
"""

from __future__ import annotations

__all__ = ["IPMODIFY", "PERMANENT", "RECURSION", "SAVE_REGS", "SAVE_REGS_IF_SUPPORTED", "Event"]

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
