"""Locks a forked child can take.

``os.fork`` copies only the thread that called it: a lock another thread held
at that moment stays held forever in the child, and the child hangs the first
time it takes it (the at-fork hooks, the patched ``os._exit`` and the
recorder's finish all run fntrace code in the child).  Every object of fntrace
that owns a lock registers here how to renew it; the child renews them all
before any other fntrace code runs in it.  Renewing means *replacing* the lock
(with the public constructors), never releasing a lock another thread owned.

The state those locks guarded may be half-updated (the thread that held one
stopped mid-way); the owners keep that safe by what they renew: the recorder
abandons or restarts its buffers and file, so nothing of the parent's
half-written state is used in the child.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = ["renew_in_child"]

# id(owner) -> (weak reference to it, how to renew its locks).  Weak: an owner
# that is gone needs nothing renewed and is not kept alive by this table.
_owners: dict[int, tuple[weakref.ref[Any], Callable[[Any], None]]] = {}


def renew_in_child(owner: T, renew: Callable[[T], None]) -> None:
    """Call ``renew(owner)`` in every forked child while ``owner`` lives.

    ``renew`` must not close over ``owner`` (that would keep it alive): it gets
    it as its argument.
    """
    key = id(owner)

    def gone(ref: weakref.ref[Any], key: int = key) -> None:
        entry = _owners.get(key)
        if entry is not None and entry[0] is ref:
            del _owners[key]

    _owners[key] = (weakref.ref(owner, gone), renew)


def _after_fork_in_child() -> None:
    for ref, renew in list(_owners.values()):
        owner = ref()
        if owner is not None:
            renew(owner)


os.register_at_fork(after_in_child=_after_fork_in_child)
