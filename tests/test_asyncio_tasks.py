"""asyncio tasks as their own tracks (fntrace/tracing/tasks.py): every traced
event is attributed to the task that ran it.

The program (tests/tasks_program.py) logs, at the start of each of its
functions, ``asyncio.current_task()``'s name: the independent oracle.  The
trace must give each task exactly the calls the oracle gives it, in order, on
both hot paths and under both tracers; tasks, creators and end states must be
exactly the program's.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import tasks_program as prog
from helpers import needs_subprocess

import fntrace
from fntrace.core.events import CALL, ENTRY, MARKER, TASK, TASK_PREFIX
from fntrace.formats.tracefile import TraceWriter, open_trace, stored_text
from fntrace.tracing.tasks import TaskTable

MODULE = prog.__name__
FILTER = f"{MODULE}:*"
NOTRACE = [f"{MODULE}:_task", f"{MODULE}:log", f"{MODULE}:run"]


def traced_run(tracer: str, **options: int) -> tuple[Any, list[tuple[Any, tuple[Any, ...]]]]:
    options.setdefault("tasks", 1)  # off by default (its cost: README)
    with fntrace.trace(tracer, filter=FILTER, notrace=NOTRACE, **options) as inst:
        result = prog.run()
    return result, list(inst.rb.live.merged())


def by_task(pairs: list[tuple[Any, tuple[Any, ...]]], kind: str,
            ) -> tuple[dict[str | None, list[str]], TaskTable]:
    """Each task's calls (first segments only, as the oracle logs them), by the
    task's name at the end."""
    table = TaskTable()
    by_number: dict[int, list[str]] = defaultdict(list)
    for buf, ev in pairs:
        if ev[2] == TASK.tag:
            table.note(buf, ev[TASK.at.info])
        elif ev[2] == kind and ev[-1 if kind == CALL.tag else ENTRY.at.event] == "start":
            by_number[table.running(buf)].append(ev[3].qualname)
    return {table.info(n).name if n else None: calls for n, calls in by_number.items()}, table


def oracle() -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = defaultdict(list)
    for task, fn in prog.LOG:
        out[task.get_name() if task is not None else None].append(fn)
    return dict(out)


def expected_result() -> list[object]:
    out: list[object] = [7, "boom", "cancelled", 6, 6, [2, 3], 4, "timeout"]
    if sys.version_info >= (3, 12):
        out.append((True, 11, 21))
    return out


@pytest.mark.parametrize("tracer", ["function_graph", "function"])
def test_each_task_has_exactly_its_calls(hot_path: str, tracer: str) -> None:
    result, pairs = traced_run(tracer)
    assert result == expected_result()
    kind = ENTRY.tag if tracer == "function_graph" else CALL.tag
    calls, _ = by_task(pairs, kind)
    assert calls == oracle()
    # The oracle's own shape, so the comparison above cannot pass vacuously.
    want = oracle()
    assert want["parent"] == ["parent"]
    assert want["child-a"] == ["child", "leaf", "helper", "helper"]
    assert want["sleeper"] == ["sleeper", "cleanup"]
    if sys.platform != "emscripten":  # Pyodide's loop runs to_thread's function inline
        assert want[None] == ["blocking", "helper"]  # asyncio.to_thread: a worker thread
    assert want["consumer"] == ["consumer", "numbers", "helper", "helper", "helper"]
    if sys.version_info >= (3, 12):
        assert want["eager-quick"] == ["eager_quick", "helper"]


def test_tasks_creators_and_end_states(hot_path: str) -> None:
    _, pairs = traced_run("function_graph")
    _, table = by_task(pairs, ENTRY.tag)
    named = {t.name: t for t in table.tasks.values()}
    main = next(t for t in table.tasks.values() if t.func == f"{MODULE}:run")
    assert main.creator == 0 and main.state == "done"
    for name, creator, func, state in [
            ("parent", main, "main", "done"),
            ("child-a", named["parent"], "parent", "done"),
            ("child-b", named["parent"], "parent", "done"),
            ("boom", main, "main", "raised ValueError"),
            ("sleeper", main, "main", "cancelled"),
            ("consumer", main, "main", "done")]:
        task = named[name]
        assert (task.creator, task.func, task.state) == (creator.number, f"{MODULE}:{func}",
                                                         state), name
    if sys.version_info >= (3, 12):
        assert named["eager-quick"].state == "done"
        assert named["eager-slow"].state == "done"
        assert named["eager-quick"].creator == main.number
    # gather's two tasks: made by main, unnamed (Task-N), done.
    gathered = [t for t in table.tasks.values()
                if t.func == f"{MODULE}:main" and t.name and t.name.startswith("Task-")]
    assert len(gathered) >= 2 and all(t.state == "done" for t in gathered)
    # Numbers are 1.. in the order the tasks were first noted, each once.
    assert sorted(table.tasks) == list(range(1, len(table.tasks) + 1))


