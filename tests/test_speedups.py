"""The optional C hot path (fntrace/csrc/) against the pure-Python one.

Every test here runs the same program through both paths and compares what
was recorded, field by field (timestamps and durations aside), or checks the
C ring buffer against its Python twin on random operation sequences.  The
tracer test modules also run whole under both paths (conftest's hot_path).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import random
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import fntrace.core.accel
from fntrace.core.events import MARKER, TASK, TASK_PREFIX
from fntrace.tracing.instance import Instance, trace
from fntrace.tracing.ring_buffer import _PyRingCore
from fntrace.tracing.tracers.profile import _PyProfThread

built = fntrace.core.accel.built
needs_c = pytest.mark.skipif(built is None, reason="the C extension is not built")


# -- the workload ---------------------------------------------------------------

def sp_leaf(x: int) -> int:
    return x + 1


def sp_rec(n: int) -> int:
    return sp_leaf(n) if n <= 0 else sp_rec(n - 1) + sp_leaf(n)


def sp_gen(n: int) -> Iterator[int]:
    for i in range(n):
        yield sp_leaf(i)


def sp_raise(n: int) -> None:
    if n:
        sp_raise(n - 1)
    raise KeyError(n)


def sp_catch() -> int:
    try:
        sp_raise(3)
    except KeyError as exc:
        return int(exc.args[0])
    return -1


class SpBadRepr:
    def __repr__(self) -> str:
        raise ValueError("no repr")


def sp_args(i: int, text: str = "t" * 100, *rest: Any, raw: bytes = b"r" * 100,
            cell: float = 0.5, **kw: Any) -> str:
    """Every kind of parameter, values C renders itself (long str and bytes cut,
    ints past the text limit) and values it hands to SafeRepr; `cell` is captured."""
    def inner() -> float:
        return cell
    return f"{i}:{inner()}:{len(rest)}:{sorted(kw)}" * 10


def sp_ints(ñ: int, n: int, big: int) -> int:
    """Ints the C recorder writes itself and keeps texts of by (name, value): a
    non-ASCII parameter name, negatives, the machine-size limits, one past them."""
    return -ñ if n % 2 else n


def sp_thread_body(out: list[int]) -> None:
    """Each worker gets its own list: its argument's repr is ``out=[]`` whatever the
    other workers have done (one shared list was shown as [38] or [38, 38] depending
    on which thread ran first)."""
    out.append(sp_rec(6) + sum(sp_gen(4)))


def sp_main(hook: Callable[[int], None] | None = None) -> int:
    total = 0
    for i in range(30):
        if hook is not None:
            hook(i)
        total += sp_rec(i % 7) + sum(sp_gen(3)) + sp_catch()
        # called from C (map, sorted): the caller is the Python frame below the C call
        total += sum(map(sp_leaf, range(2))) + sorted(range(3), key=sp_leaf)[0]
        total += sp_ints(i - 15, -(2 ** 63) if i % 3 == 0 else i % 4,
                         2 ** 63 if i % 2 else 2 ** 63 - 1) % 1000
        total += len(sp_args(i, "s" * i, 10 ** (i + 40), None, True, 1.5 + 2j, b"x",
                             raw=b"b" * i, cell=i / 3, bad=SpBadRepr(), lst=[1, "a"] * i))
    outs: list[list[int]] = []
    threads = []  # no comprehension: on 3.11 it is a traced function with an address arg
    for _ in range(3):
        outs.append([])
        threads.append(threading.Thread(target=sp_thread_body, args=(outs[-1],)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in outs:
        total += sum(out)
    return total


_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _same_objects(text: Any) -> Any:
    """An event's text without object addresses (``<T object at 0x...>``: the two
    paths run on different objects)."""
    return _ADDRESS.sub(" at 0x?", text) if isinstance(text, str) else text


def _shape(inst: Instance) -> list[tuple[str, list[tuple[Any, ...]], tuple[int, ...]]]:
    """Per thread (in buffer order), the events without timestamps or durations, and
    the ring's counters (the C recorders write into a full ring in place: the same
    events overwritten, counted the same way)."""
    out = []
    for buf in inst.rb.live.buffers():
        events = []
        for ev in buf.events:
            kind = ev[2]
            if kind == "F":    # (ts, size, F, ip, parent, args, event)
                events.append((kind, ev[1], ev[3].name, ev[4] and ev[4].name,
                               _same_objects(ev[5]), ev[6]))
            elif kind == "E":  # (ts, size, E, fn, depth, args, event)
                events.append((kind, ev[1], ev[3].name, ev[4], _same_objects(ev[5]), ev[6]))
            elif kind == "X":  # (ts, size, X, fn, depth, duration, event, value)
                events.append((kind, ev[1], ev[3].name, ev[4], ev[6], _same_objects(ev[7])))
            else:
                events.append((kind, *ev[1:]))
        counters = (buf.written, buf.in_bytes, buf.overrun, buf.overrun_bytes, buf.dropped)
        out.append((buf.thread_flags, events, counters))
    return out


def _run(path: str, monkeypatch: pytest.MonkeyPatch, tracer: str,
         hook_factory: Callable[[Instance], Callable[[int], None]] | None = None,
         expect_events: bool = True,
         **options: int) -> tuple[int, list[tuple[str, list[tuple[Any, ...]]]], int, bool]:
    with monkeypatch.context() as m:
        if path == "pure":
            m.setattr(fntrace.core.accel, "speedups", None)
        with trace(tracer, filter="sp_*", **options) as inst:
            assert inst.tracer is not None
            # the C run has its recorder attached (it writes whenever the options allow)
            assert bool(inst.tracer.recorders) == (path == "c")
            hook = hook_factory(inst) if hook_factory is not None else None
            result = sp_main(hook)
            inst.tracing_on = False
            shape = _shape(inst)
            errors = sum(op.nerrors for op in inst.tracer.ops)
            wrote = bool(inst.tracer.recorders) and all(rec.ok for rec in inst.tracer.recorders)
    # no comparison of two empty traces: a run records events unless told it cannot
    assert any(events for _, events, _ in shape) == expect_events
    return result, shape, errors, wrote  # wrote: the C recorders were writing at the end


# -- C and pure Python record the same events -------------------------------------

CONFIGS = [
    ("function", {}),
    ("function_graph", {}),
    ("function_graph", {"max_graph_depth": 3}),
    ("function", {"buffer_size_kb": 2}),        # the ring wraps many times
    ("function_graph", {"buffer_size_kb": 2}),
    # options the C recorder lacks: Python path (reprs are never timed in tests:
    # conftest's _untimed_reprs)
    ("function", {"func_args": 1}),
    ("function_graph", {"funcgraph_retval": 1}),
    ("function_graph", {"funcgraph_args": 1, "funcgraph_retval": 1}),
    ("function_graph", {"funcgraph_args": 1, "repr_max_len": 8}),
    # the program's own reprs (SpBadRepr's raises)
    ("function", {"func_args": 1, "repr_call": 1}),
    ("function_graph", {"funcgraph_args": 1, "funcgraph_retval": 1, "repr_call": 1}),
]


@needs_c
@pytest.mark.parametrize(("tracer", "options"), CONFIGS)
def test_same_events_both_paths(monkeypatch: pytest.MonkeyPatch, tracer: str,
                                options: dict[str, int]) -> None:
    opts = {k: v for k, v in options.items() if k not in ("max_graph_depth", "buffer_size_kb")}

    def setup(inst: Instance) -> Callable[[int], None]:
        if "max_graph_depth" in options:
            inst.write("max_graph_depth", str(options["max_graph_depth"]))
        if "buffer_size_kb" in options:
            inst.write("buffer_size_kb", str(options["buffer_size_kb"]))
        return lambda i: None

    untraced = sp_main()
    c = _run("c", monkeypatch, tracer, setup, **opts)
    # the C recorder wrote this run unless an option it lacks is set
    assert c[3] == (not options.get("func_args")
                    and (not options.get("funcgraph_args") or bool(built.FRAME_ARGS)))
    pure = _run("pure", monkeypatch, tracer, setup, **opts)
    assert c[0] == pure[0] == untraced
    assert c[1] == pure[1]
    assert c[2] == pure[2] == 0
    # 1 main thread + 3 workers, each with events
    assert len(c[1]) == 4 and all(events for _, events, _ in c[1])


@needs_c
def test_recorders_are_used_and_step_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    with trace("function_graph", filter="sp_*") as inst:
        (rec,) = inst.tracer.recorders  # type: ignore[union-attr]
        assert rec.ok
        inst.write("options/funcgraph-retval", "1")
        assert rec.ok  # written in C
        inst.write("options/funcgraph-args", "1")
        assert rec.ok == bool(built.FRAME_ARGS)  # read from frames in C (3.11-3.13)
        inst.write("options/funcgraph-args", "0")
        inst.write("options/funcgraph-retval", "0")
        assert rec.ok
        inst.write("set_graph_function", "sp_rec")
        assert not rec.ok
        inst.write("set_graph_function", "")
        assert rec.ok
        inst.write("set_ftrace_pid", "1")
        assert rec.ok and rec.pid_check is not None  # applied in C, per thread
        inst.write("set_ftrace_pid", "")
        assert rec.pid_check is None
        inst.write("tracing_thresh", "5")
        assert not rec.ok
    assert not rec.ok  # stopped before its ops was unregistered


@needs_c
@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_switching_options_mid_run(monkeypatch: pytest.MonkeyPatch, tracer: str) -> None:
    """Handing over between the C and Python paths in the middle of calls: an
    option the C recorder lacks (func-args; for function_graph a graph filter
    that excludes nothing called here), and one it writes (funcgraph-retval)."""
    oks: list[bool] = []

    def toggler(inst: Instance) -> Callable[[int], None]:
        def hook(i: int) -> None:
            if i % 5 == 2:
                on = (i // 5) % 2
                if tracer == "function":
                    inst.write("options/func-args", str(on))
                else:
                    inst.write("set_graph_notrace", "sp_never_called" if on else "")
                    inst.write("options/funcgraph-retval", str(int(i % 3 == 0)))
                assert inst.tracer is not None
                oks.append(all(rec.ok for rec in inst.tracer.recorders))
        return hook

    c = _run("c", monkeypatch, tracer, toggler)
    assert oks == [True, False] * 3  # the C recorder stepped aside and back
    pure = _run("pure", monkeypatch, tracer, toggler)
    assert c[0] == pure[0] == sp_main()
    assert c[1] == pure[1]


def sp_toggle(inst: Instance, value: str) -> int:
    sp_leaf(0)
    inst.write("options/funcgraph-retval", value)
    sp_leaf(1)
    return len(value)


@needs_c
def test_exit_after_the_recorder_stepped_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call entered by the C recorder, which steps aside during the call (an
    option it lacks is set): its exit, now on the Python path, is still written,
    and the other way round."""
    shapes = []
    for path in ("c", "pure"):
        with monkeypatch.context() as m:
            if path == "pure":
                m.setattr(fntrace.core.accel, "speedups", None)
            with trace("function_graph", filter=["sp_toggle", "sp_leaf"]) as inst:
                assert bool(inst.tracer.recorders) == (path == "c")  # type: ignore[union-attr]
                # entries: Python (first call), C, Python; exits: C, Python, C
                for value in ("0", "1", "0"):
                    sp_toggle(inst, value)
                inst.tracing_on = False
                shapes.append(_shape(inst))
    c, pure = shapes
    assert c == pure
    ((_, events, _),) = c
    assert [e for e in events if e[0] == "X" and e[2].endswith("sp_toggle")] == [
        ("X", 64, "test_speedups:sp_toggle", 0, "return", None),
        ("X", 65, "test_speedups:sp_toggle", 0, "return", "1"),
        ("X", 64, "test_speedups:sp_toggle", 0, "return", None)]
    assert len(events) == 3 * 6


