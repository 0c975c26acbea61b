"""Tests for the ops registry: register/unregister, live filters, teardown, flags.

Every traced function lives in this module and every filter names it by its
full ``module:qualname``, so no pytest or stdlib function is ever selected and
every count below is exact.
"""

from __future__ import annotations

import importlib
import itertools
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import needs_threads

import fntrace
from fntrace import BusyError, Flags, FtraceRegs, Function, Ops
from fntrace.core import engine
from fntrace.core.filter import Filter, parse

MOD = __name__


def full(qualname: str) -> str:
    return f"{MOD}:{qualname}"


# -- traced functions --------------------------------------------------------------


def t_a() -> int:
    return 1


def t_b() -> int:
    return 2


def t_c() -> int:
    return 3


def sw_a() -> int:
    return 1


def sw_b() -> int:
    return 2


def sw_c() -> int:
    return 3


def slow_target() -> int:
    return 7


def ef_one() -> int:
    return 1


def ef_two() -> int:
    return 2


def ef_regs() -> int:
    return 3


# -- helpers ----------------------------------------------------------------------


class Recorder:
    """Records (function name, event) for every callback invocation."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def func(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        self.events.append((ip.name, fregs.event))

    def ret(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        self.events.append((ip.name, fregs.event))

    def starts(self) -> list[str]:
        return [name for name, event in self.events if event == "start"]

    def take(self) -> list[tuple[str, str]]:
        out, self.events = self.events, []
        return out


def call_abc() -> None:
    t_a()
    t_b()
    t_c()


@pytest.fixture
def fast_switch() -> Iterator[None]:
    """Switch threads often, so that races get a chance to show."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


# -- registration errors ------------------------------------------------------------


def test_register_twice_raises_busy() -> None:
    rec = Recorder()
    ops = Ops(rec.func, filter=full("t_a"))
    fntrace.register(ops)
    try:
        with pytest.raises(BusyError, match="already registered"):
            fntrace.register(ops)
        assert engine.registered_ops() == [ops]
        assert ops.registered
        t_a()
        assert rec.take() == [(full("t_a"), "start")]  # once, not twice
    finally:
        fntrace.unregister(ops)
    assert not ops.registered
    assert engine.registered_ops() == []


def test_unregister_unregistered_raises_value_error() -> None:
    ops = Ops(Recorder().func, filter=full("t_a"))
    with pytest.raises(ValueError, match="is not registered"):
        fntrace.unregister(ops)
    fntrace.register(ops)
    fntrace.unregister(ops)
    with pytest.raises(ValueError, match="is not registered"):
        fntrace.unregister(ops)
    assert engine.registered_ops() == []


def test_ops_needs_a_callback() -> None:
    with pytest.raises(ValueError, match="needs a func or a ret callback"):
        Ops()
    with pytest.raises(ValueError, match="needs a func or a ret callback"):
        Ops(None, ret=None, filter=full("t_a"))
    rec = Recorder()
    assert Ops(rec.func).func == rec.func
    only_ret = Ops(ret=rec.ret)
    assert only_ret.func is None
    assert only_ret.ret == rec.ret


def test_reregister_after_unregister() -> None:
    rec = Recorder()
    ops = Ops(rec.func, filter=full("t_a"))
    for _ in range(3):
        fntrace.register(ops)
        try:
            t_a()
            t_b()
        finally:
            fntrace.unregister(ops)
        t_a()  # not traced: unregistered
    assert rec.take() == [(full("t_a"), "start")] * 3


# -- live filter changes --------------------------------------------------------------


def test_set_filter_while_registered() -> None:
    rec = Recorder()
    ops = Ops(rec.func, filter=full("t_a"))
    fntrace.register(ops)
    try:
        call_abc()
        assert rec.starts() == [full("t_a")]
        rec.take()
        # t_b and t_c were already called (DISABLEd on 3.12+): the new filter still applies.
        ops.set_filter(full("t_b"))
        call_abc()
        assert rec.starts() == [full("t_b")]
        rec.take()
        ops.set_filter([full("t_c")], reset=False)
        call_abc()
        assert rec.starts() == [full("t_b"), full("t_c")]
        assert ops.filter.text() == f"{full('t_b')}\n{full('t_c')}"
        rec.take()
        ops.set_filter([full("t_a"), full("t_c")])
        call_abc()
        assert rec.starts() == [full("t_a"), full("t_c")]
    finally:
        fntrace.unregister(ops)
    call_abc()
    assert rec.starts() == [full("t_a"), full("t_c")]


