"""The function profiler: ``function_profile_enabled`` and ``trace_stat/function0``.

As the kernel's profiler it runs beside the current tracer, with its own ops
(entry + return, filtered by set_ftrace_filter / set_ftrace_notrace), and keeps
per function a hit count, the total time and the sum of squared durations.

Semantics, the kernel's:

* A hit is counted at each call (``Event.START``).  A generator or coroutine
  is one call however often it is resumed; its time is the sum of the
  segments it ran (resume … yield), so time spent suspended never counts.
* options/graph-time 1: a call's time includes its traced children;
  0: children's time (each traced call's whole duration, as the kernel's
  ``subtime``) is subtracted, clamped at 0.  The option is read when a call
  segment ends.
* Time and s^2 are added when a call ends (return or unwind); a call still
  running has its hit counted but no time yet.  s^2 is the kernel's
  ``(n * sum(t^2) - sum(t)^2) / (n * (n - 1))``, 0 for fewer than two hits.
* The profiler ignores tracing_on and set_ftrace_pid, as the kernel's does
  (``function_profile_call`` only checks that profiling is enabled).
* Writing trace_stat/function0 resets every count; a call that began before
  the reset adds no time afterwards.

fntrace has no CPUs, so there is one file, ``function0``, for all threads.
Names longer than the kernel's 30 columns are not truncated (two Python
functions would become indistinguishable); the name column widens to the
longest name instead, so the output is the kernel's byte for byte while every
name fits in 30 characters.

Per-thread state lives in ``threading.local``: a shadow stack of running
segments and a table of records that only its thread writes.  ``render``
merges the tables, so the hot path takes no lock (one lock, once per thread,
to publish the thread's table).
"""

from __future__ import annotations

import itertools
import threading
import time
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.flags import Event
from ..core.ops import Ops
from .base import Tracer

if TYPE_CHECKING:
    from ..core.regs import FtraceRegs
    from ..core.symbols import Function
    from ..instance import Instance

__all__ = ["OPEN_LIMIT", "FunctionProfiler", "format_duration"]

_GEN_FLAGS = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
_NAME_WIDTH = 30
#: Generator/coroutine calls in progress kept at most (see _call_started).
OPEN_LIMIT = 1 << 16

# A running segment: [frame, function, start ns, children ns, reset generation].
Segment = list[Any]


def format_duration(ns: int) -> str:
    """The kernel's ``trace_print_graph_duration``: ``usecs.nsecs us`` padded to 12."""
    usecs, nsecs = divmod(ns, 1000)
    text = str(usecs)
    width = len(text)
    if width < 7:
        frac = f"{nsecs:03d}"[: min(4, 7 - width)]
        text += "." + frac
        width += len(frac) + 1
    return text + " us " + " " * max(0, 8 - width)


class _Thread:
    """One thread's shadow stack and record table."""

    __slots__ = ("stack", "table")

    def __init__(self) -> None:
        self.stack: list[Segment] = []
        self.table: dict[Function, list[int]] = {}  # fn -> [hits, time ns, sum of t^2]


