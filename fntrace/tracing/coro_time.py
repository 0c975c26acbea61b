"""Running versus waiting: a coroutine call's wall time and the part of it it ran.

A generator's or coroutine's call is several function_graph segments: it runs
from its start (or a resume) to a yield, waits, runs again, until it returns or
unwinds.  Its running time is the sum of its segments' durations; its wall
time runs from its first segment's entry to its last segment's exit; the
difference is the time it waited (suspended at an ``await``).

Segments of one call are told apart from other calls' by where they run: the
thread, the asyncio task (the task notes, fntrace/tracing/tasks.py), the
depth and the function.  A task resumes its whole chain of awaiting
coroutines at the same depths on every step, so within a task the key is
exact; without task notes, two tasks running the same coroutine at the same
depth on one thread could not be told apart, so the readers only use this
where the trace has task notes.  A call that never suspended (one segment) is
no different from a plain call: function_graph shows no split for it.
"""

from __future__ import annotations

from fntrace.core.flags import Event

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CoroutineClock", "split_text", "time_text"]

_START = Event.START
_FINAL = frozenset({Event.RETURN, Event.UNWIND})
#: Calls followed at once per reader: a bound, so a trace of calls that never
#: end (lost exits) costs no unbounded memory; past it the oldest is dropped.
MAX_OPEN = 100_000


class CoroutineClock:
    """The open coroutine calls of a stream of segments: start, segments, time run."""

    def __init__(self) -> None:
        # key -> [first entry's ts, ns run so far, segments so far]
        self.open: dict[tuple[Any, ...], list[int]] = {}

    def entry(self, key: tuple[Any, ...], event: str, ts: int) -> None:
        """A segment starts (``event`` start/resume/throw) at ``ts``: a start
        opens a call (a resume of a call whose start the trace lacks stays
        unknown: its wall time is not in the trace)."""
        if event == _START:
            if len(self.open) >= MAX_OPEN:
                del self.open[next(iter(self.open))]
            self.open[key] = [ts, 0, 0]

    def exit(self, key: tuple[Any, ...], event: str, ts: int, duration: int,
             ) -> tuple[int, int, int] | None:
        """A segment ends; at the call's end (return/unwind), (wall ns, run ns,
        segments); else None."""
        state = self.open.get(key)
        if state is None:
            return None
        state[1] += max(duration, 0)
        state[2] += 1
        if event not in _FINAL:
            return None
        del self.open[key]
        return max(ts - state[0], state[1]), state[1], state[2]


def time_text(ns: int) -> str:
    """A duration in its natural unit with 3 significant digits or more: 812 ns,
    4.20 us, 12.4 ms, 1.50 s."""
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.2f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    return f"{ns} ns"


def split_text(wall: int, run: int) -> str:
    """``12.4 ms (run 1.10 ms)``: a coroutine call's wall time and its running time."""
    return f"{time_text(wall)} (run {time_text(run)})"
