"""The arrow from a task's end to the ``await`` it wakes (tracing/tasks.py's
``wake`` notes, analysis/task_tracks.py's ``wakes``).

A program whose waits are known: task A awaits task B, then gather over N
tasks, then a task it cancels, then a sleep (a plain future: no task woke it)
and a TaskGroup (its own waiter future: not followed).  Each wake must be
exactly one note, each arrow must start at the waking task's ``end`` note and
end where the woken task's next segment begins, on both hot paths.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

import fntrace
from fntrace.analysis.task_tracks import TaskTracks
from fntrace.formats.tracefile import Record, TraceWriter, open_trace
from fntrace.recording.recorder import InstanceText
from fntrace.tracing.tasks import TaskTable, parse_note

N = 3


def _leaf(x: int) -> int:
    return x


async def _awaited(x: int) -> int:
    _leaf(x)
    await asyncio.sleep(0)
    return _leaf(x)


async def _forever() -> None:
    await asyncio.sleep(3600)


async def _awaiter() -> None:
    b = asyncio.create_task(_awaited(1), name="B")
    await b
    await asyncio.gather(*(asyncio.create_task(_awaited(i), name=f"G{i}") for i in range(N)))
    c = asyncio.create_task(_forever(), name="C")
    await asyncio.sleep(0)  # C starts: it awaits its sleep
    c.cancel()
    try:
        await c
    except asyncio.CancelledError:
        pass
    await asyncio.sleep(0.001)  # a plain future wakes it: no task
    async with asyncio.TaskGroup() as tg:  # the group's own waiter: not followed
        tg.create_task(_awaited(9), name="T")


async def _main() -> None:
    await asyncio.create_task(_awaiter(), name="A")


def _record(tmp_path: Path) -> list[Record]:
    names = ["_leaf", "_awaited", "_forever", "_awaiter", "_main"]
    with fntrace.trace("function_graph", filter=[f"{__name__}:{n}" for n in names],
                       tasks=1) as inst:
        asyncio.run(_main())
        inst.write("tracing_on", "0")
        pairs = list(inst.rb.live.merged())
        path = tmp_path / "t.dat"
        writer = TraceWriter(str(path), {"pid": os.getpid(), "tracer": "function_graph"})
        writer.write_events(pairs, InstanceText(inst).one)
        writer.finish(0)
    return list(open_trace(str(path)).records())


def test_each_wake_is_one_arrow_from_the_end_to_the_next_segment(
        hot_path: str, tmp_path: Path) -> None:
    recs = _record(tmp_path)
    table = TaskTable()
    wakes: list[tuple[str, list[str]]] = []
    for r in recs:
        if r.kind == "task":
            table.note(r.tid, r.text or "")
            verb, value = parse_note(r.text or "")
            if verb == "wake":
                wakes.append((table.info(value["task"]).name or "?",
                              [table.info(n).name or "?" for n in value["by"]]))
    named = {t.name: t for t in table.tasks.values()}
    main = table.info(min(table.tasks))  # asyncio.run's task (then its shutdown tasks)
    assert main.func == f"{__name__}:_record"
    # Exactly these: the await of B, gather's N tasks in its order, the
    # cancelled C, main's await of A (the sleep, the TaskGroup and
    # asyncio.run's own waits: none).
    assert wakes == [("A", ["B"]), ("A", [f"G{i}" for i in range(N)]), ("A", ["C"]),
                     (main.name, ["A"])]
    assert named["C"].state == "cancelled" and named["B"].state == "done"
    tracks = TaskTracks()
    out = list(tracks.records(recs))
    a = named["A"].number
    assert [(w.by, w.task) for w in tracks.wakes] == [
        (named[n].number, a) for n in ["B", *[f"G{i}" for i in range(N)], "C"]] + [
        (a, main.number)]
    for w in tracks.wakes:
        # The arrow starts at the waker's end note...
        (end,) = [r for r in out if r.kind == "task" and parse_note(r.text or "") == (
            "end", {"state": named[table.info(w.by).name or ""].state, "task": w.by})]
        assert end.ts == w.ended
        # (the Chrome arrow starts inside the waker's last call, which ended before)
        assert w.last is not None and w.last <= w.ended
        # ...and ends where A's next segment begins: the first record on A's
        # track from then on is its coroutine resumed (awaiting no more; the
        # cancelled C's CancelledError thrown into it).
        nxt = next(r for r in out if r.kind != "task" and r.ts >= w.woke
                   and r.tid == tracks.tid(w.task))
        assert (nxt.kind, nxt.func.rpartition(":")[2], nxt.event) == (
            "entry", "_awaiter" if w.task == a else "_main",
            "throw" if w.by == named["C"].number else "resume")
        assert w.ended <= w.woke


def test_wake_notes_are_the_same_on_both_paths(tmp_path: Path) -> None:
    """The C recorder writes the notes the Python callbacks write, note for note."""
    from fntrace.core import accel

    if accel.speedups is None or getattr(accel.speedups, "frame_key", None) is None:
        pytest.skip("the C hot path does not read frames here")
    fast = [r.text for r in _record(tmp_path) if r.kind == "task"]
    saved = accel.speedups
    accel.speedups = None
    try:
        pure = [r.text for r in _record(tmp_path) if r.kind == "task"]
    finally:
        accel.speedups = saved
    assert sum(1 for t in fast if (t or "").startswith("wake ")) == 4
    def unnamed(notes: list[str | None]) -> list[str]:  # asyncio's Task-N counter goes on
        return [re.sub(r'"Task-[0-9]+"', '"Task"', n or "") for n in notes]

    assert unnamed(fast) == unnamed(pure)


def test_tracks_draw_no_wake_without_the_wakers_end() -> None:
    """A wake whose waker's end the stream lacks (a ring that overwrote it)
    draws nothing; a stream without wake notes (an older file) none either."""
    def note(ts: int, text: str) -> Record:
        return Record("task", 1, 7, ts, "", None, 0, "", None, None, None, text)

    def entry(ts: int) -> Record:
        return Record("entry", 1, 7, ts, "m:f", None, 0, "resume", None, None, None, None)

    tracks = TaskTracks()
    list(tracks.records([note(0, "run 2"), note(5, 'end {"state": "done", "task": 2}'),
                         note(6, "run 1"), note(6, 'wake {"by": [2, 3], "task": 1}'),
                         entry(7)]))
    assert [tuple(w) for w in tracks.wakes] == [(1, 2, 1, 5, 6, None)]  # 2 made no call
    old = TaskTracks()
    list(old.records([note(0, "run 2"), note(5, 'end {"state": "done", "task": 2}'),
                      note(6, "run 1"), entry(7)]))
    assert old.wakes == []


def test_a_reader_ignores_a_verb_it_does_not_know() -> None:
    """Notes of a newer writer read as nothing (the table, the tracks), so a
    file with ``wake`` notes reads in a reader without them as before."""
    assert parse_note('wake {"by": [2], "task": 1}') == ("wake", {"by": [2], "task": 1})
    assert parse_note('sleep {"task": 1}') == ("", None)
    table = TaskTable()
    table.note(7, "run 1")
    table.note(7, 'sleep {"task": 1}')
    assert table.running(7) == 1 and list(table.tasks) == [1]
