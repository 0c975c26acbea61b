"""The first look at a code object: a module no ops can select is refused by name.

engine.discover refuses code by its (module, qualname) before making a
Function, and records a module none of whose functions any ops can select
(``engine.refused_modules``), whose other code the C dispatcher then DISABLEs
without Python.  These tests hold that shortcut to the full answer: what it
refuses is what the filters refuse, and a refusal never outlives the filters
it was made under.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

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


def c_dispatcher() -> bool:
    """Whether first looks go through the C dispatcher (sys.monitoring, C path)."""
    import fntrace.core.accel

    return sys.version_info >= (3, 12) and fntrace.core.accel.speedups is not None


def test_a_refused_module_is_traced_once_an_ops_names_it(other: ModuleType) -> None:
    name = other.__name__
    first: list[str] = []
    second: list[str] = []
    nothing = recorder(first)
    nothing.set_filter(["*:mod:no_such_module_for_first_look"])
    fntrace.register(nothing)
    try:
        assert other.a() == 1
        assert engine.allowed_modules[0] == (
            frozenset({"no_such_module_for_first_look"}), ())
        if c_dispatcher():  # outside the filters' bound: refused in C, discover never ran
            assert name not in engine.refused_modules[0]
        else:
            assert name in engine.refused_modules[0]  # the whole module was refused
        assert other.b() == 2  # refused by name (C: without calling discover)
        named = recorder(second)
        named.set_filter([f"*:mod:{name}"])
        fntrace.register(named)
        try:
            assert name not in engine.refused_modules[0]  # the refusal went with the rebuild
            assert engine.allowed_modules[0] == (
                frozenset({"no_such_module_for_first_look", name}), ())
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
        assert name in engine.refused_modules[0] or c_dispatcher()
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


@pytest.mark.parametrize("patterns", [
    ["*:mod:json.*"], ["json.*:*"], ["json.decoder:*", "*:mod:os"], ["!*:mod:x"],
    ["foo*"], ["*:mod:json", "bar"], ["json*:f?o"], ["!json.*:*", "*:mod:json.*"],
    ["*:mod:j[st]on.*"], [], ["js*:*"], ["json.*:loads", "!json.decoder:*"],
])
def test_module_bound_holds_every_selected_function(patterns: list[str]) -> None:
    """What the C first look refuses without Python (engine.allowed_modules):
    every function the filter selects is in a module of its bound."""
    flt = Filter(parse(patterns))
    bound = flt.module_bound()
    names = ["f", "foo", "fxo", "bar", "loads", "A.f", "A.<locals>.foo", "<exec>"]
    modules = ["json", "json.decoder", "jsonx", "js", "os", "x", "jton.y", "fntrace", "json2"]
    if bound is None:
        return
    exact, prefixes = bound
    for module in modules:
        inside = module in exact or module.startswith(prefixes)
        if not inside:
            assert [q for q in names if flt.selects(module, q)] == [], (module, patterns)


def test_module_bound_is_given_where_the_rules_say_so() -> None:
    def bound(*patterns: str) -> object:
        return Filter(parse(list(patterns))).module_bound()

    assert bound("*:mod:json.*") == (frozenset({"json"}), ("json.",))
    assert bound("json.decoder:*", "*:mod:os") == (frozenset({"json.decoder", "os"}), ())
    assert bound("js*:*") == (frozenset(), ("js",))
    assert bound("json.*:loads", "!json.decoder:*") == (frozenset({"json"}), ("json.",))
    assert bound("foo*") is None  # any module's foo*
    assert bound("*:mod:json", "bar") is None
    assert bound("!*:mod:x") is None  # no positive rule: all but x
    assert bound() is None
    assert bound("*:mod:j[st]on.*") is None  # a glob of another shape: not known


@pytest.mark.parametrize("pattern", ["first_look_mod*:a", "*:mod:first_look_mod*"])
def test_a_module_inside_a_prefix_bound_is_looked_at(other: ModuleType, pattern: str) -> None:
    """A module named by a prefix of the bound (not exactly) still reaches discover
    and its selected functions are traced; a module outside is refused in C."""
    name = other.__name__
    seen: list[str] = []
    op = recorder(seen)
    op.set_filter([pattern])
    fntrace.register(op)
    try:
        assert engine.allowed_modules[0] == (frozenset(), ("first_look_mod",))
        assert other.a() == 1
        assert other.b() == 2
        assert other.a() == 1
    finally:
        fntrace.unregister(op)
    want = [f"{name}:a", f"{name}:a"] if pattern.endswith(":a") else [
        f"{name}:a", f"{name}:b", f"{name}:a"]
    assert seen == want


def test_frozen_code_is_refused_by_its_module_name(other: ModuleType) -> None:
    """importlib's frozen code (a real module's, named by its __name__) outside
    the filters' bound is refused in C like any file's code, never looked at in
    Python; the selected function is traced all the same."""
    name = other.__name__
    seen: list[str] = []
    op = recorder(seen)
    op.set_filter([f"{name}:a"])
    fntrace.register(op)
    try:
        # a search through the path finders: importlib._bootstrap(_external)'s code
        assert importlib.util.find_spec("no_such_module_for_first_look") is None
        assert other.a() == 1
        if c_dispatcher():
            assert "importlib._bootstrap_external" not in engine.refused_modules[0]
        else:
            assert "importlib._bootstrap_external" in engine.refused_modules[0]
    finally:
        fntrace.unregister(op)
    assert seen == [f"{name}:a"]


def fl_raises() -> None:
    raise KeyError("x")


def fl_catches() -> str:
    try:
        fl_raises()
    except KeyError:
        return "caught"
    return "not caught"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring's global events")
def test_unwind_is_global_only_while_a_site_has_a_return_callback() -> None:
    """PY_UNWIND (global only: every frame an exception crosses) is set while
    some site has a return callback, and its exits through an exception are
    all there; an entry-only ops leaves it off."""
    mon = sys.monitoring
    entries: list[str] = []
    exits: list[tuple[str, object]] = []

    def on_entry(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        entries.append(ip.qualname)

    def on_exit(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        exits.append((ip.qualname, type(fregs.exception).__name__))

    entry_only = Ops(on_entry, filter=f"{MOD}:fl_*")
    fntrace.register(entry_only)
    # The Python callbacks keep PY_UNWIND (the recursion limit's traceback).
    always = not c_dispatcher()
    try:
        tool = engine.backend().tool  # type: ignore[union-attr]
        assert fl_catches() == "caught"
        assert bool(mon.get_events(tool) & mon.events.PY_UNWIND) is always
        with_exit = Ops(None, ret=on_exit, filter=f"{MOD}:fl_raises")
        fntrace.register(with_exit)
        try:
            assert fl_catches() == "caught"
            assert mon.get_events(tool) & mon.events.PY_UNWIND
        finally:
            fntrace.unregister(with_exit)
        assert bool(mon.get_events(tool) & mon.events.PY_UNWIND) is always
        assert fl_catches() == "caught"
    finally:
        fntrace.unregister(entry_only)
    assert entries == ["fl_catches", "fl_raises"] * 3
    assert exits == [("fl_raises", "KeyError")]


def _generated(module: str, name: str) -> Callable[[], int]:
    """A function of its own code object in module ``module``, freed with it."""
    scope: dict[str, Any] = {"__name__": module}
    exec(f"def {name}():\n    return 1\n", scope)
    return scope[name]  # type: ignore[no-any-return]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring's global events")
def test_unwind_goes_off_when_the_functions_with_exits_are_freed() -> None:
    """The backend counts the patched functions with a return callback (no set
    of ids: bench/site_memory.py); a function whose code the program frees
    leaves the count, so PY_UNWIND goes off at the next patch once none is
    left, on the C path (the Python callbacks keep it, as above)."""
    mon = sys.monitoring
    with_exit = Ops(None, ret=lambda *a: None, filter="gen_unwind:*")
    entry_only = Ops(lambda *a: None, filter="gen_unwind_entry:*")
    fntrace.register(entry_only)
    fntrace.register(with_exit)
    always = not c_dispatcher()
    try:
        backend: Any = engine.backend()
        funcs = [_generated("gen_unwind", f"u{i}") for i in range(3)]
        assert [f() for f in funcs] == [1, 1, 1]
        assert backend.exits - len(backend.exits_gone) == 3
        assert mon.get_events(backend.tool) & mon.events.PY_UNWIND
        del funcs[:2]  # two codes freed: one function with exits is left
        gc.collect()
        assert _generated("gen_unwind_entry", "e1")() == 1  # a patch
        assert backend.exits == 1 and backend.exits_gone == []
        assert mon.get_events(backend.tool) & mon.events.PY_UNWIND
        funcs.clear()
        gc.collect()
        assert _generated("gen_unwind_entry", "e2")() == 1
        assert backend.exits == 0 and backend.exits_gone == []
        assert bool(mon.get_events(backend.tool) & mon.events.PY_UNWIND) is always
        again = _generated("gen_unwind", "u9")  # exits wanted again: on before its call
        assert again() == 1
        assert backend.exits == 1
        assert mon.get_events(backend.tool) & mon.events.PY_UNWIND
        fntrace.unregister(with_exit)  # unpatched: the count follows
        assert backend.exits == 0
        assert bool(mon.get_events(backend.tool) & mon.events.PY_UNWIND) is always
    finally:
        fntrace.unregister(entry_only)
        if with_exit in engine.registered_ops():
            fntrace.unregister(with_exit)
