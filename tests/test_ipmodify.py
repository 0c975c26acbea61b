"""Tests for IPMODIFY: stubs that redirect a function's calls or skip its body.

Every modified function lives in this module (or in a module written to
tmp_path) and every filter names it by its full ``module:qualname``, so no
pytest or stdlib function is ever modified and every expectation is exact:
return values, the identity of ``__code__`` before, during and after
registration, ``inspect.signature`` equality, callback and ``nmissed`` counts.
Every registration is undone in a ``finally`` (the ``registered`` context
manager), and an autouse fixture checks that nothing was left behind.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.machinery
import inspect
import re
import sys
import textwrap
import threading
import traceback
import types
import weakref
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import needs_threads, registered

import fntrace
from fntrace import BusyError, Flags, FtraceRegs, Function, Ops, get_regs
from fntrace.core import engine, ipmodify, symbols
from fntrace.core.filter import Filter, parse

MOD = __name__
Callback = Callable[[Function, "Function | None", Ops, FtraceRegs], None]


def full(qualname: str) -> str:
    return f"{MOD}:{qualname}"


def ipm(func: Callback | None = None, *, ret: Callback | None = None,
        filter: str | list[str],
        flags: Flags = Flags(0)) -> Ops:
    return Ops(func, ret=ret, flags=Flags.IPMODIFY | flags, filter=filter)




def noop(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
    pass


def overriding(value: Any) -> Callback:
    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        fregs.override_function_with_return(value)
    return cb


def redirecting(replacement: Any) -> Callback:
    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        fregs.set_instruction_pointer(replacement)
    return cb


class Recorder:
    """Records (function name, event, return value) for every callback invocation."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    def func(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        self.events.append((ip.name, fregs.event, None))

    def ret(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        value = fregs.return_value if fregs.event != "unwind" else fregs.exception
        self.events.append((ip.name, fregs.event, value))

    def take(self) -> list[tuple[str, str, Any]]:
        out, self.events = self.events, []
        return out


@pytest.fixture(autouse=True)
def _no_import_watcher() -> Iterator[None]:
    # Beside conftest's guard: the import hook leaves with the last IPMODIFY ops.
    yield
    assert not any(isinstance(f, ipmodify._ImportWatcher) for f in sys.meta_path)


# -- modified functions ------------------------------------------------------------------

body_calls: list[Any] = []


def ip_add(a: int, b: int = 10) -> int:
    return a + b


def ip_other(a: int, b: int = 10) -> int:
    return a * 100 + b


def ip_side(x: int) -> int:
    body_calls.append(x)
    return x


def ip_args(a: Any, /, b: Any, *rest: Any, c: Any, d: Any = 4, **kw: Any) -> tuple[Any, ...]:
    return (a, b, rest, c, d, kw)


def ip_sig_posonly(a: int, b: int, /, c: int, *, d: int, e: int = 5) -> tuple[int, ...]:
    return (a, b, c, d, e)


def ip_sig_varargs(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    return (args, kwargs)


def ip_sig_annotated(x: int, y: str = "s") -> str:
    return f"{x}{y}"


def ip_sig_noargs() -> str:
    return "none"


class Shape:
    def __init__(self, side: int) -> None:
        self.side = side

    def area(self, extra: int = 0, /, *, times: int = 1) -> int:
        return (self.side * self.side + extra) * times

    @classmethod
    def unit(cls, side: int = 1) -> tuple[str, int]:
        return (cls.__name__, side)

    @staticmethod
    def double(x: int, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        return (2 * x, args, kwargs)


class Square(Shape):
    def area(self, extra: int = 0, /, *, times: int = 1) -> int:
        return super().area(extra, times=times) + 1  # zero-argument super: a __class__ cell


def make_adder(n: int) -> Callable[[int], int]:
    def add(x: int) -> int:
        return x + n
    return add


ADD5 = make_adder(5)


class Lambdas:
    """Holds a lambda whose qualname (``Lambdas.<lambda>``) no other lambda here has."""

    times = staticmethod(lambda x, *, k=2: x * k)


def make_counter() -> tuple[Callable[..., int], Callable[[], int]]:
    counter = 0

    def bump(step: int = 1) -> int:
        nonlocal counter
        counter += step
        return counter

    def read() -> int:
        return counter

    return bump, read


BUMP, READ = make_counter()


# -- redirect, override, arguments ---------------------------------------------------------


def test_redirect_continues_in_replacement_with_same_arguments() -> None:
    orig = ip_add.__code__
    sig = inspect.signature(ip_add)
    ops = ipm(redirecting(ip_other), filter=full("ip_add"))
    with registered(ops):
        stub = ip_add.__code__
        assert stub is not orig
        assert (stub.co_name, stub.co_qualname, stub.co_filename) == (
            orig.co_name, orig.co_qualname, orig.co_filename)
        assert inspect.signature(ip_add) == sig
        assert ip_add(1) == 110
        assert ip_add(2, b=3) == 203
        assert ip_add(a=4, b=5) == 405
        assert ip_other(1) == 110  # the replacement itself is untouched
        # The symbol walk sees the original through the patched function.
        assert fntrace.available_filter_functions().count(full("ip_add")) == 1
    assert ip_add.__code__ is orig
    assert inspect.signature(ip_add) == sig
    assert ip_add(1) == 11


def test_override_skips_the_body() -> None:
    body_calls.clear()
    orig = ip_side.__code__
    with registered(ipm(overriding("over"), filter=full("ip_side"))):
        assert ip_side(1) == "over"
        assert ip_side(2) == "over"
        assert body_calls == []
    assert ip_side.__code__ is orig
    assert ip_side(3) == 3
    assert body_calls == [3]


def test_no_decision_runs_the_original() -> None:
    body_calls.clear()
    seen: list[tuple[str, str | None, str, dict[str, Any]]] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        seen.append((ip.name, parent.name if parent else None, fregs.event, fregs.arguments))
        assert ops is the_ops
        assert fregs.get_argument(0) == 7
        caller = fregs.caller
        assert caller is not None
        assert caller.function.name == full("test_no_decision_runs_the_original")
        assert caller.filename == __file__

    the_ops = ipm(cb, filter=full("ip_side"))
    with registered(the_ops):
        assert ip_side(7) == 7
    assert body_calls == [7]
    assert seen == [(full("ip_side"), full("test_no_decision_runs_the_original"), "start",
                     {"x": 7})]


def test_set_argument_on_the_stub_path() -> None:
    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        assert fregs.arguments == {"a": 1, "b": 2, "rest": (3,), "c": 5, "d": 4,
                                   "kw": {"z": 0}}
        fregs.set_argument(0, "A")  # positional-only, by index
        fregs.set_argument("c", "C")  # keyword-only, by name
        fregs.set_argument("rest", (9, 8))  # *args
        fregs.set_argument(5, {"y": 1})  # **kwargs, by index
        with pytest.raises(IndexError):
            fregs.set_argument(6, None)
        with pytest.raises(KeyError):
            fregs.set_argument("nope", None)

    ops = ipm(cb, filter=full("ip_args"))
    with registered(ops):
        assert ip_args(1, 2, 3, c=5, z=0) == ("A", 2, (9, 8), "C", 4, {"y": 1})
    assert ops.nerrors == 0
    assert ip_args(1, 2, 3, c=5, z=0) == (1, 2, (3,), 5, 4, {"z": 0})


def test_set_argument_then_redirect() -> None:
    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        fregs.set_argument("b", 7)
        fregs.set_instruction_pointer(ip_other)

    with registered(ipm(cb, filter=full("ip_add"))):
        assert ip_add(1) == 107


def test_last_decision_wins() -> None:
    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        fregs.override_function_with_return("over")
        fregs.set_instruction_pointer(ip_other)

    with registered(ipm(cb, filter=full("ip_add"))):
        assert ip_add(1) == 110


def test_full_regs_are_the_stub_frame() -> None:
    got: list[Any] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        regs = get_regs(fregs)
        assert regs is not None
        back = regs.back
        assert back is not None
        got.append((regs.code.co_qualname, regs.code is not ip.code, regs.locals["a"],
                    back.f_code.co_name))

    with registered(ipm(cb, flags=Flags.SAVE_REGS, filter=full("ip_add"))):
        assert ip_add(1) == 11
    assert got == [("ip_add", True, 1, "test_full_regs_are_the_stub_frame")]

    plain: list[Any] = []
    with registered(ipm(lambda ip, p, o, fregs: plain.append(get_regs(fregs)),
                        filter=full("ip_add"))):
        ip_add(1)
    assert plain == [None]


# -- signatures, closures, methods ---------------------------------------------------------

SIGNATURE_CASES: list[tuple[str, Callable[[], Any], Callable[[], Any], Callable[[], Any]]] = [
    # (qualname, function object whose __code__ is patched, what inspect.signature
    #  is asked about, a call)
    ("ip_sig_posonly", lambda: ip_sig_posonly, lambda: ip_sig_posonly,
     lambda: ip_sig_posonly(1, 2, 3, d=4)),
    ("ip_sig_varargs", lambda: ip_sig_varargs, lambda: ip_sig_varargs,
     lambda: ip_sig_varargs(1, 2, k=3)),
    ("ip_sig_annotated", lambda: ip_sig_annotated, lambda: ip_sig_annotated,
     lambda: ip_sig_annotated(1, y="z")),
    ("ip_sig_noargs", lambda: ip_sig_noargs, lambda: ip_sig_noargs, lambda: ip_sig_noargs()),
    ("ip_args", lambda: ip_args, lambda: ip_args, lambda: ip_args(1, 2, 3, 4, c=5, d=6, e=7)),
    ("Shape.area", lambda: Shape.area, lambda: Shape(3).area,
     lambda: Shape(3).area(1, times=2)),
    ("Shape.unit", lambda: vars(Shape)["unit"].__func__, lambda: Square.unit,
     lambda: (Shape.unit(4), Square.unit())),
    ("Shape.double", lambda: vars(Shape)["double"].__func__, lambda: Shape.double,
     lambda: Shape.double(2, 3, k=4)),
    ("Square.area", lambda: Square.area, lambda: Square(3).area,
     lambda: Square(3).area(1, times=2)),
    ("make_adder.<locals>.add", lambda: ADD5, lambda: ADD5, lambda: ADD5(1)),
    ("Lambdas.<lambda>", lambda: vars(Lambdas)["times"].__func__, lambda: Lambdas.times,
     lambda: Lambdas.times(3, k=3)),
]


@pytest.mark.parametrize(("qualname", "func_of", "sig_of", "call"), SIGNATURE_CASES,
                         ids=[c[0] for c in SIGNATURE_CASES])
def test_signature_and_identity_are_kept(qualname: str, func_of: Callable[[], Any],
                                         sig_of: Callable[[], Any],
                                         call: Callable[[], Any]) -> None:
    func = func_of()
    orig = func.__code__
    closure = func.__closure__
    sig = inspect.signature(sig_of())
    source = inspect.getsource(func)
    expected = call()
    seen: list[str] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        seen.append(ip.name)

    with registered(ipm(cb, filter=full(qualname))):
        assert func.__code__ is not orig
        assert func.__code__.co_qualname == orig.co_qualname
        assert func.__code__.co_name == orig.co_name
        assert func.__closure__ is closure
        assert inspect.signature(sig_of()) == sig
        assert inspect.getsource(func) == source  # same file and first line
        assert call() == expected
        assert seen == [full(qualname)] * (2 if qualname == "Shape.unit" else 1)
    assert func.__code__ is orig
    assert func.__closure__ is closure
    assert inspect.signature(sig_of()) == sig
    assert call() == expected
    assert seen == [full(qualname)] * (2 if qualname == "Shape.unit" else 1)


@pytest.mark.parametrize(("qualname", "func_of", "sig_of", "call"), SIGNATURE_CASES,
                         ids=[c[0] for c in SIGNATURE_CASES])
def test_override_every_kind_of_function(qualname: str, func_of: Callable[[], Any],
                                         sig_of: Callable[[], Any],
                                         call: Callable[[], Any]) -> None:
    over = ("over", qualname)
    with registered(ipm(overriding(over), filter=full(qualname))):
        assert call() == ((over, over) if qualname == "Shape.unit" else over)


def test_binding_errors_are_the_functions_own() -> None:
    def message(call: Callable[[], Any]) -> str:
        with pytest.raises(TypeError) as info:
            call()
        return str(info.value)

    calls: list[Callable[[], Any]] = [
        lambda: ip_sig_posonly(a=1, b=2, c=3, d=4),  # type: ignore[call-arg]
        lambda: ip_sig_posonly(1, 2, 3),  # type: ignore[call-arg]
        lambda: ip_add(),  # type: ignore[call-arg]
        lambda: ip_add(1, 2, 3),  # type: ignore[call-arg]
    ]
    before = [message(c) for c in calls]
    seen: list[str] = []
    with registered(ipm(lambda ip, p, o, f: seen.append(ip.name),
                        filter=[full("ip_sig_posonly"), full("ip_add")])):
        assert [message(c) for c in calls] == before
    assert seen == []  # binding failed in the stub, before any callback


def test_closure_cells_are_shared_through_the_stub() -> None:
    start = READ()
    cells = BUMP.__closure__
    assert cells is not None
    assert cells[0] is READ.__closure__[0]  # type: ignore[index]
    orig = BUMP.__code__
    steps: list[int] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        steps.append(fregs.get_argument(0))

    with registered(ipm(cb, filter=full("make_counter.<locals>.bump"))):
        assert BUMP.__code__ is not orig
        assert BUMP() == start + 1
        assert BUMP(2) == start + 3
        assert READ() == start + 3  # the enclosing variable was updated
        assert BUMP.__closure__ is cells
        # Limitation: a closure made *after* registration runs the original code.
        bump2, read2 = make_counter()
        assert bump2.__code__ is orig
        assert bump2(5) == 5
        assert read2() == 5
    assert steps == [1, 2]
    assert BUMP.__code__ is orig
    assert BUMP.__closure__ is cells
    assert BUMP() == start + 4
    assert READ() == start + 4


def test_super_and_classes_through_the_stub() -> None:
    orig = Square.area
    code = orig.__code__
    assert code.co_freevars == ("__class__",)
    with registered(ipm(noop, filter=[full("Square.area"), full("Shape.area")])):
        assert Square(2).area() == 5
        assert Square(2).area(1, times=2) == 11
        assert Square.area is orig
        assert Square.area.__code__ is not code
    assert Square.area.__code__ is code


def test_equal_but_distinct_code_objects_are_told_apart() -> None:
    source = "def twin(x):\n    return x + 1\n"
    ns_a: dict[str, Any] = {"__name__": "ipm_twin_a"}
    ns_b: dict[str, Any] = {"__name__": "ipm_twin_b"}
    exec(compile(source, "<ipm-twin>", "exec"), ns_a)
    exec(compile(source, "<ipm-twin>", "exec"), ns_b)
    fa, fb = ns_a["twin"], ns_b["twin"]
    code_a, code_b = fa.__code__, fb.__code__
    assert code_a == code_b
    assert code_a is not code_b
    with registered(ipm(overriding("over"), filter="ipm_twin_a:twin")):
        assert fa(1) == "over"
        assert fb(1) == 2
        assert fb.__code__ is code_b
    assert fa.__code__ is code_a
    assert fb.__code__ is code_b


def ip_shadow(BaseException: Any, Exception: Any = None) -> Any:
    raise ValueError(BaseException)


def test_parameters_shadowing_builtins() -> None:
    rec = Recorder()
    with registered(ipm(rec.func, ret=rec.ret, filter=full("ip_shadow"))):
        with pytest.raises(ValueError, match=r"^x$") as info:
            ip_shadow("x")
    assert rec.take() == [(full("ip_shadow"), "start", None),
                          (full("ip_shadow"), "unwind", info.value)]


# -- one IPMODIFY ops per function, configuration errors --------------------------------


def ip_busy_a() -> str:
    return "a"


def ip_busy_shared() -> str:
    return "shared"


def ip_busy_b() -> str:
    return "b"


def test_second_ipmodify_ops_is_busy_and_changes_nothing() -> None:
    funcs = (ip_busy_a, ip_busy_shared, ip_busy_b)
    originals = [f.__code__ for f in funcs]
    first = ipm(overriding("first"), filter=[full("ip_busy_a"), full("ip_busy_shared")])
    second_calls: list[str] = []
    second = ipm(lambda ip, p, o, f: second_calls.append(ip.name),
                 filter=[full("ip_busy_shared"), full("ip_busy_b")])
    with registered(first):
        # No call yet: only the stubs reach the original code; still found busy.
        during = [f.__code__ for f in funcs]
        assert during[0] is not originals[0]
        assert during[1] is not originals[1]
        assert during[2] is originals[2]
        with pytest.raises(BusyError, match=re.escape(full("ip_busy_shared"))):
            fntrace.register(second)
        assert not second.registered
        assert engine.registered_ops() == [first]
        assert [f.__code__ for f in funcs] == during
        assert all(a is b for a, b in zip([f.__code__ for f in funcs], during, strict=True))
        assert [f() for f in funcs] == ["first", "first", "b"]
        assert second_calls == []
        held = {fn.name: holder for fn, holder in ipmodify.holdings().values()}
        assert held == {full("ip_busy_a"): first, full("ip_busy_shared"): first}
    assert all(f.__code__ is o for f, o in zip(funcs, originals, strict=True))
    with registered(second):  # free again
        assert [f() for f in funcs] == ["a", "shared", "b"]
    assert second_calls == [full("ip_busy_shared"), full("ip_busy_b")]


def test_same_function_by_another_pattern_is_busy() -> None:
    first = ipm(noop, filter=full("ip_busy_*"))
    second = ipm(noop, filter="ip_busy_b")  # a bare name, same function
    with registered(first):
        with pytest.raises(BusyError):
            fntrace.register(second)
        assert not second.registered


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "needs a filter"),
    ({"filter": "!ip_add"}, "needs a filter"),
    ({"filter": full("ip_add"), "notrace": full("ip_other")}, "notrace"),
])
def test_invalid_ipmodify_configuration(kwargs: dict[str, Any], message: str) -> None:
    ops = Ops(noop, flags=Flags.IPMODIFY, **kwargs)
    orig = ip_add.__code__
    with pytest.raises(ValueError, match=message):
        fntrace.register(ops)
    assert not ops.registered
    assert engine.registered_ops() == []
    assert ip_add.__code__ is orig