def test_no_task_notes_without_asyncio_or_with_the_option_off(hot_path: str) -> None:
    def plain() -> int:
        return sum(range(3))

    with fntrace.trace("function_graph", filter=f"{__name__}:*", tasks=1) as inst:
        plain()
    assert not [ev for _, ev in inst.rb.live.merged() if ev[2] == TASK.tag]
    assert any(ev[2] == ENTRY.tag for _, ev in inst.rb.live.merged())
    _, pairs = traced_run("function_graph", tasks=0)
    assert not [ev for _, ev in pairs if ev[2] == TASK.tag]
    assert [ev for _, ev in pairs if ev[2] == ENTRY.tag]
    # Off by default: the notes cost each task a few Python calls (README).
    with fntrace.trace("function_graph", filter=FILTER, notrace=NOTRACE) as inst:
        prog.run()
    assert inst.read("options/tasks").strip() == "0"
    assert not [ev for _, ev in inst.rb.live.merged() if ev[2] == TASK.tag]


def test_task_steps_are_noted_in_c_where_the_extension_reads_frames(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step passes Handle._run, every task create_task (and on 3.11/3.12
    _set_task_name): on the C path their notes are the TaskRecorder's, with no
    Python callback (the cost of the notes was two Python callbacks per step
    and a Python trampoline per task); the notes are the pure path's, note for
    note."""
    from fntrace.core import accel
    from fntrace.tracing import tasks as tasks_mod

    speedups = accel.speedups
    if speedups is None or getattr(speedups, "frame_key", None) is None:
        pytest.skip("the C hot path does not read frames here")
    calls: list[str] = []
    entry = tasks_mod.TaskTracker.entry

    def spy(self: Any, ip: Any, parent: Any, ops: Any, fregs: Any) -> None:
        calls.append(ip.name)
        entry(self, ip, parent, ops, fregs)

    exits: list[str] = []
    exit_ = tasks_mod.TaskTracker.exit

    def exit_spy(self: Any, ip: Any, parent: Any, ops: Any, fregs: Any) -> None:
        exits.append(ip.name)
        exit_(self, ip, parent, ops, fregs)

    monkeypatch.setattr(tasks_mod.TaskTracker, "entry", spy)
    monkeypatch.setattr(tasks_mod.TaskTracker, "exit", exit_spy)
    prog.LOG.clear()
    _, fast = traced_run("function_graph")
    assert tasks_mod.RUN not in calls
    assert exits == []
    notes_fast = [ev[TASK.at.info] for _, ev in fast if ev[2] == TASK.tag]
    assert sum(1 for n in notes_fast if n.startswith("run ")) > 10
    monkeypatch.setattr(accel, "speedups", None)
    prog.LOG.clear()
    _, pure = traced_run("function_graph")
    assert tasks_mod.RUN in calls
    assert "asyncio.base_events:BaseEventLoop.create_task" in exits
    notes_pure = [ev[TASK.at.info] for _, ev in pure if ev[2] == TASK.tag]

    def unnamed(notes: list[str]) -> list[str]:  # asyncio's Task-N counter goes on
        return [re.sub(r'"Task-[0-9]+"', '"Task"', n) for n in notes]

    assert unnamed(notes_fast) == unnamed(notes_pure)


def _leaf(x: int) -> int:
    return x


async def _step_a() -> None:
    _leaf(1)
    await asyncio.sleep(0)
    _leaf(2)


async def _step_b() -> None:
    _leaf(3)
    await asyncio.sleep(0)
    _leaf(4)


def _plain() -> None:
    _leaf(5)


async def _two_tasks() -> None:
    asyncio.get_running_loop().call_soon(_plain)
    a = asyncio.create_task(_step_a(), name="a")
    b = asyncio.create_task(_step_b(), name="b")
    await a
    await b


def test_notes_only_where_the_running_task_changes(hot_path: str) -> None:
    """A step's end is not watched (an event per step): the thread runs a task
    until its next callback begins (another task's step: one note, no ``run 0``
    between) or the loop's iteration ends (``run 0``, the ends of the tasks the
    last step finished); code after the loop runs in no task."""
    if sys.platform == "emscripten":
        pytest.skip("Pyodide's loop runs each callback from JavaScript, with no "
                    "_run_once iteration: its notes differ (README, asyncio: Limits)")
    names = ["_leaf", "_step_a", "_step_b", "_plain", "_two_tasks"]
    with fntrace.trace("function_graph", filter=[f"{__name__}:{n}" for n in names],
                       tasks=1) as inst:
        asyncio.run(_two_tasks())
        _plain()
    table = TaskTable()
    seen: list[str] = []
    for buf, ev in inst.rb.live.merged():
        if ev[2] == TASK.tag:
            table.note(buf, ev[TASK.at.info])
            if not ev[TASK.at.info].startswith("new"):
                seen.append(ev[TASK.at.info])
        elif ev[2] == ENTRY.tag:
            n = table.running(buf)
            seen.append(f"{ev[3].qualname}@{table.info(n).name if n else '-'}")
    main = min(table.tasks)  # asyncio.run's task, the first made
    a = next(n for n, t in table.tasks.items() if t.name == "a")
    b = next(n for n, t in table.tasks.items() if t.name == "b")
    m = table.info(main).name
    shutdown = sorted(table.tasks)[-2:]  # asyncio.run's: cancel the rest, shut down asyncgens
    assert seen == [
        "run 0", f"run {main}", f"_two_tasks@{m}",
        "run 0", "_plain@-", "_leaf@-",
        f"run {a}", "_step_a@a", "_leaf@a",
        f"run {b}", "_step_b@b", "_leaf@b",
        "run 0", f"run {a}", "_step_a@a", "_leaf@a", f'end {{"state": "done", "task": {a}}}',
        f"run {b}", "_step_b@b", "_leaf@b", f'end {{"state": "done", "task": {b}}}',
        # main awaited a, which ended: the wake (b had ended too: no await)
        "run 0", f"run {main}", f'wake {{"by": [{a}], "task": {main}}}', f"_two_tasks@{m}",
        f'end {{"state": "done", "task": {main}}}',
        *[note for n in shutdown
          for note in ("run 0", f"run {n}", f'end {{"state": "done", "task": {n}}}')],
        "run 0", "_plain@-", "_leaf@-"]


def test_a_dead_tasks_number_is_forgotten(hot_path: str) -> None:
    """The numbers are held by weak reference: a task that is gone leaves no
    entry (the C path's callback is its own, not WeakKeyDictionary's)."""
    import gc

    with fntrace.trace("function_graph", filter=FILTER, notrace=NOTRACE, tasks=1) as inst:
        assert inst.tracer is not None and inst.tracer.tasks is not None
        numbers = inst.tracer.tasks.numbers
        prog.run()
        assert len(numbers) > 8  # prog.LOG holds its tasks
        prog.LOG.clear()
        gc.collect()
        assert len(numbers) == 0
        held: list[Any] = []

        async def keep() -> None:
            held.append(asyncio.current_task())

        asyncio.run(keep())
        assert len(numbers) == 1 and numbers[held[0]] > 8
        held.clear()
        gc.collect()
        assert len(numbers) == 0


class _MyTask(asyncio.Task):  # type: ignore[type-arg]
    """A Task subclass: found a task by its type's ancestry."""


