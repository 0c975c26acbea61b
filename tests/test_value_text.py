"""Values shown without running the program's code (fntrace/tracing/value_text.py).

The oracle: objects that log every attribute lookup, repr, iteration, comparison
and hash the program could see (``Spy``, ``SpyMeta``); nothing may reach their log.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import errno
import fractions
import os
import pathlib
import sys
import uuid
from typing import Any
from unittest.mock import Mock

import pytest

import fntrace
from fntrace.tracing.reprs import SafeRepr
from fntrace.tracing.value_text import value_text

HERE = __name__
LOG: list[str] = []


class SpyMeta(type):
    def __getattribute__(cls, name: str) -> Any:
        LOG.append(f"meta getattribute {name}")
        return super().__getattribute__(name)

    def __getattr__(cls, name: str) -> Any:
        LOG.append(f"meta getattr {name}")
        raise AttributeError(name)

    def __repr__(cls) -> str:
        LOG.append("meta repr")
        return "SpyClass"


class Spy(metaclass=SpyMeta):
    def __getattribute__(self, name: str) -> Any:
        LOG.append(f"getattribute {name}")
        return object.__getattribute__(self, name)

    def __repr__(self) -> str:
        LOG.append("repr")
        return "Spy!"

    def __eq__(self, other: object) -> bool:
        LOG.append("eq")
        return self is other

    def __hash__(self) -> int:
        LOG.append("hash")
        return 1


class SpyList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        LOG.append("list iter")
        return super().__iter__()

    def __getitem__(self, i: Any) -> Any:
        LOG.append("list getitem")
        return super().__getitem__(i)

    def __len__(self) -> int:
        LOG.append("list len")
        return super().__len__()


class SpyDict(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        LOG.append("dict items")
        return super().items()

    def __iter__(self) -> Any:
        LOG.append("dict iter")
        return super().__iter__()


class Watched:
    """A data descriptor of the program's: reading it is observable."""

    def __get__(self, obj: Any, owner: Any) -> int:
        LOG.append("descriptor get")
        return 5

    def __set__(self, obj: Any, value: Any) -> None:
        LOG.append("descriptor set")


@dataclasses.dataclass
class Point:
    x: int
    y: Any = None
    hidden: int = dataclasses.field(default=0, repr=False)


@dataclasses.dataclass
class WithDescriptor:
    d: int = Watched()  # type: ignore[assignment]


@dataclasses.dataclass(slots=True)
class Slotted:
    a: int
    b: str = "b"


@dataclasses.dataclass
class WithProperty:
    _v: int

    @property
    def v(self) -> int:
        LOG.append("property")
        return self._v


class Colour(enum.Enum):
    RED = 1


Pair = collections.namedtuple("Pair", "left right")


class Text(str):
    pass


class Number(int):
    pass


class Zone(datetime.tzinfo):
    def utcoffset(self, dt: Any) -> datetime.timedelta:
        LOG.append("utcoffset")
        return datetime.timedelta(0)

    def __repr__(self) -> str:
        LOG.append("tz repr")
        return "Zone()"


def spy_at(value: Spy) -> str:
    return f"<{HERE}.Spy object at {id(value):#x}>"  # (type(value).__name__ would log)


@pytest.fixture(autouse=True)
def _clear_log() -> Any:
    LOG.clear()
    yield
    assert LOG == [], "program code ran while a value was shown"


def test_program_objects_are_not_touched() -> None:
    spy = Spy()
    assert value_text(spy, 64) == spy_at(spy)
    s = spy_at(spy)
    nested = [spy, {spy: spy}, (spy,), {spy}]
    exception, bound = ValueError(spy), spy.__repr__
    LOG.clear()  # (making the dict and the set hashed the spy)
    assert value_text(nested, 400) == (
        f"[{s}, {{{s}: {s}}}, ({s},), {{{s}}}]")
    assert value_text([[spy]], 400) == f"[[{s}]]"
    assert value_text([[[spy]]], 400) == "[[[...]]]"
    assert value_text({"k": [spy]}, 200) == f"{{'k': [{spy_at(spy)}]}}"
    assert value_text(Spy, 64) == f"<class '{HERE}.Spy'>"  # type's repr, not SpyMeta's
    assert value_text(SpyList([1, 2]), 64) == "[1, 2]"
    assert value_text(SpyDict(a=1), 64) == "{'a': 1}"
    assert value_text(Point(1, spy), 200) == f"Point(x=1, y={spy_at(spy)})"
    assert value_text(bound, 200) == f"<bound method Spy.__repr__ of {s}>"
    assert value_text(exception, 200) == f"ValueError({s})"
    assert value_text(Pair(spy, 2), 200) == f"Pair(left={spy_at(spy)}, right=2)"


