"""``dump --chrome`` with asyncio task notes (fntrace/analysis/chrome_tasks.py):
each task its own track under its thread, an arrow from the creating call to the
task's first run; a file without notes written exactly as before."""

from __future__ import annotations

import io
import json
from typing import Any

from test_coro_time import records

from fntrace.analysis.chrome_tasks import TASK_TID_BASE, write_chrome_tasks
from fntrace.analysis.dump import ChromeWriter, write_chrome
from fntrace.formats.tracefile import Record

PROCESSES = {1: "app"}
THREADS = {(1, 7): "MainThread"}


def chrome(recs: list[Record]) -> list[dict[str, Any]]:
    out = io.StringIO()
    n = write_chrome_tasks(ChromeWriter(PROCESSES, THREADS, 0), recs, out)
    events: list[dict[str, Any]] = json.loads(out.getvalue())["traceEvents"]
    assert len(events) == n
    return events


def test_each_task_on_its_own_track_with_creation_arrows() -> None:
    recs = records()
    # main creates a and b inside its first segment (the notes at 210 are after
    # main yielded in the shared script: move them into main's segment).
    moved = ('"name": "a"', '"name": "b"')
    recs = [r if r.text is None or not any(m in r.text for m in moved)
            else Record(r.kind, r.pid, r.tid, 160, r.func, r.parent, r.depth, r.event, r.args,
                        r.value, r.duration, r.text) for r in recs]
    recs.sort(key=lambda r: r.ts)
    events = chrome(recs)
    main, a, b = TASK_TID_BASE + 1, TASK_TID_BASE + 2, TASK_TID_BASE + 3
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {(1, 7): "MainThread-7", (1, main): "main-1 (MainThread-7)",
                     (1, a): "a-2 (MainThread-7)", (1, b): "b-3 (MainThread-7)"}
    # complete (X) events, each written when its call ends: begin and duration (us)
    slices = [(e["tid"], e["name"], e["ts"], e["dur"]) for e in events if e["ph"] == "X"]
    assert not [e for e in events if e["ph"] in "BE"]
    assert slices == [
        (main, "m:helper", 0.15, 0.02), (main, "m:main", 0.1, 0.1),
        (a, "m:work", 1.0, 0.1), (b, "m:work", 1.2, 0.05),
        (a, "m:work", 2.0, 0.01), (b, "m:work", 3.0, 0.1),
        (main, "m:main", 5.0, 0.3)]
    flows = [(e["ph"], e["id"], e["tid"], e["ts"]) for e in events if e["ph"] in "sf"]
    # main: made outside any task, from the thread's track; a and b from main's
    # track, inside main's first segment; each to the task's first run.
    assert flows == [("s", 1_000_001, 7, 0.0), ("f", 1_000_001, main, 0.0),
                     ("s", 1_000_002, main, 0.16), ("f", 1_000_002, a, 1.0),
                     ("s", 1_000_003, main, 0.16), ("f", 1_000_003, b, 1.2)]
    # an arrow's end binds to the next slice on the task's track (the run note
    # precedes the task's first call: no slice encloses it, so no "bp": "e")
    assert all("bp" not in e for e in events if e["ph"] in "sf")


def test_without_task_notes_the_file_is_as_before() -> None:
    recs = [r for r in records() if r.kind != "task"]
    out = io.StringIO()
    write_chrome(recs, out, PROCESSES, THREADS, 0)
    tasks_out = io.StringIO()
    write_chrome_tasks(ChromeWriter(PROCESSES, THREADS, 0), recs, tasks_out)
    assert tasks_out.getvalue() == out.getvalue()


def wake_script() -> list[Record]:
    """Task a (1) awaits task b (2): b ends, a's next step is woken by it."""
    def note(ts: int, text: str) -> Record:
        return Record("task", 1, 7, ts, "", None, 0, "", None, None, None, text)

    def call(kind: str, ts: int, func: str, event: str) -> Record:
        return Record(kind, 1, 7, ts, func, None, 0, event, None, None,
                      None if kind == "entry" else 10, None)

    return [note(0, 'new {"creator": 0, "name": "a", "task": 1}'), note(0, "run 1"),
            call("entry", 10, "m:a", "start"),
            note(15, 'new {"creator": 1, "name": "b", "task": 2}'),
            call("exit", 20, "m:a", "yield"),
            note(30, "run 2"), call("entry", 40, "m:b", "start"), call("exit", 50, "m:b", "return"),
            note(60, 'end {"state": "done", "task": 2}'), note(60, "run 1"),
            note(60, 'wake {"by": [2], "task": 1}'),
            call("entry", 70, "m:a", "resume"), call("exit", 80, "m:a", "return")]


def test_wake_arrow_from_the_end_to_the_woken_tasks_next_slice() -> None:
    from fntrace.analysis.chrome_tasks import WAKE_ID_BASE

    events = chrome(wake_script())
    a, b = TASK_TID_BASE + 1, TASK_TID_BASE + 2
    flows = [(e["name"], e["ph"], e["id"], e["tid"], e["ts"], e.get("bp"))
             for e in events if e["ph"] in "sf"]
    assert flows == [("create", "s", 1_000_001, 7, 0.0, None),
                     ("create", "f", 1_000_001, a, 0.0, None),
                     ("create", "s", 1_000_002, a, 0.015, None),
                     ("create", "f", 1_000_002, b, 0.03, None),
                     # from inside b's last call (1 ns before it ended at 0.05:
                     # a flow's start binds to its enclosing slice) to a's next
                     # slice (no "bp": the next slice begun on a's track, 0.07)
                     ("wake", "s", WAKE_ID_BASE, b, 0.049, None),
                     ("wake", "f", WAKE_ID_BASE, a, 0.06, None)]
    assert [(e["tid"], e["ts"]) for e in events if e["ph"] == "X" and e["ts"] >= 0.06] == [
        (a, 0.07)]
