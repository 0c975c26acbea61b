"""The function profiler (trace_stat/function0) and the stack tracer (stack_trace).

Hit counts are checked against an independent ``sys.setprofile`` oracle that
counts distinct frames per function (a generator's frame is the same object at
every resume, so it is one call).  Times are checked exactly with a fake clock
that advances one microsecond per reading: the profiler reads it once per entry
and once per exit, so every duration is known by hand.  Stack depths are
checked against a walk of ``f_back`` made inside the deepest call.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import re
import sys
import textwrap
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import pytest
from helpers import needs_threads

import fntrace
from fntrace.core import engine
from fntrace.tracing.tracers.profile import format_duration

# Both hot paths (C recorders and pure Python), see conftest.py.
pytestmark = pytest.mark.usefixtures("hot_path")

MOD = "ps_work"

WORKLOAD = '''
from __future__ import annotations

import sys


class Failure(Exception):
    pass


def leaf(x):
    return x * 2


def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)


def gen(n):
    for i in range(n):
        yield i


def consume(n):
    total = 0
    for x in gen(n):
        total += leaf(x)
    return total


def risky(x):
    if x:
        raise Failure(x)
    return x


class Acc:
    def __init__(self):
        self.total = 0

    def add(self, x):
        self.total += x
        return self

    @classmethod
    def make(cls):
        return cls()


class Ready:
    def __await__(self):
        yield


async def co(n):
    for _ in range(n):
        await Ready()
    return n


def drive(coro):
    try:
        while True:
            coro.send(None)
    except StopIteration as stop:
        return stop.value


def run():
    acc = Acc.make()
    for i in range(3):
        acc.add(fact(i + 2))
    acc.add(consume(3))
    acc.add(consume(1))
    for x in (0, 1):
        try:
            acc.add(risky(x))
        except Failure:
            acc.add(-1)
    acc.add(drive(co(2)))
    return acc.total


def frames_here():
    """(depth, names) of the caller's stack, walked by hand (the oracle)."""
    f = sys._getframe(1)
    names = []
    while f is not None:
        names.append(f"{f.f_globals.get('__name__')}:{f.f_code.co_qualname}")
        f = f.f_back
    return len(names), names


def rec(n, out):
    if n == 0:
        out.append(frames_here())
        return 0
    return 1 + rec(n - 1, out)


def hop(n, out):
    return rec_hop(n, out)


def rec_hop(n, out):
    if n == 0:
        out.append(frames_here())
        return 0
    return 1 + hop(n - 1, out)


def shallow(out):
    out.append(frames_here())


def holder(obj):
    yield obj
    yield None


def two_yields():
    yield 1
    yield 2


def deep_resume(it, n, out):
    if n == 0:
        out.append(frames_here())
        return next(it)
    return deep_resume(it, n - 1, out)
