"""Running versus waiting (fntrace/tracing/coro_time.py): a coroutine call's wall
time and the part it ran, in function_graph's text and ``report --by-task``.

Every trace here is built by hand with chosen timestamps: the expected times
are exact (no clock, no sleep).  Two tasks run the same coroutine at the same
depth, interleaved, so a split that mixed calls would be caught.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fntrace.analysis.coro_report import Split, coroutine_splits
from fntrace.analysis.report import build, format_table
from fntrace.analysis.task_report import format_tasks, task_rows
from fntrace.core.events import ENTRY, EXIT, TASK
from fntrace.formats.tracefile import Record
from fntrace.tracing.coro_time import CoroutineClock, split_text, time_text
from fntrace.tracing.graph_text import GraphText


@dataclass(frozen=True)
class Fn:
    name: str


@dataclass(frozen=True)
class Buf:
    name: str = "MainThread"
    tid: int = 7
    cpu: int = 0
    thread_flags: str = ""


MAIN, WORK, HELPER = Fn("m:main"), Fn("m:work"), Fn("m:helper")

# (ts, what, ...): "note" text | "E" fn depth event | "X" fn depth duration event
SCRIPT: list[tuple[Any, ...]] = [
    (0, "note", 'new {"creator": 0, "name": "main", "task": 1}'),
    (0, "note", "run 1"),
    (100, "E", MAIN, 0, "start"),
    (150, "E", HELPER, 1, "start"),
    (170, "X", HELPER, 1, 20, "return"),
    (200, "X", MAIN, 0, 100, "yield"),
    (210, "note", 'new {"creator": 1, "name": "a", "task": 2}'),
    (210, "note", 'new {"creator": 1, "name": "b", "task": 3}'),
    (1000, "note", "run 2"),
    (1000, "E", WORK, 0, "start"),
    (1100, "X", WORK, 0, 100, "yield"),
    (1200, "note", "run 3"),
    (1200, "E", WORK, 0, "start"),
    (1250, "X", WORK, 0, 50, "yield"),
    (2000, "note", "run 2"),
    (2000, "E", WORK, 0, "resume"),
    (2010, "X", WORK, 0, 10, "return"),
    (2010, "note", 'end {"state": "done", "task": 2}'),
    (3000, "note", "run 3"),
    (3000, "E", WORK, 0, "resume"),
    (3100, "X", WORK, 0, 100, "unwind"),
    (3100, "note", 'end {"state": "raised ValueError", "task": 3}'),
    (5000, "note", "run 1"),
    (5000, "E", MAIN, 0, "resume"),
    (5300, "X", MAIN, 0, 300, "return"),
    (5300, "note", 'end {"state": "done", "task": 1}'),
    (5300, "note", "run 0"),
]


def ring_events() -> list[tuple[Buf, tuple[Any, ...]]]:
    buf = Buf()
    out: list[tuple[Buf, tuple[Any, ...]]] = []
    for ts, what, *rest in SCRIPT:
        if what == "note":
            out.append((buf, (ts, 64, TASK.tag, rest[0])))
        elif what == "E":
            fn, depth, event = rest
            out.append((buf, (ts, 64, ENTRY.tag, fn, depth, None, event)))
        else:
            fn, depth, duration, event = rest
            value = "ValueError" if event == "unwind" else None
            out.append((buf, (ts, 64, EXIT.tag, fn, depth, duration, event, value)))
    return out


def records() -> list[Record]:
    out = []
    for ts, what, *rest in SCRIPT:
        if what == "note":
            out.append(Record("task", 1, 7, ts, "", None, 0, "", None, None, None, rest[0]))
        elif what == "E":
            fn, depth, event = rest
            out.append(Record("entry", 1, 7, ts, fn.name, None, depth, event, None, None,
                              None, None))
        else:
            fn, depth, duration, event = rest
            out.append(Record("exit", 1, 7, ts, fn.name, None, depth, event, None, None,
                              duration, None))
    return out


OPTIONS = {"funcgraph-abstime": 0, "funcgraph-proc": 0, "funcgraph-task": 1,
           "funcgraph-duration": 0, "funcgraph-overhead": 0, "funcgraph-tail": 0}


def test_time_text() -> None:
    assert [time_text(n) for n in (0, 999, 1000, 4_200, 12_400_000, 1_500_000_000)] == [
        "0 ns", "999 ns", "1.00 us", "4.20 us", "12.4 ms", "1.50 s"]
    assert split_text(12_400_000, 1_100_000) == "12.4 ms (run 1.10 ms)"


def test_clock_splits_each_call_by_its_key() -> None:
    clock = CoroutineClock()
    a, b = ("t", 2, 0, "w"), ("t", 3, 0, "w")
    clock.entry(a, "start", 1000)
    assert clock.exit(a, "yield", 1100, 100) is None
    clock.entry(b, "start", 1200)
    assert clock.exit(b, "yield", 1250, 50) is None
    clock.entry(a, "resume", 2000)
    assert clock.exit(a, "return", 2010, 10) == (1010, 110, 2)
    clock.entry(b, "resume", 3000)
    assert clock.exit(b, "unwind", 3100, 100) == (1900, 150, 2)
    # A resume whose start the trace lacks: unknown, no split.
    clock.entry(a, "resume", 4000)
    assert clock.exit(a, "return", 4010, 10) is None
    assert clock.open == {}


def test_function_graph_says_wall_and_run_of_each_coroutine_call() -> None:
    text = GraphText(OPTIONS, 1, lambda buf, ev: "").lines(ring_events())
    lines = [line.rstrip("\n") for _, line in text]
    assert lines == [
        " 0)     main-1     | m:main() {",
        " 0)     main-1     |   m:helper();",
        " 0)     main-1     | } /* m:main yield */",
        " 0)      a-2       | m:work(); /* yield */",
        " 0)      b-3       | m:work(); /* yield */",
        " 0)      a-2       | m:work(); /* 1.01 us (run 110 ns) */",
        " 0)      b-3       | m:work(); /* raised ValueError; 1.90 us (run 150 ns) */",
        " 0)     main-1     | m:main(); /* 5.20 us (run 400 ns) */",
    ]


def test_no_split_without_task_notes() -> None:
    """Without the notes two tasks' calls cannot be told apart: no split is shown."""
    events = [(b, ev) for b, ev in ring_events() if ev[2] != TASK.tag]
    lines = [line for _, line in GraphText(OPTIONS, 1, lambda b, e: "").lines(events)]
    assert not [line for line in lines if "(run " in line]