@needs_c
@pytest.mark.parametrize("tracer", ["function", "function_graph"])
@pytest.mark.parametrize("which", ["set_ftrace_notrace_pid", "set_ftrace_pid"])
def test_pid_filters_inside_the_run(monkeypatch: pytest.MonkeyPatch, tracer: str,
                                    which: str) -> None:
    """The main thread muted (or alone selected) for a while, as `record` mutes its writer."""
    def hook_factory(inst: Instance) -> Callable[[int], None]:
        def hook(i: int) -> None:
            if i == 5:
                inst.write(which, str(threading.get_native_id()))
            elif i == 12:
                inst.write(which, "")
            elif i == 20:  # the workers (started later) are filtered out
                inst.write("set_ftrace_pid", str(threading.get_native_id()))
        return hook

    c = _run("c", monkeypatch, tracer, hook_factory)
    pure = _run("pure", monkeypatch, tracer, hook_factory)
    assert c[0] == pure[0] == sp_main()
    assert c[1] == pure[1]
    assert len(c[1]) == 1  # the worker threads were never traced


@needs_c
@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_snapshot_and_clock_changes_reach_the_recorder(monkeypatch: pytest.MonkeyPatch,
                                                       tracer: str) -> None:
    """The recorders cache the live buffers and the clock: both swaps must reach them."""
    def hook_factory(inst: Instance) -> Callable[[int], None]:
        def hook(i: int) -> None:
            if i == 10:
                inst.write("snapshot", "1")
            elif i == 20:
                inst.write("trace_clock", "counter")
        return hook

    c = _run("c", monkeypatch, tracer, hook_factory)
    pure = _run("pure", monkeypatch, tracer, hook_factory)
    assert c[1] == pure[1]
    with trace(tracer, filter="sp_*") as inst:
        sp_rec(2)
        inst.write("trace_clock", "counter")
        sp_rec(2)
        stamps = [ev[0] for buf in inst.rb.live.buffers() for ev in buf.events]
    assert stamps and all(ts < 1_000_000 for ts in stamps)  # the counter, not ns