def test_notrace_wins_over_filter() -> None:
    rec = Recorder()
    ops = Ops(rec.func, filter=full("t_*"), notrace=full("t_b"))
    fntrace.register(ops)
    try:
        call_abc()
        assert rec.starts() == [full("t_a"), full("t_c")]
        rec.take()
        ops.set_notrace(full("t_c"), reset=False)
        call_abc()
        assert rec.starts() == [full("t_a")]
        rec.take()
        # Naming t_b in the filter too does not bring it back: notrace wins.
        ops.set_filter([full("t_a"), full("t_b")])
        call_abc()
        assert rec.starts() == [full("t_a")]
        rec.take()
        ops.set_notrace(())
        call_abc()
        assert rec.starts() == [full("t_a"), full("t_b")]
    finally:
        fntrace.unregister(ops)


def test_bang_pattern_removes() -> None:
    rec = Recorder()
    ops = Ops(rec.func, filter=full("t_*"))
    fntrace.register(ops)
    try:
        call_abc()
        assert rec.starts() == [full("t_a"), full("t_b"), full("t_c")]
        rec.take()
        ops.set_filter("!" + full("t_b"), reset=False)
        call_abc()
        assert rec.starts() == [full("t_a"), full("t_c")]
        rec.take()
        # A notrace line can itself be taken back with '!'.
        ops.set_notrace(full("t_*"))
        call_abc()
        assert rec.starts() == []
        ops.set_notrace("!" + full("t_c"), reset=False)
        call_abc()
        assert rec.starts() == [full("t_c")]
    finally:
        fntrace.unregister(ops)


def _write_late_modules(root: Path) -> None:
    pkg = root / "fnt_reg_late_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "sub.py").write_text(
        "def hello():\n    return 'pkg'\n\n\ndef other():\n    return 'other'\n")
    (root / "fnt_reg_late_other.py").write_text("def hello():\n    return 'elsewhere'\n")


def test_mod_filter_applies_to_module_imported_later(tmp_path: Path) -> None:
    _write_late_modules(tmp_path)
    names = ("fnt_reg_late_pkg", "fnt_reg_late_pkg.sub", "fnt_reg_late_other")
    assert not any(name in sys.modules for name in names)
    rec = Recorder()
    ops = Ops(rec.func, ret=rec.ret, filter="hello:mod:fnt_reg_late_pk*")
    fntrace.register(ops)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        sub = importlib.import_module("fnt_reg_late_pkg.sub")
        other = importlib.import_module("fnt_reg_late_other")
        assert rec.events == []  # importing runs module code only
        assert sub.hello() == "pkg"
        assert sub.other() == "other"
        assert other.hello() == "elsewhere"
        assert sub.hello() == "pkg"
        expected = [("fnt_reg_late_pkg.sub:hello", "start"),
                    ("fnt_reg_late_pkg.sub:hello", "return")] * 2
        assert rec.events == expected
    finally:
        fntrace.unregister(ops)
        sys.path.remove(str(tmp_path))
        for name in names:
            sys.modules.pop(name, None)


@pytest.mark.parametrize("bad", ["t_x:bogus:1:2", "t_[ab", "t_a:traceon", "!!t_a", "a:b:c"])
def test_malformed_pattern_changes_nothing(bad: str) -> None:
    rec = Recorder()
    ops = Ops(rec.func, filter=full("t_a"), notrace=full("t_c"))
    old_filter, old_notrace = ops.filter, ops.notrace
    fntrace.register(ops)
    try:
        call_abc()
        assert rec.take() == [(full("t_a"), "start")]
        with pytest.raises(ValueError) as info:
            ops.set_filter([full("t_b"), bad])
        assert repr(bad) in str(info.value)
        with pytest.raises(ValueError) as info:
            ops.set_filter([full("t_b"), bad], reset=False)
        assert repr(bad) in str(info.value)
        with pytest.raises(ValueError) as info:
            ops.set_notrace([full("t_a"), bad])
        assert repr(bad) in str(info.value)
        assert ops.filter is old_filter
        assert ops.notrace is old_notrace
        assert ops.filter == Filter(parse(full("t_a")))
        assert ops.registered
        call_abc()
        call_abc()
        assert rec.take() == [(full("t_a"), "start")] * 2
    finally:
        fntrace.unregister(ops)


