"""Task steps that Handle._run does not begin (tracing/tasks.py, 3.12+): an
eager task's first step, run inside ``asyncio.Task(..., eager_start=True)``,
and every step of uvloop's loop, which runs its callbacks in C.  The C
recorder sees them by asyncio's current-task dictionary changing (a
dictionary watcher); the pure path, which cannot watch a dictionary, asks
``asyncio.current_task()`` at each traced event while such a step may come
(its probes).  Both give every call its task and write the same notes.

The oracle is ``asyncio.current_task()``, logged by the traced functions."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fntrace
from fntrace.core import accel
from fntrace.core.events import ENTRY, TASK
from fntrace.formats.tracefile import open_trace
from fntrace.tracing.tasks import TaskTable

ROOT = str(Path(__file__).resolve().parent.parent)

SEEN: list[tuple[str, str | None]] = []


def _watching() -> bool:
    """Whether this run's recorder watches the dictionary (the C path, 3.12+)."""
    speedups = accel.speedups
    return (speedups is not None and getattr(speedups, "frame_key", None) is not None
            and sys.version_info >= (3, 12))


def _follows() -> bool:
    """Whether the steps are followed: on both paths from 3.12 (3.11 has no
    eager tasks, and no dictionary watcher for uvloop's steps)."""
    return sys.version_info >= (3, 12)


def _leaf(where: str) -> None:
    task = asyncio.current_task()
    SEEN.append((where, task.get_name() if task is not None else None))


async def _eager(i: int) -> None:
    _leaf(f"e{i}")
    await asyncio.sleep(0)
    _leaf(f"e{i}")


async def _quick() -> None:
    _leaf("q")  # ends in its eager step: never through Handle._run


