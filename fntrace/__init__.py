"""fntrace: the Linux kernel's dynamic ftrace, for Python programs.

The core API mirrors ``include/linux/ftrace.h``: build an :class:`Ops` with a
callback and a filter, :func:`register` it, read arguments through the
:class:`FtraceRegs` every callback gets, and the full frame through
:func:`get_regs` when the ops asked for SAVE_REGS.
"""

from __future__ import annotations

# First: in the fntrace command, Ctrl-C while the rest imports is one line (startup.py).
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
from fntrace.core.flags import Event, Flags
from fntrace.core.hints import check as check_filter
from fntrace.core.ops import Ops
from fntrace.core.regs import CallSite, FtraceRegs, FullRegs, get_regs
from fntrace.core.symbols import Function, available_filter_functions
from fntrace.core.version import __version__
from fntrace.tracing import livepatch
from fntrace.tracing.inject import Injection, inject, parse_inject_spec
from fntrace.tracing.instance import Instance, instances, marker, trace


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