@needs_c
@pytest.mark.parametrize(("clock", "read"), [("mono", time.monotonic_ns),
                                             ("global", time.perf_counter_ns),
                                             ("realtime", time.time_ns)])
def test_clocks_read_natively_are_the_same_clocks(clock: str,
                                                  read: Callable[[], int]) -> None:
    """The recorders read these clocks without calling them: same values."""
    with trace("function_graph", filter="sp_*") as inst:
        inst.write("trace_clock", clock)
        (rec,) = inst.tracer.recorders  # type: ignore[union-attr]
        assert rec.ok
        before = read()
        sp_rec(3)
        after = read()
        stamps = [ev[0] for buf in inst.rb.live.buffers() for ev in buf.events]
    assert len(stamps) == 16 and stamps == sorted(stamps)
    assert before <= stamps[0] and stamps[-1] <= after


class SpPayload:
    pass


def sp_hold(payload: SpPayload) -> int:
    return 1


@needs_c
def test_first_calls_leave_no_frame_behind() -> None:
    """The first call of a function (the one that makes it a site) is recorded
    by the C recorder too, so it leaves no entry on the engine's shadow stack,
    whose frame would keep the call's locals alive."""
    from fntrace.core import engine

    with trace("function_graph", filter="sp_hold") as inst:
        payload = SpPayload()
        ref = weakref.ref(payload)
        assert sp_hold(payload) == 1
        del payload
        gc.collect()
        assert ref() is None
        assert engine.thread_shadow_stack() == []
        names = [ev[3].qualname for buf in inst.rb.live.buffers() for ev in buf.events]
    assert names == ["sp_hold", "sp_hold"]


