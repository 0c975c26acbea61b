"""A trace instance: tracefs as an object.

One instance = one ring buffer, one current tracer, its options and filters.
Each instance registers its own ops with the core, so several instances run
at once with different tracers and filters.  The interface is the kernel's
file names: ``inst.write(path, text, append=False)`` and ``inst.read(path)``;
the CLI and the live control channel speak the same files.  A malformed
write raises ``ValueError`` and changes nothing (the kernel's EINVAL).

The Instance holds the state; the files are not its methods.  Each feature
declares its own files (fntrace/tracing/files.py), fntrace/tracing/tracefs.py
registers them all in one list, and the table built from it is what ``read``,
``write`` and ``listdir`` look paths up in: a path's reader or writer is called
with the instance.

Files that cannot mean anything for Python are absent (listed in
docs/tracefs.md): there are no CPUs to mask (``tracing_cpumask``), no IRQs,
no kernel events (``set_event``; ``events/`` holds only the probe events
of ``dynamic_events``, see fntrace/tracing/probes/) and no hardware clocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

from fntrace.core import forksafe
from fntrace.core.events import EVENT_OVERHEAD, MARKER
from fntrace.core.filter import Filter, FilterLine
from fntrace.core.oscaps import native_id
from fntrace.tracing import alive, ftrace_text, tracers
from fntrace.tracing.alive import instances
from fntrace.tracing.options import OPTIONS
from fntrace.tracing.probes.events import ProbeEvents
from fntrace.tracing.reprs import SafeRepr
from fntrace.tracing.ring_buffer import RingBuffer
from fntrace.tracing.tracefs import TABLE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from fntrace.tracing.files import FileTable
    from fntrace.tracing.tracers.base import Tracer
    from fntrace.tracing.tracers.profile import FunctionProfiler
    from fntrace.tracing.tracers.stack import StackTracer
    from fntrace.tracing.triggers import Triggers

__all__ = ["OPTIONS", "Instance", "instances", "marker", "trace"]

_next_id = iter(range(1 << 30))


def marker(text: str) -> None:
    """Write ``text`` to trace_marker of every live instance."""
    for inst in instances():
        inst.write("trace_marker", text)


def _renew_in_child(inst: Instance) -> None:
    inst.lock = threading.RLock()  # see fntrace/core/forksafe.py
    # The child's thread has a thread id of its own: every thread's pid filter
    # decision (kept per thread, C and pure path) is made again.
    if inst.pid_filtered:
        inst.pids_changed()


class Instance:
    """One trace instance; see the module docstring."""

    def __init__(self, name: str | None = None) -> None:
        self.id = next(_next_id)
        self.name = name or f"instance{self.id}"
        #: The files (shared by every instance: built once, see tracefs.py).
        self.files: FileTable = TABLE
        self.rb = RingBuffer()
        self.options: dict[str, int] = dict(OPTIONS)
        self.safe_repr = SafeRepr(OPTIONS["repr-max-len"], OPTIONS["repr-max-us"], self.note)
        self.tracer: Tracer | None = None
        #: tracing_on as a plain attribute, for the pure-Python hot paths (a property
        #: read costs a Python call per event: ~600 instructions on 3.11).  Read it;
        #: set ``tracing_on``, which also tells the C recorders.
        self.tracing = True
        self.filter_lines: list[FilterLine] = []  # set_ftrace_filter, triggers included
        self.notrace = Filter()
        self.graph_function = Filter()
        self.graph_notrace = Filter()
        self.pids: set[int] = set()
        self.notrace_pids: set[int] = set()
        # Kept beside the sets so the tracers' hot path tests one attribute.
        self.pid_filtered = False
        #: Bumped at every change of the pid filters (and in a forked child): the
        #: tracers decide once per thread and keep the answer with this number,
        #: the C recorders with the check callable made for it (pid_check()).
        self.pid_gen = 0
        self._pid_check: tuple[int, Callable[[], bool]] | None = None
        self.max_graph_depth = 0
        self.tracing_thresh_us = 0
        self.lock = threading.RLock()
        forksafe.renew_in_child(self, _renew_in_child)
        # The profiler and stack tracer stay readable after they are disabled, as in
        # the kernel (tracers/profile.py and tracers/stack.py serve their files).
        self.profile: FunctionProfiler | None = None
        self.profile_on = False
        self.stack: StackTracer | None = None
        self.stack_on = False
        self.triggers: Triggers | None = None  # while some trigger is set (triggers.py)
        self.probes = ProbeEvents(self)  # dynamic_events, events/GRP/EVENT/*
        alive.add(self)

    @property
    def tracing_on(self) -> bool:
        """The tracing_on file: whether the tracers write events."""
        return self.tracing

    @tracing_on.setter
    def tracing_on(self, on: bool) -> None:
        self.tracing = on
        if self.tracer is not None:  # the C recorders keep their own copy
            for rec in self.tracer.recorders:
                rec.tracing = on

    # -- filters as the tracers see them ----------------------------------
    @property
    def filter(self) -> Filter:
        """set_ftrace_filter without its trigger lines."""
        return Filter([ln for ln in self.filter_lines if ln.command in (None, "mod")])

    def pid_allowed(self, tid: int) -> bool:
        if tid in self.notrace_pids:
            return False
        return not self.pids or tid in self.pids

    def pids_changed(self) -> None:
        """set_ftrace_pid or set_ftrace_notrace_pid changed (or this is a forked
        child): every thread is decided again, and the recorders are told."""
        self.pid_filtered = bool(self.pids or self.notrace_pids)
        self.pid_gen += 1
        self.settings_changed()

    def pid_check(self) -> Callable[[], bool] | None:
        """None with no pid filter, else the callable a C recorder asks, in a
        thread, whether it is traced: the same object until the filter changes,
        so that the recorder keeps its per-thread answers across other settings'
        changes (it decides again when given another)."""
        if not self.pid_filtered:
            self._pid_check = None  # it refers back to the instance: kept only while used
            return None
        made = self._pid_check
        if made is None or made[0] != self.pid_gen:
            made = (self.pid_gen, lambda: self.pid_allowed(native_id()))
            self._pid_check = made
        return made[1]

    # -- the file interface ------------------------------------------------
    def read(self, path: str) -> str:
        path = path.strip("/")
        files = self.files
        reader = files.readers.get(path)
        if reader is not None:
            return reader(self)
        head, _, rest = path.partition("/")
        served = files.directories.get(head)
        if served is not None:
            text = served.read(self, rest)
            if text is not None:
                return text
        if path in files.writers:
            raise PermissionError(f"{self.name}: {path} is write-only")
        raise FileNotFoundError(f"{self.name}: no such file: {path}")

    def write(self, path: str, text: str, append: bool = False) -> None:
        path = path.strip("/")
        files = self.files
        writer = files.writers.get(path)
        if writer is not None:
            with self.lock:
                writer(self, text, append)
            return
        head, _, rest = path.partition("/")
        served = files.directories.get(head)
        if served is not None:
            with self.lock:
                if served.write(self, rest, text, append):
                    return
        if path in files.readers:
            raise PermissionError(f"{self.name}: {path} is read-only")
        raise FileNotFoundError(f"{self.name}: no such file: {path}")

    def listdir(self, path: str = "") -> list[str]:
        """Names in a directory of the tree (for ``ls``)."""
        path = path.strip("/")
        prefix = f"{path}/" if path else ""
        out = set()
        for name in self.files.names(self):
            if name.startswith(prefix):
                out.add(name[len(prefix):].split("/", 1)[0])
        if not out:
            raise FileNotFoundError(f"{self.name}: no such directory: {path}")
        return sorted(out)

    # -- what the features tell the instance ----------------------------------
    def set_tracer(self, name: str) -> None:
        """current_tracer (tracers/__init__.py)."""
        tracers.set_current(self, name)

    def filters_changed(self) -> None:
        """A pattern file changed: the tracer, profiler and stack tracer swap their
        ops' filters."""
        if self.tracer is not None:
            self.tracer.filters_changed()
        if self.profile_on and self.profile is not None:
            self.profile.filters_changed()
        if self.stack_on and self.stack is not None:
            self.stack.filters_changed()

    def settings_changed(self) -> None:
        """A setting changed: the C recorders (tracer's, profiler's) may have to step
        aside, or read it (graph-time)."""
        if self.tracer is not None:
            self.tracer.fast_refresh()
        if self.profile_on and self.profile is not None:
            self.profile.fast_refresh()

    def note(self, text: str) -> None:
        """A line of fntrace's own in the trace (written whatever options/markers says)."""
        rb = self.rb
        rb.write((rb.now(), EVENT_OVERHEAD + len(text), MARKER.tag, text))

    def pipe(self, timeout: float | None = None, poll: float = 0.05) -> Iterator[str]:
        """trace_pipe as a blocking iterator of lines (consumes what it yields).

        Waits for new events, polling every ``poll`` seconds (writers never
        signal readers: a writer must not pay for a reader); stops after
        ``timeout`` seconds without an event, or never when it is None.
        """
        idle = 0.0
        while True:
            events = self.rb.live.consume()
            if events:
                idle = 0.0
                yield from ftrace_text.render_events(self, events)
                continue
            if timeout is not None and idle >= timeout:
                return
            time.sleep(poll)
            idle += poll

    # -- life ---------------------------------------------------------------
    def close(self) -> None:
        """Stop everything this instance registered; its buffer stays readable."""
        with self.lock:
            for closer in self.files.closers:
                closer(self)
        alive.discard(self)

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        tracer = self.tracer.name if self.tracer else "nop"
        return f"<Instance {self.name} tracer={tracer}>"


def trace(tracer: str = "function", filter: str | Iterable[str] = (),
          notrace: str | Iterable[str] = (), name: str | None = None,
          **options: int) -> Instance:
    """An instance configured in one call; use as ``with fntrace.trace(...) as inst:``.

    ``options`` are option file names with ``-`` written ``_``
    (``funcgraph_retval=1``).
    """
    inst = Instance(name)
    try:
        for key, value in options.items():
            opt = key.replace("_", "-") if key.replace("_", "-") in OPTIONS else key
            inst.write(f"options/{opt}", str(int(value)))
        filters = [filter] if isinstance(filter, str) else list(filter)
        if filters:
            inst.write("set_ftrace_filter", "\n".join(filters))
        notraces = [notrace] if isinstance(notrace, str) else list(notrace)
        if notraces:
            inst.write("set_ftrace_notrace", "\n".join(notraces))
        inst.write("current_tracer", tracer)
    except BaseException:
        inst.close()
        raise
    return inst