def test_report_by_task_rows() -> None:
    rows = task_rows(records())
    got = [(r.label, r.state, r.creator, r.func, r.calls, r.wall, r.run, r.wait)
           for r in rows]
    assert got == [
        ("main-1", "done", "-", "m:main", 2, 5200, 400, 4800),
        ("a-2", "done", "main-1", "m:work", 1, 1010, 110, 900),
        ("b-3", "raised ValueError", "main-1", "m:work", 1, 1900, 150, 1750),
    ]
    assert format_tasks(rows) == [
        "TASK    STATE              CREATOR  CALLS     WALL     RUN     WAIT  FUNCTION",
        "main-1  done               -            2  5.20 us  400 ns  4.80 us  m:main",
        "a-2     done               main-1       1  1.01 us  110 ns   900 ns  m:work",
        "b-3     raised ValueError  main-1       1  1.90 us  150 ns  1.75 us  m:work",
    ]
    assert json.loads(SCRIPT[0][2][4:])["task"] == 1  # the notes are the writer's form


def test_report_run_and_wait_per_function() -> None:
    """The per-function report's Run and Wait: the sums, per function, of the
    splits function_graph shows (main: 5.20 us wall, 400 ns run; work: a's 1.01
    us / 110 ns and b's 1.90 us / 150 ns), exact to the ns; helper never
    suspends: no split, its cells ``-``."""
    splits = coroutine_splits(records())
    assert splits == {None: {"m:main": Split(1, 400, 4800),
                             "m:work": Split(2, 110 + 150, 900 + 1750)}}
    per_thread = coroutine_splits(records(), per_thread=True)
    assert per_thread == {(1, 7): splits[None]}
    rep = build(records())
    assert format_table(rep.tables[None], "name", splits=splits[None]) == [
        "# Run, Wait: the coroutine calls that suspended, their wall time = time run + "
        "time waited (by asyncio task)",
        "  Total time   Self time       Calls     Average     Minimum     Maximum"
        "         Run        Wait  Function",
        "  ==========  ==========  ==========  ==========  ==========  ==========  "
        "==========  ==========  ====================",
        "       20 ns       20 ns           1       20 ns       20 ns       20 ns"
        "           -           -  m:helper",
        "      400 ns      380 ns           1      400 ns      400 ns      400 ns"
        "      400 ns    4.800 us  m:main",
        "      260 ns      260 ns           2      130 ns      110 ns      150 ns"
        "      260 ns    2.650 us  m:work",
    ]
    # Without the notes two tasks' calls cannot be told apart: no columns.
    assert coroutine_splits([r for r in records() if r.kind != TASK.name]) == {}
