"""The per-function report's Run and Wait columns: coroutine calls' wall time
split into the time they ran and the time they waited.

A coroutine (or generator) call that suspended is several segments; the
function_graph text ends it with ``12.4 ms (run 1.10 ms)``
(fntrace/tracing/graph_text.py).  ``fntrace report`` sums exactly those
figures per function: Run is the sum of those calls' running time (their
segments), Wait the sum of their wall time minus it.  The calls are told apart
as function_graph tells them (fntrace/tracing/coro_time.py: by thread, asyncio
task, depth and function), so only a trace with task notes has the columns; a
call that never suspended, or whose start or end is not in the trace, adds
nothing (function_graph shows no split for it either).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fntrace.analysis.segments import RecordLike
from fntrace.tracing.coro_time import CoroutineClock
from fntrace.tracing.tasks import TaskTable

__all__ = ["Split", "coroutine_splits"]

#: (pid, tid), or None for all threads merged (the report's table keys).
ThreadKey = tuple[int, int] | None


@dataclass
class Split:
    """One function's coroutine calls that suspended: how many, time run, time waited."""

    calls: int = 0
    run: int = 0
    wait: int = 0


def coroutine_splits(records: Iterable[RecordLike], per_thread: bool = False,
                     ) -> dict[ThreadKey, dict[str, Split]]:
    """Each function's Split (per thread with ``per_thread``), from records in
    time order per thread; empty when the records have no task notes."""
    table = TaskTable()
    clock = CoroutineClock()
    out: dict[ThreadKey, dict[str, Split]] = {}
    for rec in records:
        kind = rec.kind
        if kind == "task":
            table.note((rec.pid, rec.tid), rec.text or "")
            continue
        if kind not in ("entry", "exit") or not table.tasks:
            continue  # before the first note, function_graph splits nothing either
        key = (rec.pid, rec.tid, table.running((rec.pid, rec.tid)), rec.depth, rec.func)
        if kind == "entry":
            clock.entry(key, rec.event, rec.ts)
            continue
        done = clock.exit(key, rec.event, rec.ts, rec.duration or 0)
        if done is None or done[2] < 2:
            continue
        thread: ThreadKey = (rec.pid, rec.tid) if per_thread else None
        split = out.setdefault(thread, {}).get(rec.func)
        if split is None:
            split = out[thread][rec.func] = Split()
        split.calls += 1
        split.run += done[1]
        split.wait += done[0] - done[1]
    return out
