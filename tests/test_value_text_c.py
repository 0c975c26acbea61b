"""value_text.py's texts made by the C recorder's own walk (fntrace/csrc/value_text.c).

Why: the C graph recorder renders dataclass instances and containers itself
instead of handing them to the Python walker, which cost most of the mixed
workload's instructions per call.  Its text must be the walker's, byte for
byte, and it must read nothing the walker does not.  The oracle is the pure
walker (``SafeRepr(max_len)``, value_text.py); ``_speedups.value_text`` is the
C walk alone (None where it hands the value to the walker), and the traced
runs hold the recorder, whose rules per class outlive a call, to the same texts
on both paths.  The spies of test_value_text.py must see nothing.
"""

from __future__ import annotations

import dataclasses
import random
import re
import sys
from typing import Any

import pytest
from test_value_text import (
    LOG,
    Number,
    Point,
    Slotted,
    Spy,
    SpyDict,
    SpyList,
    Text,
    WithDescriptor,
    WithProperty,
    spy_at,
)

from fntrace.tracing.instance import trace
from fntrace.tracing.reprs import SafeRepr
from fntrace.tracing.value_text import MAX_ITEMS, MAX_LEVEL, class_rule

speedups = pytest.importorskip("fntrace._speedups")


@dataclasses.dataclass(frozen=True, order=True)
class Item:
    sku: str
    quantity: int
    cents: int


@dataclasses.dataclass
class Order:
    order_id: int
    items: tuple[Item, ...] = ()
    note: Any = None


@dataclasses.dataclass
class Wide:
    a: int = 1
    b: int = 2
    c: int = 3
    d: int = 4
    e: int = 5
    f: int = 6
    g: int = 7


@dataclasses.dataclass(slots=True, frozen=True)
class FrozenSlots:
    x: Any
    y: Any = "y"


@dataclasses.dataclass
class ObjectRepr:
    """A dataclass that keeps object's __repr__ by name: value_text shows its fields."""
    v: int
    __repr__ = object.__repr__


class Sub(list):  # type: ignore[type-arg]
    pass


class SubDict(dict):  # type: ignore[type-arg]
    pass


class SubTuple(tuple):  # type: ignore[type-arg]
    pass


class SubSet(set):  # type: ignore[type-arg]
    pass


class SubFrozen(frozenset):  # type: ignore[type-arg]
    pass


class Blob(bytes):
    pass


class Plain:
    pass


def unset_slot() -> Slotted:
    s = Slotted(1)
    del s.b
    return s


def gen(rng: random.Random, depth: int) -> Any:
    """A value of the kinds the C walk renders, nested up to `depth`, with
    sizes around the item limit."""
    leaves: list[Any] = [
        0, -1, 7, 2**63, -(2**70), 10**40, True, False, None, 1.5, -0.0, float("inf"), 2j,
        "", "a", "it's", 'say "hi"', "both ' and \"", "tab\tnl\ncr\r\x00\x7f\\", "é",
        "\u20ac" * 3, "\U0001f600x", "x" * 70, "é" * 70, b"", b"ab'\x00\xff", b"z" * 80,
        bytearray(b"ba"), Text("sub'str"), Number(42), Blob(b"blob"), Plain(),
        Item("SKU-0001", 2, 350), unset_slot(), Slotted(3, "b"), Point(1, "p"), WithDescriptor(),
        FrozenSlots(1), Wide(), ObjectRepr(5), Item, len, range(3),
    ]
    if depth <= 0 or rng.random() < 0.3:
        return rng.choice(leaves)
    n = rng.choice([0, 1, 2, MAX_ITEMS - 1, MAX_ITEMS, MAX_ITEMS + 1, 9])
    kind = rng.randrange(9)
    items = [gen(rng, depth - 1) for _ in range(n)]
    hashable = [x for x in items if _hashable(x)]
    if kind == 0:
        return items
    if kind == 1:
        return tuple(items)
    if kind == 2:
        return {(k if _hashable(k) else repr(type(k))): v
                for k, v in zip(hashable or ["k"], items, strict=False)}
    if kind == 3:
        return set(hashable)
    if kind == 4:
        return frozenset(hashable)
    if kind == 5:
        return Order(rng.randrange(100), tuple(x for x in items if type(x) is Item),
                     items[0] if items else None)
    if kind == 6:
        return Sub(items)
    if kind == 7:
        return SubDict(enumerate(items))
    return FrozenSlots(items, tuple(items))


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def c_text(v: Any, max_len: int) -> str | None:
    return speedups.value_text(v, max_len, class_rule)  # type: ignore[no-any-return]


def test_limits_are_value_texts() -> None:
    assert (speedups.VALUE_TEXT_ITEMS, speedups.VALUE_TEXT_LEVEL) == (MAX_ITEMS, MAX_LEVEL)


