"""The function_graph tracer: nesting, leaves, exits, options and selection.

Every test runs a small workload of this module's ``wl_*`` functions under a
function_graph instance, parses the text it renders (CPU, overhead mark,
duration, nesting level, function column) and compares the exact sequence of
(level, text) lines with what the workload must produce.  Counts are checked
against an independent ``sys.setprofile`` oracle; durations against the
nesting (a child never lasts longer than its parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import pytest
from helpers import needs_threads

import fntrace.tracing.instance
from fntrace import Event
from fntrace.core import engine
from fntrace.core.oscaps import native_id
from fntrace.core.symbols import function_for_code
from fntrace.tracing import ftrace_text
from fntrace.tracing.instance import Instance
from fntrace.tracing.ring_buffer import ThreadBuffer
from fntrace.tracing.tracers.function_graph import (
    ENTRY,
    EXIT,
    duration_text,
    overhead_mark,
)

# Both hot paths (C recorders and pure Python), see conftest.py.
pytestmark = pytest.mark.usefixtures("hot_path")

MOD = __name__
FILTER = f"{MOD}:wl_*"


def raised(name: str) -> str:
    """The unwind note: 3.11 cannot see the exception of an unwinding frame."""
    return f"raised {name}" if sys.version_info >= (3, 12) else "raised (type unknown on 3.11)"


# -- the workload ------------------------------------------------------------------


def wl_leaf(x: int) -> int:
    return x * 2


def wl_fact(n: int) -> int:
    return 1 if n <= 1 else n * wl_fact(n - 1)


def wl_add(a: int, b: str) -> str:
    return f"{wl_leaf(a) - a}{b}"


def wl_outer() -> int:
    return wl_leaf(1) + wl_mid() + wl_leaf(2)


def wl_mid() -> int:
    return wl_leaf(3)


def wl_thrower() -> None:
    wl_leaf(0)
    raise ValueError("deep")


def wl_pass_through() -> None:
    wl_thrower()


def wl_raiser() -> None:
    raise KeyError("leaf")


def wl_catch() -> int:
    try:
        wl_pass_through()
    except ValueError:
        pass
    try:
        wl_raiser()
    except KeyError:
        pass
    return wl_leaf(5)


def wl_gen(n: int) -> Iterator[int]:
    for i in range(n):
        wl_leaf(i)
        yield i


def wl_guarded() -> Iterator[int]:
    try:
        yield 1
    except KeyError:
        yield 2
    finally:
        wl_leaf(9)


def wl_consume() -> int:
    total = 0
    for x in wl_gen(2):
        total += wl_leaf(x)
    return total


async def wl_step(name: str, i: int) -> None:
    await asyncio.sleep(0)


async def wl_worker(name: str, n: int) -> None:
    for i in range(n):
        await wl_step(name, i)


async def wl_main() -> None:
    await asyncio.gather(wl_worker("a", 2), wl_worker("b", 2))


def wl_slow() -> None:
    time.sleep(0.005)


def wl_fast() -> int:
    return 1


def wl_slow_outer() -> None:
    wl_fast()
    wl_slow()
    wl_fast()


def wl_h() -> int:
    return wl_leaf(4)


def wl_g() -> int:
    return wl_h()


def wl_a() -> int:
    return wl_leaf(1) + wl_g()


def wl_b() -> int:
    return wl_g()


def wl_top() -> int:
    return wl_a() + wl_b() + wl_h()


def wl_ggen() -> Iterator[int]:
    yield wl_h()
    yield wl_h()


def wl_drive_ggen() -> int:
    total = 0
    for x in wl_ggen():
        total += x + wl_h()
    return total


def wl_marked(inst: Instance) -> None:
    wl_leaf(1)
    inst.write("trace_marker", "in the middle")
    wl_leaf(2)


def wl_mark_only(inst: Instance) -> None:
    inst.write("trace_marker", "inside")


def wl_switch_off(inst: Instance) -> None:
    wl_leaf(1)
    inst.write("tracing_on", "0")


def wl_pid_inner(inst: Instance) -> None:
    inst.write("set_ftrace_pid", "")  # this call's entry was filtered out, its exit is not


def wl_pid_outer(inst: Instance) -> None:
    inst.write("set_ftrace_pid", str(native_id() + 1))
    wl_pid_inner(inst)
    wl_leaf(2)


def wl_pipe_reader(inst: Instance, out: list[str]) -> None:
    out.append(inst.read("trace_pipe"))


# -- parsing -----------------------------------------------------------------------

_LINE = re.compile(r"^ (?P<cpu>\d+)\) (?P<col>[^|]{14,})\|  (?P<body>.*)$")
_BARE = re.compile(r"^ (?P<cpu>\d+)\) (?P<body>.*)$")


@dataclass
class Line:
    cpu: int
    mark: str | None     # None on entry and comment lines
    us: float | None     # the duration, µs
    level: int
    text: str            # module prefix removed
    us_text: str = ""    # as displayed (its precision bounds the real duration)

    @property
    def shape(self) -> tuple[int, str]:
        return (self.level, self.text)


def _body(body: str) -> tuple[int, str]:
    stripped = body.lstrip(" ")
    indent = len(body) - len(stripped)
    assert indent % 2 == 0, body
    return indent // 2, stripped.replace(f"{MOD}:", "")


def parse(text: str, duration: bool = True) -> list[Line]:
    out = []
    for raw in text.splitlines():
        if not raw or raw.startswith("#"):
            continue
        if not duration:
            m = _BARE.match(raw)
            assert m is not None, raw
            level, body = _body(m["body"])
            out.append(Line(int(m["cpu"]), None, None, level, body))
            continue
        m = _LINE.match(raw)
        assert m is not None, raw
        col = m["col"]
        level, body = _body(m["body"])
        if col.strip():
            dur = re.fullmatch(r"(.) (\d+(?:\.\d+)?) us +", col)
            assert dur is not None, raw
            out.append(Line(int(m["cpu"]), dur[1], float(dur[2]), level, body, dur[2]))
        else:
            assert len(col) == 14, raw
            out.append(Line(int(m["cpu"]), None, None, level, body))
    return out


def shapes(lines: list[Line]) -> list[tuple[int, str]]:
    return [ln.shape for ln in lines]


def trace_lines(inst: Instance) -> list[Line]:
    return parse(inst.read("trace"))


@dataclass
class Call:
    name: str
    us: float
    children: list[Call]


def calls(lines: list[Line]) -> tuple[list[Call], Counter[tuple[str, str]]]:
    """Rebuild the call tree of one thread's lines; count entries and exits per name.

    Checks nesting on the way: a ``}`` closes the innermost open block, one
    level up from its children, and names it when it says a name.
    """
    roots: list[Call] = []
    counts: Counter[tuple[str, str]] = Counter()
    stack: list[tuple[str, int, list[Call]]] = []

    def attach(call: Call) -> None:
        (stack[-1][2] if stack else roots).append(call)

    for ln in lines:
        if ln.text.startswith("/*"):
            continue
        if ln.text.endswith("{"):
            assert ln.level == len(stack), ln
            name = ln.text.split("(")[0]
            stack.append((name, ln.level, []))
            counts["entry", name] += 1
        elif ln.text.startswith("}"):
            name, level, children = stack.pop()
            assert ln.level == level, ln
            said = re.match(r"\} /\* (\S+)", ln.text)
            assert said is None or said[1] == name, (ln, name)
            assert ln.us is not None
            attach(Call(name, ln.us, children))
            counts["exit", name] += 1
        else:
            assert ln.level == len(stack), ln
            name = ln.text.split("(")[0]
            assert ln.us is not None
            attach(Call(name, ln.us, []))
            counts["entry", name] += 1
            counts["exit", name] += 1
    assert not stack, stack
    return roots, counts


def check_durations(roots: list[Call]) -> int:
    """Assert child <= parent all the way down; return how many pairs were checked."""
    n = 0
    for call in roots:
        for child in call.children:
            assert child.us <= call.us, (child, call)
            n += 1
        n += check_durations(call.children)
    return n


@contextlib.contextmanager
def traced(work: Callable[[], Any], *, graph_function: str = "", graph_notrace: str = "",
           max_graph_depth: int = 0, thresh: int = 0, **options: int) -> Iterator[Instance]:
    """An instance for ``work``: filters and limits set, ``work`` run, then yielded open."""
    with fntrace.tracing.instance.trace("function_graph", filter=[FILTER], **options) as inst:
        if graph_function:
            inst.write("set_graph_function", graph_function)
        if graph_notrace:
            inst.write("set_graph_notrace", graph_notrace)
        inst.write("max_graph_depth", str(max_graph_depth))
        inst.write("tracing_thresh", str(thresh))
        work()
        yield inst


def run(work: Callable[[], Any], **kw: Any) -> list[Line]:
    with traced(work, **kw) as inst:
        return trace_lines(inst)


# -- formats -------------------------------------------------------------------------


def test_duration_text_and_marks_follow_the_kernel() -> None:
    assert duration_text(1382) == "1.382 us    "
    assert duration_text(217_240) == "217.240 us  "
    assert duration_text(12_345_678) == "12345.67 us "
    assert duration_text(123_456_789) == "123456.7 us "
    assert duration_text(1_234_567_890) == "1234567 us  "
    assert duration_text(0) == "0.000 us    "
    assert [overhead_mark(n) for n in (10_000, 10_001, 100_001, 1_000_001, 10_000_001,
                                       100_000_001, 1_000_000_001)] == list(" +!#*@$")


def test_header_and_columns() -> None:
    with traced(lambda: wl_fact(3)) as inst:
        text = inst.read("trace")
        head = [ln for ln in text.splitlines() if ln.startswith("#")]
        assert head[0] == "# tracer: function_graph"
        assert head[-2:] == ["# CPU  DURATION                  FUNCTION CALLS",
                             "# |     |   |                     |   |   |   |"]
        body = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        assert len(body) == 5
        for ln in body:  # " 0) " + 14 columns of duration, then "|  "
            assert ln.index("|") == 18 and ln[18:21] == "|  ", ln
        assert body[0] == f" 0)               |  {MOD}:wl_fact() {{"
        assert re.fullmatch(rf" 0\) [ +!#*@$] \d+\.\d{{1,3}} us +\|      {MOD}:wl_fact\(\);",
                            body[2]), body[2]
        assert re.fullmatch(r" 0\) [ +!#*@$] \d+\.\d{1,3} us +\|    \}", body[3]), body[3]


# -- nesting -------------------------------------------------------------------------


def test_recursion_nests_one_level_per_call() -> None:
    lines = run(lambda: wl_fact(4))
    assert shapes(lines) == [
        (0, "wl_fact() {"),
        (1, "wl_fact() {"),
        (2, "wl_fact() {"),
        (3, "wl_fact();"),
        (2, "}"),
        (1, "}"),
        (0, "}"),
    ]
    assert {ln.cpu for ln in lines} == {0}


def test_leaves_are_one_line() -> None:
    assert shapes(run(wl_outer)) == [
        (0, "wl_outer() {"),
        (1, "wl_leaf();"),
        (1, "wl_mid() {"),
        (2, "wl_leaf();"),
        (1, "}"),
        (1, "wl_leaf();"),
        (0, "}"),
    ]


def test_exceptions_close_visibly_and_the_catcher_goes_on() -> None:
    assert shapes(run(wl_catch)) == [
        (0, "wl_catch() {"),
        (1, "wl_pass_through() {"),
        (2, "wl_thrower() {"),
        (3, "wl_leaf();"),
        (2, f"}} /* wl_thrower {raised('ValueError')} */"),
        (1, f"}} /* wl_pass_through {raised('ValueError')} */"),
        (1, f"wl_raiser(); /* {raised('KeyError')} */"),
        (1, "wl_leaf();"),
        (0, "}"),
    ]


def test_generator_segments_nest_where_they_run() -> None:
    assert shapes(run(wl_consume)) == [
        (0, "wl_consume() {"),
        (1, "wl_gen() {"),
        (2, "wl_leaf();"),
        (1, "} /* wl_gen yield */"),
        (1, "wl_leaf();"),
        (1, "wl_gen() {"),
        (2, "wl_leaf();"),
        (1, "} /* wl_gen yield */"),
        (1, "wl_leaf();"),
        (1, "wl_gen();"),  # the last resume runs off the end of the loop: a return
        (0, "}"),
    ]


def test_generator_throw_and_close() -> None:
    def work() -> None:
        gen = wl_guarded()
        next(gen)
        assert gen.throw(KeyError("in")) == 2
        gen.close()

    assert shapes(run(work)) == [
        (0, "wl_guarded(); /* yield */"),
        (0, "wl_guarded(); /* yield */"),  # resumed by throw(), caught, yields again
        (0, "wl_guarded() {"),  # close(): GeneratorExit runs the finally block
        (1, "wl_leaf();"),
        (0, f"}} /* wl_guarded {raised('GeneratorExit')} */"),
    ]


def test_asyncio_tasks_interleave_segment_by_segment() -> None:
    lines = run(lambda: asyncio.run(wl_main()), funcgraph_args=1)
    def worker(name: str) -> str:
        return f"wl_worker(name='{name}', n=2) {{"

    def step(name: str, i: int) -> str:
        return f"wl_step(name='{name}', i={i});"

    expected = [(0, "wl_main(); /* yield */")]
    for name in "ab":  # each task runs until sleep(0) suspends it
        expected += [(0, worker(name)), (1, step(name, 0) + " /* yield */"),
                     (0, "} /* wl_worker yield */")]
    for name in "ab":  # sleep(0) returns, the next step suspends
        expected += [(0, worker(name)), (1, step(name, 0)),
                     (1, step(name, 1) + " /* yield */"), (0, "} /* wl_worker yield */")]
    for name in "ab":  # the last step returns, and so does the worker
        expected += [(0, worker(name)), (1, step(name, 1)), (0, "}")]
    expected.append((0, "wl_main();"))
    assert shapes(lines) == expected


@needs_threads
def test_threads_are_separated_by_cpu() -> None:
    n_threads = 3
    barrier = threading.Barrier(n_threads)
    tids: dict[str, int] = {}

    def body(name: str) -> None:
        tids[name] = native_id()
        barrier.wait()
        for _ in range(20):
            wl_fact(3)

    def work() -> None:
        threads = [threading.Thread(target=body, args=(f"t{i}",)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    with traced(work, funcgraph_proc=1) as inst:
        text = inst.read("trace")
    one = [(0, "wl_fact() {"), (1, "wl_fact() {"), (2, "wl_fact();"), (1, "}"), (0, "}")]
    per_cpu: dict[int, list[tuple[int, str]]] = {}
    procs: dict[int, set[str]] = {}
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        m = re.match(r"^ (\d+)\) ([^|]+?) \| (.*)$", raw)
        assert m is not None, raw
        cpu = int(m[1])
        procs.setdefault(cpu, set()).add(m[2].strip())
        (ln,) = parse(f" {cpu}) {m[3]}")
        per_cpu.setdefault(cpu, []).append(ln.shape)
    assert len(per_cpu) == n_threads
    for seq in per_cpu.values():
        assert seq == one * 20
    # one TASK-PID per CPU, naming the threads that ran
    assert sorted(len(p) for p in procs.values()) == [1] * n_threads
    seen = {next(iter(p)).rsplit("-", 1)[1] for p in procs.values()}
    assert seen == {str(t) for t in tids.values()}


def test_markers_sit_at_the_writers_level() -> None:
    def work() -> None:
        wl_marked(inst_box[0])
        wl_mark_only(inst_box[0])
        inst_box[0].write("trace_marker", "after")

    inst_box: list[Instance] = []
    with fntrace.tracing.instance.trace("function_graph", filter=[FILTER]) as inst:
        inst_box.append(inst)
        work()
        lines = trace_lines(inst)
    assert shapes(lines) == [
        (0, "wl_marked() {"),
        (1, "wl_leaf();"),
        (1, "/* in the middle */"),
        (1, "wl_leaf();"),
        (0, "}"),
        (0, "wl_mark_only() {"),  # the marker between entry and exit: not a leaf
        (1, "/* inside */"),
        (0, "}"),
        (0, "/* after */"),
    ]
    assert [ln.us for ln in lines if ln.text.startswith("/*")] == [None] * 3


# -- durations and counts ------------------------------------------------------------


def _mixed_workload() -> None:
    wl_fact(5)
    wl_outer()
    wl_catch()
    wl_consume()
    gen = wl_guarded()
    next(gen)
    gen.throw(KeyError("x"))
    gen.close()
    asyncio.run(wl_main())
    wl_top()
    wl_drive_ggen()


def _oracle(work: Callable[[], Any]) -> Counter[tuple[str, str]]:
    """Entries ('call') and exits ('return') of this file's wl_* code, by sys.setprofile."""
    counts: Counter[tuple[str, str]] = Counter()

    def prof(frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if code.co_filename == __file__ and code.co_name.startswith("wl_"):
            if event == "call":
                counts["entry", code.co_qualname] += 1
            elif event == "return":
                counts["exit", code.co_qualname] += 1

    sys.setprofile(prof)
    try:
        work()
    finally:
        sys.setprofile(None)
    return counts


def test_counts_match_a_setprofile_oracle_and_children_fit_in_parents() -> None:
    assert engine.registered_ops() == []  # the oracle's profile function must run alone
    expected = _oracle(_mixed_workload)
    lines = run(_mixed_workload)
    roots, counts = calls(lines)
    assert counts == expected
    assert sum(expected.values()) > 100
    assert check_durations(roots) > 40
    assert all(ln.us is not None and ln.us >= 0 for ln in lines if not ln.text.endswith("{"))


def test_overhead_marks_match_the_durations() -> None:
    def work() -> None:
        wl_slow_outer()
        wl_outer()

    with traced(work) as inst:
        on = trace_lines(inst)
        inst.write("options/funcgraph-overhead", "0")
        off = trace_lines(inst)
    timed = [ln for ln in on if ln.us is not None]
    for ln in timed:  # the text is truncated: the duration is in [shown, shown + last digit)
        whole, _, frac = ln.us_text.partition(".")
        unit = 10 ** (3 - len(frac))
        low = int(whole) * 1000 + (int(frac) * unit if frac else 0)
        assert ln.mark in {overhead_mark(low), overhead_mark(low + unit - 1)}, ln
    slow = [ln for ln in timed if ln.text == "wl_slow();"]
    assert len(slow) == 1 and slow[0].us >= 5000 and slow[0].mark in "#*@$"
    assert [ln.mark for ln in off if ln.us is not None] == [" "] * len(timed)
    assert shapes(on) == shapes(off)


# -- options -------------------------------------------------------------------------


def test_funcgraph_args() -> None:
    assert shapes(run(lambda: wl_add(1, "x"), funcgraph_args=1)) == [
        (0, "wl_add(a=1, b='x') {"),
        (1, "wl_leaf(x=1);"),
        (0, "}"),
    ]
    assert shapes(run(lambda: wl_add(1, "x"))) == [
        (0, "wl_add() {"), (1, "wl_leaf();"), (0, "}")]


def test_funcgraph_retval() -> None:
    def work() -> None:
        wl_add(1, "x")
        list(wl_gen(1))

    assert shapes(run(work, funcgraph_retval=1)) == [
        (0, "wl_add() {"),
        (1, "wl_leaf(); /* ret=2 */"),
        (0, "} /* wl_add ret='1x' */"),
        (0, "wl_gen() {"),
        (1, "wl_leaf(); /* ret=0 */"),
        (0, "} /* wl_gen yield ret=0 */"),
        (0, "wl_gen(); /* ret=None */"),
    ]
    assert shapes(run(work)) == [
        (0, "wl_add() {"), (1, "wl_leaf();"), (0, "}"),
        (0, "wl_gen() {"), (1, "wl_leaf();"), (0, "} /* wl_gen yield */"),
        (0, "wl_gen();"),
    ]


def test_funcgraph_tail() -> None:
    with traced(wl_outer, funcgraph_tail=1) as inst:
        on = shapes(trace_lines(inst))
        inst.write("options/funcgraph-tail", "0")
        off = shapes(trace_lines(inst))
    assert [t for _, t in on if t.startswith("}")] == ["} /* wl_mid */", "} /* wl_outer */"]
    assert [t for _, t in off if t.startswith("}")] == ["}", "}"]


def test_funcgraph_proc() -> None:
    tid = native_id()
    name = threading.current_thread().name[-16:]
    with traced(wl_outer, funcgraph_proc=1) as inst:
        on = inst.read("trace")
        inst.write("options/funcgraph-proc", "0")
        off = inst.read("trace")
    assert "TASK/PID" in on and "TASK/PID" not in off
    body = [ln for ln in on.splitlines() if not ln.startswith("#")]
    assert len(body) == 7
    for raw in body:
        m = re.match(r"^ 0\) ([^|]+?) \| ", raw)
        assert m is not None and m[1].strip() == f"{name}-{tid}", raw
    assert shapes(parse(off)) == shapes(parse("\n".join(
        re.sub(r"^( 0\) )[^|]+? \| ", r"\1", raw) for raw in body)))


@needs_threads
def test_funcgraph_proc_centers_short_names() -> None:
    tids: list[int] = []

    def body() -> None:
        tids.append(native_id())
        wl_leaf(1)

    def work() -> None:
        t = threading.Thread(target=body, name="w")
        t.start()
        t.join()

    with traced(work, funcgraph_proc=1) as inst:
        text = inst.read("trace")
    task = f"w-{tids[0]}"
    pad = 14 - len(task)
    column = " " * (pad // 2) + task + " " * (pad - pad // 2)  # the kernel's centering
    (raw,) = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert raw.startswith(f" 0) {column} | ") and raw.endswith(f"|  {MOD}:wl_leaf();"), raw


def test_funcgraph_abstime() -> None:
    t0 = time.perf_counter_ns()
    with traced(wl_outer, funcgraph_abstime=1) as inst:
        t1 = time.perf_counter_ns()
        on = inst.read("trace")
        inst.write("options/funcgraph-abstime", "0")
        off = inst.read("trace")
    assert "TIME" in on and "TIME" not in off
    body = [ln for ln in on.splitlines() if not ln.startswith("#")]
    stamps = []
    for raw in body:
        m = re.match(r"^ *(\d+)\.(\d{6}) \|  ( 0\) .*)$", raw)
        assert m is not None, raw
        stamps.append(int(m[1]) * 1_000_000 + int(m[2]))
    assert stamps == sorted(stamps)
    assert t0 // 1000 <= stamps[0] and stamps[-1] <= t1 // 1000
    assert shapes(parse(off)) == shapes(parse("\n".join(raw.split("|  ", 1)[1]
                                                        for raw in body)))


def test_funcgraph_duration_off_drops_the_column() -> None:
    with traced(wl_outer, funcgraph_duration=0) as inst:
        text = inst.read("trace")
        inst.write("options/funcgraph-duration", "1")
        with_col = trace_lines(inst)
    head = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert head[-2:] == ["# CPU               FUNCTION CALLS",
                         "# |                 |   |   |   |"]
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert body[0] == f" 0) {MOD}:wl_outer() {{"
    assert body[1] == f" 0)   {MOD}:wl_leaf();"
    assert "us" not in text.replace(MOD, "")
    assert shapes(parse(text, duration=False)) == shapes(with_col)


# -- selection -----------------------------------------------------------------------


def test_max_graph_depth() -> None:
    assert shapes(run(lambda: wl_fact(6), max_graph_depth=3)) == [
        (0, "wl_fact() {"),
        (1, "wl_fact() {"),
        (2, "wl_fact();"),  # its children are deeper than the limit
        (1, "}"),
        (0, "}"),
    ]
    assert shapes(run(lambda: wl_fact(6), max_graph_depth=1)) == [(0, "wl_fact();")]
    assert max(ln.level for ln in run(lambda: wl_fact(6))) == 5


def test_max_graph_depth_counts_from_the_graph_function() -> None:
    assert shapes(run(wl_top, graph_function="wl_g", max_graph_depth=1)) == [
        (0, "wl_g();"), (0, "wl_g();")]


def test_set_graph_function_keeps_only_its_subtree() -> None:
    # wl_g is called from wl_a and from wl_b; wl_h also runs outside wl_g.
    assert shapes(run(wl_top, graph_function="wl_g")) == [
        (0, "wl_g() {"), (1, "wl_h() {"), (2, "wl_leaf();"), (1, "}"), (0, "}"),
        (0, "wl_g() {"), (1, "wl_h() {"), (2, "wl_leaf();"), (1, "}"), (0, "}"),
    ]


def test_set_graph_function_generator_counts_only_its_segments() -> None:
    # wl_h runs inside each segment of wl_ggen and between them in the caller.
    assert shapes(run(wl_drive_ggen, graph_function="wl_ggen")) == [
        (0, "wl_ggen() {"), (1, "wl_h() {"), (2, "wl_leaf();"), (1, "}"),
        (0, "} /* wl_ggen yield */"),
        (0, "wl_ggen() {"), (1, "wl_h() {"), (2, "wl_leaf();"), (1, "}"),
        (0, "} /* wl_ggen yield */"),
        (0, "wl_ggen();"),
    ]


def test_set_graph_notrace_drops_the_function_and_its_subtree() -> None:
    assert shapes(run(wl_top, graph_notrace="wl_g")) == [
        (0, "wl_top() {"),
        (1, "wl_a() {"),
        (2, "wl_leaf();"),
        (1, "}"),
        (1, "wl_b();"),  # its only child was wl_g
        (1, "wl_h() {"),  # called outside wl_g: traced
        (2, "wl_leaf();"),
        (1, "}"),
        (0, "}"),
    ]


class WlClock:
    """A trace clock that moves only when told: durations that do not depend on how
    loaded the machine is (a real clock let a preempted wl_fast pass a 3 ms threshold)."""

    now = 1_000_000

    def __call__(self) -> int:
        return WlClock.now


def wl_thr_fast() -> int:
    WlClock.now += 1_000       # 1 us
    return 1


def wl_thr_slow() -> None:
    WlClock.now += 5_000_000   # 5 ms


def wl_thr_outer() -> None:
    wl_thr_fast()
    wl_thr_slow()
    wl_thr_fast()


@pytest.mark.parametrize("thresh", [3000, 0])
def test_tracing_thresh_keeps_only_long_calls(thresh: int) -> None:
    with fntrace.tracing.instance.trace("function_graph", filter=[FILTER]) as inst:
        inst.write("tracing_thresh", str(thresh))
        inst.rb.clock = WlClock()
        wl_thr_outer()
        lines = trace_lines(inst)
    if thresh:
        assert shapes(lines) == [(1, "} /* wl_thr_slow */"), (0, "} /* wl_thr_outer */")]
        assert [ln.us for ln in lines] == [5000.0, 5002.0]
    else:
        assert len(shapes(lines)) == 5
        assert [ln.us for ln in lines if ln.us is not None] == [1.0, 5000.0, 1.0, 5002.0]


def test_tracing_on_and_pid_filter() -> None:
    def work() -> None:
        inst = box[0]
        inst.write("tracing_on", "0")
        wl_fact(2)
        inst.write("tracing_on", "1")
        wl_mid()
        inst.write("set_ftrace_pid", str(native_id() + 1))
        wl_fact(2)
        inst.write("set_ftrace_pid", str(native_id()))
        wl_leaf(0)

        wl_switch_off(inst)  # its exit comes after tracing_on 0: not written
        inst.write("tracing_on", "1")
        wl_leaf(0)
        wl_pid_outer(inst)

    box: list[Instance] = []
    with fntrace.tracing.instance.trace("function_graph", filter=[FILTER]) as inst:
        box.append(inst)
        work()
        lines = trace_lines(inst)
    assert shapes(lines) == [(0, "wl_mid() {"), (1, "wl_leaf();"), (0, "}"), (0, "wl_leaf();"),
                             (0, "wl_switch_off() {"), (1, "wl_leaf();"), (0, "wl_leaf();"),
                             (0, "wl_pid_outer() {"), (1, "wl_leaf();"), (0, "}")]


def test_trace_pipe_batches_render_on_their_own() -> None:
    out: list[str] = []
    with fntrace.tracing.instance.trace("function_graph", filter=[FILTER]) as inst:
        wl_pipe_reader(inst, out)
        out.append(inst.read("trace_pipe"))
        out.append(inst.read("trace_pipe"))
    assert [shapes(parse(text)) for text in out] == [
        [(0, "wl_pipe_reader() {")],
        [(0, "} /* wl_pipe_reader */")],  # its entry was consumed by the first read
        [],
    ]


def test_pairing_survives_lost_events() -> None:
    """Rendering pairs an exit with the open entry of its own function and depth only."""
    leaf, fact = (function_for_code(f.__code__, MOD) for f in (wl_leaf, wl_fact))
    buf = ThreadBuffer(1, "t", 0, 1 << 20, True)
    stream = [
        (1000, 64, ENTRY, fact, 0, None, "start"),
        (2000, 64, EXIT, leaf, 0, 500, Event.RETURN, None),   # fact's exit, leaf's entry lost
        (3000, 64, ENTRY, fact, 0, None, "start"),
        (4000, 64, ENTRY, leaf, 1, None, "start"),                # leaf's exit lost
        (9000, 64, EXIT, fact, 0, 6000, Event.RETURN, None),
    ]
    inst = Instance()
    try:
        inst.write("current_tracer", "function_graph")
        text = "".join(ftrace_text.render_events(inst, [(buf, ev) for ev in stream]))
        assert shapes(parse(text)) == [
            (0, "wl_fact() {"),
            (0, "} /* wl_leaf */"),
            (0, "wl_fact() {"),
            (1, "wl_leaf() {"),
            (0, "}"),
        ]
        # another tracer reading these events renders each one on its own
        alone = [ftrace_text.render_one(buf, ev, ftrace_text.context(inst)) for ev in stream[:2]]
        assert [ln.shape for ln in parse("".join(alone))] == [
            (0, "wl_fact() {"), (0, "} /* wl_leaf */")]
    finally:
        inst.close()


def test_graph_filters_are_read_back_and_switch_live() -> None:
    box: list[Instance] = []

    def work() -> None:
        wl_top()
        box[0].write("set_graph_function", "wl_h")
        wl_top()
        box[0].write("set_graph_function", "")
        wl_mid()

    with fntrace.tracing.instance.trace("function_graph", filter=[FILTER]) as inst:
        box.append(inst)
        inst.write("set_graph_function", "wl_b")
        assert inst.read("set_graph_function") == "wl_b\n"
        work()
        lines = trace_lines(inst)
    h = [(1, "wl_g() {"), (2, "wl_h() {"), (3, "wl_leaf();"), (2, "}"), (1, "}")]
    hh = [(0, "wl_h() {"), (1, "wl_leaf();"), (0, "}")]
    assert shapes(lines) == [(0, "wl_b() {"), *h, (0, "}"), *hh, *hh, *hh,
                             (0, "wl_mid() {"), (1, "wl_leaf();"), (0, "}")]