def sp_values(i: int, text: str, raw: bytes, f: float, big: int, none: None) -> str:
    return text * 2  # every value one the C recorder renders itself


@needs_c
@pytest.mark.parametrize(("tracer", "options"), [
    ("function", {}), ("function_graph", {}),
    ("function_graph", {"funcgraph_args": 1, "funcgraph_retval": 1}), ("profile", {})])
def test_trace_sessions_leave_nothing_behind(tracer: str, options: dict[str, int]) -> None:
    """Starting and stopping a tracer, and tracing, allocate nothing that stays:
    the allocator's block count does not grow with the number of sessions (the
    recorders once kept three small objects per session).  Values SafeRepr renders
    in Python are left out: reprlib's and the interpreter's caches grow for a
    while with them, on both paths.  Two hundred sessions, not twenty: an
    attribute looked up by a fresh name string each time (PyObject_GetAttrString)
    leaves that string in one of the type cache's 4,096 slots, keyed by its
    address; some runs reuse the address, so twenty sessions only sometimes grew
    by one block each."""
    def session() -> None:
        if tracer == "profile":
            inst = Instance()
            inst.write("set_ftrace_filter", "sp_*")
            inst.write("function_profile_enabled", "1")
            sp_rec(20)
            inst.read("trace_stat/function0")
            inst.write("function_profile_enabled", "0")
            inst.close()
            return
        with trace(tracer, filter="sp_*", **options):
            sp_rec(20)
            sp_values(1, "x" * 90, b"y" * 90, 2.5, 10 ** 40, None)

    for _ in range(3):
        session()
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(200):
        session()
    gc.collect()
    assert sys.getallocatedblocks() - before < 20  # less than one block per ten sessions


@needs_c
def test_traceoff_inside_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def hook_factory(inst: Instance) -> Callable[[int], None]:
        def hook(i: int) -> None:
            inst.tracing_on = i < 10 or i >= 20
        return hook

    c = _run("c", monkeypatch, "function_graph", hook_factory)
    pure = _run("pure", monkeypatch, "function_graph", hook_factory)
    assert c[1] == pure[1]


@needs_c
@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_a_failing_clock_is_counted_not_raised(monkeypatch: pytest.MonkeyPatch,
                                                tracer: str) -> None:
    def broken(inst: Instance) -> Callable[[int], None]:
        def clock() -> int:
            raise RuntimeError("clock broke")
        inst.rb.clock = clock
        return lambda i: None

    with pytest.warns(RuntimeWarning, match="clock broke"):
        c = _run("c", monkeypatch, tracer, broken, expect_events=False)
    with pytest.warns(RuntimeWarning, match="clock broke"):
        pure = _run("pure", monkeypatch, tracer, broken, expect_events=False)
    assert c[0] == pure[0] == sp_main()
    assert c[2] == pure[2] > 0


@needs_c
@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_trace_ended_inside_a_recorded_event(tracer: str) -> None:
    """A ring's no-loss hook runs inside an event the C recorder is writing, for
    which the dispatcher lends the recorder the site's recorder and Function
    without holding them.  A hook that ends the trace frees the sites, the
    dispatcher's slots and the tracer meanwhile: the event still completes, the
    program goes on with its own result, and a new trace afterwards records as
    usual (the references given up in flight were dropped after it)."""
    untraced = sp_main()
    inst = Instance()
    ended: list[int] = []

    def hook() -> None:
        if not ended:
            ended.append(len(inst.rb.live.buffers()))
            inst.write("current_tracer", "nop")
            gc.collect()

    inst.write("buffer_size_kb", "1")
    inst.write("set_ftrace_filter", "sp_*")
    inst.rb.set_on_full(hook)
    inst.write("current_tracer", tracer)
    recorders = inst.tracer.recorders  # type: ignore[union-attr]
    assert recorders and all(rec.ok for rec in recorders)
    del recorders
    assert sp_main() == untraced
    assert ended == [1]
    assert inst.tracer is None
    written = sum(buf.written for buf in inst.rb.live.buffers())
    assert written > 1024 // 64  # the ring filled before the hook ran
    inst.rb.set_on_full(None)
    with trace(tracer, filter="sp_leaf") as again:
        assert sp_leaf(1) == 2
        again.tracing_on = False
        names = [ev[3].name for buf in again.rb.live.buffers() for ev in buf.events]
    assert names == ["test_speedups:sp_leaf"] * (1 if tracer == "function" else 2)