'''

RUN_RESULT = 32 + 6 + 0 + 0 - 1 + 2


@pytest.fixture
def work(tmp_path: Path) -> Iterator[ModuleType]:
    (tmp_path / f"{MOD}.py").write_text(textwrap.dedent(WORKLOAD).lstrip())
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(MOD)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(MOD, None)


@pytest.fixture
def inst() -> Iterator[fntrace.Instance]:
    with fntrace.Instance() as instance:
        yield instance


def fake_clock(step_ns: int = 1000) -> Callable[[], int]:
    """One microsecond more at each reading: durations count the readings in between."""
    return itertools.count(step_ns, step_ns).__next__


# -- oracle and parsing ------------------------------------------------------------


def oracle_hits(run: Callable[[], Any]) -> tuple[Any, Counter[str]]:
    """Calls per function: distinct frames seen at 'call' events of the workload."""
    frames: dict[FrameType, str] = {}
    hits: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or frame.f_globals.get("__name__") != MOD or frame in frames:
            return
        name = f"{MOD}:{frame.f_code.co_qualname}"
        frames[frame] = name
        hits[name] += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        result = run()
    finally:
        sys.setprofile(previous)
    return result, hits


HEADER = ("  Function                               Hit    Time            Avg             s^2\n"
          "  --------                               ---    ----            ---             ---\n")
ROW = re.compile(r"^  (\S+) +(\d+)    (\d+(?:\.\d+)?) us +(\d+(?:\.\d+)?) us +"
                 r"(\d+(?:\.\d+)?) us +$")


def parse_profile(text: str) -> list[tuple[str, int, str, str, str]]:
    """Rows of trace_stat/function0: (name, hits, time, avg, s^2) as printed."""
    lines = text.splitlines(keepends=True)
    assert "".join(lines[:2]).replace(" ", "") == HEADER.replace(" ", "")
    rows = []
    for line in lines[2:]:
        m = ROW.match(line)
        assert m, line
        rows.append((m[1], int(m[2]), m[3], m[4], m[5]))
    return rows


def krow(name: str, hits: int, total: str, avg: str, var: str) -> str:
    """A row as the kernel prints it: ``"  %-30.30s  %10lu"``, then 3 durations of 12
    columns (``usecs.nsecs us `` padded) each after 4 spaces."""
    cols = "".join(f"    {d} us ".ljust(16) for d in (total, avg, var))
    return f"  {name:<30.30}  {hits:>10}{cols}\n"


def hits_of(text: str) -> Counter[str]:
    return Counter({name: hits for name, hits, *_ in parse_profile(text)})


STACK_ROW = re.compile(r"^ *(\d+)\) +(\d+) +(\d+)   (\S+)\+(-?\d+) \((.*):(\d+)\)$")


def parse_stack(text: str) -> tuple[int, list[tuple[int, int, int, str, int, str, int]]]:
    lines = text.splitlines()
    m = re.fullmatch(r"        Depth    Size   Location    \((\d+) entries\)", lines[0])
    assert m, lines[0]
    assert lines[1] == "        -----    ----   --------"
    rows = []
    for line in lines[2:]:
        r = STACK_ROW.match(line)
        assert r, line
        rows.append((int(r[1]), int(r[2]), int(r[3]), r[4], int(r[5]), r[6], int(r[7])))
    assert len(rows) == int(m[1])
    return int(m[1]), rows


# -- profiler: formats -------------------------------------------------------------


def test_format_duration_is_the_kernels() -> None:
    # trace_print_graph_duration: usecs, then at most 7 digits in all, " us ", pad to 12.
    assert format_duration(0) == "0.000 us    "
    assert format_duration(999) == "0.999 us    "
    assert format_duration(12_223) == "12.223 us   "
    assert format_duration(1_234_567) == "1234.567 us "
    assert format_duration(12_345_678) == "12345.67 us "
    assert format_duration(123_456_789) == "123456.7 us "
    assert format_duration(1_234_567_891) == "1234567 us  "
    assert format_duration(12_345_678_912) == "12345678 us "


def test_exact_table_with_fake_clock(work: ModuleType, inst: fntrace.Instance) -> None:
    inst.write("set_ftrace_filter", "\n".join(
        f"{MOD}:{f}" for f in ("fact", "gen", "consume", "leaf", "risky")))
    inst.write("function_profile_enabled", "1")
    inst.profile.clock = fake_clock()

    def scenario() -> None:
        assert work.fact(4) == 24
        assert work.consume(3) == 6
        assert work.consume(1) == 0
        assert work.risky(0) == 0
        with pytest.raises(work.Failure):
            work.risky(1)

    scenario()
    # fact(4..1): 7, 5, 3, 1 us (2 readings per traced call inside, +1).
    # consume(3): 15 us; its gen runs 4 segments of 1 us (not the 13 us it is alive);
    # consume(1): 7 us, gen 2 us; leaf 1 us each; risky 1 us, unwinding included.
    # s^2 = (n*sum(t^2) - sum(t)^2) / (n*(n-1)):  fact (4*84 - 256)/12 = 6.666,
    # consume (2*274 - 484)/2 = 32, gen (2*20 - 36)/2 = 2, leaf and risky 0.
    assert inst.read("trace_stat/function0") == (
        HEADER
        + krow("ps_work:consume", 2, "22.000", "11.000", "32.000")
        + krow("ps_work:fact", 4, "16.000", "4.000", "6.666")
        + krow("ps_work:gen", 2, "6.000", "3.000", "2.000")
        + krow("ps_work:leaf", 4, "4.000", "1.000", "0.000")
        + krow("ps_work:risky", 2, "2.000", "1.000", "0.000")
    )

    inst.write("trace_stat/function0", "0")
    assert inst.read("trace_stat/function0") == HEADER
    inst.write("options/graph-time", "0")
    scenario()
    # Self time = duration - children's durations: fact 2+2+2+1 = 7 us;
    # consume(3) 15 - (4 + 3) = 8 us, consume(1) 7 - (2 + 1) = 4 us; gen, leaf and
    # risky have no traced children.  s^2: fact (4*13 - 49)/12 = 0.25,
    # consume (2*80 - 144)/2 = 8.
    assert inst.read("trace_stat/function0") == (
        HEADER
        + krow("ps_work:consume", 2, "12.000", "6.000", "8.000")
        + krow("ps_work:fact", 4, "7.000", "1.750", "0.250")
        + krow("ps_work:gen", 2, "6.000", "3.000", "2.000")
        + krow("ps_work:leaf", 4, "4.000", "1.000", "0.000")
        + krow("ps_work:risky", 2, "2.000", "1.000", "0.000")
    )


def test_long_names_widen_the_column(work: ModuleType, inst: fntrace.Instance) -> None:
    # The kernel truncates names to 30 columns; fntrace prints them whole and
    # widens the column, so header and rows stay aligned.
    long_cls = type("A" * 40, (), {"m": lambda self: work.leaf(2)})
    inst.write("set_ftrace_filter", f"{__name__}:*\n{MOD}:leaf")
    clock = fake_clock()
    inst.write("function_profile_enabled", "1")
    inst.profile.clock = clock
    long_cls().m()
    lines = inst.read("trace_stat/function0").splitlines()
    name = f"{__name__}:test_long_names_widen_the_column.<locals>.<lambda>"
    width = len(name)
    assert width > 30
    assert lines == [
        "  Function" + " " * (width - 8) + "         Hit    Time            Avg             s^2",
        "  --------" + " " * (width - 8) + "         ---    ----            ---             ---",
        f"  {name}           1    3.000 us        3.000 us        0.000 us    ",
        f"  {MOD + ':leaf':<{width}}           1    1.000 us        1.000 us        0.000 us    ",
    ]


# -- profiler: hits against the oracle --------------------------------------------


def test_hits_match_oracle(work: ModuleType, inst: fntrace.Instance) -> None:
    result, expected = oracle_hits(work.run)
    assert result == RUN_RESULT
    # The oracle, checked where counts are known by hand: generators and coroutines
    # resumed several times are one call each.
    assert expected[f"{MOD}:fact"] == 2 + 3 + 4
    assert expected[f"{MOD}:gen"] == 2
    assert expected[f"{MOD}:co"] == 1
    assert expected[f"{MOD}:Ready.__await__"] == 2
    assert expected[f"{MOD}:Acc.add"] == 3 + 2 + 2 + 1
    assert expected[f"{MOD}:leaf"] == 4

    inst.write("set_ftrace_filter", f"*:mod:{MOD}")
    inst.write("function_profile_enabled", "1")
    assert work.run() == RUN_RESULT
    text = inst.read("trace_stat/function0")
    assert hits_of(text) == expected
    # Every call finished: each has a time, Avg is Time/Hit as printed.
    records = {fn.name: (h, t, s) for fn, h, t, s in inst.profile.records()}
    assert set(records) == set(expected)
    rows = parse_profile(text)
    for name, hits, total, avg, _ in rows:
        h, t, _s = records[name]
        assert hits == h and total == format_duration(t).split()[0]
        assert avg == format_duration(t // h).split()[0]
    # Sorted by time, longest first.
    times = [records[name][1] for name, *_ in rows]
    assert times == sorted(times, reverse=True)
    # (Not asserted: that run comes first.  With graph-time 1 a recursive function's
    # total sums its nested calls' inclusive times, so fact can outweigh run.)


@needs_threads
def test_hits_in_threads(work: ModuleType, inst: fntrace.Instance) -> None:
    _, once = oracle_hits(work.run)
    inst.write("set_ftrace_filter", f"*:mod:{MOD}")
    inst.write("function_profile_enabled", "1")
    nthreads = 4
    barrier = threading.Barrier(nthreads)
    results: list[int] = []

    def body() -> None:
        barrier.wait()
        for _ in range(3):
            results.append(work.run())

    threads = [threading.Thread(target=body) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [RUN_RESULT] * (3 * nthreads)
    assert hits_of(inst.read("trace_stat/function0")) == Counter(
        {name: 3 * nthreads * n for name, n in once.items()})


def test_generator_started_before_reset_adds_nothing(work: ModuleType,
                                                     inst: fntrace.Instance) -> None:
    inst.write("set_ftrace_filter", f"{MOD}:gen\n{MOD}:leaf")
    inst.write("function_profile_enabled", "1")
    inst.profile.clock = fake_clock()
    g = work.gen(3)
    assert next(g) == 0
    inst.write("trace_stat/function0", "")
    assert list(g) == [1, 2]
    work.leaf(1)
    # The kernel drops the time of a call whose record was reset.
    assert hits_of(inst.read("trace_stat/function0")) == Counter({f"{MOD}:leaf": 1})
    # A new call after the reset counts from its start: 1 hit, 4 segments of 1 us.
    assert list(work.gen(3)) == [0, 1, 2]
    rows = {r[0]: r for r in parse_profile(inst.read("trace_stat/function0"))}
    assert rows[f"{MOD}:gen"] == (f"{MOD}:gen", 1, "4.000", "4.000", "0.000")


def test_abandoned_generators_are_not_kept(work: ModuleType, inst: fntrace.Instance,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A generator dropped while suspended may die without an exit event (3.13);
    # the profiler must not keep its frame (and so its locals) alive.
    from fntrace.tracing.tracers import profile

    monkeypatch.setattr(profile, "OPEN_LIMIT", 8)
    inst.write("set_ftrace_filter", f"{MOD}:holder")
    inst.write("function_profile_enabled", "1")

    class Payload:
        pass

    refs = []
    for _ in range(20):
        payload = Payload()
        refs.append(weakref.ref(payload))
        g = work.holder(payload)
        assert next(g) is payload
        del g, payload
    gc.collect()
    assert [r() for r in refs] == [None] * 20
    assert len(inst.profile._open) <= 8  # calls that never ended are bounded
    assert hits_of(inst.read("trace_stat/function0")) == Counter({f"{MOD}:holder": 20})


def test_time_consistency_real_clock(work: ModuleType, inst: fntrace.Instance) -> None:
    inst.write("set_ftrace_filter", f"*:mod:{MOD}")
    inst.write("function_profile_enabled", "1")
    for _ in range(20):
        work.run()
    rec = {fn.name: (h, t, s) for fn, h, t, s in inst.profile.records()}

    def total(name: str) -> int:
        return rec[f"{MOD}:{name}"][1]

    # graph-time 1: a call's time includes its traced children's (nested, disjoint).
    # fact recurses (up to 4 deep: fact(4)), and each level's time includes the
    # levels below, so its total counts a moment up to 4 times: it is bounded by 4x
    # what run left to it, not by run (a pause inside fact(1) under load broke that).
    others = (total("Acc.make") + total("Acc.add") + total("consume") + total("risky")
              + total("drive"))
    assert total("run") >= others
    assert 4 * (total("run") - others) >= total("fact") > 0
    assert total("consume") >= total("gen") + total("leaf")
    assert total("drive") >= total("co")
    assert total("co") >= total("Ready.__await__")
    for h, t, s in rec.values():
        assert s * h >= t * t  # n * sum(t^2) >= sum(t)^2: s^2 is never negative

    inst.write("trace_stat/function0", "")
    inst.write("options/graph-time", "0")
    start = time.perf_counter_ns()
    for _ in range(20):
        work.run()
    wall = time.perf_counter_ns() - start
    rec = {fn.name: (h, t, s) for fn, h, t, s in inst.profile.records()}
    # Self times do not overlap: together they fit in the wall time of the runs.
    assert sum(t for _, t, _ in rec.values()) <= wall
    assert rec[f"{MOD}:run"][0] == 20


def test_filter_notrace_and_tracing_on(work: ModuleType, inst: fntrace.Instance) -> None:
    _, expected = oracle_hits(work.run)
    inst.write("set_ftrace_filter", f"*:mod:{MOD}")
    inst.write("set_ftrace_notrace", f"{MOD}:Acc.*\n{MOD}:fact")
    inst.write("function_profile_enabled", "1")
    inst.write("tracing_on", "0")  # the kernel's profiler does not look at tracing_on
    work.run()
    wanted = Counter({k: v for k, v in expected.items()
                      if not k.startswith(f"{MOD}:Acc.") and k != f"{MOD}:fact"})
    assert hits_of(inst.read("trace_stat/function0")) == wanted
    # Narrowing the filter while enabled applies at once (filters_changed).
    inst.write("trace_stat/function0", "")
    inst.write("set_ftrace_filter", f"{MOD}:leaf")
    work.run()
    assert hits_of(inst.read("trace_stat/function0")) == Counter({f"{MOD}:leaf": 4})


def test_profiler_enable_disable_registers_and_unregisters(work: ModuleType,
                                                           inst: fntrace.Instance) -> None:
    before = len(engine.registered_ops())
    inst.write("set_ftrace_filter", f"{MOD}:leaf")
    inst.write("function_profile_enabled", "1")
    assert inst.read("function_profile_enabled") == "1\n"
    assert len(engine.registered_ops()) == before + 1
    work.leaf(1)
    inst.write("function_profile_enabled", "0")
    assert len(engine.registered_ops()) == before
    assert inst.read("function_profile_enabled") == "0\n"


# -- stack tracer ----------------------------------------------------------------


def check_stack(inst: fntrace.Instance, depth: int, names: list[str],
                first_line: int) -> None:
    """stack_max_size and stack_trace against an oracle walk from the deepest frame."""
    assert inst.read("stack_max_size") == f"{depth}\n"
    n, rows = parse_stack(inst.read("stack_trace"))
    assert n == depth == len(names)
    assert [r[0] for r in rows] == list(range(depth))
    assert [r[1] for r in rows] == list(range(depth, 0, -1))
    assert [r[2] for r in rows] == [1] * depth
    traced = [r[3] for r in rows]
    if sys.platform == "emscripten":
        # Pyodide starts pytest from code it exec's in __main__: fntrace names that
        # text after the module that ran it (_pyodide._base:<exec>, see
        # fntrace/core/naming.py), the hand walk by its globals; the frames from
        # there on are the platform's, not the test's.
        cut = next((i for i, name in enumerate(traced) if name.startswith("_pyodide.")), depth)
        traced, names = traced[:cut], names[:cut]
    assert traced == names
    assert rows[0][6] == first_line and rows[0][4] == 0  # the entry: its def line


def test_stack_recursion_50(work: ModuleType, inst: fntrace.Instance) -> None:
    inst.write("set_ftrace_filter", f"{MOD}:rec")
    inst.write("stack_tracer_enabled", "1")
    out: list[tuple[int, list[str]]] = []
    assert work.rec(50, out) == 50
    depth, names = out[0]
    assert depth >= 51
    assert names[:52] == [f"{MOD}:rec"] * 51 + [f"{__name__}:test_stack_recursion_50"]
    check_stack(inst, depth, names, work.rec.__code__.co_firstlineno)
    # The rows below the innermost give the line each caller is at.
    _, rows = parse_stack(inst.read("stack_trace"))
    call_line = work.rec.__code__.co_firstlineno + 4
    assert [r[6] for r in rows[1:51]] == [call_line] * 50
    assert all(r[5] == work.__file__ for r in rows[:51])


def test_stack_untraced_frames_between_count(work: ModuleType, inst: fntrace.Instance) -> None:
    # Only rec_hop is traced: each depth is found by walking the untraced hop frames.
    inst.write("set_ftrace_filter", f"{MOD}:rec_hop")
    inst.write("stack_tracer_enabled", "1")
    out: list[tuple[int, list[str]]] = []
    work.rec_hop(20, out)
    depth, names = out[0]
    assert names[:4] == [f"{MOD}:rec_hop", f"{MOD}:hop", f"{MOD}:rec_hop", f"{MOD}:hop"]
    check_stack(inst, depth, names, work.rec_hop.__code__.co_firstlineno)


def test_stack_reset_and_filters(work: ModuleType, inst: fntrace.Instance) -> None:
    inst.write("set_ftrace_filter", f"{MOD}:shallow")
    inst.write("stack_tracer_enabled", "1")
    out: list[tuple[int, list[str]]] = []
    work.rec(40, out)  # deeper, but not selected: does not count
    assert inst.read("stack_max_size") == "0\n"
    work.shallow(out)
    depth, names = out[1]
    check_stack(inst, depth, names, work.shallow.__code__.co_firstlineno)

    inst.write("stack_max_size", "0")
    assert inst.read("stack_max_size") == "0\n"
    assert parse_stack(inst.read("stack_trace")) == (0, [])
    inst.write("stack_max_size", "100000")
    work.shallow(out)
    assert inst.read("stack_max_size") == "100000\n"
    assert parse_stack(inst.read("stack_trace")) == (0, [])

    # Widening the filter while enabled (filters_changed), after a reset to 0.
    inst.write("stack_max_size", "0")
    inst.write("set_ftrace_filter", f"{MOD}:rec", append=True)
    work.rec(40, out)
    depth, names = out[-1]
    check_stack(inst, depth, names, work.rec.__code__.co_firstlineno)
    # notrace wins: nothing deeper is recorded after excluding rec.
    inst.write("stack_max_size", "0")
    inst.write("set_ftrace_notrace", f"{MOD}:rec")
    work.rec(45, out)
    work.shallow(out)
    depth, names = out[-1]
    check_stack(inst, depth, names, work.shallow.__code__.co_firstlineno)


def test_stack_generator_resumed_deeper(work: ModuleType, inst: fntrace.Instance) -> None:
    # The generator starts shallow and is resumed 30 untraced frames deeper: its
    # depth at the resume is the resumer's plus one.
    inst.write("set_ftrace_filter", f"{MOD}:two_yields")
    inst.write("stack_tracer_enabled", "1")
    it = work.two_yields()
    assert next(it) == 1
    out: list[tuple[int, list[str]]] = []
    assert work.deep_resume(it, 30, out) == 2
    depth, names = out[0]
    assert inst.read("stack_max_size") == f"{depth + 1}\n"
    _, rows = parse_stack(inst.read("stack_trace"))
    traced = [r[3] for r in rows]
    expected = [f"{MOD}:two_yields", *names]
    if sys.platform == "emscripten":  # the platform's own outer frames: see check_stack
        cut = next((i for i, name in enumerate(traced) if name.startswith("_pyodide.")),
                   len(traced))
        traced, expected = traced[:cut], expected[:cut]
    assert traced == expected
    assert rows[0][6] == work.two_yields.__code__.co_firstlineno + 1  # resumed at `yield 1`


@needs_threads
def test_stack_max_across_threads(work: ModuleType, inst: fntrace.Instance) -> None:
    inst.write("set_ftrace_filter", f"{MOD}:rec")
    inst.write("stack_tracer_enabled", "1")
    main_out: list[tuple[int, list[str]]] = []
    thread_out: list[tuple[int, list[str]]] = []
    work.rec(5, main_out)
    t = threading.Thread(target=work.rec, args=(150, thread_out))
    t.start()
    t.join()
    deepest = max(main_out[0], thread_out[0])
    assert deepest is thread_out[0]  # a thread's stack starts at its own base
    check_stack(inst, deepest[0], deepest[1], work.rec.__code__.co_firstlineno)


def test_stack_enable_disable_registers_and_unregisters(work: ModuleType,
                                                         inst: fntrace.Instance) -> None:
    before = len(engine.registered_ops())
    inst.write("set_ftrace_filter", f"{MOD}:rec")
    inst.write("stack_tracer_enabled", "1")
    inst.write("function_profile_enabled", "1")
    assert len(engine.registered_ops()) == before + 2
    work.rec(3, [])
    inst.write("stack_tracer_enabled", "0")
    assert len(engine.registered_ops()) == before + 1
    assert inst.read("stack_tracer_enabled") == "0\n"
    assert hits_of(inst.read("trace_stat/function0")) == Counter({f"{MOD}:rec": 4})
    inst.write("function_profile_enabled", "0")
    assert len(engine.registered_ops()) == before