def test_filter_changes_that_would_break_the_rules_are_refused() -> None:
    ops = ipm(overriding(0), filter=full("ip_add"))
    with registered(ops):
        stub = ip_add.__code__
        with pytest.raises(ValueError, match="needs a filter"):
            ops.set_filter("!ip_add")
        with pytest.raises(ValueError, match="notrace"):
            ops.set_notrace(full("ip_add"))
        assert ops.filter == Filter(parse(full("ip_add")))
        assert ops.notrace == Filter()
        assert ip_add.__code__ is stub
        assert ip_add(1) == 0


# -- recursion ------------------------------------------------------------------------------


def ip_rec(n: int) -> int:
    return n + 1


def test_recursion_flag_refuses_reentry_and_counts_it() -> None:
    seen: list[int] = []
    inner: list[int] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        seen.append(fregs.get_argument(0))
        inner.append(ip_rec(100))  # refused: the original runs, no callback
        inner.append(ip_rec(200))
        fregs.override_function_with_return(-1)

    ops = ipm(cb, flags=Flags.RECURSION, filter=full("ip_rec"))
    with registered(ops):
        assert ip_rec(1) == -1
        assert ip_rec(2) == -1
    assert seen == [1, 2]
    assert inner == [101, 201, 101, 201]
    assert ops.nmissed == 4
    assert ops.nerrors == 0


