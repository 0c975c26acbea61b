"""What Python 3.14 changes in what a recorder sees (run on the Pyodide leg).

PEP 649/749: annotations are evaluated lazily, by an ``__annotate__`` function
compiled for each annotated function, class and module.  Its code is the
program's, so fntrace reports it as the call it is, where the annotations are
first read (not where the function is defined), named by CPython's qualname for
it (``__annotate__`` for a module-level function's, ``C.__annotate__`` for a class
C's and for its methods'), and ``!__annotate__`` hides them all.  Before 3.14
annotations are evaluated at definition and no such call exists.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest
from helpers import registered

from fntrace import Event, FtraceRegs, Function, Ops

SOURCE = '''
class Box:
    size: int

    def fill(self, n: int) -> int:
        return n


def area(w: float, h: float) -> float:
    return w * h


def plain(w, h):
    return w * h
'''


@pytest.fixture
def lazy_mod() -> Iterator[types.ModuleType]:
    """A module compiled without ``from __future__ import annotations`` (this file has it)."""
    mod = types.ModuleType("py314_lazy")
    sys.modules[mod.__name__] = mod
    try:
        exec(compile(SOURCE, "py314_lazy.py", "exec", dont_inherit=True), mod.__dict__)
        yield mod
    finally:
        del sys.modules[mod.__name__]


def _annotate_codes(mod: types.ModuleType) -> list[types.CodeType]:
    """The oracle: the ``__annotate__`` functions CPython gave the module's objects."""
    owners = (mod.area, mod.plain, mod.Box, mod.Box.fill)
    annotates = [getattr(o, "__annotate__", None) for o in owners]
    return [a.__code__ for a in annotates if a is not None]


def test_annotations_are_read_through_annotate_calls(lazy_mod: types.ModuleType) -> None:
    codes = _annotate_codes(lazy_mod)
    assert len(codes) == (3 if sys.version_info >= (3, 14) else 0)  # plain has none
    log: list[tuple[str, str, str | None]] = []

    def entry(ip: Function, parent_ip: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        log.append((fregs.event, ip.name, parent_ip and parent_ip.name))

    def exit_(ip: Function, parent_ip: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        log.append((fregs.event, ip.name, None))

    def reader() -> list[dict[str, object]]:
        # Read twice: a function keeps its evaluated annotations.
        return [lazy_mod.area.__annotations__, lazy_mod.area.__annotations__,
                lazy_mod.Box.fill.__annotations__, lazy_mod.plain.__annotations__]

    read_name = f"{__name__}:{reader.__code__.co_qualname}"
    with registered(Ops(entry, ret=exit_, filter=["*:mod:py314_lazy", read_name])):
        values = reader()
    assert values == [{"w": float, "h": float, "return": float}] * 2 + [
        {"n": int, "return": int}, {}]
    test_name = f"{__name__}:test_annotations_are_read_through_annotate_calls"
    expected = [(Event.START, read_name, test_name)]
    if codes:
        expected += [
            (Event.START, "py314_lazy:__annotate__", read_name),
            (Event.RETURN, "py314_lazy:__annotate__", None),
            (Event.START, "py314_lazy:Box.__annotate__", read_name),
            (Event.RETURN, "py314_lazy:Box.__annotate__", None),
        ]
    expected.append((Event.RETURN, read_name, None))
    assert log == expected

    log.clear()
    hidden = Ops(entry, ret=exit_, filter=["*:mod:py314_lazy"], notrace=["__annotate__"])
    with registered(hidden):
        assert lazy_mod.Box.__annotations__ == {"size": int}
        assert lazy_mod.area(2.0, 3.0) == 6.0
    assert log == [(Event.START, "py314_lazy:area", test_name),
                   (Event.RETURN, "py314_lazy:area", None)]
