"""The live instances: what writes for every instance at once reaches.

A trace_marker written for all (``fntrace.marker``) and an injected failure
(fntrace/tracing/inject.py) go into every live instance.  The registry lives
here, below instance.py, so that the features instance.py registers never need
to import it (no import cycle).  Weak references: an instance nobody holds is
gone even if it was never closed.
"""

from __future__ import annotations

import weakref

TYPE_CHECKING = False

if TYPE_CHECKING:
    from fntrace.tracing.instance import Instance

__all__ = ["add", "discard", "instances"]

_live: weakref.WeakValueDictionary[int, Instance] = weakref.WeakValueDictionary()


def add(inst: Instance) -> None:
    _live[inst.id] = inst


def discard(inst: Instance) -> None:
    _live.pop(inst.id, None)


def instances() -> list[Instance]:
    """Every live instance."""
    return list(_live.values())