@pytest.mark.parametrize("factory", ["subclass", "pure"])
def test_task_subclasses_and_the_pure_task_are_tasks(hot_path: str, factory: str) -> None:
    """The C recorder reads a step's task through its types' descriptors: a
    Task subclass (the C step wrapper) and asyncio's pure-Python Task (a bound
    method) are each followed; the oracle is asyncio.current_task()."""
    if factory == "pure" and sys.platform == "emscripten":
        pytest.skip("Pyodide's loop: asyncio.current_task(), the oracle, is None in a pure Task")
    make = _MyTask if factory == "subclass" else asyncio.tasks._PyTask  # type: ignore[attr-defined]
    seen: list[tuple[str, str]] = []

    def leaf(where: str) -> None:
        task = asyncio.current_task()
        seen.append((where, task.get_name() if task is not None else "-"))

    async def worker(i: int) -> None:
        leaf(f"w{i}")
        await asyncio.sleep(0)
        leaf(f"w{i}")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda loop, coro, **kw: make(coro, loop=loop, **kw))
        try:
            await asyncio.gather(*(asyncio.create_task(worker(i), name=f"n{i}")
                                   for i in range(3)))
        finally:  # Pyodide's loop is one for the whole process
            loop.set_task_factory(None)

    with fntrace.trace("function_graph", filter=f"{__name__}:*", tasks=1) as inst:
        asyncio.run(main())
    table = TaskTable()
    got: list[tuple[str, str]] = []
    leaves = iter(seen)
    for buf, ev in inst.rb.live.merged():
        if ev[2] == TASK.tag:
            table.note(buf, ev[TASK.at.info])
        elif ev[2] == ENTRY.tag and ev[3].qualname.endswith("leaf"):
            where, _ = next(leaves)
            n = table.running(buf)
            got.append((where, table.info(n).name or "?" if n else "-"))
    assert got == seen
    assert sorted(seen) == [(f"w{i}", f"n{i}") for i in range(3) for _ in range(2)]


