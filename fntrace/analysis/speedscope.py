"""A recording as a speedscope file: one evented profile per thread (per process too).

speedscope (the viewer ``fntrace view`` ships) reads its own JSON format
(``file-format-schema.json`` in its npm package).  An *evented* profile is a
thread's open/close frame events with their times: speedscope's time-order view
then draws the function_graph timeline, and its left-heavy and sandwich views
sum it into a profile.  So every thread of every process recorded becomes one
evented profile, named ``thread-tid · program (pid N)``, its events the
balanced begin/end pairs of ``timeline.balanced`` (a generator's runs are
separate frames; an exit without its entry, an entry without its exit are
closed as that module says).  Times are ns from the trace's first record.

A function-tracer recording has calls without durations: each thread then gets
a *sampled* profile instead, one sample ``caller;callee`` weighing one per call
(unit ``none``), which the left-heavy view shows as call counts.  Markers have
no place in the format and are left out.

With asyncio task notes, each task's records are a profile of their own
(task_tracks.py), named ``name-N (thread-tid) · program (pid N)`` after the
task and the thread that ran it, after the threads' profiles; the thread's
profile keeps what ran outside any task.  The format has no arrows: the
creation arrows are the Chrome and Perfetto exports'.

Frames are ``{"name": "module:qualname", "file": ..., "line": ...}``, shared by
all profiles; ``file`` and ``line`` (the function's source file and first
line, from ``locations.Locations``) where the trace file keeps them.

The file is written streaming: each thread's events go to a spool file as they
come and are copied into the document at the end, so memory holds the frame
table and one small buffer per thread, whatever the trace's length.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from fntrace.analysis.locations import Locations
from fntrace.analysis.segments import RecordLike
from fntrace.analysis.task_tracks import TaskTracks
from fntrace.analysis.timeline import Begin, End, balanced

__all__ = ["SCHEMA_URL", "Counts", "write_speedscope"]

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
_FLUSH = 4096  # events buffered per thread before its spool file is appended to


@dataclass
class Counts:
    """What was written: profiles, open and close events, frames."""

    profiles: int = 0
    opens: int = 0
    closes: int = 0
    frames: int = 0
    tasks: int = 0  # of the profiles, those of asyncio tasks


@dataclass
class _Profile:
    pid: int
    tid: int
    path: str
    buffer: list[str] = field(default_factory=list)
    events: int = 0
    first: int | None = None
    last: int = 0
    calls: dict[tuple[int, ...], int] = field(default_factory=dict)

    def add(self, text: str, at: int) -> None:
        if self.first is None:
            self.first = at
        self.last = at
        self.buffer.append(text)
        self.events += 1
        if len(self.buffer) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(("," if self.events > len(self.buffer) else "") + ",".join(self.buffer))
            self.buffer.clear()


class _Frames:
    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.locations = Locations()

    def __call__(self, func: str) -> int:
        i = self.index.get(func)
        if i is None:
            i = self.index[func] = len(self.index)
        return i

    def table(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for func in self.index:
            frame: dict[str, Any] = {"name": func}
            where = self.locations.get(func)
            if where is not None:
                frame["file"] = where[0]
                if where[1]:
                    frame["line"] = where[1]
            out.append(frame)
        return out


def write_speedscope(records: Iterable[RecordLike], out: IO[str], processes: dict[int, str],
                     threads: dict[tuple[int, int], str], name: str = "fntrace",
                     exporter: str = "fntrace") -> Counts:
    """Write the speedscope document for ``records`` (in time order) to ``out``."""
    frames = _Frames()
    profiles: dict[tuple[int, int], _Profile] = {}
    counts = Counts()
    tracks = TaskTracks()
    t0: int | None = None
    with tempfile.TemporaryDirectory(prefix="fntrace-speedscope-") as spool:
        def profile(pid: int, tid: int) -> _Profile:
            key = (pid, tid)
            p = profiles.get(key)
            if p is None:
                p = profiles[key] = _Profile(pid, tid, os.path.join(spool, f"{len(profiles)}"))
            return p

        for item in balanced(frames.locations.watch(tracks.records(records))):
            if t0 is None:
                t0 = item.ts
            if isinstance(item, Begin):
                at = item.ts - t0
                profile(item.pid, item.tid).add(
                    f'{{"type":"O","frame":{frames(item.func)},"at":{at}}}', at)
                counts.opens += 1
            elif isinstance(item, End):
                at = item.ts - t0
                profile(item.pid, item.tid).add(
                    f'{{"type":"C","frame":{frames(item.func)},"at":{at}}}', at)
                counts.closes += 1
            elif item.kind == "call":
                stack = ((frames(item.parent),) if item.parent else ()) + (frames(item.func),)
                calls = profile(item.pid, item.tid).calls
                calls[stack] = calls.get(stack, 0) + 1
        ordered = sorted(profiles.values(), key=lambda p: (p.pid, p.tid))
        for p in ordered:
            p.flush()
        busiest = max(range(len(ordered)), key=lambda i: ordered[i].events + len(
            ordered[i].calls), default=0)
        out.write('{"$schema":' + json.dumps(SCHEMA_URL) + ',"exporter":' + json.dumps(exporter)
                  + ',"name":' + json.dumps(name) + f',"activeProfileIndex":{busiest}'
                  + ',"profiles":[')
        for i, p in enumerate(ordered):
            task = tracks.task_of(p.tid)
            if task is None:
                label = f"{threads.get((p.pid, p.tid), 'thread')}-{p.tid}"
            else:
                label = tracks.label(p.pid, task, threads)
                counts.tasks += 1
            pname = json.dumps(f"{label} \u00b7 {processes.get(p.pid, f'pid {p.pid}')}")
            out.write("," if i else "")
            if p.events or not p.calls:
                first = p.first or 0
                out.write(f'{{"type":"evented","name":{pname},"unit":"nanoseconds",'
                          f'"startValue":{first},"endValue":{max(p.last, first)},"events":[')
                if p.events:
                    with open(p.path, encoding="utf-8") as f:
                        while block := f.read(1 << 20):
                            out.write(block)
                out.write("]}")
            else:
                stacks = sorted(p.calls)
                weights = [p.calls[s] for s in stacks]
                out.write(f'{{"type":"sampled","name":{pname},"unit":"none",'
                          f'"startValue":0,"endValue":{sum(weights)},'
                          f'"samples":{json.dumps([list(s) for s in stacks])},'
                          f'"weights":{json.dumps(weights)}}}')
            counts.profiles += 1
        table = frames.table()
        out.write('],"shared":{"frames":' + json.dumps(table, ensure_ascii=True) + "}}\n")
        counts.frames = len(table)
    return counts
