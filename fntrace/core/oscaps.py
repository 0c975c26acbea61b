"""What the platform offers beyond the tracers' needs, and how fntrace does without it.

The tracers need only ``sys.monitoring`` (or 3.11's profile hook). Some builds of
CPython lack the rest: WebAssembly ones (Pyodide, Emscripten, WASI) have no native
thread ids, cannot start threads, fork, run subprocesses or open Unix sockets.
Thread ids are the one need on every traced call (buffers, pid filters), so they
fall back here instead of failing each callback; a recording does without its
writer thread (recorder.py), and live control, which needs Unix sockets, says
so where it starts (control/runtime.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["native_id", "thread_native_id"]

# The kernel's pid of a thread where the OS has one; else Python's own ident, which
# names each thread as uniquely for as long as it runs (one thread, here, anyway).
native_id: Callable[[], int] = getattr(threading, "get_native_id", threading.get_ident)


def thread_native_id(thread: threading.Thread) -> int | None:
    """The id ``native_id()`` returns inside ``thread`` (None before it starts)."""
    if hasattr(threading, "get_native_id"):
        return thread.native_id
    return thread.ident