@pytest.mark.parametrize("max_len", [0, 1, 4, 5, 64, 400, 5000])
def test_generated_values_as_the_walker_writes_them(max_len: int) -> None:
    rng = random.Random(max_len)
    want = SafeRepr(max_len)
    rendered = 0
    for i in range(400):
        v = gen(rng, i % 5)
        pure = want(v)  # first: the walker remembers its dataclass plans
        c = c_text(v, max_len)
        assert c == pure, (v, pure, c)
        rendered += 1
    assert rendered == 400


def test_each_kind_rendered_in_c() -> None:
    """None means the walker's: every one of these is C's own (no silent fallback)."""
    values: list[Any] = [
        [1, [2, [3, [4]]]], (1,), (), {"k": (1, 2)}, set(), frozenset(), {1}, frozenset({2}),
        Item("s", 1, 2), Order(1, (Item("a", 1, 2),) * 7), Slotted(1), unset_slot(),
        FrozenSlots(1), WithDescriptor(), Point(1), Wide(), Sub([1]), SubDict(a=1),
        SubTuple((1,)), SubSet({1}), SubFrozen({1}), Text("t"), Number(3), Blob(b"b"),
        bytearray(b"x"), 2**200, "é\u20ac\U0001f600", Plain(), re.match("a", "a"), len, Item,
        float("nan"), 1 + 2j, WithProperty(3),
    ]
    for v in values:
        want = SafeRepr(64)(v)
        assert c_text(v, 64) == want, v
        assert c_text([v, {"k": v}], 400) == SafeRepr(400)([v, {"k": v}])


def test_recursive_containers() -> None:
    a: list[Any] = [1]
    a.append(a)
    d: dict[str, Any] = {}
    d["me"] = d
    d["list"] = a
    for v, max_len in ((a, 64), (d, 400), ([a, d], 400)):
        assert c_text(v, max_len) == SafeRepr(max_len)(v)
    assert c_text(a, 64) == "[1, [1, [...]]]"


def test_huge_int_failure_is_the_walkers() -> None:
    """An int past int_max_str_digits makes the walker's repr fail: the C walk
    hands the value over (None), and the walker's failure text is the value's."""
    if not hasattr(sys, "set_int_max_str_digits"):
        pytest.skip("no int_max_str_digits")
    big = 10 ** 5000
    assert c_text([1, big], 64) is None
    assert SafeRepr(64)([1, big]) == "<repr of list failed: ValueError>"


def test_name_prefix_and_cut() -> None:
    v = [Item("é" * 10, 1, 2)]
    for max_len in (0, 3, 10, 30, 200):
        text = SafeRepr(max_len)(v)
        assert speedups.value_text(v, max_len, class_rule, "arg") == f"arg={text}"
        assert speedups.value_text(v, max_len, class_rule, "é\u20ac") == f"é\u20ac={text}"
    # a cut that leaves only ASCII gives an ASCII str (the canonical form)
    cut = c_text(["a" * 20, "\U0001f600"], 10)
    assert cut == SafeRepr(10)(["a" * 20, "\U0001f600"]) == "['aaaaa..." and cut.isascii()


def test_spies_see_nothing_on_the_c_walk() -> None:
    spy = Spy()
    s = spy_at(spy)
    values = [[spy, {spy: spy}, (spy,), {spy}], Point(1, spy), [[spy]], {"k": [spy]},
              SpyList([1, 2]), SpyDict(a=1), FrozenSlots(spy, [spy]), Order(1, (), spy)]
    want = [SafeRepr(400)(v) for v in values]
    LOG.clear()  # (making the dict and the set hashed the spy)
    got = [c_text(v, 400) for v in values]
    assert LOG == []
    assert got == want
    assert got[0] == f"[{s}, {{{s}: {s}}}, ({s},), {{{s}}}]"
    assert got[4] == "[1, 2]" and got[5] == "{'a': 1}"


def test_descriptor_and_property_fields_are_not_read() -> None:
    values = [WithDescriptor(), WithProperty(3)]
    want = [SafeRepr(64)(v) for v in values]  # (the walker plans the classes first)
    LOG.clear()
    assert [c_text(v, 64) for v in values] == want == [
        "WithDescriptor(d=<descriptor>)", "WithProperty(_v=3)"]
    assert LOG == []


def id_pass(obj: Any) -> Any:
    return obj


def rendered(values: list[Any], max_len: int = 400, between: Any = None) -> list[tuple[str, str]]:
    """(argument text, return value text) of id_pass for each value, traced."""
    with trace("function_graph", filter="id_pass", funcgraph_args=1,
               funcgraph_retval=1, repr_max_len=max_len) as inst:
        for i, v in enumerate(values):
            if between is not None:
                between(i)
            id_pass(v)
        inst.write("tracing_on", "0")
        events = [ev for buf in inst.rb.live.buffers() for ev in buf.events]
    args = [ev[5] for ev in events if ev[2] == "E"]
    rets = [ev[7] for ev in events if ev[2] == "X"]
    return list(zip(args, rets, strict=True))


