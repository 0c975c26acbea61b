"""The function_graph tracer: calls as nested blocks, with durations.

Output follows the kernel's trace_functions_graph.c::

    # CPU  DURATION                  FUNCTION CALLS
    # |     |   |                     |   |   |   |
     0)               |  mod:outer() {
     0)   1.382 us    |    mod:leaf();
     0) + 12.876 us   |  }

CPU is the thread's buffer index (as in the other tracers' ``[CPU]``), the
duration column carries the overhead marks (``+`` >10 µs, ``!`` >100 µs,
``#`` >1 ms, ``*`` >10 ms, ``@`` >100 ms, ``$`` >1 s), each nesting level
indents by two spaces.  An entry immediately followed, in its own thread's
stream, by its own exit is one leaf line ``f();``.

Closing forms (the comment always names the function, so a ``}`` is bare
only for a plain return without funcgraph-tail and funcgraph-retval):

=================================  ==========================================
``}``                              return, its ``{`` seen in this read
``} /* f */``                      return with funcgraph-tail, or whose entry
                                   is not in this read (lost, consumed by an
                                   earlier trace_pipe read, or tracing_thresh)
``} /* f ret=V */``                return, funcgraph-retval
``} /* f yield */``                a generator/coroutine suspends (``yield``,
                                   an ``await`` that suspends); with
                                   funcgraph-retval ``} /* f yield ret=V */``
``} /* f raised ValueError */``    left by an exception (``} /* f raised (type
                                   unknown on 3.11) */`` where the interpreter
                                   does not tell the exception: 3.11)
=================================  ==========================================

Leaves carry the same comment without the name: ``f();``,
``f(); /* ret=V */``, ``f(); /* yield */``, ``f(); /* raised KeyError */``.
Every resumption of a generator or coroutine is an entry (``f() {`` or a
leaf) and every suspension an exit, so each segment nests where it runs.
trace_marker text shows as ``/* text */`` in the function column, indented at
the writing thread's current nesting level.

Options: funcgraph-args (``f(a=1, b='x') {``), funcgraph-retval,
funcgraph-tail, funcgraph-proc (TASK-PID column), funcgraph-abstime (the
timestamp column), funcgraph-duration (0 drops the duration column),
funcgraph-overhead (0 drops the marks).  args and retval are captured when the
event is written; the others apply when the trace is read, as in the kernel.

Selection, per thread, depth counted from the first recorded level of that
thread: ``max_graph_depth`` (0 = no limit) records calls at levels
0..max-1 only; ``set_graph_function`` (empty = all) records only graph
functions and what runs below them; ``set_graph_notrace`` records neither
those functions nor anything below them.  Both only see functions the
instance's set_ftrace_filter/notrace trace (as in the kernel, where the graph
filters refine what the function filter lets through).

``tracing_thresh`` (µs, 0 = off): entries are not written at all; an exit is
written only when its segment lasted at least the threshold, and renders as
the kernel renders such orphan returns: ``} /* f */`` with its duration, at
its nesting level.  Parents therefore follow their children.

trace_pipe renders each batch of consumed events on its own: a leaf whose
entry and exit land in two batches shows as ``f() {`` then ``} /* f */``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from fntrace.core import accel as _accel
from fntrace.core.events import ENTRY as _ENTRY_KIND
from fntrace.core.events import EVENT_OVERHEAD
from fntrace.core.events import EXIT as _EXIT_KIND
from fntrace.core.flags import Event
from fntrace.core.ops import Ops
from fntrace.core.shadow import ShadowStack
from fntrace.tracing.graph_text import UNKNOWN_TYPE, duration_text, overhead_mark
from fntrace.tracing.tracers.base import Tracer

TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from typing import Any

    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function
    from fntrace.tracing.instance import Instance
    from fntrace.tracing.tracers import TracerRegistry

__all__ = ["ENTRY", "EXIT", "UNKNOWN_TYPE", "FunctionGraphTracer", "duration_text",
           "overhead_mark", "register_tracer"]

ENTRY = _ENTRY_KIND.tag  # (ts, size, "E", fn, depth, args or None, event): events.EntryAt
EXIT = _EXIT_KIND.tag    # (ts, size, "X", fn, depth, ns, event, value or None): events.ExitAt

# Per-thread selection state carried by each stack entry (for what runs below it).
_OUTSIDE = 0  # set_graph_function is set and no graph function is running
_INSIDE = 1   # recording allowed (subject to max_graph_depth)
_BLOCKED = 2  # below a set_graph_notrace function

_UNWIND = Event.UNWIND

# A stack entry: (frame key, entry timestamp or None when not recorded,
#                 recorded depth below it, selection state below it).
if TYPE_CHECKING:
    _Entry = tuple[Any, "int | None", int, int]


class FunctionGraphTracer(Tracer):
    """Writes an entry and an exit event per recorded call segment."""

    name = "function_graph"
    notes_tasks = True

    def __init__(self, inst: Instance) -> None:
        super().__init__(inst)
        self._tls = threading.local()
        # By name (all a graph filter reads), and only while a graph filter is set
        # (else every function is _OUTSIDE): code made and dropped adds nothing.
        self._kinds: dict[str, dict[str, int]] | None = None
        self._base = _INSIDE
        # A frame's key on the stacks: the frame itself, or (with the C hot path)
        # its interpreter frame's address, which the C recorder uses too, so the
        # two paths pair each other's entries and exits.
        self._key: Callable[[types.FrameType], Any] | None = None
        self._stack_type: Callable[[], Any] = _PyGraphStack

    # -- life ----------------------------------------------------------------
    def make_ops(self) -> list[Ops]:
        self._graph_filters_changed()
        inst = self.inst
        ops = Ops(self.entry, ret=self.exit, filter=inst.filter, notrace=inst.notrace)
        speedups: Any = _accel.speedups
        self._key = getattr(speedups, "frame_key", None)
        self._stack_type = _PyGraphStack if self._key is None else speedups.GraphStack
        if self._key is not None:  # the C recorder needs its frame keys (3.11-3.13)
            self.attach(speedups.GraphRecorder(inst.rb, self._tls, _UNWIND), ops)
        return [ops]

    def fast_ok(self) -> bool:
        # The C recorder keeps the same per-thread stacks and writes the events
        # with no graph filters or threshold (max_graph_depth, tracing_on, the pid
        # filters, funcgraph-retval and, where it reads frames (3.11-3.13),
        # funcgraph-args it applies itself).
        inst = self.inst
        speedups: Any = _accel.speedups
        return not (inst.graph_function.lines or inst.graph_notrace.lines
                    or inst.tracing_thresh_us
                    or (inst.options["funcgraph-args"]
                        and not getattr(speedups, "FRAME_ARGS", 0)))

    def fast_refresh(self) -> None:
        inst = self.inst
        ok = self.fast_ok()
        tasks = self.tasks.recorder if self.tasks is not None else None
        for rec in self.recorders:
            if rec is tasks:  # the task notes' recorder has no graph settings
                continue
            rec.max_depth = inst.max_graph_depth
            if ok:
                rec.reprs(inst.options["funcgraph-args"], inst.options["funcgraph-retval"],
                          inst.safe_repr)
        super().fast_refresh()

    def stop(self) -> None:
        super().stop()
        self._tls = threading.local()  # frames of calls still running are let go

    def filters_changed(self) -> None:
        self._graph_filters_changed()
        super().filters_changed()

    def reset(self) -> None:
        """Clearing the trace keeps the stacks: calls still running keep their depth."""

    def _graph_filters_changed(self) -> None:
        inst = self.inst
        self._kinds = {} if inst.graph_function.lines or inst.graph_notrace.lines else None
        self._base = _OUTSIDE if inst.graph_function.lines else _INSIDE

    def _classify(self, fn: Function) -> int:
        inst = self.inst
        if inst.graph_notrace.lines and inst.graph_notrace.excludes(fn.module, fn.qualname):
            kind = _BLOCKED
        elif inst.graph_function.lines and inst.graph_function.selects(fn.module, fn.qualname):
            kind = _INSIDE
        else:
            kind = _OUTSIDE
        if self._kinds is not None:
            self._kinds.setdefault(fn.module, {})[fn.qualname] = kind
        return kind

    def _stack(self) -> Any:
        stack = self._stack_type()
        self._tls.stack = stack
        return stack

    # -- the hot path ----------------------------------------------------------
    def entry(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        inst = self.inst
        tls = self._tls
        try:
            stack = tls.stack
        except AttributeError:
            # made in a thread the pid filter refuses too: its exits find it
            # empty and return at once, without a failed lookup each
            stack = self._stack()
        if inst.pid_filtered and not self.pid_allows(tls):  # once per thread
            return
        last = stack.last()
        if last is not None:
            depth, state = last
        else:
            depth, state = 0, self._base
        kinds = self._kinds
        kind: int | None = _OUTSIDE
        if kinds is not None:  # by module, then qualname: strings with their hash kept
            in_module = kinds.get(ip.module)
            kind = in_module.get(ip.qualname) if in_module is not None else None
        if kind is None:
            kind = self._classify(ip)
        frame = fregs.frame if self._key is None else self._key(fregs.frame)
        if state == _BLOCKED or kind == _BLOCKED:
            stack.push(frame, None, depth, _BLOCKED)
            return
        if state == _OUTSIDE and kind == _OUTSIDE:
            stack.push(frame, None, depth, _OUTSIDE)
            return
        limit = inst.max_graph_depth
        if (limit and depth >= limit) or not inst.tracing:
            stack.push(frame, None, depth, _INSIDE)
            return
        rb = inst.rb
        if inst.tracing_thresh_us:
            stack.push(frame, rb.now(), depth + 1, _INSIDE)
            return
        args = None
        size = EVENT_OVERHEAD
        if inst.options["funcgraph-args"]:
            args = inst.safe_repr.arguments(fregs.arguments)
            size += len(args)
        ts = rb.now()
        stack.push(frame, ts, depth + 1, _INSIDE)
        rb.write((ts, size, ENTRY, ip, depth, args, fregs.event))

    def exit(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        try:
            stack = self._tls.stack
        except AttributeError:
            return
        if not stack:
            return
        frame = fregs.frame if self._key is None else self._key(fregs.frame)
        top = stack.pop_to(frame)
        if top is None:  # its entry was not seen (pid filter changed, registration)
            return
        start = top[1]
        if start is None:
            return
        inst = self.inst
        if not inst.tracing:
            return
        rb = inst.rb
        ts = rb.now()
        duration = ts - start
        thresh = inst.tracing_thresh_us
        if thresh and duration < thresh * 1000:
            return
        event = fregs.event
        value = None
        size = EVENT_OVERHEAD
        if event == _UNWIND:
            exc = fregs.exception
            if exc is not None:
                value = type(exc).__name__
                size += len(value)
        elif inst.options["funcgraph-retval"]:
            value = inst.safe_repr(fregs.return_value)
            size += len(value)
        rb.write((ts, size, EXIT, ip, top[2] - 1, duration, event, value))


class _PyGraphStack(ShadowStack["_Entry"]):
    """The per-thread stack of calls (pure Python; fntrace/csrc/graph_recorder.c has GraphStack);
    ``pop_to`` is the shadow stack's."""

    __slots__ = ()

    def push(self, key: Any, ts: int | None, depth: int, state: int) -> None:
        self.append((key, ts, depth, state))

    def last(self) -> tuple[int, int] | None:
        """(depth, state) of the newest entry, or None."""
        if not self:
            return None
        _, _, depth, state = self[-1]
        return depth, state



def register_tracer(registry: TracerRegistry) -> None:
    """The plugin: current_tracer ``function_graph``."""
    registry.register(FunctionGraphTracer.name, FunctionGraphTracer)
