"""Which hot path runs: the optional C one (fntrace._speedups) or pure Python.

The C extension is built at install time when a compiler is there; without it
fntrace runs the same trace through its pure-Python path, only slower.
``FNTRACE_PURE=1`` in the environment turns the C path off, to compare the
two or to rule the extension out when chasing a bug.  Consumers read
``speedups`` when a backend or tracer starts, so tests can switch it off by
setting it to None.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from importlib.machinery import EXTENSION_SUFFIXES as _SUFFIXES
from types import ModuleType

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXTENSION_SUFFIXES = tuple(_SUFFIXES)

__all__ = ["built", "self_check", "speedups", "status"]


def _speedups_module() -> ModuleType | None:
    """The extension module if it was imported (on, off at run time, or refused)."""
    return sys.modules.get("fntrace._speedups")


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get("FNTRACE_PURE", "") not in ("", "0"):
        return None, "off (FNTRACE_PURE is set)"
    try:
        from fntrace import _speedups  # type: ignore[attr-defined]
    except ImportError as exc:
        # The extension sits in the package root, beside core/.
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if not any(name.startswith("_speedups.") and name.endswith(EXTENSION_SUFFIXES)
                   for name in os.listdir(here)):
            # Typically a source checkout: `pip install .` built the extension into
            # the installed copy, which this one shadows.
            return None, (f"not built in {here} (`pip install -e .` or `python3 setup.py "
                          "build_ext --inplace` builds it there)")
        return None, f"not loadable ({exc})"
    problem = self_check(_speedups)
    if problem is not None:
        _warn(f"fntrace: C hot path off: {problem}; tracing continues in pure Python")
        return None, f"off ({problem})"
    return _speedups, "on"


def self_check(mod: Any) -> str | None:
    """None when the extension's mirror of CPython's interpreter frames reads
    known frames (a function's and a generator's, both running) exactly as the
    interpreter does; else what differs.

    The hot path reads frames through that mirror (CPython 3.11-3.13 layouts):
    on an interpreter whose layout differs (a new patch release, another build)
    it must not run at all, so the check runs before anything uses it.
    ``FNTRACE_TEST_LAYOUT_MISMATCH=1`` feeds the check a wrong value, for tests.
    """
    check = getattr(mod, "check_frame", None)
    if check is None:
        return "no frame check in the extension (rebuild it)"
    wrong = os.environ.get("FNTRACE_TEST_LAYOUT_MISMATCH", "") not in ("", "0")

    def probe(a: object, b: object, *rest: object) -> Any:
        values = (a, b, rest) if not wrong else (a, rest, b)
        return check(sys._getframe(), probe, values, 0)

    def gen(x: object) -> Iterator[Any]:
        yield check(sys._getframe(), gen, (x,), 1)

    try:
        return probe(object(), "b", 3) or next(gen(object()))  # type: ignore[no-any-return]
    except Exception as exc:  # a failing check is a mismatch, never a crash
        return f"frame check failed: {exc!r}"


def _warn(text: str) -> None:
    """One warning, even where warnings are errors (then on stderr)."""
    try:  # no source line to show: the text says it all
        warnings.warn_explicit(text, RuntimeWarning, "<fntrace>", 0, module=__name__)
    except Exception:
        sys.stderr.write(text + "\n")


speedups, _why = _load()
#: The extension even when switched off (the ring buffer's base class uses it:
#: RingCore, the clock and the trace-file encoder read no interpreter frame).
built: ModuleType | None = _speedups_module()


def status() -> str:
    """One line for `fntrace info` and bug reports."""
    if speedups is not None:
        return "C hot path: on"
    if built is not None and _why == "on":
        return "C hot path: off (switched off at run time)"
    return f"C hot path: {_why}"