def test_no_run_notes_while_tracing_is_off(hot_path: str) -> None:
    with fntrace.trace("function_graph", filter=FILTER, notrace=NOTRACE, tasks=1) as inst:
        inst.write("tracing_on", "0")
        prog.run()
    assert not [ev for _, ev in inst.rb.live.merged() if ev[2] == TASK.tag]


def test_trace_marker_refuses_the_task_note_prefix() -> None:
    with fntrace.trace("nop") as inst:
        with pytest.raises(ValueError, match="x1f"):
            inst.write("trace_marker", "\x1ftask run 3")
        inst.write("trace_marker", "task run 3")


# -- the task column and the trace file ---------------------------------------------
def column_calls(text: str) -> list[tuple[str, str]]:
    """(task column, function column) of each function_graph line that opens a call."""
    out = []
    for line in text.splitlines():
        if line.startswith("#") or "|" not in line:
            continue
        head, _, rest = line.partition("|")
        func = rest.rpartition("|")[2].strip()
        if func.startswith(("}", "/*")):
            continue
        out.append((head.partition(")")[2].strip(), func.partition("(")[0]))
    return out


def task_name(label: str) -> str | None:
    return None if label == "-" else label.rpartition("-")[0]


def test_task_column_live(hot_path: str) -> None:
    with fntrace.trace("function_graph", filter=FILTER, notrace=NOTRACE,
                       funcgraph_task=1, tasks=1) as inst:
        prog.run()
        text = inst.read("trace")
    assert "ASYNCIO TASK" in text.splitlines()[4]
    seen: dict[str, set[str | None]] = defaultdict(set)
    for label, func in column_calls(text):
        seen[func.partition(":")[2]].add(task_name(label))
    want: dict[str, set[str | None]] = defaultdict(set)
    for task, fn in prog.LOG:
        want[fn].add(task.get_name() if task is not None else None)
    # An eager task (3.12+) is named after its first step: live, that step
    # shows its number (#N); the replay test reads its name ahead.
    eager = {"eager_quick", "eager_slow", "helper"}
    assert {f: v for f, v in seen.items() if f not in eager} == \
        {f: v for f, v in want.items() if f not in eager}
    assert seen["child"] == {"child-a", "child-b"}


def test_task_notes_are_marker_records() -> None:
    """A reader that knows no tasks reads a note as a marker: no new record code."""
    code, text = stored_text(None, (0, 0, TASK.tag, "run 3"), lambda b, e: "")
    assert (code, text) == (MARKER.code, TASK_PREFIX + "run 3")