@needs_c
def test_filter_change_reaches_the_c_site_cache() -> None:
    with trace("function", filter=["sp_leaf", "sp_rec"]) as inst:
        sp_rec(2)
        inst.write("set_ftrace_filter", "sp_leaf")
        sp_rec(2)
        inst.write("set_ftrace_filter", "sp_rec")
        sp_rec(1)
        names = [ev[3].qualname for buf in inst.rb.live.buffers() for ev in buf.events]
    assert names == ["sp_rec", "sp_rec", "sp_rec", "sp_leaf", "sp_leaf", "sp_leaf",
                     "sp_leaf", "sp_leaf", "sp_leaf",
                     "sp_rec", "sp_rec"]


def test_status_line() -> None:
    assert fntrace.core.accel.status().startswith("C hot path: ")


# -- the C ring buffer is its Python twin ---------------------------------------------

def _counters(r: Any) -> tuple[Any, ...]:
    return (r.written, r.in_bytes, r.overrun, r.overrun_bytes, r.dropped, r.read,
            r.read_bytes, list(r.events), bool(r.overwrite), r.on_full is None)


@pytest.mark.skipif(built is None, reason="the C extension is not built")
@pytest.mark.parametrize("seed", range(40))
def test_ring_core_matches_python(seed: int) -> None:
    rnd = random.Random(seed)
    capacity = rnd.choice([64, 200, 640, 1000])
    cores = [built.RingCore(capacity, True), _PyRingCore(capacity, True)]
    drains = [0, 0]

    def make_drain(i: int, core: Any) -> Callable[[], None]:
        def drain() -> None:
            drains[i] += 1
            if drains[i] % 3 == 0:
                raise OSError("consumer gone")  # falls back to the bounded ring
            while core.events:
                ev = core.events.popleft()
                core.read += 1
                core.read_bytes += ev[1]
        return drain

    for step in range(300):
        op = rnd.random()
        if op < 0.75:
            size = rnd.choice([64, 64, 64, 90, 300, 2000])
            ev = (step, size, "F")
            results = [core.write(ev) for core in cores]
            assert results[0] == results[1]
        elif op < 0.85:
            n = rnd.randint(0, 3)
            for core in cores:
                for _ in range(min(n, len(core.events))):
                    ev = core.events.popleft()
                    core.read += 1
                    core.read_bytes += ev[1]
        elif op < 0.93:
            flag = rnd.random() < 0.6
            for core in cores:
                core.overwrite = flag
        else:
            for i, core in enumerate(cores):
                core.on_full = make_drain(i, core)
        assert _counters(cores[0]) == _counters(cores[1]), step


# -- consuming and encoding a batch (fntrace record's writer) -------------------------

def _traced_batches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, list[Any]]]:
    """Per thread buffer, its events, from runs that make every kind of event."""
    out = []
    runs: list[tuple[str, dict[str, int]]] = [
        ("function", {"func_args": 1}), ("function", {}), ("function_graph", {}),
        ("function_graph", {"funcgraph_args": 1, "funcgraph_retval": 1}),
        ("function", {"func_stack_trace": 1})]
    for tracer, opts in runs:
        with trace(tracer, filter="sp_*", **opts) as inst:
            inst.write("trace_marker", "a marker \udcff with a lone surrogate")
            sp_main()
            inst.write("trace_marker", "the end")
            inst.tracing_on = False
            for buf in inst.rb.live.buffers():
                out.append((inst, buf, list(buf.events)))
    return out


def _copies(batches: list[Any]) -> tuple[Any, Any]:
    from fntrace.tracing.ring_buffer import BufferSet, ThreadBuffer

    sets = []
    for _ in range(2):
        bs = BufferSet(1 << 20, True)
        for cpu, (_, buf, events) in enumerate(batches):
            copy = ThreadBuffer(buf.tid + cpu, buf.name, cpu, 1 << 30, True, buf.thread_flags)
            for ev in events:
                copy.events.append(ev)
            bs.by_tid[copy.tid] = copy
        sets.append(bs)
    return sets[0], sets[1]


# -- the function profiler ---------------------------------------------------------