@needs_threads
def test_atomic_filter_swap(fast_switch: None) -> None:
    """Alternating filters never expose an empty ("trace all") filter to another thread."""
    seen: set[str] = set()
    last: list[str] = [""]

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        seen.add(ip.name)
        last[0] = ip.name

    ops = Ops(cb, filter=full("sw_a"))
    stop = threading.Event()
    loops = [0]

    def worker() -> None:
        while not stop.is_set():
            sw_a()
            sw_b()
            sw_c()
            loops[0] += 1

    thread = threading.Thread(target=worker)
    fntrace.register(ops)
    thread.start()
    try:
        for i in range(300):
            want = full("sw_a") if i % 2 == 0 else full("sw_b")
            ops.set_filter([want])
            # Wait until the worker actually ran under the new filter: also checks that
            # every swap takes effect (a lost swap would stall here).
            deadline = time.monotonic() + 60.0
            last[0] = ""
            while last[0] != want:
                assert time.monotonic() < deadline, f"swap {i} to {want} never took effect"
                time.sleep(0)
    finally:
        stop.set()
        thread.join()
        fntrace.unregister(ops)
    assert seen == {full("sw_a"), full("sw_b")}
    assert loops[0] >= 300


@needs_threads
def test_filter_widened_during_discovery_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread that dismissed t_a under the old filter must not undo the new one.

    The thread is held inside discovery (after it decided "no site") while the
    main thread widens the filter; its stale decision (DISABLE on 3.12+, the
    negative cache on 3.11) used to stick, and t_a was never traced again.
    """
    real = engine.discover
    inside, proceed = threading.Event(), threading.Event()

    def held_discover(code: Any, frame: Any) -> Any:
        site = real(code, frame)
        if code is t_a.__code__ and not inside.is_set():
            inside.set()
            proceed.wait(60.0)
        return site

    monkeypatch.setattr(engine, "discover", held_discover)  # read by the backend at start
    rec = Recorder()
    ops = Ops(rec.func, filter=full("t_b"))
    fntrace.register(ops)
    thread = threading.Thread(target=t_a)
    try:
        thread.start()
        assert inside.wait(60.0)
        ops.set_filter(full("t_a"))
        proceed.set()
        thread.join()
        t_a()
        t_a()
    finally:
        proceed.set()
        fntrace.unregister(ops)
    assert rec.starts() == [full("t_a")] * 2


# -- teardown -------------------------------------------------------------------


@needs_threads
def test_no_callback_after_unregister_returns(fast_switch: None) -> None:
    counter = itertools.count()
    records: list[tuple[int, int]] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        records.append((threading.get_ident(), next(counter)))

    stop = threading.Event()
    calls = [0] * 4

    def worker(slot: int) -> None:
        while not stop.is_set():
            t_a()
            calls[slot] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(20):
            records.clear()
            ops = Ops(cb, ret=cb, filter=full("t_a"))
            fntrace.register(ops)
            try:
                deadline = time.monotonic() + 60.0
                while len({tid for tid, _ in records}) < 4:
                    assert time.monotonic() < deadline, "not every thread was traced"
                    time.sleep(0.001)
            finally:
                fntrace.unregister(ops)
            flag = next(counter)
            before = list(calls)
            deadline = time.monotonic() + 60.0
            while not all(now > then + 10 for now, then in zip(calls, before, strict=True)):
                assert time.monotonic() < deadline, "the workers stopped calling t_a"
                time.sleep(0.001)
            late = [r for r in records if r[1] > flag]
            assert late == []
    finally:
        stop.set()
        for thread in threads:
            thread.join()


@pytest.mark.parametrize("side", ["func", "ret"])
@needs_threads
def test_unregister_waits_for_running_callback(side: str) -> None:
    started = threading.Event()
    finished = threading.Event()

    def slow(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        started.set()
        time.sleep(0.2)
        finished.set()

    ops = Ops(slow, filter=full("slow_target")) if side == "func" else \
        Ops(ret=slow, filter=full("slow_target"))
    fntrace.register(ops)
    thread = threading.Thread(target=slow_target)
    try:
        thread.start()
        assert started.wait(60.0)
    finally:
        fntrace.unregister(ops)
    assert finished.is_set()
    thread.join()


# -- sys.monitoring instrumentation --------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_unselected_code_is_not_instrumented() -> None:
    mon: Any = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
    events = mon.events
    rec = Recorder()
    ops = Ops(rec.func, filter=full("t_a"))
    with_ret = Ops(rec.func, ret=rec.ret, filter=full("t_c"))
    fntrace.register(ops)
    try:
        backend: Any = engine.backend()
        tool = backend.tool
        assert mon.get_tool(tool) == "fntrace"
        call_abc()
        assert mon.get_local_events(tool, t_b.__code__) == 0
        assert mon.get_local_events(tool, t_c.__code__) == 0
        assert mon.get_local_events(tool, t_a.__code__) == events.PY_RESUME
        fntrace.register(with_ret)
        try:
            call_abc()
            assert mon.get_local_events(tool, t_b.__code__) == 0
            assert mon.get_local_events(tool, t_c.__code__) == (
                events.PY_RESUME | events.PY_RETURN | events.PY_YIELD)
        finally:
            fntrace.unregister(with_ret)
        assert mon.get_local_events(tool, t_c.__code__) == 0
        assert mon.get_local_events(tool, t_a.__code__) == events.PY_RESUME
        assert rec.events == [(full("t_a"), "start"), (full("t_a"), "start"),
                              (full("t_c"), "start"), (full("t_c"), "return")]
    finally:
        fntrace.unregister(ops)
    assert mon.get_tool(tool) is None
    assert engine.backend() is None


def test_exits_are_patched_before_the_site_is_published(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread may record an entry as soon as it finds a site (sites is read
    without the lock), so that site's code must already report exits: patched
    before it is published when exits are switched on, after when switched off.
    Otherwise a thread records entries without exits until the patch lands."""
    rec = Recorder()
    func_only = Ops(rec.func, filter=full("t_a"))
    with_ret = Ops(rec.func, ret=rec.ret, filter=f"{full('t_a')} {full('t_c')}")
    seen: list[tuple[str, bool, bool]] = []
    fntrace.register(func_only)
    try:
        backend: Any = engine.backend()
        real_patch = backend.patch

        def patch(fn: Any, site: engine.Site, had_ret: bool) -> None:
            published = engine.sites.get(id(fn.live_code())) is fn and fn.site is site
            seen.append((fn.qualname, site.has_ret, published))
            real_patch(fn, site, had_ret)

        monkeypatch.setattr(backend, "patch", patch)
        call_abc()  # discovers t_a: no exits wanted
        fntrace.register(with_ret)  # t_a's site grows exits (rebuild)
        try:
            call_abc()  # discovers t_c with exits
        finally:
            fntrace.unregister(with_ret)  # t_a's site loses them again
        call_abc()
    finally:
        fntrace.unregister(func_only)
    assert seen == [("t_a", False, False),  # discover: patched, then published
                    ("t_a", True, False),  # exits on: patched first
                    ("t_c", True, False),  # discover with exits: patched first
                    ("t_a", False, True)]  # exits off: published first
    assert rec.events == [(full("t_a"), "start"),
                          (full("t_a"), "start"), (full("t_a"), "start"),
                          (full("t_a"), "return"),
                          (full("t_c"), "start"), (full("t_c"), "return"),
                          (full("t_a"), "start")]


