"""The 3.12+ fork warning, as the untraced program would (not) get it.

On 3.12+ ``os.fork`` warns "This process (pid=N) is multi-threaded, use of
fork() may lead to deadlocks in the child" (a DeprecationWarning) when the
process has more than one OS thread (Linux: ``/proc/self/stat``).  The
recorder's writer is an OS thread, so a program with a single thread of its
own would get the warning traced and not untraced (an error under ``-W
error``).  For such a fork, and only then, an ``ignore`` filter for exactly
that message sits first in ``warnings.filters``: taken out right after the
fork on 3.12 and in the child; on 3.13, which warns after the parent's at-fork
hooks, it stays until the next fork decides again (``warnings.filters`` then
shows one entry more than untraced; no other warning is affected).

The filter list is changed in place without bumping the warnings module's
filter version: an ``ignore`` leaves nothing in any ``__warningregistry__``, so
no cache has to be invalidated and the program's own "default"/"once" warnings
are not shown again because of it.
"""

from __future__ import annotations

import re
import sys
import warnings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["after_fork_in_child", "after_fork_in_parent", "before_fork"]

_MESSAGE = re.compile(r"This process \(pid=\d+\) is multi-threaded, use of fork\(\) may "
                      r"lead to deadlocks in the child\.")
_installed: list[Any] = []  # the filter tuple while it is in warnings.filters


def _os_threads() -> int:
    """This process's OS threads as CPython counts them for the warning; 0 if unknown."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[17])  # field 20, num_threads
    except (OSError, ValueError, IndexError):
        return 0


def before_fork(own_threads: int) -> None:
    """Hide the warning of the fork to come if only fntrace's ``own_threads`` would
    cause it; show it (as untraced) otherwise."""
    _remove()
    if sys.version_info < (3, 12) or own_threads <= 0:
        return
    if _os_threads() - own_threads != 1:
        return  # the program has threads of its own (or /proc says nothing): as untraced
    entry = ("ignore", _MESSAGE, DeprecationWarning, None, 0)
    filters: Any = warnings.filters  # a list (typeshed says Sequence)
    filters.insert(0, entry)
    _installed.append(entry)


def after_fork_in_parent() -> None:
    """3.12 warns before the at-fork hooks of the parent run: the filter goes now.
    3.13 warns after them: the filter stays until the next fork decides again
    (only a fork emits that message, so nothing else is hidden by it)."""
    if sys.version_info < (3, 13):
        _remove()


def after_fork_in_child() -> None:
    """The child does not warn: its filters are the program's at once."""
    _remove()


def _remove() -> None:
    while _installed:
        entry = _installed.pop()
        filters: Any = warnings.filters
        for i, item in enumerate(filters):
            if item is entry:
                del filters[i]
                break
