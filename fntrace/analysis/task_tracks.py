"""The records of a trace with asyncio task notes, each moved onto its task's track.

One thread's event loop interleaves its tasks' steps: on the thread's own
track their calls would look nested in each other.  Every timeline export
(Chrome JSON, Perfetto, speedscope) wants the same thing instead: each record
made while a task ran (the task notes, fntrace/tracing/tasks.py) on a track of
its own, the arrows from the call that created a task to its first run, and
those from a task's end to the step of the task its end woke.
This module does that once, as a filter of the record stream, so the exports
only name and draw what it gives them.

A task's track is a synthetic tid of its process, ``TASK_TID_BASE`` + the
task's number (above any thread id Linux gives).  Records made outside any
task keep their thread's tid.  A task whose first step ran before it was noted
as new (an eager task, 3.12+) gets no arrow: its creation is not before its
first run in the trace.  A ``wake`` note (tracing/tasks.py: the step of a task
resumed because a task it awaited, or each of gather's tasks, ended) gives an
arrow from each waking task's ``end`` note, on its track, to the woken task's
step; a waker whose end the stream does not hold (an older file, a ring that
overwrote it) gets none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from fntrace.analysis.segments import RecordLike
from fntrace.tracing.tasks import TaskTable, parse_note

__all__ = ["TASK_TID_BASE", "Flow", "TaskTracks", "Wake"]

#: Task tracks' tids: this plus the task's number (Linux thread ids stay below 2**22).
TASK_TID_BASE = 1 << 31


class Flow(NamedTuple):
    """A creation arrow: task ``task`` of ``pid``, made on track ``source`` at
    ``created`` (ns), first ran at ``ran`` (ns)."""

    pid: int
    task: int
    source: int
    created: int
    ran: int


class Wake(NamedTuple):
    """A wake arrow: task ``by`` of ``pid`` ended at ``ended`` (ns), on its
    track, and so task ``task``'s step begun at ``woke`` (ns) ran; ``last``:
    when ``by``'s last call on its track before then ended (ns), or None."""

    pid: int
    by: int
    task: int
    ended: int
    woke: int
    last: int | None = None


class TaskTracks:
    """The record stream with each task's records on the task's track.

    ``on_track(pid, tid)`` is called once per task track, when its first record
    (or its first run) comes; ``home`` says which thread ran each task, ``flows``
    the creation arrows, ``wakes`` the arrows from a task's end to the step it
    woke, ``label`` a task track's name (final once the stream
    has ended: a task named after its first step has its name by then)."""

    def __init__(self, on_track: Callable[[int, int], None] | None = None) -> None:
        self.on_track = on_track
        self.table_of: dict[int, TaskTable] = {}  # pid -> its tasks (numbers are per process)
        self.home: dict[tuple[int, int], int] = {}  # (pid, task) -> the thread that ran it
        self.created: dict[tuple[int, int], tuple[int, int]] = {}  # -> (creator's track, ns)
        self.flows: list[Flow] = []
        self.ended: dict[tuple[int, int], int] = {}  # (pid, task) -> its end note's ns
        self.last_exit: dict[tuple[int, int], int] = {}  # (pid, task) -> its last exit's ns
        self.wakes: list[Wake] = []
        self.notes = 0

    @staticmethod
    def tid(n: int) -> int:
        return TASK_TID_BASE + n

    @staticmethod
    def task_of(tid: int) -> int | None:
        """The task number of a task track's tid, None for a thread's."""
        return tid - TASK_TID_BASE if tid >= TASK_TID_BASE else None

    def label(self, pid: int, n: int, threads: dict[tuple[int, int], str]) -> str:
        """``name-N (thread-tid)``: the task and the thread that ran it."""
        tid = self.home.get((pid, n), 0)
        table = self.table_of.get(pid) or TaskTable()
        return f"{table.label(n)} ({threads.get((pid, tid), 'thread')}-{tid})"

    def records(self, records: Iterable[RecordLike]) -> Iterator[RecordLike]:
        """The records, those of a task on its track; the notes too, unchanged."""
        for rec in records:
            pid, thread = rec.pid, (rec.pid, rec.tid)
            table = self.table_of.get(pid)
            if table is None:
                table = self.table_of[pid] = TaskTable()
            if rec.kind == "task":
                self.notes += 1
                before = table.running(thread)
                table.note(thread, rec.text or "")
                self.noted(rec, before)
            else:
                n = table.running(thread)
                if n:
                    self.place(pid, n, rec.tid)
                    if rec.kind == "exit":
                        self.last_exit[(pid, n)] = rec.ts
                    rec = dataclasses.replace(rec, tid=self.tid(n))  # type: ignore[type-var]
            yield rec

    def place(self, pid: int, n: int, tid: int) -> None:
        """Task n of pid runs on thread tid: its track exists from now."""
        if (pid, n) not in self.home:
            self.home[(pid, n)] = tid
            if self.on_track is not None:
                self.on_track(pid, self.tid(n))

    def noted(self, rec: RecordLike, before: int) -> None:
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
                self.flows.append(Flow(pid, value, track, ts, rec.ts))
                self.place(pid, value, rec.tid)  # the arrow's end: a track
        elif verb == "end":
            self.ended.setdefault((pid, value["task"]), rec.ts)
        elif verb == "wake" and type(value.get("by")) is list:
            n = value["task"]
            for by in value["by"]:
                ended = self.ended.get((pid, by)) if type(by) is int else None
                if ended is not None and ended <= rec.ts:
                    self.place(pid, by, rec.tid)  # both ends: tracks
                    self.place(pid, n, rec.tid)
                    self.wakes.append(Wake(pid, by, n, ended, rec.ts,
                                           self.last_exit.get((pid, by))))
