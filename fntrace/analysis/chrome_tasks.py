"""``fntrace dump --chrome`` for a trace with asyncio task notes: a track per task.

Each record made while a task ran moves to the task's own track
(task_tracks.py): the same pid, a synthetic tid per task, named ``name-N
(thread-tid)`` after the task and the thread that ran it.  Records made
outside any task stay on their thread's track.  A flow arrow goes from the creating call (where the
``new`` note was written, on the creator's track) to the task's first call (the
next slice on its track: no ``bp``, since no slice encloses the ``run`` note), and
one from a task's end to the next step of each task its end woke (``wake``
notes: an ``await`` of the task, or of gather over it).  The format binds a
flow's start to the slice that encloses it, so the wake arrow starts 1 ns
before the end of the ending task's last call (its ``end`` note comes after
that call ended; at the note itself when the task made no call), and ends
bound to the next slice on the woken task's track (no ``bp``).
A task whose first step ran before it was noted as new (an eager task, 3.12+)
gets no arrow: its creation is not before its first run in the trace.

A file without task notes is written exactly as :func:`dump.write_chrome` writes
it: this module adds nothing then.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from fntrace.analysis.segments import RecordLike
from fntrace.analysis.task_tracks import TASK_TID_BASE, TaskTracks

__all__ = ["TASK_TID_BASE", "WAKE_ID_BASE", "write_chrome_tasks"]

#: The wake arrows' flow ids: this plus the arrow's index (JSON numbers stay
#: exact below 2**53; the creation arrows' ids, pid * 10**6 + task, stay below).
WAKE_ID_BASE = 1 << 50


def _tail(writer: Any, tracks: TaskTracks) -> Iterator[dict[str, Any]]:
    """The task tracks' names, the creation and the wake arrows (once the
    stream has ended: a task named after its first step has its name by then)."""
    def us(ns: int) -> float:
        return max(ns - writer.t0, 0) / 1000

    for (pid, n) in sorted(tracks.home):
        yield {"name": "thread_name", "ph": "M", "pid": pid, "tid": tracks.tid(n),
               "args": {"name": tracks.label(pid, n, writer.threads)}}
    for flow in tracks.flows:
        fid = flow.pid * 1_000_000 + flow.task
        yield {"name": "create", "cat": "task", "ph": "s", "id": fid, "pid": flow.pid,
               "tid": flow.source, "ts": us(flow.created)}
        # No "bp": the end binds to the next slice begun on the task's track (its
        # first call); the run note comes before that call, so no slice encloses it.
        yield {"name": "create", "cat": "task", "ph": "f", "id": fid,
               "pid": flow.pid, "tid": tracks.tid(flow.task), "ts": us(flow.ran)}
    for k, wake in enumerate(tracks.wakes):
        fid = WAKE_ID_BASE + k  # apart from the creation arrows' pid * 10**6 + task
        start = wake.ended if wake.last is None else wake.last - 1  # inside that call
        yield {"name": "wake", "cat": "task", "ph": "s", "id": fid, "pid": wake.pid,
               "tid": tracks.tid(wake.by), "ts": us(start)}
        yield {"name": "wake", "cat": "task", "ph": "f", "id": fid, "pid": wake.pid,
               "tid": tracks.tid(wake.task), "ts": us(wake.woke)}


def write_chrome_tasks(writer: Any, records: Iterable[RecordLike], out: IO[str]) -> int:
    """:func:`dump.write_chrome` with ``writer`` (a ``dump.ChromeWriter``, given by
    the caller: dump.py imports this module), each asyncio task on its own track;
    the number of events written."""
    # Named at the end (_tail), not as the writer names threads; a note is
    # passed on too: the writer writes none, but takes its time as t0.
    tracks = TaskTracks(on_track=lambda pid, tid: writer.named.add((pid, tid)))
    out.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
    n = 0
    for ev in itertools.chain(writer.events(tracks.records(records)), _tail(writer, tracks)):
        out.write((",\n" if n else "") + json.dumps(ev, ensure_ascii=True))
        n += 1
    out.write("\n]}\n")
    return n
