"""fntrace beside other tools, and callbacks that call traced code.

On 3.12+ fntrace takes one sys.monitoring tool id among the free ones, so
cProfile (which uses id 2 there), coverage.py and debuggers keep working.
On 3.11 the only hook is sys.setprofile, one profile function per thread:
fntrace and cProfile (or any other profiler) cannot run at the same time by
design; what can be checked is that fntrace gives the hook back (None) once
its last ops is gone.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
from typing import Any

import pytest

import fntrace
from fntrace import Flags, FtraceRegs, Function, Ops
from fntrace.core import engine

MOD = __name__

needs_monitoring = pytest.mark.skipif(sys.version_info < (3, 12),
                                      reason="sys.monitoring is 3.12+")
only_311 = pytest.mark.skipif(sys.version_info >= (3, 12), reason="sys.setprofile backend")


def full(qualname: str) -> str:
    return f"{MOD}:{qualname}"


# -- traced functions --------------------------------------------------------------


def cp_target(x: int) -> int:
    return x * 3


def cp_other(x: int) -> int:
    return x - 1


body_runs = {"re_f": 0, "re_g": 0}


def re_f() -> int:
    body_runs["re_f"] += 1
    return 1


def re_g() -> int:
    body_runs["re_g"] += 1
    return 2


# -- helpers ----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def cb(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        self.events.append((ip.qualname, fregs.event))


def _mon() -> Any:
    return sys.monitoring  # type: ignore[attr-defined,unused-ignore]


def _profile_calls(prof: cProfile.Profile, fn: Any) -> tuple[int, int]:
    """(primitive calls, total calls) of ``fn`` in cProfile's stats."""
    code = fn.__code__
    stats: dict[tuple[str, int, str], Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    cc, nc, _tt, _ct, _callers = stats[(code.co_filename, code.co_firstlineno, code.co_name)]
    return cc, nc


# -- cProfile -------------------------------------------------------------------------


@needs_monitoring
@pytest.mark.parametrize("order", ["cprofile_first", "fntrace_first"])
def test_cprofile_and_fntrace_together(order: str) -> None:
    mon = _mon()
    rec = Recorder()
    ops = Ops(rec.cb, ret=rec.cb, filter=full("cp_target"))
    prof = cProfile.Profile()
    if order == "cprofile_first":
        prof.enable()
        fntrace.register(ops)
    else:
        fntrace.register(ops)
        prof.enable()
    try:
        backend: Any = engine.backend()
        tool = backend.tool
        assert mon.get_tool(tool) == "fntrace"
        assert mon.get_tool(2) == "cProfile"
        assert tool != 2
        for i in range(7):
            cp_target(i)
            cp_other(i)
    finally:
        if order == "cprofile_first":
            fntrace.unregister(ops)
            prof.disable()
        else:
            prof.disable()
            fntrace.unregister(ops)
    assert mon.get_tool(tool) is None
    assert _profile_calls(prof, cp_target) == (7, 7)
    assert _profile_calls(prof, cp_other) == (7, 7)
    assert rec.events == [("cp_target", "start"), ("cp_target", "return")] * 7


@needs_monitoring
@pytest.mark.parametrize("keep", range(6))
def test_takes_the_only_free_tool_id(keep: int) -> None:
    mon = _mon()
    taken = [t for t in range(6) if t != keep and mon.get_tool(t) is None]
    assert mon.get_tool(keep) is None
    for t in taken:
        mon.use_tool_id(t, "occupier")
    rec = Recorder()
    ops = Ops(rec.cb, filter=full("cp_target"))
    try:
        fntrace.register(ops)
        try:
            backend: Any = engine.backend()
            assert backend.tool == keep
            assert mon.get_tool(keep) == "fntrace"
            cp_target(1)
            cp_other(1)
        finally:
            fntrace.unregister(ops)
        assert mon.get_tool(keep) is None
        assert all(mon.get_tool(t) == "occupier" for t in taken)
    finally:
        for t in taken:
            mon.free_tool_id(t)
    assert rec.events == [("cp_target", "start")]


@needs_monitoring
def test_all_tool_ids_in_use() -> None:
    mon = _mon()
    taken = [t for t in range(6) if mon.get_tool(t) is None]
    assert taken == list(range(6))
    for t in taken:
        mon.use_tool_id(t, "occupier")
    rec = Recorder()
    ops = Ops(rec.cb, filter=full("cp_target"))
    try:
        with pytest.raises(RuntimeError, match=r"all six sys\.monitoring tool ids are in use"):
            fntrace.register(ops)
        assert not ops.registered
        assert engine.registered_ops() == []
        assert engine.backend() is None
        assert engine.sites == {}
        assert all(mon.get_tool(t) == "occupier" for t in taken)
        cp_target(1)
    finally:
        for t in taken:
            mon.free_tool_id(t)
    # Once an id is free again, the same ops registers normally.
    fntrace.register(ops)
    try:
        cp_target(2)
    finally:
        fntrace.unregister(ops)
    assert rec.events == [("cp_target", "start")]


# -- 3.11: the profile hook is given back -----------------------------------------------


@only_311
def test_profile_hook_released_after_last_unregister() -> None:
    # One profile function per thread: cProfile and fntrace cannot both run on 3.11, by
    # design.  fntrace must at least leave no hook behind, in this thread, in threads
    # that were running before it registered, and in threads started afterwards.
    assert sys.getprofile() is None
    seen: dict[str, Any] = {}
    ask, answered, done = threading.Event(), threading.Event(), threading.Event()

    def old_thread() -> None:
        while not done.is_set():
            if ask.wait(0.01):
                ask.clear()
                seen[f"old{len(seen)}"] = sys.getprofile()
                answered.set()

    def probe() -> Any:
        answered.clear()
        ask.set()
        assert answered.wait(5.0)
        return seen[f"old{len(seen) - 1}"]

    def new_thread_profile() -> Any:
        out: list[Any] = []
        thread = threading.Thread(target=lambda: out.append(sys.getprofile()))
        thread.start()
        thread.join()
        return out[0]

    one = Ops(Recorder().cb, filter=full("cp_target"))
    two = Ops(Recorder().cb, filter=full("cp_other"))
    thread = threading.Thread(target=old_thread)
    thread.start()
    try:
        assert probe() is None
        fntrace.register(one)
        fntrace.register(two)
        backend: Any = engine.backend()
        hook = backend.hook
        assert sys.getprofile() is hook
        assert probe() is hook
        assert new_thread_profile() is hook
        fntrace.unregister(one)
        assert sys.getprofile() is hook  # one ops is still registered
        fntrace.unregister(two)
        assert sys.getprofile() is None
        assert probe() is None
        assert new_thread_profile() is None
    finally:
        done.set()
        thread.join()
        for op in (one, two):
            if op.registered:
                fntrace.unregister(op)


# -- callbacks calling traced code -----------------------------------------------------


@pytest.mark.parametrize("flags", [Flags(0), Flags.RECURSION])
def test_callback_calling_traced_function_is_not_reentered(flags: Flags) -> None:
    body_runs.update(re_f=0, re_g=0)
    rec = Recorder()
    other = Recorder()

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        rec.cb(ip, parent, ops, fregs)
        re_f()  # traced by this ops and by `watcher`: no event is delivered in here
        re_g()

    ops = Ops(cb, ret=cb, flags=flags, filter=[full("re_f"), full("re_g")])
    watcher = Ops(other.cb, filter=full("re_g"))
    fntrace.register(ops)
    fntrace.register(watcher)
    try:
        for _ in range(3):
            re_f()
        re_g()
    finally:
        fntrace.unregister(watcher)
        fntrace.unregister(ops)
    assert rec.events == [("re_f", "start"), ("re_f", "return")] * 3 + [
        ("re_g", "start"), ("re_g", "return")]
    assert other.events == [("re_g", "start")]
    # 8 callback runs, each calling re_f and re_g once, plus the direct calls.
    assert body_runs == {"re_f": 3 + 8, "re_g": 1 + 8}
    assert ops.nmissed == 0
    assert ops.nerrors == 0
    assert watcher.nmissed == 0