def test_c_encoder_stores_task_notes_as_the_python_encoder(tmp_path: Path) -> None:
    """The C path packs a note into its ring slot (no tuple); the C encoder makes
    of it the marker record write_events makes of the note's tuple."""
    from fntrace.core import accel
    from fntrace.recording.recorder import InstanceText

    if accel.speedups is None or getattr(accel.speedups, "frame_key", None) is None:
        pytest.skip("the C hot path does not read frames here")
    with fntrace.trace("function_graph", filter=FILTER, notrace=NOTRACE, tasks=1) as inst:
        prog.run()
        inst.write("tracing_on", "0")
        pairs = list(inst.rb.live.merged())
        header = {"pid": os.getpid(), "tracer": "function_graph"}
        by_python, by_c = tmp_path / "py.dat", tmp_path / "c.dat"
        writer = TraceWriter(str(by_python), header)
        writer.write_events(pairs, InstanceText(inst).one)
        writer.finish(0)
        writer = TraceWriter(str(by_c), header)
        n, _ = writer.take(inst.rb.live, InstanceText(inst))
        writer.finish(0)
    assert n == len(pairs)
    notes = [ev[TASK.at.info] for _, ev in pairs if ev[2] == TASK.tag]
    assert sum(1 for n in notes if n.startswith("run ")) > 10
    records = [list(open_trace(str(f)).records()) for f in (by_python, by_c)]
    assert records[0] == records[1]
    assert [r.text for r in records[1] if r.kind == TASK.name] == notes


ROOT = str(Path(__file__).resolve().parent.parent)


@needs_subprocess
@pytest.mark.parametrize("pure", ["0", "1"])
def test_recorded_tasks_replay_one_task(tmp_path: Path, pure: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                   "import tasks_program\nprint(tasks_program.run())\n")
    env = {**os.environ, "PYTHONPATH": ROOT, "FNTRACE_PURE": pure}
    dat = tmp_path / "t.dat"
    rec = subprocess.run([sys.executable, "-m", "fntrace", "record", "-t", "function_graph",
                          "--tasks", "-F", FILTER, *[a for n in NOTRACE for a in ("-N", n)],
                          "-o", str(dat), str(app)],
                         env=env, text=True, capture_output=True, timeout=120)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.strip() == str(expected_result())
    tasks = [r for r in open_trace(str(dat)).records() if r.kind == "task"]
    assert tasks and all(not r.text.startswith(TASK_PREFIX) for r in tasks)

    def replay(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fntrace", "replay", str(dat), *args],
                              env=env, text=True, capture_output=True, timeout=120)

    rep = subprocess.run([sys.executable, "-m", "fntrace", "report", "--by-task", str(dat)],
                         env=env, text=True, capture_output=True, timeout=120)
    assert rep.returncode == 0, rep.stderr
    rows = {line.split()[0]: line.split() for line in rep.stdout.splitlines()[1:]}
    child_a = next(v for k, v in rows.items() if k.startswith("child-a-"))
    parent = next(k for k in rows if k.startswith("parent-"))
    # TASK STATE CREATOR CALLS WALL(2) RUN(2) WAIT(2) FUNCTION: child() suspended twice.
    assert (child_a[1], child_a[2], child_a[3], child_a[-1]) == (
        "done", parent, "4", f"{MODULE}:child")
    assert all(c != "-" for c in child_a[4:10])
    # The per-function report: Run and Wait of the coroutine calls that suspended.
    plain = subprocess.run([sys.executable, "-m", "fntrace", "report", str(dat)],
                           env=env, text=True, capture_output=True, timeout=120)
    assert plain.returncode == 0, plain.stderr
    head = plain.stdout.splitlines()
    assert head[0].startswith("# Run, Wait:") and head[1].split()[-3:] == [
        "Run", "Wait", "Function"]
    cells = {line.split()[-1]: line.split() for line in head[3:]}
    assert cells[f"{MODULE}:helper"][-3:-1] == ["-", "-"]  # a plain function
    # child: two calls, each suspended; time units after each figure.
    assert cells[f"{MODULE}:child"][-5:-1] != ["-", "-", "-", "-"]
    assert cells[f"{MODULE}:child"][-5][0].isdigit() and cells[f"{MODULE}:child"][-3][0].isdigit()
    out = replay("--task", "child-a")  # the column is shown: the file has task notes
    assert out.returncode == 0, out.stderr
    body = [line for line in out.stdout.splitlines() if not line.startswith("#")]
    labels = {line.partition(")")[2].partition("|")[0].strip() for line in body}
    assert len(labels) == 1 and labels.pop().startswith("child-a-")
    # A coroutine call that suspended ends with its wall and running times.
    split = re.compile(r"[0-9.]+ [mun]?s \(run [0-9.]+ [mun]?s\)")
    funcs = [split.sub("W (run R)", line.rpartition("|")[2].rstrip()) for line in body]
    m = MODULE
    assert funcs == [
        f"  {m}:child() {{", f"    {m}:leaf(); /* yield */", f"  }} /* {m}:child yield */",
        f"  {m}:child() {{", f"    {m}:leaf() {{", f"      {m}:helper();",
        f"    }} /* {m}:leaf W (run R) */",
        f"  }} /* {m}:child yield */",
        f"  {m}:child() {{", f"    {m}:helper();", f"  }} /* {m}:child W (run R) */"]
    if sys.version_info >= (3, 12):  # the eager task's first step, named ahead
        out = replay("--task", "eager-quick", "--task-column")
        body = [line for line in out.stdout.splitlines() if not line.startswith("#")]
        assert [line.rpartition("|")[2].strip() for line in body] == [
            f"{m}:eager_quick() {{", f"{m}:helper();", "}"]
        assert all("eager-quick-" in line for line in body)
    missing = replay("--task", "no-such-task")
    assert missing.returncode != 0
    assert missing.stderr.startswith("fntrace replay: no asyncio task 'no-such-task'")
    assert len(missing.stderr.splitlines()) == 1