def test_fields_behind_descriptors_are_not_read() -> None:
    assert value_text(WithDescriptor(), 64) == "WithDescriptor(d=<descriptor>)"
    LOG.clear()  # WithDescriptor() itself set the field through the descriptor
    assert value_text(WithProperty(3), 64) == "WithProperty(_v=3)"


@pytest.mark.parametrize(("value", "text"), [
    ([1, "a", None], "[1, 'a', None]"),
    (list(range(10)), "[0, 1, 2, 3, 4, 5, ...]"),
    (tuple(range(10)), "(0, 1, 2, 3, 4, 5, ...)"),
    ((1,), "(1,)"),
    ((), "()"),
    ([[[[1]]]], "[[[...]]]"),
    ({i: i for i in range(8)}, "{0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, ...}"),
    ({}, "{}"),
    (set(), "set()"),
    ({3}, "{3}"),
    (frozenset({1}), "frozenset({1})"),
    (frozenset(), "frozenset()"),
    (Point(1, [2]), "Point(x=1, y=[2])"),
    (Slotted(1), "Slotted(a=1, b='b')"),
    (Colour.RED, "<Colour.RED: 1>"),
    (Pair(1, "x"), "Pair(left=1, right='x')"),
    (Text("abc"), "'abc'"),
    (Number(7), "7"),
    (OSError("disk full"), "OSError('disk full')"),
    (KeyError(), "KeyError()"),
    (OSError(errno.ENOENT, "gone"), f"FileNotFoundError({errno.ENOENT}, 'gone')"),
    (os, "<module 'os'>"),
    (len, "<built-in function len>"),
    (range(3), "range(0, 3)"),
    (bytearray(b"ab"), "bytearray(b'ab')"),
    (decimal.Decimal("1.5"), "Decimal('1.5')"),
    (fractions.Fraction(1, 3), "Fraction(1, 3)"),
    (datetime.date(2026, 12, 7), "datetime.date(2026, 12, 7)"),
    (datetime.timedelta(days=2), "datetime.timedelta(days=2)"),
    (datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC),
     "datetime.datetime(2026, 1, 2, 0, 0, tzinfo=datetime.timezone.utc)"),
    (uuid.UUID(int=5), "UUID('00000000-0000-0000-0000-000000000005')"),
    (pathlib.PurePosixPath("/x/y"), "PurePosixPath('/x/y')"),
])
def test_texts(value: Any, text: str) -> None:
    assert value_text(value, 200) == text


def test_a_datetime_with_a_program_tzinfo_is_not_called() -> None:
    when = datetime.datetime(2026, 1, 2, tzinfo=Zone())
    LOG.clear()
    assert value_text(when, 200) == f"<datetime.datetime object at {id(when):#x}>"


def test_str_is_cut_before_repr() -> None:
    assert value_text("a" * 10_000, 8) == "'aaaaaaaaa'"
    assert value_text(Text("b" * 10_000), 8) == "'bbbbbbbbb'"


def test_safe_repr_calls_the_program_only_when_asked() -> None:
    spy = Spy()
    assert SafeRepr(64)(spy) == spy_at(spy)
    assert LOG == []
    assert SafeRepr(64, call=True)(spy) == "Spy!"
    assert LOG.count("repr") == 1
    assert SafeRepr(64).called(spy) == "Spy!"  # a spec's explicit :repr
    assert LOG.count("repr") == 2
    LOG.clear()