async def _main() -> None:
    loop = asyncio.get_running_loop()
    t = asyncio.Task(_eager(1), loop=loop, eager_start=True, name="E1")
    asyncio.Task(_quick(), loop=loop, eager_start=True, name="Q")
    _leaf("main")
    await t
    # made in a plain callback (outside any task), as aiohttp makes its handlers
    loop.call_soon(lambda: asyncio.Task(_eager(2), loop=loop, eager_start=True, name="E2"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def _outer() -> None:
    _leaf("o")
    inner = asyncio.Task(_eager(3), loop=asyncio.get_running_loop(), eager_start=True,
                         name="E3")  # an eager first step inside an eager first step
    _leaf("o")
    await inner
    _leaf("o")


async def _nested_main() -> None:
    outer = asyncio.Task(_outer(), loop=asyncio.get_running_loop(), eager_start=True,
                         name="O")
    _leaf("main")
    await outer


async def _silent() -> int:
    return 1  # untraced (see test_a_silent_eager_task_still_ends)


async def _factory_main() -> None:
    asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
    task = asyncio.create_task(_silent(), name="S")
    _leaf("f")
    assert task.done()


def _calls(inst: Any) -> tuple[list[tuple[str, str | None]], TaskTable]:
    """The leaf calls, each with the name of the task the notes give it."""
    table = TaskTable()
    pairs = list(inst.rb.live.merged())
    for buf, ev in pairs:
        if ev[2] == TASK.tag:
            table.note(buf, ev[TASK.at.info])
    got: list[tuple[str, str | None]] = []
    table.current.clear()  # names are read ahead (all notes); the running task in order
    leaves = iter(SEEN)
    for buf, ev in pairs:
        if ev[2] == TASK.tag:
            table.note(buf, ev[TASK.at.info])
        elif ev[2] == ENTRY.tag and ev[3].qualname == "_leaf":
            where, _ = next(leaves)
            n = table.running(buf)
            got.append((where, table.info(n).name if n else None))
    return got, table


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
def test_an_eager_tasks_first_step_is_its_own(hot_path: str) -> None:
    SEEN.clear()
    uvloop_loaded = "uvloop" in sys.modules  # then the steps are followed for good
    with fntrace.trace("function_graph", filter=f"{__name__}:*", tasks=1) as inst:
        asyncio.run(_main())
        tracker = inst.tracer.tasks if inst.tracer else None
        assert tracker is not None
        if _watching():
            # Watched from each eager start (is_running's True) to the next
            # Handle._run only: asyncio's own steps pay nothing for it.
            assert tracker.recorder.wanted == (2 if uvloop_loaded else 0)
        else:
            # Probed from each eager start to the next Handle._run only: the
            # tracer's ops have their own callbacks back, no thread is probed.
            assert tracker.probing and tracker.armed == 0
            assert tracker.hot == uvloop_loaded
            if not uvloop_loaded:
                assert inst.tracer.ops[0].func == inst.tracer.entry
                assert inst.tracer.ops[0].ret == inst.tracer.exit
                assert tracker.run_ops.func == tracker.entry
                assert tracker.loop_ops.ret == tracker.exit
    assert [w for w, _ in SEEN] == ["e1", "q", "main", "e1", "e2", "e2"]
    assert {n for _, n in SEEN} >= {"E1", "Q", "E2"}  # the oracle saw the tasks
    got, table = _calls(inst)
    named = {t.name: t for t in table.tasks.values()}
    assert got == SEEN
    # Q ended in its eager step: noted there; E1 and E2 when their last step did.
    assert (named["Q"].state, named["E1"].state, named["E2"].state) == ("done",) * 3


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
def test_an_eager_first_step_inside_another(hot_path: str) -> None:
    """Task O's eager first step makes task E3, whose eager first step runs
    inside O's: each call lands on its task, and O runs again after it."""
    SEEN.clear()
    with fntrace.trace("function_graph", filter=f"{__name__}:*", tasks=1) as inst:
        asyncio.run(_nested_main())
    main = SEEN[3][1]
    assert SEEN == [("o", "O"), ("e3", "E3"), ("o", "O"), ("main", main), ("e3", "E3"),
                    ("o", "O")]
    got, table = _calls(inst)
    assert got == SEEN
    named = {t.name: t for t in table.tasks.values()}
    assert (named["O"].state, named["E3"].state) == ("done", "done")


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
def test_a_silent_eager_task_still_ends(hot_path: str) -> None:
    """An eager task (the factory's) that ends in a first step making no traced
    call: the C path sees the step, the pure path no event of it; on both
    the task is noted with its creator, and its end."""
    SEEN.clear()
    with fntrace.trace("function_graph", filter=f"{__name__}:_leaf", tasks=1) as inst:
        asyncio.run(_factory_main())
    got, table = _calls(inst)
    main = next(t for t in table.tasks.values() if t.name == SEEN[0][1])
    assert got == SEEN == [("f", main.name)]
    silent = [t for t in table.tasks.values() if t.name == "S"]
    assert len(silent) == 1
    assert (silent[0].creator, silent[0].state) == (main.number, "done")


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
@pytest.mark.skipif(sys.platform == "emscripten",
                    reason="Pyodide's loop runs its callbacks from JavaScript: run_forever "
                           "runs no iteration here")
def test_the_probes_stop_with_the_iteration(hot_path: str) -> None:
    """A callback makes an eager task and stops the loop: no Handle._run comes
    after it on this thread, so the pure path's probes stop at the end of
    the loop's iteration (a thread left probed would cost its every event)."""
    SEEN.clear()
    uvloop_loaded = "uvloop" in sys.modules
    loop = asyncio.new_event_loop()

    def callback() -> None:
        asyncio.Task(_quick(), loop=loop, eager_start=True, name="Q")
        loop.stop()

    try:
        with fntrace.trace("function_graph", filter=f"{__name__}:*", tasks=1) as inst:
            loop.call_soon(callback)
            loop.run_forever()
            tracker = inst.tracer.tasks if inst.tracer else None
            assert tracker is not None
            if not _watching():
                assert tracker.armed == 0 and tracker.hot == uvloop_loaded
    finally:
        loop.close()
    got, table = _calls(inst)
    assert got == SEEN == [("q", "Q")]
    assert [t.state for t in table.tasks.values() if t.name == "Q"] == ["done"]


def test_uvloop_runs_unchanged_and_its_tasks_are_followed(hot_path: str) -> None:
    """uvloop runs its callbacks (the tasks' steps) in C, in its own Handle type:
    no Python function of asyncio runs per step.  The program runs as untraced,
    every call is recorded; from 3.12 each call lands on its task (on 3.11 no
    task is noted rather than a wrong one)."""
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed here")
    untraced = _run_uvloop(uvloop)
    SEEN.clear()
    with fntrace.trace("function_graph", filter=f"{__name__}:*", tasks=1) as inst:
        traced = _run_uvloop(uvloop)
    assert traced == untraced == [0, 2, 4]
    assert SEEN == [(f"w{i}", f"w{i}") for i in range(3)] * 2  # the tasks were there
    got, table = _calls(inst)
    if _follows():
        assert got == SEEN
        assert sorted(t.state or "" for t in table.tasks.values()) == ["done"] * 4
    else:
        assert got == [(w, None) for w, _ in SEEN]
        assert [ev for _, ev in inst.rb.live.merged() if ev[2] == TASK.tag] == []


async def _work(i: int) -> int:
    _leaf(f"w{i}")
    await asyncio.sleep(0)
    _leaf(f"w{i}")
    return i * 2


async def _uvloop_main() -> list[int]:
    tasks = [asyncio.create_task(_work(i), name=f"w{i}") for i in range(3)]
    return list(await asyncio.gather(*tasks))


def _run_uvloop(uvloop: Any) -> list[int]:
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(_uvloop_main())
    finally:
        loop.close()


def _notes(monkeypatch: pytest.MonkeyPatch, pure: bool, run: Any) -> list[str]:
    """The task notes of ``run()`` traced on one path, asyncio's own Task-N
    counter (which goes on from run to run) taken out."""
    with monkeypatch.context() as m:
        if pure:
            m.setattr(accel, "speedups", None)
        with fntrace.trace("function_graph", filter=f"{__name__}:*", tasks=1) as inst:
            run()
    return [re.sub(r'"Task-[0-9]+"', '"Task"', ev[TASK.at.info])
            for _, ev in inst.rb.live.merged() if ev[2] == TASK.tag]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
@pytest.mark.parametrize("program", ["eager", "nested", "uvloop"])
def test_the_notes_are_the_same_on_both_paths(monkeypatch: pytest.MonkeyPatch,
                                              program: str) -> None:
    """The pure path's probes write the C path's dictionary watcher's notes,
    note for note: the eager steps (one ending in its first step, one made
    in a plain callback, one inside another's) and uvloop's."""
    if not _watching():
        pytest.skip("the C hot path does not read frames here")
    if program == "uvloop":
        uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed here")

        def run() -> None:
            _run_uvloop(uvloop)
    else:
        def run() -> None:
            asyncio.run(_main() if program == "eager" else _nested_main())
    fast = _notes(monkeypatch, False, run)
    pure = _notes(monkeypatch, True, run)
    # The notes' own shape, so the comparison cannot pass vacuously.
    runs = [n for n in fast if n.startswith("run ")]
    news = [n for n in fast if n.startswith("new ")]
    if program == "uvloop":
        # main and w0-w2, each first seen at a step no Handle._run began; twice
        # (two steps) each worker: run w, run 0, run w, run 0 (main's between).
        assert sum(1 for n in news if '"name": "w' in n) == 3
        assert len(runs) >= 12
    else:
        for name in ("E1", "Q", "E2") if program == "eager" else ("O", "E3"):
            assert sum(1 for n in news if f'"name": "{name}"' in n) == 1, name
    assert pure == fast


UVLOOP_APP = """
import asyncio
import uvloop

def leaf(i):
    task = asyncio.current_task()
    print(i, task.get_name() if task is not None else None)

async def work(i):
    leaf(i)
    await asyncio.sleep(0)
    leaf(i)

async def main():
    await asyncio.gather(*(asyncio.create_task(work(i), name=f"w{i}") for i in range(3)))

loop = uvloop.new_event_loop()
loop.run_until_complete(main())
loop.close()
"""


@pytest.mark.parametrize("pure", ["0", "1"])
def test_uvloop_imported_after_tracing_starts(tmp_path: Path, pure: str) -> None:
    """``fntrace record --tasks``: uvloop is imported by the program, after the
    tracer started; its loop is made by uvloop.new_event_loop, which turns the
    dictionary's watch (the C path) or the probes (the pure path) on (3.12+)."""
    pytest.importorskip("uvloop", reason="uvloop is not installed here")
    if sys.platform == "emscripten":
        pytest.skip("no subprocesses here")
    app = tmp_path / "app.py"
    app.write_text(UVLOOP_APP)
    dat = tmp_path / "t.dat"
    env = {**os.environ, "PYTHONPATH": ROOT, "FNTRACE_PURE": pure}
    rec = subprocess.run([sys.executable, "-m", "fntrace", "record", "-t", "function_graph",
                          "--tasks", "-F", "__main__:leaf", "-o", str(dat), str(app)],
                         env=env, text=True, capture_output=True, timeout=120)
    assert rec.returncode == 0, rec.stderr
    oracle = [tuple(line.split()) for line in rec.stdout.splitlines()]
    assert oracle == [(str(i), f"w{i}") for i in range(3)] * 2
    records = list(open_trace(str(dat)).records())
    names = TaskTable()  # read ahead: a task first seen at a step is named at its end
    for r in records:
        if r.kind == "task":
            names.note(r.tid, r.text or "")
    table = TaskTable()
    got = []
    for r in records:
        if r.kind == "task":
            table.note(r.tid, r.text or "")
        elif r.kind == "entry":
            n = table.running(r.tid)
            got.append(names.info(n).name if n else None)
    assert got == ([name for _, name in oracle] if _follows() else [None] * 6)
