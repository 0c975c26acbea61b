"""The shadow stack: calls whose exit has not been seen yet (the kernel's
function-graph return stack, ``ret_stack``).

Every part of fntrace that pairs an exit with its entry keeps one per thread:
the engine (an entry's FtraceRegs, so that ``ret`` reaches exactly the ops
that saw the entry), function_graph (entry time, depth, graph-filter state),
the stack tracer (depth) and the profiler (start time, children's time).  Each
pushes its own per-call data; they share this type and its one unwinding rule.

Unwinding.  An exit normally pairs with the newest entry.  When it does not,
the entries above the exit's own were calls whose exits never came: their
code stopped being a site while they ran (an ops unregistered, a filter
narrowed), or the exit was lost (an event dropped at the recursion limit).
Those entries are dropped with it, so a missed exit never shifts the pairing
of the calls below.  An exit whose entry is not on the stack at all (the call
began before tracing did) pairs with nothing and leaves the stack as it is.

A frame is matched by identity (``is``), never by equality: a frame is alive
as long as its entry holds it, so two live entries never share a key.  Every
exit event of a frame (return, yield, unwind) pops; every entry event (start,
resume, throw) pushes, so a generator is one segment per resumption.

The C hot path (fntrace/csrc/) keeps the same rule in its own stacks
(``GraphStack``, ``ProfThread``), keyed by interpreter frame address.
"""

from __future__ import annotations

from operator import attrgetter, itemgetter

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, TypeVar

__all__ = ["FrameStack", "ShadowStack"]

if TYPE_CHECKING:
    E = TypeVar("E")
else:
    E = object  # list[object] at run time: the element type matters to the type checker only


class ShadowStack(list[E]):
    """A per-thread stack of entries keyed by frame (see the module docstring).

    Entries are whatever the owner pushes; ``key_of(entry)`` is its frame key,
    by default the entry's first item (tuples and lists of per-call data).
    Being a list, the hot path pushes with ``append`` and peeks with ``[-1]``
    at C speed; only the pairing of an exit goes through :meth:`pop_to`.
    """

    __slots__ = ()
    # A callable (entry -> frame key), typed Any: read through the instance, a
    # Callable class attribute would be taken for a method by the type checker.
    key_of: ClassVar[Any] = itemgetter(0)

    def pop_to(self, key: object) -> E | None:
        """The newest entry of ``key``, removed with every entry above it (calls
        whose exits never came); None, leaving the stack unchanged, when no
        entry has that key."""
        if not self:
            return None
        key_of = self.key_of
        entry = self.pop()
        if key_of(entry) is key:
            return entry
        self.append(entry)
        for i in range(len(self) - 2, -1, -1):
            entry = self[i]
            if key_of(entry) is key:
                del self[i:]
                return entry
        return None


class FrameStack(ShadowStack[E]):
    """A shadow stack of objects carrying their frame as ``.frame`` (FtraceRegs)."""

    __slots__ = ()
    key_of: ClassVar[Any] = attrgetter("frame")
