"""Waiting for callbacks to drain: the kernel's synchronize_rcu for unregister.

When ``unregister`` has removed an ops from every site, another thread may
still be inside a trampoline that read the old site and is about to call the
ops (or is calling it).  Rather than pay for a marker on every call, we look
at the other threads' stacks, as RCU looks for quiescent states: a thread is
done with the ops once none of its *holder* frames holds it.

The contract (what the trampolines promise, checked when they are defined):
a function that calls ops callbacks is decorated with :func:`holder`, and
keeps the ops it is about to call, or is calling, in a local named ``op``
(one ops) or ``targets`` (a sequence of ops), bound *before* it tests
``op._live``.  ``unregister`` clears ``_live`` first and then waits here, so
a trampoline either sees the ops dead and skips it, or is seen holding it.
:func:`holder` refuses, at import, a function without such a local, so a
rename cannot silently turn the wait into a no-op.

Why not publish "ops in a callback" per thread instead: that is two
thread-local writes per traced call, measured (valgrind, 3.12) at about 1,670
instructions, 8.6% of the pure function tracer's whole cost per call (19,400)
where the hot path's budget is 3%; this costs nothing until an unregister.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Callable

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

__all__ = ["HOLDER_LOCALS", "holder", "holder_codes", "wait_quiescent"]

#: The local names a holder keeps its ops in (see the module docstring).
HOLDER_LOCALS = ("op", "targets")

if TYPE_CHECKING:
    F = TypeVar("F", bound=Callable[..., Any])

_codes: set[types.CodeType] = set()


def holder(func: F) -> F:
    """Declare ``func`` a trampoline that calls ops callbacks (see the contract)."""
    code: types.CodeType = func.__code__
    if not any(name in code.co_varnames for name in HOLDER_LOCALS):
        raise TypeError(f"{code.co_qualname} calls ops callbacks but keeps them in none of "
                        f"the locals {HOLDER_LOCALS} that unregister() waits on")
    _codes.add(code)
    return func


def holder_codes() -> frozenset[types.CodeType]:
    """The code objects declared with :func:`holder`."""
    return frozenset(_codes)


def _holds(frame: types.FrameType, ops: Any) -> bool:
    try:
        loc = frame.f_locals
        if loc.get("op") is ops:
            return True
        targets = loc.get("targets") or ()
        return any(t is ops for t in targets)
    except Exception:  # a frame torn down under us holds nothing
        return False


def _busy(ops: Any, codes: frozenset[types.CodeType]) -> bool:
    me = threading.get_ident()
    for tid, top in sys._current_frames().items():
        if tid == me:
            continue
        frame: types.FrameType | None = top
        while frame is not None:
            if frame.f_code in codes and _holds(frame, ops):
                return True
            frame = frame.f_back
    return False


def wait_quiescent(ops: Any) -> None:
    """Return once no other thread is inside a holder frame that holds ``ops``."""
    codes = holder_codes()
    delay = 0.0
    while _busy(ops, codes):
        time.sleep(delay)
        delay = min(0.01, delay * 2 or 0.0001)