class FunctionProfiler(Tracer):
    """Hit count, time and s^2 per function; see the module docstring."""

    name = "function_profile"

    def __init__(self, inst: Instance) -> None:
        super().__init__(inst)
        #: nanosecond clock of durations (the kernel's trace_clock_local).
        self.clock: Callable[[], int] = time.perf_counter_ns
        self._tls = threading.local()
        self._tables: list[dict[Function, list[int]]] = []
        self._lock = threading.Lock()
        self._generation = 0
        # Generator/coroutine calls in progress: id(frame) -> [time so far, generation,
        # code].  Shared between threads (a generator may be resumed by any of them);
        # see _call_started for why ids and not frames.
        self._open: dict[int, list[Any]] = {}

    def make_ops(self) -> list[Ops]:
        inst = self.inst
        return [Ops(self._entry, ret=self._exit, filter=inst.filter, notrace=inst.notrace)]

    # -- hot path ------------------------------------------------------------
    def _thread(self) -> _Thread:
        try:
            return self._tls.state  # type: ignore[no-any-return]
        except AttributeError:
            state = _Thread()
            with self._lock:
                self._tables.append(state.table)
            self._tls.state = state
            return state

    def _entry(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        try:
            state = self._tls.state
        except AttributeError:
            state = self._thread()
        gen = self._generation
        if fregs.event == Event.START:
            rec = state.table.get(ip)
            if rec is None:
                rec = state.table[ip] = [0, 0, 0]
            rec[0] += 1
            if ip.code.co_flags & _GEN_FLAGS:
                self._call_started(id(fregs.frame), gen, ip.code)
        state.stack.append([fregs.frame, ip, self.clock(), 0, gen])

    def _exit(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        now = self.clock()
        try:
            stack = self._tls.state.stack
        except AttributeError:
            return
        frame = fregs.frame
        seg = _pop(stack, frame)
        if seg is None:
            return
        duration = now - seg[2]
        if stack:
            stack[-1][3] += duration
        spent = duration
        if not self.inst.options["graph-time"]:
            spent = max(0, duration - seg[3])
        event = fregs.event
        if ip.code.co_flags & _GEN_FLAGS:
            key = id(frame)
            call = self._open.get(key) if event == Event.YIELD else self._open.pop(key, None)
            if call is None or call[1] != self._generation or call[2] is not ip.code:
                return  # started before the profiler or before the last reset
            call[0] += spent
            if event == Event.YIELD:
                return
            spent = call[0]
        elif seg[4] != self._generation:
            return
        table = self._tls.state.table
        rec = table.get(ip)
        if rec is None:
            rec = table[ip] = [0, 0, 0]
        rec[1] += spent
        rec[2] += spent * spent

    def _call_started(self, key: int, gen: int, code: types.CodeType) -> None:
        """Open a generator/coroutine call.

        Keyed by the frame's id, not the frame: a generator dropped while
        suspended may die without an exit event (3.13 closes a generator with
        no ``try`` without running it), and holding its frame here would keep
        its locals alive.  A dead frame's id can be reused, but only by a frame
        whose START replaces the entry, or one of other code (checked at exit).
        Entries of such dead calls are bounded: past OPEN_LIMIT the oldest
        quarter is dropped.
        """
        opened = self._open
        if len(opened) >= OPEN_LIMIT:
            for old in list(itertools.islice(opened, OPEN_LIMIT // 4)):
                opened.pop(old, None)
        opened[key] = [0, gen, code]

    # -- control -------------------------------------------------------------
    def reset(self) -> None:
        """Forget every record (a write to trace_stat/function0)."""
        with self._lock:
            self._generation += 1
            self._open.clear()
            for table in self._tables:
                table.clear()

    def stop(self) -> None:
        super().stop()
        self._open.clear()

    def records(self) -> list[tuple[Function, int, int, int]]:
        """(function, hits, time ns, sum of squared ns) per function hit, merged over threads."""
        with self._lock:
            tables = list(self._tables)
        merged: dict[Function, list[int]] = {}
        for table in tables:
            for fn, rec in list(table.items()):
                hits, total, squares = rec
                acc = merged.get(fn)
                if acc is None:
                    merged[fn] = [hits, total, squares]
                else:
                    acc[0] += hits
                    acc[1] += total
                    acc[2] += squares
        return [(fn, h, t, s) for fn, (h, t, s) in merged.items() if h or t]

    def render(self) -> str:
        """trace_stat/function0: the kernel's layout, by Time descending."""
        rows = sorted(self.records(), key=lambda r: (-r[2], r[0].name, -r[1]))
        width = max([_NAME_WIDTH] + [len(r[0].name) for r in rows])
        pad = " " * (width - _NAME_WIDTH)
        out = [f"  Function{pad}                               Hit    Time            Avg"
               "             s^2\n",
               f"  --------{pad}                               ---    ----            ---"
               "             ---\n"]
        for fn, hits, total, squares in rows:
            avg = total // hits if hits else 0
            if hits <= 1:
                var = 0
            else:
                # Kernel: divide by 1000 only (ns^2 -> us^2); format_duration divides again.
                var = (hits * squares - total * total) // (hits * (hits - 1) * 1000)
            out.append(f"  {fn.name:<{width}}  {hits:>10}    {format_duration(total)}    "
                       f"{format_duration(avg)}    {format_duration(var)}\n")
        return "".join(out)


def _pop(stack: list[Segment], frame: types.FrameType) -> Segment | None:
    """The segment of ``frame``, dropping any above it whose exit never came."""
    if stack and stack[-1][0] is frame:
        return stack.pop()
    for i in range(len(stack) - 1, -1, -1):
        if stack[i][0] is frame:
            seg = stack[i]
            del stack[i:]
            return seg
    return None
