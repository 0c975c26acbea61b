"""fntrace: the Linux kernel's dynamic ftrace, for Python programs.

The core API mirrors ``include/linux/ftrace.h``: build an :class:`Ops` with a
callback and a filter, :func:`register` it, read arguments through the
:class:`FtraceRegs` every callback gets, and the full frame through
:func:`get_regs` when the ops asked for SAVE_REGS.

``import fntrace`` loads that core only.  The features above it (trace
instances and tracers, error injection, live patching, filter hints, the
IPython magics) load on first use of their name (PEP 562 ``__getattr__``), so
a program that imports fntrace for one ops does not pay for the rest.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# In the fntrace command (python -m fntrace, the fntrace script), Ctrl-C while the
# rest imports is one line (recording/startup.py), so its guard goes first.  A
# program merely importing fntrace never loads it: argv[0] is then neither "-m"
# (a package's __init__ run by -m) nor the script; startup.guard decides exactly.
if _sys.argv and (_sys.argv[0] == "-m" or _os.path.basename(_sys.argv[0]) == "fntrace"):
    from fntrace.recording import startup  # noqa: F401

# isort: split
from fntrace.core.engine import (
    BusyError,
    enabled_functions,
    ftrace_enabled,
    register,
    set_ftrace_enabled,
    unregister,
)
from fntrace.core.filter import Filter
from fntrace.core.flagbits import Event
from fntrace.core.ops import Ops
from fntrace.core.regs import CallSite, FtraceRegs, FullRegs, get_regs
from fntrace.core.symbols import Function, available_filter_functions
from fntrace.core.version import __version__

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.flags import Flags
    from fntrace.core.hints import check as check_filter
    from fntrace.tracing import livepatch
    from fntrace.tracing.inject import Injection, inject, parse_inject_spec
    from fntrace.tracing.instance import Instance, instances, marker, trace


#: Public name -> (module, attribute in it; None for the module itself), loaded on
#: first use by __getattr__ and then kept in the package's namespace.
_LAZY: dict[str, tuple[str, str | None]] = {
    "Flags": ("fntrace.core.flags", "Flags"),
    "Injection": ("fntrace.tracing.inject", "Injection"),
    "Instance": ("fntrace.tracing.instance", "Instance"),
    "check_filter": ("fntrace.core.hints", "check"),
    "inject": ("fntrace.tracing.inject", "inject"),
    "instances": ("fntrace.tracing.instance", "instances"),
    "livepatch": ("fntrace.tracing.livepatch", None),
    "marker": ("fntrace.tracing.instance", "marker"),
    "parse_inject_spec": ("fntrace.tracing.inject", "parse_inject_spec"),
    "trace": ("fntrace.tracing.instance", "trace"),
}


def __getattr__(name: str) -> Any:
    """A feature's public name: its module is imported now (PEP 562)."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'fntrace' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(where[0])
    value = module if where[1] is None else getattr(module, where[1])
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext fntrace``: the %%fntrace magics (IPython is imported only now)."""
    from fntrace.integrations.ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: object) -> None:
    from fntrace.integrations.ipython import unload_ipython_extension as unload

    unload(ipython)

__all__ = [
    "BusyError",
    "CallSite",
    "Event",
    "Filter",
    "Flags",
    "FtraceRegs",
    "FullRegs",
    "Function",
    "Injection",
    "Instance",
    "Ops",
    "__version__",
    "available_filter_functions",
    "check_filter",
    "enabled_functions",
    "ftrace_enabled",
    "get_regs",
    "inject",
    "instances",
    "livepatch",
    "marker",
    "parse_inject_spec",
    "register",
    "set_ftrace_enabled",
    "trace",
    "unregister",
]
