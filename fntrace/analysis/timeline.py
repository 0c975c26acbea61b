"""A recording as begin/end pairs that always balance, per thread, in time order.

Timeline viewers (speedscope's evented profiles, Perfetto's track slices) refuse
or misdraw a stack that does not nest: an end whose begin is missing, a begin
never ended, a parent ending before its child.  A real recording has all three
in its corners: tracing_thresh keeps exits only, a lost event leaves an entry
without its exit, a killed program leaves entries open.  This module turns the
records into a stream in which, per thread, every ``Begin`` is followed by its
``End`` with properly nested pairs and timestamps that never go back, so that
each exporter writes what it reads and nothing more:

* an entry and the exit that closes it (same depth and function, as
  ``segments.walk`` pairs them) are a ``Begin`` at the entry's time and an
  ``End`` at the exit's, as they come (streaming: nothing is held);
* an exit whose entry is not in the file is a segment known from its duration,
  ``[exit ts - duration, exit ts]``; it is held until the frame that contains it
  ends (or, with no such frame, until the end of the trace), then its
  ``Begin``/``End`` are written with the other held segments nested by time.
  With tracing_thresh (no entries at all) a thread's segments are held until the
  end: memory then grows with the calls over the threshold, which the threshold
  keeps few.  A held segment is never written to begin before what its thread
  already wrote (possible only after lost events: its callee's entry kept, its
  own lost): it then begins there instead;
* an entry whose exit was lost (another entry came at its depth, or an exit
  closed a shallower frame) ends when that record came, ``End.why`` saying
  ``exit lost``;
* an entry still open when the records end ends at the last timestamp of the
  whole trace, innermost first, ``End.why`` saying ``unfinished``.

Markers, text and the function tracer's call records pass through unchanged
(they have no duration).  A generator's runs are separate pairs, as in the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from fntrace.analysis.segments import RecordLike

__all__ = ["Begin", "End", "balanced"]


class Begin(NamedTuple):
    pid: int
    tid: int
    ts: int
    func: str
    depth: int
    #: start/resume/throw; '' for a segment whose entry is not in the file.
    event: str
    args: str | None


class End(NamedTuple):
    pid: int
    tid: int
    ts: int
    func: str
    depth: int
    #: return/yield/unwind; '' when the exit is not in the file.
    event: str
    #: The return value, yielded value or exception (``event`` says which).
    value: str | None
    #: '' for a recorded exit; ``exit lost`` or ``unfinished`` (see the module doc).
    why: str


@dataclass
class _Held:
    start: int
    end: int
    depth: int
    func: str
    event: str
    value: str | None


@dataclass
class _Thread:
    pid: int
    tid: int
    open: list[Begin] = field(default_factory=list)
    held: list[_Held] = field(default_factory=list)
    last: int = 0  # the last timestamp written for this thread


def balanced(records: Iterable[RecordLike]) -> Iterator[Begin | End | RecordLike]:
    """Begin/End pairs (and the other records) from records in time order."""
    threads: dict[tuple[int, int], _Thread] = {}
    last_ts = 0
    for rec in records:
        kind = rec.kind
        ts = rec.ts
        if ts > last_ts:
            last_ts = ts
        if kind == "entry":
            th = threads.get((rec.pid, rec.tid))
            if th is None:
                th = threads[(rec.pid, rec.tid)] = _Thread(rec.pid, rec.tid)
            d = rec.depth
            while th.open and th.open[-1].depth >= d:
                yield from _close(th, th.open.pop(), ts, "", None, "exit lost")
            if th.held and th.open and th.held[0].depth == th.open[-1].depth + 1:
                # The held segments are the open frame's direct children: no later
                # record can come between them and it, so they need not wait.
                yield from _flush(th, ts, since=th.open[-1].ts)
            b = Begin(rec.pid, rec.tid, max(ts, th.last), rec.func, d, rec.event, rec.args)
            th.last = b.ts
            th.open.append(b)
            yield b
        elif kind == "exit":
            th = threads.get((rec.pid, rec.tid))
            if th is None:
                th = threads[(rec.pid, rec.tid)] = _Thread(rec.pid, rec.tid)
            d = rec.depth
            at = _find(th.open, d, rec.func)
            if at < 0:
                dur = max(rec.duration or 0, 0)
                th.held.append(_Held(ts - dur, ts, d, rec.func, rec.event, rec.value))
                continue
            while len(th.open) > at + 1:
                yield from _close(th, th.open.pop(), ts, "", None, "exit lost")
            yield from _close(th, th.open.pop(), ts, rec.event, rec.value, "")
        else:
            yield rec
    for th in threads.values():
        while th.open:
            yield from _close(th, th.open.pop(), last_ts, "", None, "unfinished")
        yield from _flush(th, last_ts)


def _find(stack: list[Begin], depth: int, func: str) -> int:
    """The index of the open frame an exit at ``depth`` closes, or -1."""
    for i in range(len(stack) - 1, -1, -1):
        b = stack[i]
        if b.depth == depth:
            return i if b.func == func else -1
        if b.depth < depth:
            return -1
    return -1


def _close(th: _Thread, b: Begin, ts: int, event: str, value: str | None,
           why: str) -> Iterator[Begin | End]:
    """End ``b`` at ``ts``, after the held segments that ran inside it."""
    if th.held:
        yield from _flush(th, ts, since=b.ts)
    ts = max(ts, th.last)
    th.last = ts
    yield End(th.pid, th.tid, ts, b.func, b.depth, event, value, why)


def _flush(th: _Thread, limit: int, since: int | None = None) -> Iterator[Begin | End]:
    """Write the held segments (those starting at or after ``since``), nested by time."""
    if since is None:
        take, keep = th.held, []
    else:
        take = [h for h in th.held if h.start >= since]
        keep = [h for h in th.held if h.start < since]
    th.held = keep
    take.sort(key=lambda h: (h.start, h.depth, -h.end))
    stack: list[tuple[_Held, int]] = []  # (segment, its clamped end)
    for h in take:
        while stack and stack[-1][1] <= max(h.start, th.last):
            yield from _end_held(th, *stack.pop())
        start = max(h.start, th.last)
        end = min(h.end, limit, stack[-1][1] if stack else limit)
        end = max(end, start)
        th.last = start
        yield Begin(th.pid, th.tid, start, h.func, h.depth, "", None)
        stack.append((h, end))
    while stack:
        yield from _end_held(th, *stack.pop())


def _end_held(th: _Thread, h: _Held, end: int) -> Iterator[End]:
    end = max(end, th.last)
    th.last = end
    yield End(th.pid, th.tid, end, h.func, h.depth, h.event, h.value, "")
