"""``fntrace report --by-task``: one row per asyncio task, its time run and waited.

Each task's row: its label (name-N), end state, creator, the first function
it ran (its coroutine, when traced), the calls it made, and that coroutine
call's wall time split into the time it ran and the time it waited (suspended
at an ``await``), as fntrace/tracing/coro_time.py computes them from the
segments.  A task whose coroutine did not end in the trace shows ``-`` there.
Needs the task notes (``fntrace record --tasks``): a file without them says so.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fntrace.analysis.segments import RecordLike
from fntrace.core.flags import Event
from fntrace.tracing.coro_time import CoroutineClock, time_text
from fntrace.tracing.tasks import TaskTable

__all__ = ["TaskRow", "by_task", "format_tasks", "task_rows"]

_START = Event.START


@dataclass
class TaskRow:
    number: int
    label: str
    state: str         # done, cancelled, raised E; "running" when the trace ends first
    creator: str       # the creating task's label ("-": none)
    func: str          # the task's first traced function ("" before any)
    calls: int = 0     # calls started in the task
    wall: int | None = None  # its first function's call: wall ns, run ns (None: not ended)
    run: int | None = None

    @property
    def wait(self) -> int | None:
        return None if self.wall is None or self.run is None else self.wall - self.run


def task_rows(records: Iterable[RecordLike]) -> list[TaskRow]:
    """The tasks of a stream of records (one process's or several, told apart by pid)."""
    table = TaskTable()
    clock = CoroutineClock()
    rows: dict[tuple[int, int], TaskRow] = {}
    first: dict[tuple[int, int], tuple[Any, ...]] = {}  # task -> its first call's key
    for rec in records:
        kind = rec.kind
        if kind == "task":
            table.note((rec.pid, rec.tid), rec.text or "")
            continue
        if kind not in ("entry", "exit"):
            continue
        n = table.running((rec.pid, rec.tid))
        if not n:
            continue
        task = (rec.pid, n)
        key = (rec.pid, rec.tid, n, rec.depth, rec.func)
        if kind == "entry":
            clock.entry(key, rec.event, rec.ts)
            if rec.event != _START:
                continue
            row = rows.get(task)
            if row is None:
                row = rows[task] = TaskRow(n, "", "", "", rec.func)
                first[task] = key
            row.calls += 1
        else:
            done = clock.exit(key, rec.event, rec.ts, rec.duration or 0)
            if done is not None and first.get(task) == key and task in rows:
                rows[task].wall, rows[task].run = done[0], done[1]
    out: list[TaskRow] = []
    for (_, n), row in sorted(rows.items()):
        info = table.info(n)
        row.label = info.label
        row.state = info.state or "running"
        row.creator = table.label(info.creator) if info.creator else "-"
        out.append(row)
    for n in sorted(table.tasks):  # tasks that made no traced call
        if not any(key[1] == n for key in rows):
            info = table.info(n)
            out.append(TaskRow(n, info.label, info.state or "running",
                               table.label(info.creator) if info.creator else "-", ""))
    return out


def format_tasks(rows: list[TaskRow]) -> list[str]:
    """The table's lines (columns fitted to their contents)."""
    def t(ns: int | None) -> str:
        return "-" if ns is None else time_text(ns)

    header = ["TASK", "STATE", "CREATOR", "CALLS", "WALL", "RUN", "WAIT", "FUNCTION"]
    body = [[r.label, r.state, r.creator, str(r.calls), t(r.wall), t(r.run), t(r.wait),
             r.func] for r in rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    right = {3, 4, 5, 6}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(header), *(line(r) for r in body)]


def by_task(file: str) -> int:
    """What ``fntrace report --by-task`` prints; the exit status."""
    from fntrace.analysis.reading import open_files, progress, quiet_stdout
    from fntrace.formats.tracefile import TraceFileError, exit_status, merged_records

    try:
        files = open_files(file)
        rows = task_rows(progress(merged_records(files), "fntrace report"))
    except (OSError, TraceFileError) as exc:
        print(f"fntrace report: {exc}", file=sys.stderr)
        return 1
    if not rows:
        print(f"fntrace report: {file} has no asyncio task notes "
              "(record with --tasks)", file=sys.stderr)
        return 1
    try:
        sys.stdout.write("".join(line + "\n" for line in format_tasks(rows)))
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
    return exit_status(files)
