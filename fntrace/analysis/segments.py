"""Turn a recorded entry/exit stream into segments with self times and stacks.

``report`` and ``dump`` both need the same pairing of function_graph records:
which entry an exit closes, which segments are the direct children of which
(for self time), and the call stack a segment ran under (for flame graphs).
Doing it once here keeps the two outputs consistent with each other.

A *segment* is one entry/exit pair: a plain call is one segment; a generator or
coroutine has one segment per run between a start/resume/throw and the
yield/return/unwind that ends it.  Pairing is by the record's ``depth`` (an
exit carries the depth of its entry), per thread.  An exit whose entry is not
in the file (tracing_thresh drops entries; lost events) is still a segment
(``matched`` is False): its duration is known, so totals and self times stay
right; only its arguments and, where the callers' entries are missing too,
its upper stack are unknown.  Self time is the segment's duration minus the
durations of the segments that ended directly below it (depth + 1) while it
ran, clamped at zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

FINAL_EXITS = frozenset({"return", "unwind"})


class RecordLike(Protocol):
    """The fields of ``fntrace.formats.tracefile.Record`` this module reads."""

    @property
    def kind(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def tid(self) -> int: ...
    @property
    def ts(self) -> int: ...
    @property
    def func(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def depth(self) -> int: ...
    @property
    def event(self) -> str: ...
    @property
    def args(self) -> str | None: ...
    @property
    def value(self) -> str | None: ...
    @property
    def duration(self) -> int | None: ...
    @property
    def text(self) -> str | None: ...
    @property
    def src_file(self) -> str | None: ...
    @property
    def src_line(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Segment:
    """One run of a function between an entry and the exit that closes it."""

    pid: int
    tid: int
    func: str
    depth: int
    start: int          # ns, the entry's timestamp (exit ts - duration if unmatched)
    duration: int       # ns, inclusive
    self_ns: int        # ns, duration minus direct children's durations
    entry_event: str    # start/resume/throw, '' when the entry is not in the file
    exit_event: str     # return/yield/unwind
    args: str | None
    value: str | None
    stack: tuple[str, ...]  # known callers, outermost first, then func
    matched: bool

    @property
    def end(self) -> int:
        return self.start + self.duration


@dataclass(frozen=True, slots=True)
class Unfinished:
    """An entry still open when the records end (program killed, file truncated)."""

    pid: int
    tid: int
    func: str
    depth: int
    start: int
    entry_event: str
    args: str | None
    stack: tuple[str, ...]


@dataclass
class _Open:
    func: str
    ts: int
    event: str
    args: str | None


@dataclass
class _Thread:
    """A thread's open entries and children's time, each by depth.  Both dicts
    are in ascending depth order at all times: a depth is only ever set after
    every deeper one is deleted (an entry drops the frames at and below it, an
    exit's time is added after the deeper children are cleared), so the
    deepest are at the end and the stack is read in order without sorting."""

    frames: dict[int, _Open] = field(default_factory=dict)
    children: dict[int, int] = field(default_factory=dict)  # depth -> ns ended there

    def stack_above(self, depth: int) -> tuple[str, ...]:
        out = []
        for d, op in self.frames.items():
            if d >= depth:
                break
            out.append(op.func)
        return tuple(out)

    def drop_from(self, depth: int) -> None:
        _drop_from(self.frames, depth)


def _drop_from(table: dict[int, Any], depth: int) -> None:
    """Delete the depths >= ``depth`` of a table in ascending depth order."""
    while table:
        last = next(reversed(table))
        if last < depth:
            return
        del table[last]


def walk(records: Iterable[RecordLike], entries: bool = False,
         ) -> Iterator[Segment | Unfinished | RecordLike]:
    """Yield a Segment per exit, other records unchanged, then open entries.

    Entry records are consumed (they are reported through their segment)
    unless ``entries`` is true (a streaming writer wants them when they
    happen); an entry superseded by another at its depth before its exit came
    is dropped, its exit having been lost.
    """
    threads: dict[tuple[int, int], _Thread] = {}
    for rec in records:
        kind = rec.kind
        if kind == "entry":
            th = threads.setdefault((rec.pid, rec.tid), _Thread())
            d = rec.depth
            th.drop_from(d)
            th.frames[d] = _Open(rec.func, rec.ts, rec.event, rec.args)
            _clear_children(th, d + 1)
            if entries:
                yield rec
        elif kind == "exit":
            th = threads.setdefault((rec.pid, rec.tid), _Thread())
            d = rec.depth
            opened = th.frames.get(d)
            matched = opened is not None and opened.func == rec.func
            stack = (*th.stack_above(d), rec.func)
            if rec.duration is not None:
                duration = rec.duration
            elif matched and opened is not None:
                duration = rec.ts - opened.ts
            else:
                duration = 0
            duration = max(duration, 0)
            below = th.children.get(d + 1, 0)
            _clear_children(th, d + 1)
            th.children[d] = th.children.get(d, 0) + duration
            if matched:
                th.drop_from(d)
            yield Segment(
                pid=rec.pid, tid=rec.tid, func=rec.func, depth=d,
                start=rec.ts - duration, duration=duration,
                self_ns=max(duration - below, 0),
                entry_event=opened.event if matched and opened is not None else "",
                exit_event=rec.event,
                args=opened.args if matched and opened is not None else None,
                value=rec.value, stack=stack, matched=matched)
        else:
            yield rec
    for (pid, tid), th in threads.items():
        for d in sorted(th.frames):
            op = th.frames[d]
            yield Unfinished(pid=pid, tid=tid, func=op.func, depth=d, start=op.ts,
                             entry_event=op.event, args=op.args,
                             stack=(*th.stack_above(d), op.func))


def _clear_children(th: _Thread, depth: int) -> None:
    _drop_from(th.children, depth)