@contextlib.contextmanager
def _profiling(path: str, monkeypatch: pytest.MonkeyPatch, filter: str) -> Iterator[Instance]:
    """An instance with the profiler on, on the C or the pure-Python path."""
    with monkeypatch.context() as m:
        if path == "pure":
            m.setattr(fntrace.core.accel, "speedups", None)
        inst = Instance()
        try:
            inst.write("set_ftrace_filter", filter)
            inst.write("function_profile_enabled", "1")
            prof = inst.profile
            assert bool(prof.recorders) == (path == "c") and all(r.ok for r in prof.recorders)
            yield inst
            assert sum(op.nerrors for op in prof.ops) == 0
            # every segment this thread opened was closed by its exit
            assert len(prof._tls.state) == 0
        finally:
            inst.write("function_profile_enabled", "0")


def _profile(path: str, monkeypatch: pytest.MonkeyPatch,
             ) -> tuple[int, dict[str, tuple[int, int, int]], Any]:
    with _profiling(path, monkeypatch, "sp_*") as inst:
        result = sp_main()
        records = {fn.qualname: (h, t, s) for fn, h, t, s in inst.profile.records()}
        state = inst.profile._tls.state
    return result, records, state


@needs_c
def test_profiler_same_counts_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    c_result, c, c_state = _profile("c", monkeypatch)
    p_result, pure, p_state = _profile("pure", monkeypatch)
    assert c_result == p_result == sp_main()
    assert type(c_state).__name__ == "ProfThread" and isinstance(p_state, _PyProfThread)
    assert {k: v[0] for k, v in c.items()} == {k: v[0] for k, v in pure.items()}
    # 30 iterations of sp_main, 3 workers: generators (Python path) and plain functions
    assert c["sp_main"][0] == 1 and c["sp_gen"][0] == 30 * 1 + 3 and c["sp_catch"][0] == 30
    for hits, total, squares in c.values():
        assert hits > 0 and total > 0 and squares * hits >= total * total


def sp_prof_toggle(inst: Instance, clock: Callable[[], int]) -> None:
    sp_leaf(0)
    inst.profile.clock = clock  # anything but perf_counter_ns: the recorder steps aside
    sp_leaf(1)