def oracle(v: Any, max_len: int = 400) -> tuple[str, str]:
    text = SafeRepr(max_len)(v)
    return f"obj={text}", text


def test_traced_values_on_both_paths(hot_path: str) -> None:
    rng = random.Random(7)
    values = [gen(rng, 3) for _ in range(60)] + [ObjectRepr(1), ObjectRepr(2)]
    for max_len in (64, 400):
        assert rendered(values, max_len) == [oracle(v, max_len) for v in values]


def test_values_and_classes_changed_between_calls(hot_path: str) -> None:
    """The recorder keeps a rule per class while the class stays the same: a
    container changed, a class given an attribute, a list subclass that gains a
    __repr__ of its own, and a dataclass's field shadowed by a class attribute
    all show as the walker shows them then."""

    @dataclasses.dataclass
    class Moving:
        a: int
        b: Any = None

    class Grows(list):  # type: ignore[type-arg]
        pass

    box: list[Any] = [1]
    m = Moving(1, box)
    g = Grows([1, 2])
    values = [m, g, m, g, m, g, box, m]
    seen: list[tuple[str, str]] = []

    def between(i: int) -> None:
        if i == 2:
            box.append("more")
            Moving.extra = 1  # type: ignore[attr-defined]
        if i == 3:
            Grows.__repr__ = lambda self: LOG.append("grows repr") or "G"  # type: ignore
        if i == 4:
            del m.__dict__["b"]  # the class's default is None: "<unset>", as the walker says
        seen.append(oracle(values[i]))

    LOG.clear()
    got = rendered(values, between=between)
    assert got == seen
    assert LOG == []
    assert got[0][1] == "test_values_and_classes_changed_between_calls.<locals>.Moving(a=1, b=[1])"
    assert got[3][1].startswith("<test_value_text_c.test_values_and_classes_changed_between_"
                                "calls.<locals>.Grows object at 0x")
    assert got[4][1].endswith("Moving(a=1, b=<unset>)")


def test_a_slot_replaced_by_a_property_after_the_plan_is_not_called(hot_path: str) -> None:
    """A slotted dataclass planned at its first value, then its slot's class
    attribute replaced by a property of the program's: the property is never
    called (on either path), the field shows as a descriptor's."""

    @dataclasses.dataclass(slots=True)
    class Cell:
        a: int
        b: int = 2

    calls: list[str] = []
    values = [Cell(1), Cell(3), Cell(5)]

    def between(i: int) -> None:
        if i == 1:
            Cell.b = property(lambda self: calls.append("b") or 9)  # type: ignore[assignment]

    got = rendered(values, between=between)
    assert calls == []
    name = "test_a_slot_replaced_by_a_property_after_the_plan_is_not_called.<locals>.Cell"
    assert got == [(f"obj={name}(a=1, b=2)", f"{name}(a=1, b=2)"),
                   (f"obj={name}(a=3, b=<descriptor>)", f"{name}(a=3, b=<descriptor>)"),
                   (f"obj={name}(a=5, b=<descriptor>)", f"{name}(a=5, b=<descriptor>)")]


def test_object_repr_dataclass_shows_its_fields(hot_path: str) -> None:
    """value_text decides by the class that names __repr__ (a dataclass here),
    not by the C slot (object's): the fields, on both paths."""
    v = ObjectRepr(3)
    assert rendered([v, v]) == [("obj=ObjectRepr(v=3)", "ObjectRepr(v=3)")] * 2


def test_recorder_renders_dataclasses_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the C path the walker sees a dataclass's class once (to plan it); the
    recorder writes every later value itself, the same text."""
    import fntrace.core.accel
    from fntrace.tracing import reprs

    if fntrace.core.accel.speedups is None:
        pytest.skip("no C path here")
    walked: list[str] = []
    walker = reprs.SafeRepr.__call__

    def counted(self: SafeRepr, value: Any, call: bool | None = None) -> str:
        walked.append(type(value).__name__)
        return walker(self, value, call)

    monkeypatch.setattr(reprs.SafeRepr, "__call__", counted)

    @dataclasses.dataclass(frozen=True)
    class Line:
        sku: str
        n: int

    @dataclasses.dataclass
    class Basket:
        lines: tuple[Line, ...]
        tags: dict[str, int]

    values = [Line("a", 1), Line("b", 2), Line("c", 3),
              Basket((Line("d", 4),), {"x": 1}), Basket((Line("e", 5),) * 7, {}),
              [Line("f", 6), {"k": Basket((), {})}]]
    got = rendered(values)
    walked_by_recorder = list(walked)
    assert got == [oracle(v) for v in values]
    assert walked_by_recorder == ["Line", "Basket"]
