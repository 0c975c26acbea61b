"""FtraceRegs, FullRegs / get_regs, trampoline selection, and callback errors.

Values are checked against what the traced function itself sees and returns,
so a wrong argument order, a lost write or a half-built FullRegs fails here.
"""

from __future__ import annotations

import dis
import sys
import warnings
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from helpers import registered

import fntrace
from fntrace import Event, Flags, FtraceRegs, FullRegs, Function, Ops, get_regs

MOD = __name__
PY311 = sys.version_info < (3, 12)
Callback = Callable[[Function, "Function | None", Ops, FtraceRegs], Any]


def q(name: str) -> str:
    return f"{MOD}:{name}"


@contextmanager
def traced(*ops: Ops, errors_expected: bool = False) -> Iterator[None]:
    with registered(*ops):
        yield
    if not errors_expected:
        # An assert failing inside a callback never reaches the test: it shows here.
        for op in ops:
            assert op.nerrors == 0, op.last_error


def collect(into: list[FtraceRegs], what: Callable[[FtraceRegs], Any] | None = None,
            store: list[Any] | None = None) -> Callback:
    """A callback that keeps each fregs (and, optionally, a value read from it right then)."""

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        into.append(fregs)
        if what is not None and store is not None:
            store.append(what(fregs))

    return cb


# --------------------------------------------------------------------------- arguments


def full_sig(a: int, b: int = 2, /, c: int = 3, *args: int, d: int, e: int = 5,
             **kw: int) -> tuple[Any, ...]:
    return (a, b, c, args, d, e, kw)


def no_params() -> int:
    return 7


