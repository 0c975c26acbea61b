"""Reading a running frame's variables without keeping them alive.

Before 3.13 ``frame.f_locals`` fills a dict cached on the frame, which then
holds every local until the frame dies: a traced function's arguments would
outlive their last use (CPython's test_contextlib test_nokeepref, weakref and
``gc`` tests see it).  So when nothing but the frame holds that dict it is
emptied again after reading: every way the program can reach it (``locals()``,
``f_locals``) refills it first.  On 3.11 and 3.12 it is first written back
(unchanged) with PyFrame_LocalsToFast, which also clears the frame's "locals
were copied" mark, so that sys.setprofile's trampoline does not copy the
emptied dict back into the fast locals when the profile function returns.  A
dict the program holds (``d = locals()``) is left as it is.  Module and class
bodies (no CO_OPTIMIZED) use their namespace itself and are never emptied.

This module sits at the bottom of ``core``: it imports nothing of fntrace, so
both the naming of generated code (``naming``) and the arguments view
(``regs``) can use it.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["first_local", "read_locals", "write_back"]

_PY313 = sys.version_info >= (3, 13)
#: getrefcount of a frame's locals dict, as _release sees it, when nothing but the
#: frame holds it: the frame, the reader's local, _release's parameter, the call.
_ONLY_FRAME = 4
_CO_OPTIMIZED = 0x0001


def read_locals(frame: types.FrameType, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of ``names`` among the frame's variables, leaving nothing behind."""
    values = frame.f_locals
    out = {name: values[name] for name in names if name in values}
    _release(frame, values)
    return out


def first_local(frame: types.FrameType) -> Any:
    """The frame's first variable (its first parameter), or None; nothing left behind.

    Locals come in ``co_varnames`` order; ``co_varnames`` itself is not read
    (CPython would build and keep that tuple on the code object).
    """
    values = frame.f_locals
    first = next(iter(values.values()), None)
    _release(frame, values)
    return first


def write_back(frame: types.FrameType) -> None:
    """Copy a pre-3.13 ``f_locals`` snapshot back into the frame's fast locals."""
    call = _locals_to_fast or _bind()
    call(frame)


def _release(frame: types.FrameType, values: dict[str, Any]) -> None:
    if (not _PY313 and frame.f_code.co_flags & _CO_OPTIMIZED
            and sys.getrefcount(values) <= _ONLY_FRAME):
        write_back(frame)
        values.clear()


#: PyFrame_LocalsToFast(frame, 0) through ctypes, bound at first use: ctypes costs
#: as much to import as the rest of the core, and most programs never need it.
_locals_to_fast: Callable[[types.FrameType], None] | None = None


def _bind() -> Callable[[types.FrameType], None]:
    global _locals_to_fast
    if sys.version_info >= (3, 13):  # pragma: no cover - f_locals writes through there
        def call(frame: types.FrameType) -> None:
            return None
    else:
        import ctypes

        c_func = ctypes.pythonapi.PyFrame_LocalsToFast
        c_func.argtypes = [ctypes.py_object, ctypes.c_int]
        c_func.restype = None
        py_object, c_int = ctypes.py_object, ctypes.c_int

        def call(frame: types.FrameType) -> None:
            c_func(py_object(frame), c_int(0))
    _locals_to_fast = call
    return call