def mocked_field_read(c: Any) -> Any:
    return c.i


@pytest.mark.parametrize("repr_call", [
    0, pytest.param(1, marks=pytest.mark.skipif(
        sys.platform == "emscripten", reason="the program's repr recursing through the traced "
        "Mock exhausts WebAssembly's stack before Python's recursion limit"))])
def test_a_traced_descriptor_is_called_as_often_as_untraced(hot_path: str,
                                                            repr_call: int) -> None:
    """CPython's test_dataclasses.test_getting_field_calls_get, traced with
    arguments and return values: 1 call of __get__ untraced, so 1 traced, unless
    the user asked for the program's reprs (repr-call), whose cost this shows."""
    class D:
        pass

    D.__set__ = Mock()  # type: ignore[attr-defined]
    D.__get__ = Mock()  # type: ignore[attr-defined]

    @dataclasses.dataclass
    class C:
        i: D = D()  # noqa: RUF009

    c = C(5)  # type: ignore[arg-type]
    with fntrace.trace("function_graph", filter=[f"{HERE}:mocked_field_read",
                                                 "unittest.mock:*"],
                       funcgraph_args=1, funcgraph_retval=1, repr_call=repr_call) as inst:
        D.__get__.reset_mock()  # type: ignore[attr-defined]
        mocked_field_read(c)
        count = D.__get__.call_count  # type: ignore[attr-defined]
    text = inst.read("trace")
    assert "mocked_field_read(c=" in text
    if repr_call:
        assert count > 1
    else:
        assert count == 1
        assert "mocked_field_read(c=test_a_traced_descriptor_is_called_as_often_as_untr" in text


def test_record_command_line_repr_call(tmp_path: Any) -> None:
    """--repr-call is the record option that turns the program's reprs on."""
    import subprocess

    prog = tmp_path / "p.py"
    prog.write_text("class R:\n    def __repr__(self):\n        return 'mine'\n"
                    "def f(x):\n    return x\nf(R())\n")
    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    out = {}
    for flag in ([], ["--repr-call"]):
        dat = tmp_path / f"t{len(flag)}.dat"
        subprocess.run([sys.executable, "-m", "fntrace", "record", "-F", "f", "--args",
                        *flag, "-o", str(dat), str(prog)], env=env, check=True,
                       capture_output=True, timeout=120)
        replay = subprocess.run([sys.executable, "-m", "fntrace", "replay", str(dat)],
                                env=env, capture_output=True, text=True, check=True,
                                timeout=120)
        out[bool(flag)] = [ln for ln in replay.stdout.splitlines() if "f(x=" in ln]
    assert len(out[False]) == 1 and "f(x=<__main__.R object at 0x" in out[False][0]
    assert len(out[True]) == 1 and "f(x=mine)" in out[True][0]


def takes_plain(x: Any) -> None:
    return None


def test_a_class_that_gains_a_repr_later_is_still_not_called(hot_path: str) -> None:
    """Both paths decide a plain class once (Python: a per-class cache; C: that
    decision, asked of value_text.class_rule and kept while the class's version
    tag stays): a ``__repr__`` given to the class afterwards is not run."""
    class Late:
        pass

    first, second = Late(), Late()
    with fntrace.trace("function_graph", filter=f"{HERE}:takes_plain",
                       funcgraph_args=1, repr_max_len=400) as inst:
        takes_plain(first)
        Late.__repr__ = lambda self: LOG.append("late repr") or "late"  # type: ignore
        takes_plain(second)
    shown = [ln.split("|", 1)[1].strip() for ln in inst.read("trace").splitlines()
             if not ln.startswith("#")]
    late = f"{HERE}.test_a_class_that_gains_a_repr_later_is_still_not_called.<locals>.Late"
    assert shown == [f"{HERE}:takes_plain(x=<{late} object at {id(obj):#x}>);"
                     for obj in (first, second)]


def test_bytearray_is_cut_before_repr() -> None:
    assert value_text(bytearray(b"x" * 100_000), 8) == "bytearray(b'xxxxxxxxx')"
