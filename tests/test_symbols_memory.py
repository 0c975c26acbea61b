"""Tracing leaves no memory behind (issue 11 item 4).

Programs that make code at run time (exec, dataclasses, namedtuple,
templates) must not grow without bound under fntrace: a code object the
program drops leaves nothing in fntrace's per-code tables (the symbol cache,
the engine's sites, the backends' decisions, the C hot path's direct-mapped
tables), and once the last ops is unregistered the memory of code still alive
is what it would be with a bare profile function / sys.monitoring tool.

Memory is measured in allocated blocks (``sys.getallocatedblocks()`` after
``gc.collect()``), which is deterministic: the bounds below are a small
fraction of one block per function (before the fix: about 20 blocks per
function), so they do not depend on the machine or its load.
"""

from __future__ import annotations

import gc
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import fntrace
import fntrace.core.accel
from fntrace.core import engine, symbols
from fntrace.tracing.instance import Instance

pytestmark = pytest.mark.usefixtures("hot_path")

N = 1000
SLACK = N // 20  # blocks: one-off allocations (dict resizes, a thread's state)


def make(name: str, i: int) -> Callable[[int], int]:
    ns: dict[str, Any] = {"__name__": "gen"}
    exec(f"def {name}{i}(x):\n    return x + {i % 7}\n", ns)
    return ns[f"{name}{i}"]  # type: ignore[no-any-return]


def blocks() -> int:
    gc.collect()
    gc.collect()
    return sys.getallocatedblocks()


def run(n: int, keep: list[Any] | None, name: str = "f") -> None:
    for i in range(n):
        fn = make(name, i)
        fn(i)
        if keep is not None:
            keep.append(fn)


@contextmanager
def bare_tool() -> Iterator[None]:
    """The cheapest tool that sees every call, as fntrace's backend does: what
    CPython itself keeps per code object for it is the baseline."""
    if sys.version_info >= (3, 12):
        mon = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        tool = 4 if mon.get_tool(4) is None else 3
        mon.use_tool_id(tool, "baseline")
        mon.register_callback(tool, mon.events.PY_START, lambda code, off: mon.DISABLE)
        mon.set_events(tool, mon.events.PY_START)
        try:
            yield
        finally:
            mon.set_events(tool, 0)
            mon.register_callback(tool, mon.events.PY_START, None)
            mon.free_tool_id(tool)
    else:
        sys.setprofile(lambda frame, event, arg: None)
        try:
            yield
        finally:
            sys.setprofile(None)


def traced(filt: str, tracer: str = "function") -> Instance:
    inst = Instance()
    inst.write("set_ftrace_filter", filt)
    inst.write("tracing_on", "0")  # recorded events would (rightly) hold their Functions
    inst.write("current_tracer", tracer)
    return inst


@pytest.mark.parametrize("tracer", ["function", "function_graph"])
@pytest.mark.parametrize("filt", ["no_such_function", "gen:f*"])
def test_dropped_code_leaves_nothing(filt: str, tracer: str) -> None:
    inst = traced(filt, tracer)
    try:
        # Tables and dicts at their working size; and the same names once before
        # (3.12+ keeps interned identifiers forever: a new name costs a block).
        run(N, None)
        before = blocks()
        run(N, None)
        grown = blocks() - before
        assert grown <= SLACK, f"{grown / N:.2f} blocks per dropped function"
        assert not any(fn.module == "gen" for fn in list(symbols.cache().values()))
        assert not any(fn.module == "gen" for fn in list(engine.sites.values()))
    finally:
        inst.close()


@pytest.mark.parametrize("filt", ["no_such_function", "gen:f*"])
def test_unregister_returns_to_untraced_level(filt: str) -> None:
    run(N, None)  # the names interned once (see above)
    keep: list[Any] = []
    with bare_tool():
        before = blocks()
        run(N, keep)
    baseline = blocks() - before
    keep.clear()

    inst = traced(filt)
    before = blocks()
    run(N, keep)
    inst.close()  # the last ops goes
    after = blocks() - before
    keep.clear()
    assert not any(symbols.cache().values())  # only the roots (false) may stay
    # 3.11 only, and only for traced code: the profile hook reads the opcode at
    # f_lasti through co_code, which CPython builds once and keeps on the code.
    extra = N if sys.version_info < (3, 12) and filt != "no_such_function" else 0
    assert after - baseline <= extra + SLACK, f"{(after - baseline) / N:.2f} blocks per function"