def test_get_argument_signature_order_all_kinds() -> None:
    got: list[Any] = []

    def entry(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        got.append([fregs.get_argument(i) for i in range(7)])
        got.append(list(fregs.arguments.items()))

    with traced(Ops(entry, filter=[q("full_sig")])):
        r1 = full_sig(1, d=4)
        r2 = full_sig(10, 20, 30, 40, 50, d=60, e=70, x=80, y=90)
    assert r1 == (1, 2, 3, (), 4, 5, {})
    assert r2 == (10, 20, 30, (40, 50), 60, 70, {"x": 80, "y": 90})
    assert got == [
        [1, 2, 3, (), 4, 5, {}],
        [("a", 1), ("b", 2), ("c", 3), ("args", ()), ("d", 4), ("e", 5), ("kw", {})],
        [10, 20, 30, (40, 50), 60, 70, {"x": 80, "y": 90}],
        [("a", 10), ("b", 20), ("c", 30), ("args", (40, 50)), ("d", 60), ("e", 70),
         ("kw", {"x": 80, "y": 90})],
    ]


def test_get_argument_out_of_range_raises_index_error() -> None:
    errors: list[str] = []

    def entry(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        n = len(fregs.arguments)
        for bad in (n, n + 5, -1):
            try:
                fregs.get_argument(bad)
            except IndexError:
                errors.append(f"{ip.qualname}:{bad}")
        if n:
            assert fregs.get_argument(n - 1) is not None

    ops = Ops(entry, filter=[q("full_sig"), q("no_params")])
    with traced(ops):
        assert no_params() == 7
        full_sig(1, d=2)
    assert errors == ["no_params:0", "no_params:5", "no_params:-1",
                      "full_sig:7", "full_sig:12", "full_sig:-1"]
    assert ops.nerrors == 0


def reassigns(a: int, b: int) -> int:
    a = a * 100
    return a + b


def test_arguments_at_exit_are_the_parameters_as_they_are_then() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        seen.append((fregs.event, fregs.arguments))

    with traced(Ops(cb, ret=cb, filter=[q("reassigns")])):
        assert reassigns(2, 3) == 203
    assert seen == [(Event.START, {"a": 2, "b": 3}), (Event.RETURN, {"a": 200, "b": 3})]


# ----------------------------------------------------------------- return_value, exception


def yielder(n: int) -> Generator[int, None, str]:
    for i in range(n):
        yield i * 11
    return "gen-result"


def fails(msg: str) -> None:
    raise OSError(msg)


def test_return_value_at_return_and_yield_exception_at_unwind() -> None:
    rows: list[tuple[str, str, Any, Any]] = []

    def ret(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        rows.append((ip.qualname, fregs.event, fregs.return_value, fregs.exception))

    with traced(Ops(ret=ret, filter=[q("yielder"), q("reassigns"), q("fails")])):
        assert list(yielder(3)) == [0, 11, 22]
        assert reassigns(1, 1) == 101
        with pytest.raises(OSError) as info:
            fails("disk")
    assert rows[:-1] == [
        ("yielder", Event.YIELD, 0, None), ("yielder", Event.YIELD, 11, None),
        ("yielder", Event.YIELD, 22, None), ("yielder", Event.RETURN, "gen-result", None),
        ("reassigns", Event.RETURN, 101, None),
    ]
    name, event, value, exc = rows[-1]
    assert (name, event, value) == ("fails", Event.UNWIND, None)
    assert exc is (None if PY311 else info.value)


# -------------------------------------------------------------- instruction_pointer, caller


def _opname_at(code: Any, offset: int) -> str:
    for ins in dis.get_instructions(code):
        if ins.offset == offset:
            return ins.opname
    raise AssertionError(f"no instruction at {offset}")


def with_cell(x: int) -> Callable[[], int]:
    return lambda: x


def test_instruction_pointer_is_code_and_offset() -> None:
    ips: list[tuple[str, Any, int]] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        code, offset = fregs.instruction_pointer
        assert code is ip.code
        ips.append((fregs.event, code, offset))

    with traced(Ops(cb, ret=cb, filter=[q("reassigns"), q("yielder"), q("with_cell")])):
        reassigns(1, 2)
        list(yielder(1))
        with_cell(3)
    assert [e for e, _, _ in ips] == [
        Event.START, Event.RETURN,
        Event.START, Event.YIELD, Event.RESUME, Event.RETURN,
        Event.START, Event.RETURN,
    ]
    codes = [reassigns.__code__] * 2 + [yielder.__code__] * 4 + [with_cell.__code__] * 2
    assert [c for _, c, _ in ips] == codes
    assert all(type(off) is int for _, _, off in ips)
    for event, code, offset in ips:
        op = _opname_at(code, offset)
        if event == Event.START:
            # The first RESUME: after MAKE_CELL / RETURN_GENERATOR prologues.
            first = next(i.offset for i in dis.get_instructions(code) if i.opname == "RESUME")
            assert (op, offset) == ("RESUME", first)
        elif event == Event.RESUME:
            assert op == "RESUME"
        elif event == Event.YIELD:
            assert op == "YIELD_VALUE"
        else:
            assert op in {"RETURN_VALUE", "RETURN_CONST"}
    # with_cell has a MAKE_CELL before its RESUME: the START offset is not 0.
    assert ips[6][2] > 0


def test_caller_is_call_site() -> None:
    sites: list[Any] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        sites.append(fregs.caller)

    with traced(Ops(cb, ret=cb, filter=[q("reassigns"), q("yielder")])):
        value, line1 = reassigns(1, 2), sys._getframe().f_lineno
        g = yielder(2)
        first, line2 = next(g), sys._getframe().f_lineno
        second, line3 = next(g), sys._getframe().f_lineno
    assert (value, first, second) == (102, 0, 11)
    me = test_caller_is_call_site.__code__
    assert [(s.filename, s.lineno) for s in sites] == [
        (me.co_filename, line1), (me.co_filename, line1),
        (me.co_filename, line2), (me.co_filename, line2),
        (me.co_filename, line3), (me.co_filename, line3),
    ]
    assert all(s.function.code is me for s in sites)
    assert all(s.function.name == q("test_caller_is_call_site") for s in sites)
    assert len({line1, line2, line3}) == 3


# ---------------------------------------------------------------------------- set_argument


def cell_arg(x: int, y: str) -> tuple[int, str]:
    get = lambda: (x, y)  # noqa: E731 - x and y must be cells
    return get()


def test_set_argument_by_index_and_name_all_kinds() -> None:
    after: list[dict[str, Any]] = []

    def entry(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        if ip.qualname == "full_sig":
            fregs.set_argument(0, 111)  # positional-only, by index
            fregs.set_argument("b", 222)  # positional-only with default, by name
            fregs.set_argument(2, 333)  # positional-or-keyword
            fregs.set_argument("args", (9, 8))  # *args
            fregs.set_argument(4, 444)  # keyword-only, by index
            fregs.set_argument("e", 555)  # keyword-only with default, by name
            fregs.set_argument(6, {"new": 1})  # **kwargs
        else:
            fregs.set_argument("x", 42)
            fregs.set_argument(1, "changed")
        after.append(fregs.arguments)

    def ret(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        after.append(fregs.arguments)

    with traced(Ops(entry, ret=ret, filter=[q("full_sig"), q("cell_arg")])):
        r1 = full_sig(1, d=4, z=0)
        r2 = cell_arg(1, "orig")
    assert r1 == (111, 222, 333, (9, 8), 444, 555, {"new": 1})
    assert r2 == (42, "changed")
    expected_full = {"a": 111, "b": 222, "c": 333, "args": (9, 8), "d": 444, "e": 555,
                     "kw": {"new": 1}}
    assert after == [expected_full, expected_full, {"x": 42, "y": "changed"},
                     {"x": 42, "y": "changed"}]
    # Untraced again: the function is unchanged.
    assert full_sig(1, d=4) == (1, 2, 3, (), 4, 5, {})
    assert cell_arg(1, "orig") == (1, "orig")


def test_set_argument_from_two_ops_both_apply() -> None:
    def first(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        fregs.set_argument("a", fregs.get_argument(0) + 1)

    def second(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        fregs.set_argument("a", fregs.get_argument(0) * 10)

    with traced(Ops(first, filter=[q("reassigns")]), Ops(second, filter=[q("reassigns")])):
        assert reassigns(1, 5) == (1 + 1) * 10 * 100 + 5


def test_set_argument_refused_outside_start() -> None:
    refused: list[tuple[str, str]] = []
    other: list[str] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        if fregs.event != Event.START:
            try:
                fregs.set_argument(0, -1)
            except RuntimeError:
                refused.append((ip.qualname, fregs.event))
        else:
            for bad in (99, "nope"):
                try:
                    fregs.set_argument(bad, 0)
                except IndexError:
                    other.append("IndexError")
                except KeyError:
                    other.append("KeyError")
            fregs.set_argument(0, fregs.get_argument(0))  # allowed, a no-op

    ops = Ops(cb, ret=cb, filter=[q("yielder"), q("fails"), q("reassigns")])
    with traced(ops):
        g = yielder(2)
        assert next(g) == 0
        assert next(g) == 11
        with pytest.raises(StopIteration):
            next(g)
        with pytest.raises(OSError):
            fails("x")
        assert reassigns(1, 0) == 100
    assert refused == [
        ("yielder", Event.YIELD), ("yielder", Event.RESUME), ("yielder", Event.YIELD),
        ("yielder", Event.RESUME), ("yielder", Event.RETURN),
        ("fails", Event.UNWIND), ("reassigns", Event.RETURN),
    ]
    assert other == ["IndexError", "KeyError"] * 3
    assert ops.nerrors == 0


def throwable() -> Generator[int, None, None]:
    try:
        yield 1
    except ValueError:
        yield 2


def test_set_argument_refused_at_throw() -> None:
    refused: list[str] = []

    def entry(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        if fregs.event == Event.THROW:
            with pytest.raises(RuntimeError):
                fregs.set_argument(0, None)
            refused.append(fregs.event)

    ops = Ops(entry, filter=[q("throwable")])
    with traced(ops):
        g = throwable()
        next(g)
        assert g.throw(ValueError) == 2
    assert refused == [Event.THROW]
    assert ops.nerrors == 0


# ---------------------------------------------------------------------------- get_regs


def plain(x: int, y: int) -> int:
    z = x + y
    return z


def test_get_regs_none_without_save_regs() -> None:
    regs: list[Any] = []
    with traced(Ops(collect([], get_regs, regs), ret=collect([], get_regs, regs),
                    filter=[q("plain")])):
        assert plain(1, 2) == 3
    assert regs == [None, None]


@pytest.mark.parametrize("flag", [Flags.SAVE_REGS, Flags.SAVE_REGS_IF_SUPPORTED])
def test_get_regs_full_with_save_regs(flag: Flags) -> None:
    snaps: list[tuple[Any, ...]] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        full = get_regs(fregs)
        assert isinstance(full, FullRegs)
        assert full is get_regs(fregs)
        snaps.append((fregs.event, full.frame is fregs.frame, full.code, dict(full.locals),
                      full.globals is globals(), full.lineno, full.back))

    me = sys._getframe()
    with traced(Ops(cb, ret=cb, filter=[q("plain")], flags=flag)):
        assert plain(1, 2) == 3
    first = plain.__code__.co_firstlineno
    assert snaps == [
        (Event.START, True, plain.__code__, {"x": 1, "y": 2}, True, first, me),
        (Event.RETURN, True, plain.__code__, {"x": 1, "y": 2, "z": 3}, True, first + 2, me),
    ]


def _site_line(name: str) -> str | None:
    lines = [ln for ln in fntrace.enabled_functions().splitlines()
             if ln.split(" ", 1)[0] == name]
    assert len(lines) <= 1
    return lines[0] if lines else None


def test_shared_site_regs_trampoline_and_enabled_functions() -> None:
    name = q("plain")
    a_regs: list[Any] = []
    b_regs: list[Any] = []
    a = Ops(collect([], get_regs, a_regs), filter=[name])
    b = Ops(collect([], get_regs, b_regs), filter=[name], flags=Flags.SAVE_REGS)
    c_regs: list[Any] = []
    c = Ops(ret=collect([], get_regs, c_regs), filter=[name])
    d_regs: list[Any] = []
    d = Ops(collect([], get_regs, d_regs), filter=[name])
    try:
        fntrace.register(a)
        plain(1, 1)
        assert _site_line(name) == f"{name} (1)   \ttramp: args_one"
        assert a_regs == [None]

        fntrace.register(d)
        assert _site_line(name) == f"{name} (2)   \ttramp: args_list"
        plain(1, 1)
        assert a_regs == [None, None] and d_regs == [None]
        fntrace.unregister(d)
        assert _site_line(name) == f"{name} (1)   \ttramp: args_one"
        plain(1, 1)
        assert a_regs == [None, None, None] and d_regs == [None]
        del a_regs[1:]

        fntrace.register(b)  # the live site switches to the regs trampoline at once
        assert _site_line(name) == f"{name} (2) R \ttramp: regs_list"
        plain(1, 1)
        assert len(a_regs) == 2 and isinstance(a_regs[1], FullRegs)
        assert len(b_regs) == 1 and isinstance(b_regs[0], FullRegs)
        assert a_regs[1].code is plain.__code__ and b_regs[0].code is plain.__code__

        fntrace.register(c)
        assert _site_line(name) == f"{name} (3) R \ttramp: regs_list"
        plain(1, 1)
        assert all(isinstance(r, FullRegs) for r in (a_regs[2], b_regs[1], c_regs[0]))

        fntrace.unregister(b)
        assert _site_line(name) == f"{name} (2)   \ttramp: args_one"
        plain(1, 1)
        assert a_regs[3] is None and c_regs[1] is None
        assert len(b_regs) == 2

        fntrace.unregister(a)
        assert _site_line(name) == f"{name} (1)   \ttramp: args_none"
        plain(1, 1)
        assert len(a_regs) == 4 and c_regs[2] is None

        fntrace.register(b)
        assert _site_line(name) == f"{name} (2) R \ttramp: regs_one"
        plain(1, 1)
        assert isinstance(b_regs[2], FullRegs) and isinstance(c_regs[3], FullRegs)

        fntrace.unregister(c)
        assert _site_line(name) == f"{name} (1) R \ttramp: regs_one"
        fntrace.unregister(b)
        assert _site_line(name) is None
        plain(1, 1)
        assert (len(a_regs), len(b_regs), len(c_regs)) == (4, 3, 4)
    finally:
        for op in (a, b, c, d):
            if op.registered:
                fntrace.unregister(op)


# --------------------------------------------------------------------------- callback errors


def _raising(exc_type: type[Exception], calls: list[str]) -> Callback:
    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        calls.append(fregs.event)
        raise exc_type(f"{fregs.event} {ip.qualname}")

    return cb


def _runtime_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _workload() -> tuple[Any, ...]:
    with pytest.raises(OSError) as info:
        fails("kept")
    return (plain(2, 3), list(yielder(2)), str(info.value), type(info.value))


def test_callback_errors_never_reach_the_program() -> None:
    expected = _workload()
    calls: list[str] = []
    ops = Ops(_raising(ValueError, calls), ret=_raising(KeyError, calls),
              filter=[q("plain"), q("yielder"), q("fails")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with traced(ops, errors_expected=True):
            assert _workload() == expected
            assert _workload() == expected
    per_run = [Event.START, Event.UNWIND,  # fails
               Event.START, Event.RETURN,  # plain
               Event.START, Event.YIELD, Event.RESUME, Event.YIELD, Event.RESUME,
               Event.RETURN]  # yielder(2)
    assert calls == per_run * 2  # the ops keeps being called
    assert ops.nerrors == len(calls) == 20
    assert isinstance(ops.last_error, KeyError)
    assert ops.last_error.args == ("return yielder",)
    msgs = _runtime_warnings(caught)
    assert len(msgs) == 1
    assert "ValueError('start fails')" in msgs[0]


def test_one_warning_per_ops() -> None:
    calls_a: list[str] = []
    calls_b: list[str] = []
    a = Ops(_raising(ValueError, calls_a), filter=[q("plain")])
    b = Ops(ret=_raising(TypeError, calls_b), filter=[q("plain")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with traced(a, b, errors_expected=True):
            for _ in range(3):
                assert plain(1, 2) == 3
    assert (a.nerrors, b.nerrors) == (3, 3)
    assert (len(calls_a), len(calls_b)) == (3, 3)
    msgs = _runtime_warnings(caught)
    assert len(msgs) == 2
    assert sum("ValueError" in m for m in msgs) == 1
    assert sum("TypeError" in m for m in msgs) == 1


def test_callback_errors_with_warnings_as_errors() -> None:
    expected = _workload()
    calls: list[str] = []
    ops = Ops(_raising(ValueError, calls), ret=_raising(ValueError, calls),
              filter=[q("plain"), q("yielder"), q("fails")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("error")
        with traced(ops, errors_expected=True):
            assert _workload() == expected
            assert _workload() == expected
    assert ops.nerrors == len(calls) == 20
    assert caught == []


def test_callback_error_in_unwind_keeps_program_exception() -> None:
    ops = Ops(ret=_raising(ValueError, []), filter=[q("fails")])
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with traced(ops, errors_expected=True):
            with pytest.raises(OSError) as info:
                fails("original")
    assert str(info.value) == "original"
    assert info.value.__context__ is None
    assert ops.nerrors == 1
