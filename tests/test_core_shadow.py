"""The core's shadow stack (core/shadow.py), the trampolines' sync contract
(core/sync.py) and the backend choice (core/backends/__init__.py)."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import registered

from fntrace import Event, Ops
from fntrace.core import backends, engine, ipmodify, sync
from fntrace.core.shadow import FrameStack, ShadowStack
from fntrace.tracing.tracers.function_graph import _PyGraphStack
from fntrace.tracing.tracers.profile import _PyProfThread

pytestmark = pytest.mark.usefixtures("hot_path")


def _frames(n: int) -> list[types.FrameType]:
    """``n`` distinct live frames (generators suspended at their first yield)."""
    def gen() -> Iterator[types.FrameType]:
        yield sys._getframe()

    gens = [gen() for _ in range(n)]
    frames = [next(g) for g in gens]
    _frames.keep = gens  # type: ignore[attr-defined]  # their frames stay alive
    return frames


# -- the type itself ------------------------------------------------------------------


def test_pop_to_pairs_the_newest_entry_of_the_frame() -> None:
    a, b = _frames(2)
    s: ShadowStack[tuple[Any, str]] = ShadowStack()
    s.extend([(a, "a1"), (b, "b"), (a, "a2")])  # a frame entered twice (a resumed generator)
    assert s.pop_to(a) == (a, "a2")
    assert s == [(a, "a1"), (b, "b")]


def test_pop_to_drops_entries_whose_exit_never_came() -> None:
    a, b, c = _frames(3)
    s: ShadowStack[tuple[Any, int]] = ShadowStack()
    s.extend([(a, 1), (b, 2), (c, 3)])
    assert s.pop_to(a) == (a, 1)
    assert s == []


def test_pop_to_an_unknown_frame_leaves_the_stack_alone() -> None:
    a, b, c = _frames(3)
    s: ShadowStack[tuple[Any, int]] = ShadowStack()
    s.extend([(a, 1), (b, 2)])
    assert s.pop_to(c) is None
    assert s == [(a, 1), (b, 2)]
    assert ShadowStack().pop_to(c) is None


def test_frames_match_by_identity_not_equality() -> None:
    class Same:
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = object.__hash__

    one, two = Same(), Same()
    s: ShadowStack[tuple[Any, int]] = ShadowStack()
    s.extend([(one, 1), (two, 2)])
    assert s.pop_to(one) == (one, 1)


def test_frame_stack_keys_by_attribute() -> None:
    a, b = _frames(2)
    x, y = types.SimpleNamespace(frame=a), types.SimpleNamespace(frame=b)
    s: FrameStack[Any] = FrameStack()
    s.extend([x, y])
    assert s.pop_to(a) is x and s == []


def test_every_python_shadow_stack_is_the_core_type() -> None:
    assert issubclass(_PyGraphStack, ShadowStack)
    assert isinstance(_PyProfThread().stack, ShadowStack)


# -- unwinding through the engine, with real events -------------------------------------


def _recording_ops(filt: str) -> tuple[Ops, list[tuple[str, str, str]]]:
    log: list[tuple[str, str, str]] = []

    def entry(ip: Any, parent: Any, ops: Ops, fregs: Any) -> None:
        log.append(("in", ip.qualname, fregs.event))

    def ret(ip: Any, parent: Any, ops: Ops, fregs: Any) -> None:
        log.append(("out", ip.qualname, fregs.event))

    return Ops(entry, ret=ret, filter=filt), log


def sh_leaf(n: int) -> int:
    if n == 0:
        raise KeyError(n)
    return n


def sh_mid(n: int) -> int:
    return sh_leaf(n) + 1


def sh_top() -> int:
    try:
        return sh_mid(0)
    except KeyError:
        return sh_mid(2)


def test_exceptions_unwind_each_frame_in_order() -> None:
    ops, log = _recording_ops("sh_top sh_mid sh_leaf")
    with registered(ops):
        assert sh_top() == 3
        assert engine.thread_shadow_stack() == []
    S, R, U = Event.START, Event.RETURN, Event.UNWIND
    assert log == [("in", "sh_top", S), ("in", "sh_mid", S), ("in", "sh_leaf", S),
                   ("out", "sh_leaf", U), ("out", "sh_mid", U),
                   ("in", "sh_mid", S), ("in", "sh_leaf", S), ("out", "sh_leaf", R),
                   ("out", "sh_mid", R), ("out", "sh_top", R)]


def sh_gen(n: int) -> Iterator[int]:
    for i in range(n):
        yield sh_leaf(i + 1)


def sh_drive() -> list[int]:
    a, b = sh_gen(2), sh_gen(1)
    out = [next(a), next(b), next(a)]
    out.extend(b)  # b ends (its last resume returns)
    try:
        a.throw(KeyError(0))  # thrown into while suspended: a throw, then an unwind
    except KeyError:
        pass
    return out


def test_generators_push_and_pop_one_segment_per_resumption() -> None:
    ops, log = _recording_ops("sh_gen sh_leaf sh_drive")
    with registered(ops):
        assert sh_drive() == [1, 1, 2]
        assert engine.thread_shadow_stack() == []
    S, RS, TH = Event.START, Event.RESUME, Event.THROW
    R, Y, U = Event.RETURN, Event.YIELD, Event.UNWIND
    leaf = [("in", "sh_leaf", S), ("out", "sh_leaf", R)]
    assert log == [("in", "sh_drive", S),
                   ("in", "sh_gen", S), *leaf, ("out", "sh_gen", Y),
                   ("in", "sh_gen", S), *leaf, ("out", "sh_gen", Y),
                   ("in", "sh_gen", RS), *leaf, ("out", "sh_gen", Y),
                   ("in", "sh_gen", RS), ("out", "sh_gen", R),
                   ("in", "sh_gen", TH), ("out", "sh_gen", U),
                   ("out", "sh_drive", R)]


def sh_inner(ops: Ops) -> int:
    ops.set_filter("sh_outer")  # sh_inner stops being a site while it runs
    return 1


def sh_outer(ops: Ops) -> int:
    return sh_inner(ops) + 1


def test_an_exit_that_never_comes_is_dropped_at_the_callers_exit() -> None:
    ops, log = _recording_ops("sh_outer sh_inner")
    with registered(ops):
        assert sh_outer(ops) == 2
        assert engine.thread_shadow_stack() == []
    S, R = Event.START, Event.RETURN
    assert log == [("in", "sh_outer", S), ("in", "sh_inner", S), ("out", "sh_outer", R)]


# -- the sync contract ------------------------------------------------------------------


def test_every_trampoline_that_calls_ops_is_a_declared_holder() -> None:
    codes = sync.holder_codes()
    for func in (engine._enter_one, engine._enter_list, engine.exit_call,
                 ipmodify._Handle.enter, ipmodify._Handle._deliver):
        assert func.__code__ in codes
        assert any(n in func.__code__.co_varnames for n in sync.HOLDER_LOCALS)


def test_a_holder_without_the_locals_unregister_waits_on_is_refused() -> None:
    def renamed(site: Any, callback: Any) -> None:
        callback()

    with pytest.raises(TypeError, match="calls ops callbacks but keeps them in none"):
        sync.holder(renamed)
    assert renamed.__code__ not in sync.holder_codes()


# -- the backend choice -------------------------------------------------------------------


def test_the_backend_is_the_one_chosen_with_its_reason() -> None:
    name, why = backends.choose()
    assert name == ("sys.monitoring" if sys.version_info >= (3, 12) else "sys.setprofile")
    assert why and backends.status() == f"backend: {name} ({why})"
    ops = Ops(lambda *a: None, filter="nothing_matches_this")
    assert engine.backend() is None
    with registered(ops):
        running = engine.backend()
        assert type(running).__name__ == {"sys.monitoring": "MonitoringBackend",
                                          "sys.setprofile": "ProfileBackend"}[name]
    assert engine.backend() is None
