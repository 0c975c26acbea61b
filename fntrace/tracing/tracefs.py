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
"""

from __future__ import annotations

from collections.abc import Callable

from fntrace.tracing import (
    filter_files,
    inject,
    livepatch,
    options,
    trace_files,
    tracers,
    triggers,
)
from fntrace.tracing.files import FileTable
from fntrace.tracing.probes import events as probe_events
from fntrace.tracing.tracers import profile, stack

__all__ = ["FEATURES", "TABLE", "build"]

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
    inject.register_files,          # fail_function/
    livepatch.register_files,       # livepatch/
)


def build() -> FileTable:
    """A file table with every feature of FEATURES registered."""
    table = FileTable()
    for register in FEATURES:
        register(table)
    return table


TABLE = build()
