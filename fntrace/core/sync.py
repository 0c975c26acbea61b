"""Waiting for callbacks to drain: the kernel's synchronize_rcu for unregister.

When ``unregister`` has removed an ops from every site, another thread may
still be inside a trampoline that read the old site and is about to call the
ops (or is calling it).  Rather than pay for a marker on every call, we look
at the other threads' stacks, as RCU looks for quiescent states: a thread is
done with the ops once none of its trampoline frames holds it in the locals
``op`` or ``targets``.  The hot path pays nothing for this.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any

__all__ = ["wait_quiescent"]


def _holds(frame: types.FrameType, ops: Any) -> bool:
    try:
        loc = frame.f_locals
        if loc.get("op") is ops:
            return True
        targets = loc.get("targets") or ()
        return any(t is ops for t in targets)
    except Exception:  # a frame torn down under us holds nothing
        return False


def _busy(ops: Any, codes: set[types.CodeType]) -> bool:
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


def wait_quiescent(ops: Any, codes: set[types.CodeType]) -> None:
    """Return once no other thread is inside a trampoline that holds ``ops``."""
    delay = 0.0
    while _busy(ops, codes):
        time.sleep(delay)
        delay = min(0.01, delay * 2 or 0.0001)
