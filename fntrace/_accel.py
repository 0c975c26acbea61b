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
from importlib.machinery import EXTENSION_SUFFIXES as _SUFFIXES
from types import ModuleType

EXTENSION_SUFFIXES = tuple(_SUFFIXES)

__all__ = ["speedups", "status"]


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get("FNTRACE_PURE", "") not in ("", "0"):
        return None, "off (FNTRACE_PURE is set)"
    try:
        from . import _speedups  # type: ignore[attr-defined]
    except ImportError as exc:
        here = os.path.dirname(os.path.abspath(__file__))
        if not any(name.startswith("_speedups.") and name.endswith(EXTENSION_SUFFIXES)
                   for name in os.listdir(here)):
            # Typically a source checkout: `pip install .` built the extension into
            # the installed copy, which this one shadows.
            return None, (f"not built in {here} (`pip install -e .` or `python3 setup.py "
                          "build_ext --inplace` builds it there)")
        return None, f"not loadable ({exc})"
    return _speedups, "on"


speedups, _why = _load()
#: The extension even when switched off (the ring buffer's base class uses it).
built: ModuleType | None = speedups


def status() -> str:
    """One line for `fntrace info` and bug reports."""
    if speedups is not None:
        return "C hot path: on"
    if built is not None:
        return "C hot path: off (switched off at run time)"
    return f"C hot path: {_why}"
