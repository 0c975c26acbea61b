"""Every file of a trace instance, registered in one list.

The kernel's tracefs is built by registration: each tracer and feature creates
its own files at init time, and the init calls are listed in one place.  Here
FEATURES is that list: each entry is a feature module's ``register_files``,
which declares the feature's files and directories in a FileTable
(fntrace/tracing/files.py).  TABLE is built from it once, when this module is
imported; every Instance serves it.  Adding a feature is writing its
``register_files`` and adding it here; nothing depends on which modules
happened to be imported before.

The order is the order of closing: Instance.close runs the features' close
hooks as listed (the tracer stops first, then the profiler, the stack tracer,
the probe events, the triggers, the injections).

Error injection (``fail_function/``) and live patching (``livepatch/``) are
registered *deferred*: their directory is claimed here, and their module (with
ast, copy, random and dataclasses behind it: a fifth of ``fntrace record``'s
start-up) is imported the first time the directory is listed, read or written.
A feature with no state yet has nothing to close, so closing does not import it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from fntrace.tracing import (
    filter_files,
    options,
    trace_files,
    tracers,
    triggers,
)
from fntrace.tracing.files import FileTable
from fntrace.tracing.probes import events as probe_events
from fntrace.tracing.tracers import profile, stack

TYPE_CHECKING = False
if TYPE_CHECKING:
    from fntrace.tracing.files import Directory
    from fntrace.tracing.instance import Instance

__all__ = ["FEATURES", "TABLE", "Deferred", "build"]


class Deferred:
    """The directory ``name`` of a feature whose module ``module`` is imported when
    the directory is first used; ``register`` imports it and declares its files
    (that one directory and close hooks, nothing else: a ValueError otherwise).

    Why: importing a feature should cost nothing until the feature is used, and
    most instances never touch these directories."""

    def __init__(self, name: str, module: str, register: Callable[[FileTable], None]) -> None:
        self.name = name
        self.module = module
        self.register = register
        self._table: FileTable | None = None

    def __call__(self, table: FileTable) -> None:
        """Register into ``table`` (an entry of FEATURES)."""
        table.directory(self.name, self)
        table.on_close(self.close)

    def loaded(self) -> FileTable:
        """The feature's own table (its module imported, its files declared, once)."""
        table = self._table
        if table is None:
            table = FileTable()
            self.register(table)
            if list(table.directories) != [self.name] or table.readers or table.writers:
                raise ValueError(f"tracefs: {self.module} declares more than {self.name}/")
            self._table = table  # two threads racing here build two equal tables
        return table

    def _served(self) -> Directory:
        return self.loaded().directories[self.name]

    def names(self, inst: Instance) -> list[str]:
        return list(self._served().names(inst))

    def read(self, inst: Instance, path: str) -> str | None:
        return self._served().read(inst, path)

    def write(self, inst: Instance, path: str, text: str, append: bool) -> bool:
        return self._served().write(inst, path, text, append)

    def close(self, inst: Instance) -> None:
        """The feature's close hooks, once its module is loaded (before, it holds nothing)."""
        if self._table is None and self.module not in sys.modules:
            return
        for closer in self.loaded().closers:
            closer(inst)


def _register_inject(table: FileTable) -> None:
    from fntrace.tracing import inject

    inject.register_files(table)


def _register_livepatch(table: FileTable) -> None:
    from fntrace.tracing import livepatch

    livepatch.register_files(table)

#: Every feature with files, in registration (and closing) order.
FEATURES: tuple[Callable[[FileTable], None], ...] = (
    trace_files.register_files,     # tracing_on, trace, trace_pipe, trace_marker, snapshot,
                                    # buffer_size_kb, buffer_total_size_kb, trace_clock, per_thread/
    options.register_files,         # options/, trace_options
    filter_files.register_files,    # set_ftrace_filter, set_ftrace_notrace, set_graph_*,
                                    # set_ftrace_pid, set_ftrace_notrace_pid, max_graph_depth,
                                    # tracing_thresh, available_filter_functions,
                                    # enabled_functions
    tracers.register_files,         # current_tracer, available_tracers
    profile.register_files,         # function_profile_enabled, trace_stat/function0
    stack.register_files,           # stack_tracer_enabled, stack_max_size, stack_trace
    probe_events.register_files,    # dynamic_events, events/
    triggers.register_files,        # (set_ftrace_filter's trigger lines: closing only)
    Deferred("fail_function", "fntrace.tracing.inject", _register_inject),
    Deferred("livepatch", "fntrace.tracing.livepatch", _register_livepatch),
)


def build() -> FileTable:
    """A file table with every feature of FEATURES registered."""
    table = FileTable()
    for register in FEATURES:
        register(table)
    return table


TABLE = build()
