"""A lock that a forked child can always take, whenever it first needs it.

``os.fork`` copies only the calling thread: a lock another thread held at that
moment stays held in the child forever.  Renewing locks in an at-fork hook is
not early enough for the core: the interpreter runs the after-fork hooks in
the order they were registered, and ``threading``'s own hook (registered when
``threading`` was imported, before fntrace) runs traced Python code in the
child -- its first call of a code object reaches the engine's discovery, which
takes these locks before fntrace's hook has run (CPython's test_threading
test_is_alive_after_fork hung that way).  So the lock notices the fork itself:
it remembers the pid it was made in, and a process with another pid gets a
new lock at its first use.  ``os.getpid`` costs one system call, paid only on
the paths that take these locks (registration and a code object's first
look), never per traced call.
"""

from __future__ import annotations

import os
import threading

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ForkSafeLock"]

# Serialises the replacement in a child whose first uses race (threads it has
# started since).  Only ever taken in a child, so never held at a fork by
# another thread of this process's parent.
_renewing = threading.Lock()


class ForkSafeLock:
    """``threading.Lock``/``RLock`` with the same ``with``/acquire/release use."""

    __slots__ = ("_lock", "_pid", "_reentrant")

    def __init__(self, reentrant: bool = False) -> None:
        self._reentrant = reentrant
        self._lock: Any = threading.RLock() if reentrant else threading.Lock()
        self._pid = os.getpid()

    def _current(self) -> Any:
        pid = os.getpid()
        if pid != self._pid:
            with _renewing:
                if pid != self._pid:  # another thread of the child may have renewed it
                    self._lock = threading.RLock() if self._reentrant else threading.Lock()
                    self._pid = pid
        return self._lock

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self._current().acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> ForkSafeLock:
        self._current().acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
