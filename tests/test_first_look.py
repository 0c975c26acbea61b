"""The first look at a code object: a module no ops can select is refused by name.

engine.discover refuses code by its (module, qualname) before making a
Function, and records a module none of whose functions any ops can select
(``engine.refused_modules``), whose other code the C dispatcher then DISABLEs
without Python.  These tests hold that shortcut to the full answer: what it
refuses is what the filters refuse, and a refusal never outlives the filters
it was made under.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import fntrace
from fntrace import FtraceRegs, Function, Ops
from fntrace.core import engine
from fntrace.core.filter import Filter, parse

pytestmark = pytest.mark.usefixtures("hot_path")

MOD = __name__

SOURCE = """
def a():
    return 1


def b():
    return 2
"""


@pytest.fixture
def other(tmp_path: Path) -> Iterator[ModuleType]:
    """A module of its own, on disk, as real code is."""
    name = f"first_look_mod_{tmp_path.name.replace('-', '_')}"
    path = tmp_path / f"{name}.py"
    path.write_text(SOURCE)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[name]


def recorder(seen: list[str]) -> Ops:
    def entry(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        seen.append(ip.name)

    return Ops(entry)


def test_a_refused_module_is_traced_once_an_ops_names_it(other: ModuleType) -> None:
    name = other.__name__
    first: list[str] = []
    second: list[str] = []
    nothing = recorder(first)
    nothing.set_filter(["*:mod:no_such_module_for_first_look"])
    fntrace.register(nothing)
    try:
        assert other.a() == 1
        assert name in engine.refused_modules[0]  # the whole module was refused
        assert other.b() == 2  # refused by name (C: without calling discover)
        named = recorder(second)
        named.set_filter([f"*:mod:{name}"])
        fntrace.register(named)
        try:
            assert name not in engine.refused_modules[0]  # the refusal went with the rebuild
            assert other.a() == 1
            assert other.b() == 2
        finally:
            fntrace.unregister(named)
    finally:
        fntrace.unregister(nothing)
    assert first == []
    assert second == [f"{name}:a", f"{name}:b"]


def test_a_filter_widened_by_set_filter_reaches_a_refused_module(other: ModuleType) -> None:
    name = other.__name__
    seen: list[str] = []
    op = recorder(seen)
    op.set_filter(["*:mod:no_such_module_for_first_look"])
    fntrace.register(op)
    try:
        other.a()
        other.b()
        op.set_filter([f"{name}:b"])
        other.a()
        other.b()
    finally:
        fntrace.unregister(op)
    assert seen == [f"{name}:b"]


def test_generated_code_of_a_refused_module_is_named_after_its_caller(
        other: ModuleType) -> None:
    # Code exec'd from text is named after the module that ran it
    # (module:<exec>): being refused as code of `other` would lose it.
    name = other.__name__
    seen: list[str] = []
    op = recorder(seen)
    op.set_filter([f"{MOD}:<exec>"])
    fntrace.register(op)
    try:
        other.a()
        assert name in engine.refused_modules[0]
        # The module body runs with `other`'s globals, called from here.
        exec(compile("x = 1", "<generated>", "exec"), {"__name__": name})
    finally:
        fntrace.unregister(op)
    assert seen == [f"{MOD}:<exec>"]


@pytest.mark.parametrize("patterns", [
    ["*:mod:json.*"], ["json.*:*"], ["json.decoder:*", "*:mod:os"], ["!*:mod:x"],
    ["foo*"], ["*:mod:json", "bar"], ["json*:f?o"], ["!json.*:*", "*:mod:json.*"],
    ["*:mod:j[st]on.*"], [],
])
def test_selects_nothing_in_agrees_with_selects(patterns: list[str]) -> None:
    flt = Filter(parse(patterns))
    names = ["f", "foo", "fxo", "bar", "A.f", "A.<locals>.foo", "<exec>"]
    for module in ["json", "json.decoder", "jsonx", "os", "x", "jton.y", "fntrace"]:
        if flt.selects_nothing_in(module):
            assert [q for q in names if flt.selects(module, q)] == [], (module, patterns)
    # and it does refuse where it can: a filter naming modules only
    assert Filter(parse(["*:mod:json.*"])).selects_nothing_in("os")
    assert not Filter(parse(["*:mod:json.*"])).selects_nothing_in("json.decoder")
    assert not Filter(parse(["foo*"])).selects_nothing_in("os")