def test_function_outlives_its_code() -> None:
    """An event recorded for code the program dropped still reads as before."""
    with Instance() as inst:
        inst.write("set_ftrace_filter", "gen:gone*")
        inst.write("current_tracer", "function")
        run(3, None, name="gone")
        gc.collect()
        text = inst.read("trace")
    assert re.findall(r"gen:gone\d", text) == ["gen:gone0", "gen:gone1", "gen:gone2"]
    assert not any(fn.module == "gen" for fn in list(symbols.cache().values()))


def test_freed_code_leaves_no_key(hot_path: str) -> None:
    """Every per-code table drops a freed code's id before it can be reused
    (each is keyed by the address); and when the allocator does hand the
    address to a new code object, that one is decided afresh: it is no site."""
    speedups = fntrace.core.accel.built
    with Instance() as inst:
        inst.write("set_ftrace_filter", "gen:hit*")
        inst.write("current_tracer", "function")
        hits = reused = 0
        for i in range(100):
            fn = make("hit", i)
            fn(1)
            fn(2)
            hits += 2
            key = id(fn.__code__)
            assert key in engine.sites
            if hot_path == "c":
                assert speedups.holds_code(key)
            fn.__globals__.clear()  # no cycle: the code goes with the function, now
            del fn
            assert key not in engine.sites
            assert key not in symbols.cache()
            assert speedups is None or not speedups.holds_code(key)
            other = make("miss", i)
            if id(other.__code__) == key:
                other(1)
                reused += 1
            other.__globals__.clear()
            del other
        text = inst.read("trace")
    assert "miss" not in text, f"{reused} addresses reused"
    assert sum(" gen:hit" in line for line in text.splitlines()) == hits


def test_listing_available_functions_keeps_nothing() -> None:
    """available_filter_functions names every loaded function without leaving a
    Function behind for each (nothing is traced)."""
    keep = [make("listed", i) for i in range(50)]
    before = dict(symbols.cache())
    names = symbols.available_filter_functions()
    assert {f"gen:listed{i}" for i in range(50)} <= set(names)
    assert symbols.cache() == before
    del keep


def test_functions_of_one_ops_set_share_one_site() -> None:
    """A patched function costs the engine no object of its own (issue 15,
    memory per patched site): engine.sites holds the Functions themselves,
    keyed by the int their weak reference already keeps, and every function
    the same ops want has the same configuration (Function.site), through a
    rebuild too.  Unregistering leaves no Function holding a configuration,
    and the ops is freed."""
    import weakref

    funcs = [make("share", i) for i in range(50)]
    ops = fntrace.Ops(lambda *a: None, ret=lambda *a: None, filter="gen:share*")
    other = fntrace.Ops(lambda *a: None, filter="gen:no_such_function")
    fntrace.register(ops)
    try:
        for f in funcs:
            f(1)
        mine = {key: fn for key, fn in engine.sites.items() if fn.qualname.startswith("share")}
        assert sorted(fn.qualname for fn in mine.values()) == sorted(
            f"share{i}" for i in range(50))
        assert all(key is fn.key for key, fn in mine.items())
        first = next(iter(mine.values())).site
        assert first.ops == (ops,) and first.has_ret
        assert all(fn.site is first for fn in mine.values())
        fntrace.register(other)  # a rebuild: the configuration is kept, still shared
        try:
            assert all(fn.site is first for fn in mine.values())
            late = make("share", 50)
            late(1)
            assert engine.sites[id(late.__code__)].site is first
        finally:
            fntrace.unregister(other)
    finally:
        fntrace.unregister(ops)
    assert all(fn.site is None for fn in mine.values())
    ref = weakref.ref(ops)
    del ops, first
    gc.collect()
    assert ref() is None


def test_a_function_is_its_code_s_one_weak_reference() -> None:
    """A Function is the weak reference to its code (one object per function):
    calling it gives the code while it lives; it hashes and compares by
    identity, not by the code's content (two functions made from the same
    source have equal code objects); and a copy of it is itself, as before
    one Function per code object."""
    import copy

    a, b = make("twin", 0), make("twin", 0)
    assert a.__code__ == b.__code__ and a.__code__ is not b.__code__
    fa = symbols.function_for_code(a.__code__, "gen")
    fb = symbols.function_for_code(b.__code__, "gen")
    assert fa() is a.__code__ and fb() is b.__code__
    assert fa != fb and len({fa, fb}) == 2 and hash(fa) != hash(fb)
    assert fa.name == fb.name == "gen:twin0"
    assert copy.copy(fa) is fa and copy.deepcopy({"f": fa})["f"] is fa
    key = fa.key
    del a
    gc.collect()
    assert fa() is None and fa.key == key and fa.code.co_qualname == "twin0"
    assert key not in symbols.cache()