# -- tracefs-like listings ------------------------------------------------------------


def test_enabled_functions_exact() -> None:
    one = Ops(Recorder().func, filter=[full("ef_one"), full("ef_two")])
    two = Ops(Recorder().func, ret=Recorder().ret, filter=full("ef_two"))
    regs = Ops(Recorder().func, flags=Flags.SAVE_REGS, filter=full("ef_regs"))
    assert fntrace.enabled_functions() == ""
    fntrace.register(one)
    fntrace.register(two)
    fntrace.register(regs)
    try:
        ef_one()
        ef_two()
        ef_regs()
        t_a()  # selected by nobody
        assert fntrace.enabled_functions() == (
            f"{full('ef_one')} (1)   \ttramp: args_one\n"
            f"{full('ef_regs')} (1) R \ttramp: regs_one\n"
            f"{full('ef_two')} (2)   \ttramp: args_list\n")
        fntrace.unregister(one)
        ef_one()
        ef_two()
        assert fntrace.enabled_functions() == (
            f"{full('ef_regs')} (1) R \ttramp: regs_one\n"
            f"{full('ef_two')} (1)   \ttramp: args_one\n")
    finally:
        for op in (one, two, regs):
            if op.registered:
                fntrace.unregister(op)
    assert fntrace.enabled_functions() == ""


