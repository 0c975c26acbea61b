"""``fntrace dump --chrome`` for a trace with asyncio task notes: a track per task.

One thread's event loop interleaves its tasks' steps; on the thread's own
track their calls would look nested in each other.  Here each record made
while a task ran (the task notes, fntrace/tracing/tasks.py) moves to a track
of its own: the same pid, a synthetic tid per task (``TASK_TID_BASE`` + the
task's number, above any thread id Linux gives), named ``name-N (thread-tid)``
after the task and the thread that ran it.  Records made outside any task stay
on their thread's track.  A flow arrow goes from the creating call (where the
``new`` note was written, on the creator's track) to the task's first run.
A task whose first step ran before it was noted as new (an eager task, 3.12+)
gets no arrow: its creation is not before its first run in the trace.

A file without task notes is written exactly as :func:`dump.write_chrome` writes
it: this module adds nothing then.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from fntrace.analysis.segments import RecordLike
from fntrace.tracing.tasks import TaskTable, parse_note

__all__ = ["TASK_TID_BASE", "write_chrome_tasks"]

#: Task tracks' tids: this plus the task's number (Linux thread ids stay below 2**22).
TASK_TID_BASE = 1 << 31


class _Tracks:
    """The record stream with each task's records on the task's track."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer
        self.table_of: dict[int, TaskTable] = {}  # pid -> its tasks (numbers are per process)
        self.home: dict[tuple[int, int], int] = {}  # (pid, task) -> the thread that ran it
        self.created: dict[tuple[int, int], tuple[int, int]] = {}  # -> (creator's track, ns)
        # (pid, task, creator's track, created ns, first run ns)
        self.flows: list[tuple[int, int, int, int, int]] = []

    def tid(self, n: int) -> int:
        return TASK_TID_BASE + n

    def records(self, records: Iterable[RecordLike]) -> Iterator[RecordLike]:
        for rec in records:
            pid, thread = rec.pid, (rec.pid, rec.tid)
            table = self.table_of.setdefault(pid, TaskTable())
            if rec.kind == "task":
                before = table.running(thread)
                table.note(thread, rec.text or "")
                self.noted(rec, table, before)
            else:
                n = table.running(thread)
                if n:
                    self.place(pid, n, rec.tid)
                    rec = dataclasses.replace(rec, tid=self.tid(n))  # type: ignore[type-var]
            yield rec  # a note too: the writer writes none, but takes its time as t0

    def place(self, pid: int, n: int, tid: int) -> None:
        """Task n of pid runs on thread tid: its track exists from now."""
        if (pid, n) not in self.home:
            self.home[(pid, n)] = tid
            self.writer.named.add((pid, self.tid(n)))  # named here, at the end

    def noted(self, rec: RecordLike, table: TaskTable, before: int) -> None:
        pid = rec.pid
        verb, value = parse_note(rec.text or "")
        if verb == "new" and type(value.get("creator")) is int:
            key = (pid, value["task"])
            if key not in self.created and key not in self.home:  # not yet run (eager)
                self.created[key] = (self.tid(before) if before else rec.tid, rec.ts)
        elif verb == "run" and value:
            key = (pid, value)
            if key in self.created and key not in self.home:
                track, ts = self.created.pop(key)
                self.flows.append((pid, value, track, ts, rec.ts))
                self.place(pid, value, rec.tid)  # the arrow's end: a track

    def tail(self) -> Iterator[dict[str, Any]]:
        """The task tracks' names and the creation arrows (once the stream has
        ended: a task named after its first step has its name by then)."""
        def us(ns: int) -> float:
            return max(ns - self.writer.t0, 0) / 1000

        for (pid, n), tid in sorted(self.home.items()):
            thread = self.writer.threads.get((pid, tid), "thread")
            yield {"name": "thread_name", "ph": "M", "pid": pid, "tid": self.tid(n),
                   "args": {"name": f"{self.table_of[pid].label(n)} ({thread}-{tid})"}}
        for pid, n, track, created, ran in self.flows:
            flow = pid * 1_000_000 + n
            yield {"name": "create", "cat": "task", "ph": "s", "id": flow, "pid": pid,
                   "tid": track, "ts": us(created)}
            yield {"name": "create", "cat": "task", "ph": "f", "bp": "e", "id": flow,
                   "pid": pid, "tid": self.tid(n), "ts": us(ran)}


def write_chrome_tasks(writer: Any, records: Iterable[RecordLike], out: IO[str]) -> int:
    """:func:`dump.write_chrome` with ``writer`` (a ``dump.ChromeWriter``, given by
    the caller: dump.py imports this module), each asyncio task on its own track;
    the number of events written."""
    tracks = _Tracks(writer)
    out.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
    n = 0
    for ev in itertools.chain(writer.events(tracks.records(records)), tracks.tail()):
        out.write((",\n" if n else "") + json.dumps(ev, ensure_ascii=True))
        n += 1
    out.write("\n]}\n")
    return n