@needs_c
def test_profiler_hands_over_in_mid_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls entered by the C recorder and left on the Python path, and the other
    way round: every call is counted and timed, none is left open."""
    def wrapped() -> int:
        return time.perf_counter_ns()

    for path in ("c", "pure"):
        with _profiling(path, monkeypatch, "sp_prof_toggle\nsp_leaf") as inst:
            start = time.perf_counter_ns()
            for clock in (wrapped, time.perf_counter_ns, wrapped, time.perf_counter_ns):
                sp_prof_toggle(inst, clock)
            wall = time.perf_counter_ns() - start
            records = {fn.qualname: (h, t) for fn, h, t, _ in inst.profile.records()}
        assert records["sp_prof_toggle"][0] == 4 and records["sp_leaf"][0] == 8
        # graph-time 1: the callers' time includes their callees', within the wall time
        assert wall >= records["sp_prof_toggle"][1] >= records["sp_leaf"][1] > 0


@pytest.mark.skipif(built is None, reason="the C extension is not built")
@pytest.mark.parametrize("seed", range(20))
def test_prof_thread_matches_python(seed: int) -> None:
    rnd = random.Random(seed)
    assert built is not None
    c, py = built.ProfThread(), _PyProfThread()
    fns = [object() for _ in range(90)]  # past the first table growth
    keys = [1000 + 16 * i for i in range(12)]
    now = 0
    for _ in range(600):
        op = rnd.random()
        now += rnd.randrange(1, 10_000_000_000)  # durations past 2**32 ns: squares > 2**64
        if op < 0.3:
            fn = rnd.choice(fns)
            c.hit(fn)
            py.hit(fn)
        elif op < 0.55:
            args = (rnd.choice(keys), now, rnd.randrange(3))
            c.push(*args)
            py.push(*args)
        elif op < 0.8:
            key = rnd.choice(keys)
            assert c.pop_to(key, now) == py.pop_to(key, now)
        elif op < 0.97:
            fn, spent = rnd.choice(fns), rnd.randrange(0, 1 << 62)
            c.add(fn, spent)
            py.add(fn, spent)
        else:
            c.clear_table()
            py.clear_table()
        assert len(c) == len(py)
    for _ in range(3):  # 5 s calls: each square is past 2**64 ns^2
        c.add(fns[0], 5_000_000_000)
        py.add(fns[0], 5_000_000_000)
    by_id = {id(fn): fn for fn in fns}
    got = sorted((id(fn), h, t, s) for fn, h, t, s in c.records())
    want = sorted((id(fn), h, t, s) for fn, h, t, s in py.records())
    assert got == want and all(row[0] in by_id for row in got)
    assert any(row[3] >= 1 << 64 for row in got)  # the 128-bit sum of squares was used


@pytest.mark.skipif(built is None, reason="the C extension is not built")
def test_take_all_is_consume(monkeypatch: pytest.MonkeyPatch) -> None:
    batches = _traced_batches(monkeypatch)
    a, b = _copies(batches)
    got = built.take_all(a.buffers())
    want = b._consume_py()
    assert [(buf.tid, ev) for buf, ev in got] == [(buf.tid, ev) for buf, ev in want]
    assert len(got) == sum(len(events) for _, _, events in batches) > 1000
    assert [(x.read, x.read_bytes, len(x.events)) for x in a.buffers()] == \
        [(x.read, x.read_bytes, len(x.events)) for x in b.buffers()]


@pytest.mark.skipif(built is None, reason="the C extension is not built")
def test_encoded_chunk_is_byte_identical(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Any) -> None:
    from fntrace.formats import tracefile
    from fntrace.recording import recorder

    batches = _traced_batches(monkeypatch)
    header = {"program": "x"}
    for i, (inst, _, _) in enumerate(batches):
        a, b = _copies(batches[i:i + 1] + batches[:1])
        pb = b._consume_py()
        wa = tracefile.TraceWriter(str(tmp_path / f"a{i}.dat"), header, compress=False)
        wb = tracefile.TraceWriter(str(tmp_path / f"b{i}.dat"), header, compress=False)
        text = recorder.InstanceText(inst)
        payload, n, _, first, last, _ = built.encode_buffers(
            a.buffers(), functools.partial(tracefile.stored_text, text_of=text.one),
            tracefile.EVENT_CODES)
        assert wa.write_payload(payload, n, (first, last)) == len(pb)
        assert wb.write_events(pb, text.one) == len(pb)
        wa.close()
        wb.close()
        assert (tmp_path / f"a{i}.dat").read_bytes() == (tmp_path / f"b{i}.dat").read_bytes()



@needs_c
def test_the_writers_function_keys_are_bounded_and_keep_no_code(tmp_path: Any,
                                                                monkeypatch: Any) -> None:
    """The C encoder's Function -> table key cache (TraceWriter.function_keys)
    lives across chunks, is emptied before a chunk once it holds more than
    KEY_CACHE_LIMIT keys, and holds no code object: code made and dropped
    while recorded is freed."""
    from fntrace.formats import tracefile, tracewriter
    from fntrace.recording import recorder

    monkeypatch.setattr(tracewriter, "KEY_CACHE_LIMIT", 2)
    made: dict[str, Any] = {}
    exec(compile("def sp_made(x):\n    return x\n", "<sp>", "exec"), made)
    code = weakref.ref(made["sp_made"].__code__)
    writer = tracefile.TraceWriter(str(tmp_path / "k.dat"), {"p": 1})
    with trace("function_graph", filter="sp_*") as inst:
        text = recorder.InstanceText(inst)
        sp_leaf(1)
        sp_rec(2)
        made["sp_made"](3)
        inst.tracing_on = False
        assert writer.take(inst.rb.live, text)[0] == 2 * 8  # sp_rec(2): 3 calls, 3 leaves
        keys = {fn.qualname for fn in writer.function_keys}
        assert keys == {"sp_leaf", "sp_rec", "sp_made"}  # kept for the next chunk
        del made["sp_made"]
        gc.collect()
        assert code() is None  # the cache keeps the Function, never its code
        inst.tracing_on = True
        sp_leaf(4)
        inst.tracing_on = False
        assert writer.take(inst.rb.live, text)[0] == 2
        # three keys were over the limit: emptied before this chunk, then its one
        assert {fn.qualname for fn in writer.function_keys} == {"sp_leaf"}
    writer.finish(0)
    recs = list(tracefile.open_trace(str(tmp_path / "k.dat")).records())
    assert [r.func.rpartition(":")[2] for r in recs if r.kind == "entry"] == [
        "sp_leaf", "sp_rec", "sp_rec", "sp_rec", "sp_leaf", "sp_leaf", "sp_leaf", "sp_made",
        "sp_leaf"]

# -- the "local" trace clock -------------------------------------------------------------

@pytest.mark.skipif(built is None, reason="the C extension is not built")
def test_local_clock_follows_perf_counter_and_never_goes_back() -> None:
    import time

    clock = built.local_clock
    worst = 0
    last = clock()
    deadline = time.perf_counter() + 0.12  # several 20 ms re-anchorings
    n = 0
    while time.perf_counter() < deadline:
        before = time.perf_counter_ns()
        now = clock()
        after = time.perf_counter_ns()
        assert now >= last
        last = now
        worst = max(worst, before - now, now - after)
        n += 1
    assert n > 1000
    assert worst < 20_000  # ns: within 20 us of perf_counter_ns (typically < 1 us)


@pytest.mark.skipif(built is None, reason="the C extension is not built")
def test_local_clock_is_monotonic_across_threads() -> None:
    clock = built.local_clock
    seen: list[list[int]] = []

    def reader() -> None:
        mine = [clock() for _ in range(20_000)]
        seen.append(mine)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for mine in seen:
        assert mine == sorted(mine)


def test_default_clock_is_local() -> None:
    from fntrace.tracing.ring_buffer import CLOCKS, RingBuffer

    assert RingBuffer().clock is CLOCKS["local"]
    if built is not None:
        assert CLOCKS["local"] is built.local_clock


def sp_one_thread() -> int:
    """sp_main's calls without its threads: a chunk of one thread's events."""
    total = 0
    for i in range(20):
        total += sp_rec(i % 7) + sum(sp_gen(3)) + sp_catch() + sp_leaf(i)
    return total


TRACERS = [("function", {}), ("function_graph", {}), ("function", {"func_args": 1}),
           ("function_graph", {"funcgraph_retval": 1})]


class BackClock:
    """perf_counter_ns, less 1 ms at every 50th read: packed events whose
    timestamps go back now and then, as a clock stepped back would write them."""

    def __init__(self) -> None:
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return time.perf_counter_ns() - (1_000_000 if self.reads % 50 == 0 else 0)


@needs_c
@pytest.mark.parametrize("compress", ["none", "lz4"])
@pytest.mark.parametrize("marker", [None, "start", "task note", "clock back", "long"])
@pytest.mark.parametrize("threads", [True, False])
@pytest.mark.parametrize(("tracer", "options"), TRACERS)
def test_encode_buffers_matches_the_python_writer(tmp_path: Any, tracer: str,
                                                  options: dict[str, int], threads: bool,
                                                  marker: str | None, compress: str) -> None:
    """The one-pass writer (packed events encoded without tuples) against
    write_events(...) of the same events in consume() order: several threads
    (merged by time) or one (the writer's no-merge run, encoding as it reads;
    with a marker's or a task note's tuple among the events, or a timestamp
    that goes back, it starts again the general way, where a clock that went
    back sorts the events as consume() does).  The encoder also says whether
    the chunk may hold a task note (stored as a marker whose text has the task
    prefix), which the Python writer finds by searching the payload: the
    footers' indexes agree.  With lz4 the encoder compresses the payload
    itself (the tables in front of the events without copying them, or, for
    the "long" marker's tables of over 4 KiB, the events after them): the
    file is the Python writer's, which compresses its payload with
    lz_compress."""
    from fntrace.formats import tracefile
    from fntrace.recording import recorder

    with trace(tracer, filter="sp_*", **options) as inst:
        if marker == "clock back":
            inst.rb.clock = BackClock()
        if marker in ("start", "long"):
            inst.write("trace_marker", marker * (2000 if marker == "long" else 1))
        sp_main() if threads else sp_one_thread()
        inst.tracing_on = False
        bufs = inst.rb.live
        if marker == "task note":  # as the asyncio task tracker writes one
            buf = bufs.buffers()[0]
            buf.write((max(ev[0] for ev in buf.events) + 1, 64, TASK.tag, "7 running"))
        # consume()'s order: by time, then cpu, then place in the buffer (merged()
        # merges buffers each in time order, which a clock that went back breaks)
        expected = [(buf, ev) for _, _, _, buf, ev in sorted(
            ((ev[0], buf.cpu, i, buf, ev) for buf in bufs.buffers()
             for i, ev in enumerate(list(buf.events))), key=lambda t: t[:3])]
        n_events = sum(len(b.events) for b in bufs.buffers())
        went_back = any([ev[0] for ev in b.events] != sorted(ev[0] for ev in b.events)
                        for b in bufs.buffers())
        assert went_back is (marker == "clock back")
        wa = tracefile.TraceWriter(str(tmp_path / "a.dat"), {"p": 1}, compress=compress)
        wb = tracefile.TraceWriter(str(tmp_path / "b.dat"), {"p": 1}, compress=compress)
        text = recorder.InstanceText(inst)
        assert wb.write_events(expected, text.one) == n_events
        tags = [ev[2] for _, ev in expected]
        assert tags.count(MARKER.tag) == (marker in ("start", "long"))
        assert tags.count(TASK.tag) == (marker == "task note")
        payload, n, tids, first, last, notes = built.encode_buffers(
            bufs.buffers(), functools.partial(tracefile.stored_text, text_of=text.one),
            tracefile.EVENT_CODES, TASK_PREFIX.encode(), {}, compress == "lz4")
        assert n == n_events > 100
        stamps = [ev[0] for _, ev in expected]
        assert (first, last) == (min(stamps), max(stamps))
        assert notes is (marker == "task note")
        if compress == "lz4":
            wa.write_stored((payload,), n, (first, last), None, notes)
        else:
            assert notes is (TASK_PREFIX.encode() in payload)
            wa.write_payload(payload, n, (first, last), None, notes)
        wa.close()
        wb.close()
        assert sorted(tids) == sorted({buf.tid for buf, _ in expected})
        assert all(len(b.events) == 0 and b.read == b.written - b.overrun
                   for b in bufs.buffers())
    assert (tmp_path / "a.dat").read_bytes() == (tmp_path / "b.dat").read_bytes()