def test_without_recursion_flag_the_callback_reenters() -> None:
    seen: list[int] = []
    depth = 0

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        nonlocal depth
        seen.append(fregs.get_argument(0))
        if depth:  # the callback must guard itself
            return
        depth += 1
        try:
            assert ip_rec(100) == 101
        finally:
            depth -= 1

    ops = ipm(cb, filter=full("ip_rec"))
    with registered(ops):
        assert ip_rec(1) == 2
    assert seen == [1, 100]
    assert ops.nmissed == 0


def test_recursion_flag_guards_the_ret_callback() -> None:
    rets: list[tuple[int, Any]] = []

    def ret(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        rets.append((fregs.get_argument(0), fregs.return_value))
        assert ip_rec(50) == 51  # refused entry: no callback, no ret

    ops = ipm(noop, ret=ret, flags=Flags.RECURSION, filter=full("ip_rec"))
    with registered(ops):
        assert ip_rec(1) == 2
        assert ip_rec(2) == 3
    assert rets == [(1, 2), (2, 3)]
    assert ops.nmissed == 2


# -- other ops on the same function ---------------------------------------------------------


def ip_shared(x: int) -> int:
    return x * 2


def ip_repl(x: int) -> int:
    return -x


@pytest.mark.parametrize("ipmodify_first", [True, False])
def test_other_ops_see_the_body_that_runs(ipmodify_first: bool) -> None:
    rec = Recorder()
    parents: list[str | None] = []

    def func(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        rec.func(ip, parent, ops, fregs)
        parents.append(parent.name if parent else None)

    other = Ops(func, ret=rec.ret, filter=[full("ip_shared"), full("ip_repl")])
    mode = "pass"

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        if mode == "redirect":
            fregs.set_instruction_pointer(ip_repl)
        elif mode == "override":
            fregs.override_function_with_return(99)

    modifier = ipm(cb, filter=full("ip_shared"))
    with registered(*((modifier, other) if ipmodify_first else (other, modifier))):
        assert ip_shared(3) == 6
        assert rec.take() == [(full("ip_shared"), "start", None),
                              (full("ip_shared"), "return", 6)]
        # The body's caller frame is the stub, which is named as the function.
        assert parents == [full("ip_shared")]
        mode = "redirect"
        assert ip_shared(3) == -3
        assert rec.take() == [(full("ip_repl"), "start", None), (full("ip_repl"), "return", -3)]
        assert parents[-1] == full("ip_shared")
        mode = "override"
        assert ip_shared(3) == 99
        assert rec.take() == []  # nothing of the original runs
        mode = "pass"
        assert ip_shared(4) == 8
        assert rec.take() == [(full("ip_shared"), "start", None),
                              (full("ip_shared"), "return", 8)]


def test_non_ipmodify_ops_cannot_modify() -> None:
    errors: list[type[BaseException]] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        for attempt in (lambda: fregs.set_instruction_pointer(ip_other),
                        lambda: fregs.override_function_with_return(0)):
            try:
                attempt()
            except RuntimeError as exc:
                errors.append(type(exc))

    with registered(Ops(cb, filter=full("ip_add"))):
        assert ip_add(1) == 11
    assert errors == [RuntimeError, RuntimeError]


# -- ret callback --------------------------------------------------------------------------


class IpError(Exception):
    pass


raised: list[BaseException] = []


def ip_boom(msg: str) -> None:
    exc = IpError(msg)
    raised.append(exc)
    raise exc


def test_ret_receives_value_or_exception() -> None:
    rec = Recorder()
    args_at_exit: list[dict[str, Any]] = []

    def ret(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        rec.ret(ip, parent, ops, fregs)
        args_at_exit.append(fregs.arguments)
        with pytest.raises(RuntimeError):
            fregs.set_argument(0, 1)
        with pytest.raises(RuntimeError):
            fregs.override_function_with_return(1)

    mode: list[str] = []

    def func(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        if ip.qualname == "ip_add":
            fregs.set_argument("b", 1)
            if mode == ["redirect"]:
                fregs.set_instruction_pointer(ip_other)
            elif mode == ["override"]:
                fregs.override_function_with_return("over")

    ops = ipm(func, ret=ret, filter=[full("ip_add"), full("ip_boom")])
    with registered(ops):
        assert ip_add(1) == 2
        mode.append("redirect")
        assert ip_add(1) == 101
        mode[0] = "override"
        assert ip_add(1) == "over"
        with pytest.raises(IpError):
            ip_boom("bad")
    assert rec.take() == [(full("ip_add"), "return", 2), (full("ip_add"), "return", 101),
                          (full("ip_add"), "return", "over"),
                          (full("ip_boom"), "unwind", raised[-1])]
    assert args_at_exit == [{"a": 1, "b": 1}] * 3 + [{"msg": "bad"}]
    assert ops.nerrors == 0


def test_ret_only_ipmodify_ops() -> None:
    rec = Recorder()
    with registered(ipm(ret=rec.ret, filter=full("ip_add"))):
        assert ip_add(2) == 12
    assert rec.take() == [(full("ip_add"), "return", 12)]


# -- exceptions and tracebacks ------------------------------------------------------------


def _frames(exc: BaseException) -> list[tuple[str, str, int | None]]:
    return [(fs.name, fs.filename, fs.lineno) for fs in traceback.extract_tb(exc.__traceback__)]


@pytest.mark.parametrize("with_ret", [False, True])
def test_exception_reaches_the_caller_unchanged(with_ret: bool) -> None:
    """The exception is the very object the body raised, message and all.

    How the traceback differs: exactly one extra frame, the stub's, between
    the caller and the body.  It is named like the function (same name,
    qualname and file) and placed at the function's first line
    (``co_firstlineno``, the ``def`` line here) with no column information;
    its code object is the stub, not the original.  Having a ``ret`` callback
    does not change that shape.
    """
    orig = ip_boom.__code__
    raise_line = orig.co_firstlineno + 3

    def call() -> IpError:
        with pytest.raises(IpError) as info:
            ip_boom("the message")
        return info.value

    plain = call()
    assert _frames(plain)[-1:] == [("ip_boom", __file__, raise_line)]
    assert _frames(plain)[0][0] == "call"
    rec = Recorder()
    ops = ipm(noop, ret=rec.ret if with_ret else None, filter=full("ip_boom"))
    with registered(ops):
        stub = ip_boom.__code__
        exc = call()
    assert exc is raised[-1]
    assert type(exc) is IpError
    assert exc.args == ("the message",)
    assert str(exc) == "the message"
    assert _frames(exc) == [("call", __file__, _frames(plain)[0][2]),
                            ("ip_boom", __file__, orig.co_firstlineno),
                            ("ip_boom", __file__, raise_line)]
    tb = exc.__traceback__
    assert tb is not None and tb.tb_next is not None and tb.tb_next.tb_next is not None
    assert tb.tb_next.tb_frame.f_code is stub
    assert tb.tb_next.tb_next.tb_frame.f_code is orig
    summary = traceback.extract_tb(tb)[1]
    assert getattr(summary, "colno", None) is None
    assert {pos[2:] for pos in stub.co_positions()} == {(None, None)}
    assert {line for _, _, line in stub.co_lines()} == {orig.co_firstlineno}
    if with_ret:
        assert rec.take() == [(full("ip_boom"), "unwind", exc)]


def test_exception_raised_by_the_replacement() -> None:
    def replacement(msg: str) -> None:
        raise KeyError(msg)

    with registered(ipm(redirecting(replacement), filter=full("ip_boom"))):
        with pytest.raises(KeyError) as info:
            ip_boom("k")
    assert info.value.args == ("k",)
    assert [name for name, _, _ in _frames(info.value)][-2:] == ["ip_boom", "replacement"]


def test_callback_errors_never_reach_the_program() -> None:
    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        fregs.set_instruction_pointer(42)  # not callable: TypeError, counted

    ops = ipm(cb, filter=full("ip_add"))
    with registered(ops), pytest.warns(RuntimeWarning, match="raised TypeError"):
        assert ip_add(1) == 11
        assert ip_add(2) == 12
    assert ops.nerrors == 2
    assert isinstance(ops.last_error, TypeError)


# -- generators and coroutines --------------------------------------------------------------


def ip_gen(n: int) -> Generator[int, None, str]:
    yield from range(n)
    return "done"


def ip_gen_repl(n: int) -> Generator[str, None, str]:
    yield from ("r",) * n
    return "replaced"


def ip_echo() -> Generator[Any, Any, None]:
    value = yield "ready"
    while True:
        try:
            value = yield value
        except ValueError as exc:
            value = yield f"caught {exc}"


def drain(gen: Iterator[Any]) -> tuple[list[Any], Any]:
    items: list[Any] = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return items, stop.value


def test_generator_function_redirect_and_override() -> None:
    orig = ip_gen.__code__
    calls: list[str] = []
    mode = "pass"

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        calls.append(fregs.event)
        if mode == "redirect":
            fregs.set_instruction_pointer(ip_gen_repl)
        elif mode == "override":
            fregs.override_function_with_return(7)

    with registered(ipm(cb, filter=full("ip_gen"))):
        assert inspect.isgeneratorfunction(ip_gen)
        assert ip_gen.__code__ is not orig
        gen = ip_gen(3)
        assert inspect.isgenerator(gen)
        assert calls == []  # the callback runs when the body would start
        assert drain(gen) == ([0, 1, 2], "done")
        assert calls == ["start"]
        mode = "redirect"
        assert drain(ip_gen(2)) == (["r", "r"], "replaced")
        mode = "override"
        gen = ip_gen(3)
        with pytest.raises(StopIteration) as info:
            next(gen)
        assert info.value.value == 7
        assert list(ip_gen(3)) == []
    assert ip_gen.__code__ is orig
    assert inspect.isgeneratorfunction(ip_gen)
    assert drain(ip_gen(2)) == ([0, 1], "done")


def test_generator_send_and_throw_are_delegated() -> None:
    with registered(ipm(noop, filter=full("ip_echo"))):
        gen = ip_echo()
        assert next(gen) == "ready"
        assert gen.send(1) == 1
        assert gen.send("two") == "two"
        assert gen.throw(ValueError("v")) == "caught v"
        gen.close()
        assert inspect.getgeneratorstate(gen) == inspect.GEN_CLOSED


def test_generator_ret_callback() -> None:
    rec = Recorder()
    mode = "pass"

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        if mode == "override":
            fregs.override_function_with_return(7)

    with registered(ipm(cb, ret=rec.ret, filter=full("ip_gen"))):
        assert drain(ip_gen(2)) == ([0, 1], "done")
        mode = "override"
        assert drain(ip_gen(2)) == ([], 7)
        mode = "pass"
        gen = ip_gen(5)
        next(gen)
        gen.close()
    events = rec.take()
    assert events[:2] == [(full("ip_gen"), "return", "done"), (full("ip_gen"), "return", 7)]
    assert [(name, event, type(value)) for name, event, value in events[2:]] == [
        (full("ip_gen"), "unwind", GeneratorExit)]


async def ip_coro(x: int) -> int:
    return x * 2


async def ip_coro_repl(x: int) -> int:
    return -x


async def ip_sleepy(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


def run_now(coro: Any) -> Any:
    """Drive a coroutine that never suspends (no event loop needed)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the coroutine suspended")


def test_coroutine_function_redirect_and_override() -> None:
    orig = ip_coro.__code__
    mode = "pass"
    rec = Recorder()

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        if mode == "redirect":
            fregs.set_instruction_pointer(ip_coro_repl)
        elif mode == "override":
            fregs.override_function_with_return("over")

    with registered(ipm(cb, ret=rec.ret, filter=[full("ip_coro"), full("ip_sleepy")])):
        assert inspect.iscoroutinefunction(ip_coro)
        assert ip_coro.__code__ is not orig
        coro = ip_coro(2)
        assert inspect.iscoroutine(coro)
        assert run_now(coro) == 4
        mode = "redirect"
        assert run_now(ip_coro(2)) == -2
        mode = "override"
        assert run_now(ip_coro(2)) == "over"
        assert asyncio.run(ip_sleepy(1)) == "over"
        mode = "pass"
        assert asyncio.run(ip_sleepy(1)) == 2  # a real suspension through the stub
    assert ip_coro.__code__ is orig
    assert inspect.iscoroutinefunction(ip_coro)
    assert run_now(ip_coro(3)) == 6
    assert rec.take() == [(full("ip_coro"), "return", 4), (full("ip_coro"), "return", -2),
                          (full("ip_coro"), "return", "over"),
                          (full("ip_sleepy"), "return", "over"),
                          (full("ip_sleepy"), "return", 2)]


@types.coroutine
def ip_legacy_coro() -> Iterator[Any]:
    yield from ()
    return 5  # type: ignore[return-value]


def test_iterable_coroutine_stays_awaitable() -> None:
    async def use() -> Any:
        return await ip_legacy_coro()  # type: ignore[func-returns-value]

    orig = ip_legacy_coro.__code__
    with registered(ipm(noop, filter=full("ip_legacy_coro"))):
        assert ip_legacy_coro.__code__ is not orig
        assert run_now(use()) == 5
    assert ip_legacy_coro.__code__ is orig


async def ip_agen() -> Any:
    yield 1


def ip_comp(xs: list[int]) -> int:
    return sum(x for x in xs) + len([x for x in xs])


def test_unmodifiable_code_is_skipped() -> None:
    """Async generators, comprehensions and generator expressions are never stubbed."""
    orig = ip_agen.__code__
    with registered(ipm(overriding(-1), filter=[full("ip_agen"), full("ip_comp*")])):
        assert ip_agen.__code__ is orig
        assert inspect.isasyncgenfunction(ip_agen)
        assert ip_comp([1, 2]) == -1
        assert sorted(fn.qualname for fn, _ in ipmodify.holdings().values()) == ["ip_comp"]
        assert full("ip_agen") not in fntrace.enabled_functions()


# -- modules imported later --------------------------------------------------------------


def test_module_imported_after_registration_is_patched(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    name = "ipm_later_module"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import functools

        def greet(who):
            return "hello " + who

        def untouched():
            return "untouched"

        class Klass:
            def method(self):
                return "method"

        @functools.lru_cache(maxsize=None)
        def cached(x):
            return x
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    seen: list[str] = []

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        seen.append(ip.name)
        fregs.override_function_with_return("patched")

    ops = ipm(cb, filter=[f"{name}:greet", f"{name}:Klass.method", f"{name}:cached"])
    assert name not in sys.modules
    try:
        with registered(ops):
            assert any(isinstance(f, ipmodify._ImportWatcher) for f in sys.meta_path)
            mod = importlib.import_module(name)
            assert mod.greet("x") == "patched"
            assert mod.Klass().method() == "patched"
            assert mod.cached(1) == "patched"  # found behind the lru_cache wrapper
            assert mod.untouched() == "untouched"
            assert seen == [f"{name}:greet", f"{name}:Klass.method", f"{name}:cached"]
            held = {fn.name: code for code, (fn, _) in ipmodify.holdings().items()}
            assert sorted(held) == [f"{name}:Klass.method", f"{name}:cached", f"{name}:greet"]
            greet_code = held[f"{name}:greet"]
            assert mod.greet.__code__ is not greet_code
            # The loader wrapper is gone once the module has run.
            assert type(mod.__loader__) is importlib.machinery.SourceFileLoader
            assert mod.__spec__ is not None
            assert mod.__spec__.loader is mod.__loader__
            assert f"{name}:greet (1)  I\ttramp: ipmodify_stub\n" in fntrace.enabled_functions()
            # A reload makes new code objects, equal to the old ones but distinct:
            # both generations are modified, each restored to its own code.
            old_greet = mod.greet
            mod = importlib.reload(mod)
            assert mod.greet is not old_greet
            assert mod.greet("y") == "patched"
            assert old_greet("y") == "patched"
            codes = [r.code for r in ipmodify._held.values() if r.fn.qualname == "greet"]
            assert len(codes) == 2
            assert codes[0] is greet_code
            assert codes[0] == codes[1]
        assert old_greet.__code__ is codes[0]
        assert mod.greet.__code__ is codes[1]
        assert mod.greet("x") == "hello x"
        assert mod.Klass().method() == "method"
    finally:
        sys.modules.pop(name, None)


def test_module_imported_after_unregister_is_not_patched(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    name = "ipm_after_unregister"
    (tmp_path / f"{name}.py").write_text("def greet():\n    return 'hello'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    with registered(ipm(overriding("patched"), filter=f"{name}:greet")):
        pass
    try:
        mod = importlib.import_module(name)
        assert mod.greet() == "hello"
    finally:
        sys.modules.pop(name, None)


# -- set_filter retargets ------------------------------------------------------------------


def ip_t1() -> int:
    return 1


def ip_t2() -> int:
    return 2


def ip_t3() -> int:
    return 3


def test_set_filter_retargets() -> None:
    codes = [f.__code__ for f in (ip_t1, ip_t2, ip_t3)]
    sig = inspect.signature(ip_t1)
    ops = ipm(overriding(0), filter=full("ip_t1"))
    other = ipm(overriding(-3), filter=full("ip_t3"))
    with registered(ops, other):
        assert (ip_t1(), ip_t2(), ip_t3()) == (0, 2, -3)
        ops.set_filter(full("ip_t2"))
        assert ip_t1.__code__ is codes[0]
        assert inspect.signature(ip_t1) == sig
        assert ip_t2.__code__ is not codes[1]
        assert (ip_t1(), ip_t2(), ip_t3()) == (1, 0, -3)
        stub2, stub3 = ip_t2.__code__, ip_t3.__code__
        with pytest.raises(BusyError, match=re.escape(full("ip_t3"))):
            ops.set_filter([full("ip_t1"), full("ip_t3")])
        assert ops.filter == Filter(parse(full("ip_t2")))
        assert ip_t1.__code__ is codes[0]
        assert ip_t2.__code__ is stub2
        assert ip_t3.__code__ is stub3
        assert (ip_t1(), ip_t2(), ip_t3()) == (1, 0, -3)
        ops.set_filter(full("ip_t1"), reset=False)
        assert ip_t2.__code__ is stub2  # kept: still selected, not rebuilt
        assert (ip_t1(), ip_t2(), ip_t3()) == (0, 0, -3)
    assert all(f.__code__ is c for f, c in zip((ip_t1, ip_t2, ip_t3), codes, strict=True))


def test_set_filter_before_registration() -> None:
    ops = ipm(overriding(0), filter=full("ip_t1"))
    ops.set_filter(full("ip_t2"))
    with registered(ops):
        assert (ip_t1(), ip_t2()) == (1, 0)


# -- enabled_functions, switches, unregister ----------------------------------------------


def ip_ef() -> int:
    return 1


def test_enabled_functions_shows_ipmodify() -> None:
    assert fntrace.enabled_functions() == ""
    with registered(ipm(noop, filter=full("ip_ef"))):
        assert fntrace.enabled_functions() == f"{full('ip_ef')} (1)  I\ttramp: ipmodify_stub\n"
    with registered(ipm(noop, flags=Flags.SAVE_REGS, filter=full("ip_ef"))):
        assert fntrace.enabled_functions() == f"{full('ip_ef')} (1) RI\ttramp: ipmodify_stub\n"
    with registered(ipm(noop, filter=full("ip_ef")), Ops(noop, filter=full("ip_ef"))):
        assert ip_ef() == 1  # the other ops' site exists once the body has run
        assert fntrace.enabled_functions() == (
            f"{full('ip_ef')} (2)  I\ttramp: args_one+ipmodify_stub\n")
    assert fntrace.enabled_functions() == ""


def test_ftrace_enabled_switch_and_permanent() -> None:
    normal = ipm(overriding("normal"), filter=full("ip_t1"))
    permanent = ipm(overriding("permanent"), flags=Flags.PERMANENT, filter=full("ip_t2"))
    with registered(normal):
        fntrace.set_ftrace_enabled(False)
        try:
            assert ip_t1() == 1  # off: the original runs
        finally:
            fntrace.set_ftrace_enabled(True)
        assert ip_t1() == "normal"
    with registered(permanent):
        with pytest.raises(BusyError):
            fntrace.set_ftrace_enabled(False)
        assert ip_t2() == "permanent"


def test_reregistration_leaves_nothing_behind() -> None:
    internal_before = len(engine.state.internal_codes)
    orig = ip_add.__code__
    ops = ipm(overriding(0), filter=full("ip_add"))
    for _ in range(3):
        with registered(ops):
            stub = ip_add.__code__
            assert id(stub) in engine.state.internal_codes
            assert symbols._cache[id(stub)].code is orig  # the stub is named as the original
            assert ip_add(1) == 0
        assert id(stub) not in engine.state.internal_codes
        assert id(stub) not in symbols._cache
        assert ip_add(1) == 11
    del stub
    assert len(engine.state.internal_codes) == internal_before
    ref = weakref.ref(ops)
    del ops
    gc.collect()
    assert ref() is None  # no stub, handle or cache keeps the ops alive


@needs_threads
def test_unregister_waits_for_a_running_callback() -> None:
    entered = threading.Event()
    release = threading.Event()
    done = threading.Event()

    def cb(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        entered.set()
        release.wait(5.0)

    ops = ipm(cb, filter=full("ip_t1"))
    results: list[int] = []
    with registered(ops):
        caller = threading.Thread(target=lambda: results.append(ip_t1()))
        caller.start()
        assert entered.wait(5.0)

        def unregister() -> None:
            fntrace.unregister(ops)
            done.set()

        remover = threading.Thread(target=unregister)
        remover.start()
        assert not done.wait(0.05)  # still inside the callback: unregister waits
        release.set()
        remover.join(5.0)
        caller.join(5.0)
    assert done.is_set()
    assert results == [1]
    assert ip_t1() == 1