def test_available_filter_functions(tmp_path: Path) -> None:
    (tmp_path / "fnt_reg_avail.py").write_text(
        "def top():\n"
        "    def inner():\n"
        "        return 1\n"
        "    return inner\n"
        "\n\n"
        "class Klass:\n"
        "    def method(self):\n"
        "        return 2\n"
        "\n"
        "    class Nested:\n"
        "        def deep(self):\n"
        "            return 3\n"
        "\n\n"
        "square = lambda x: x * x\n")
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        mod = importlib.import_module("fnt_reg_avail")
        names = fntrace.available_filter_functions()
        ours = sorted(n for n in names if n.startswith("fnt_reg_avail:"))
        assert ours == ["fnt_reg_avail:<lambda>", "fnt_reg_avail:Klass.Nested.deep",
                        "fnt_reg_avail:Klass.method", "fnt_reg_avail:top",
                        "fnt_reg_avail:top.<locals>.inner"]
        assert names == sorted(set(names))
        assert full("t_a") in names
        assert full("Recorder.func") in names
        assert "fntrace.core.engine:register" not in names
        assert "fntrace.core.ops:Ops.set_filter" not in names
        modules = {n.split(":", 1)[0] for n in names}
        assert not any(m == "fntrace" or m.startswith("fntrace.") for m in modules)
        assert mod.top()() == 1
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("fnt_reg_avail", None)


def test_fntrace_functions_are_never_traced() -> None:
    rec = Recorder()
    ops = Ops(rec.func, filter="fntrace*:*")
    fntrace.register(ops)
    try:
        ops.set_filter("fntrace*:*")
        fntrace.enabled_functions()
        fntrace.available_filter_functions()
    finally:
        fntrace.unregister(ops)
    assert rec.events == []


# -- PERMANENT and the global switch --------------------------------------------------


def test_ftrace_enabled_switch() -> None:
    rec = Recorder()
    ops = Ops(rec.func, filter=full("t_a"))
    fntrace.register(ops)
    try:
        t_a()
        fntrace.set_ftrace_enabled(False)
        assert not fntrace.ftrace_enabled()
        t_a()
        t_a()
        assert ops.registered
        fntrace.set_ftrace_enabled(True)
        assert fntrace.ftrace_enabled()
        t_a()
    finally:
        fntrace.unregister(ops)
    assert rec.starts() == [full("t_a"), full("t_a")]


def test_permanent_ops() -> None:
    normal_rec, perm_rec = Recorder(), Recorder()
    normal = Ops(normal_rec.func, filter=full("t_a"))
    perm = Ops(perm_rec.func, flags=Flags.PERMANENT, filter=full("t_a"))

    # Registering a PERMANENT ops while ftrace is disabled is refused.
    fntrace.set_ftrace_enabled(False)
    try:
        with pytest.raises(BusyError, match="PERMANENT"):
            fntrace.register(perm)
        assert not perm.registered
        assert engine.registered_ops() == []
    finally:
        fntrace.set_ftrace_enabled(True)

    fntrace.register(normal)
    fntrace.register(perm)
    try:
        t_a()
        # Disabling while a PERMANENT ops is registered is refused, and nothing changes.
        with pytest.raises(BusyError, match="PERMANENT"):
            fntrace.set_ftrace_enabled(False)
        assert fntrace.ftrace_enabled()
        t_a()
        fntrace.unregister(perm)
        fntrace.set_ftrace_enabled(False)
        t_a()
        fntrace.set_ftrace_enabled(True)
    finally:
        for op in (normal, perm):
            if op.registered:
                fntrace.unregister(op)
        fntrace.set_ftrace_enabled(True)
    assert normal_rec.starts() == [full("t_a")] * 2
    assert perm_rec.starts() == [full("t_a")] * 2


def _only_this() -> int:
    return 7


def test_register_and_unregister_cause_no_events_of_their_own() -> None:
    # With a catch-all filter, the only call between register and unregister is
    # _only_this(): register/unregister themselves must not call traced Python code
    # (enum.Flag's `&` is Python code, so the core tests flags as plain ints).
    seen: list[str] = []
    ops = fntrace.Ops(lambda ip, parent, o, fregs: seen.append(ip.name))
    fntrace.register(ops)
    _only_this()
    fntrace.unregister(ops)
    assert seen == [f"{__name__}:_only_this"]