# -- a real asyncio application: aiohttp ----------------------------------------------
SERVED: dict[int, Any] = {}


def step(i: int) -> int:
    return i * 2


async def work(i: int) -> int:
    await asyncio.sleep(0)
    return step(i)


async def serve_and_fetch(n: int) -> list[int]:
    from aiohttp import ClientSession, TCPConnector, web

    async def handle(request: web.Request) -> web.Response:
        i = int(request.query["i"])
        SERVED[i] = asyncio.current_task()
        return web.Response(text=str(await work(i)))

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with ClientSession(connector=TCPConnector(limit=n)) as session:
            async def get(i: int) -> int:
                async with session.get(f"http://{host}:{port}/", params={"i": str(i)}) as r:
                    return int(await r.text())
            return await asyncio.wait_for(asyncio.gather(*(get(i) for i in range(n))), 120)
    finally:
        await runner.cleanup()


def test_aiohttp_handlers_land_on_their_tasks(hot_path: str) -> None:
    pytest.importorskip("aiohttp", reason="aiohttp (the test extra) is not installed")
    n = 200
    SERVED.clear()
    inst = fntrace.trace("function_graph", filter=[f"{__name__}:work", f"{__name__}:step"],
                         funcgraph_args=1, tasks=1)
    with inst:
        inst.write("buffer_size_kb", "16384")
        got = asyncio.run(serve_and_fetch(n))
        pairs = list(inst.rb.live.merged())
    assert got == [2 * i for i in range(n)]
    assert sorted(SERVED) == list(range(n))
    assert len({id(t) for t in SERVED.values()}) == n  # each request its own task
    table = TaskTable()
    seen: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for buf, ev in pairs:
        if ev[2] == TASK.tag:
            table.note(buf, ev[TASK.at.info])
        elif ev[2] == ENTRY.tag:
            i = int(ev[ENTRY.at.args].partition("=")[2])
            seen[i].append((ev[3].qualname, table.running(buf)))
    assert sorted(seen) == list(range(n))
    for i, calls in seen.items():
        # work starts, suspends at sleep(0), resumes and calls step: all on one task,
        # and that task is the one the handler ran in (its name, unique: Task-N).
        assert [fn for fn, _ in calls] == ["work", "work", "step"], i
        # aiohttp makes its handler task with asyncio.Task(..., eager_start=True):
        # that first step runs inside the C constructor, which no Python
        # function of asyncio sees; the C path sees it by asyncio's current-task
        # dictionary, the pure path by its probes (tasks.py): every step is the
        # handler task's own on both.
        numbers = {t for _, t in calls}
        assert len(numbers) == 1 and 0 not in numbers, i
        assert table.info(numbers.pop()).name == SERVED[i].get_name(), i
