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
segments and a table of records that only its thread writes (a
``_speedups.ProfThread``, packed, or its pure-Python twin ``_PyProfThread``).
``render`` merges the tables, so the hot path takes no lock (one lock, once
per thread, to publish the thread's state).  With the C extension a
``ProfRecorder`` counts calls with no Python frame, generator and coroutine
calls too (in the same table of open calls, ``_open``).  Both paths use the
same state, so they hand over in mid-call.
"""

from __future__ import annotations

import itertools
import threading
import time
import types
from collections.abc import Callable

from fntrace.core import accel as _accel
from fntrace.core import forksafe
from fntrace.core.flags import Event
from fntrace.core.ops import Ops
from fntrace.core.shadow import ShadowStack
from fntrace.tracing.files import parse_bool
from fntrace.tracing.tracers.base import Tracer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function
    from fntrace.tracing.files import FileTable
    from fntrace.tracing.instance import Instance

__all__ = ["OPEN_LIMIT", "FunctionProfiler", "enable", "format_duration", "register_files"]

_GEN_FLAGS = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
_NAME_WIDTH = 30
#: Generator/coroutine calls in progress kept at most (see _call_started).
OPEN_LIMIT = 1 << 16

# A running segment: [frame key, start ns, children ns, reset generation].
if TYPE_CHECKING:
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


class _PyProfThread:
    """One thread's call segments and records (pure Python; ``_speedups.ProfThread``
    is the same in C): the methods are the whole interface, so either serves."""

    __slots__ = ("stack", "table")

    def __init__(self) -> None:
        self.stack: ShadowStack[Segment] = ShadowStack()
        self.table: dict[Any, list[int]] = {}  # fn -> [hits, time ns, sum of t^2]

    def hit(self, fn: Any) -> None:
        rec = self.table.get(fn)
        if rec is None:
            rec = self.table[fn] = [0, 0, 0]
        rec[0] += 1

    def add(self, fn: Any, spent: int) -> None:
        rec = self.table.get(fn)
        if rec is None:
            rec = self.table[fn] = [0, 0, 0]
        rec[1] += spent
        rec[2] += spent * spent

    def push(self, key: Any, start: int, gen: int) -> None:
        self.stack.append([key, start, 0, gen])

    def pop_to(self, key: Any, now: int) -> tuple[int, int, int] | None:
        """The segment of ``key`` ends at ``now`` (any above it, whose exit never
        came, is dropped): (duration, children, generation); the duration goes
        to the caller's children."""
        stack = self.stack
        seg = stack.pop_to(key)  # keys are frames here (the C ProfThread keys addresses)
        if seg is None:
            return None
        duration = now - seg[1]
        if stack:
            stack[-1][2] += duration
        return duration, seg[2], seg[3]

    def records(self) -> list[tuple[Any, int, int, int]]:
        return [(fn, h, t, s) for fn, (h, t, s) in list(self.table.items())]

    def clear_table(self) -> None:
        self.table.clear()

    def __len__(self) -> int:
        return len(self.stack)


def _renew_lock(profiler: FunctionProfiler) -> None:
    profiler._lock = threading.Lock()  # see fntrace/core/forksafe.py


class FunctionProfiler(Tracer):
    """Hit count, time and s^2 per function; see the module docstring."""

    name = "function_profile"

    def __init__(self, inst: Instance) -> None:
        super().__init__(inst)
        #: nanosecond clock of durations (the kernel's trace_clock_local).
        self.clock: Callable[[], int] = time.perf_counter_ns
        self._tls = threading.local()
        self._states: list[Any] = []  # every thread's state (ProfThread or _PyProfThread)
        self._lock = threading.Lock()
        forksafe.renew_in_child(self, _renew_lock)
        self._generation = 0
        # Generator/coroutine calls in progress: id(frame) (or with the C extension its
        # frame key, as the C recorder keys them) -> [time so far, generation, code].
        # Shared between threads (a generator may be resumed by any of them) and
        # with the C recorder; see _call_started for why ids and not frames.
        self._open: dict[int, list[Any]] = {}
        self._key: Callable[[types.FrameType], Any] | None = None
        self._state_type: Any = _PyProfThread

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "clock" and self.recorders:  # the C recorder reads CLOCK_MONOTONIC
            self.fast_refresh()

    def make_ops(self) -> list[Ops]:
        inst = self.inst
        ops = Ops(self._entry, ret=self._exit, filter=inst.filter, notrace=inst.notrace)
        speedups: Any = _accel.speedups
        # Frames are keyed as function_graph keys them (see there); the C state and
        # recorder need those keys, so the three come together.
        self._key = getattr(speedups, "frame_key", None)
        if self._key is not None:
            self._state_type = speedups.ProfThread
            rec = speedups.ProfRecorder(self._tls, self._thread, Event.START, Event.YIELD,
                                        self._open, OPEN_LIMIT)
            self.attach(rec, ops, ring=False)  # the profiler writes no ring buffer
        return [ops]

    def fast_ok(self) -> bool:
        return self.clock is time.perf_counter_ns

    def fast_refresh(self) -> None:
        # The profiler ignores tracing_on and the pid filters (see the module docstring).
        ok = self.fast_ok()
        graph_time = bool(self.inst.options["graph-time"])
        for rec in self.recorders:
            rec.graph_time = graph_time
            rec.generation = self._generation
            rec.ok = ok

    # -- hot path ------------------------------------------------------------
    def _thread(self) -> Any:
        try:
            return self._tls.state
        except AttributeError:
            state = self._state_type()
            with self._lock:
                self._states.append(state)
            self._tls.state = state
            return state

    def _entry(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        try:
            state = self._tls.state
        except AttributeError:
            state = self._thread()
        gen = self._generation
        key: Any = fregs.frame if self._key is None else self._key(fregs.frame)
        if fregs.event == Event.START:
            state.hit(ip)
            if ip.code.co_flags & _GEN_FLAGS:
                self._call_started(id(key) if self._key is None else key, gen, ip.code)
        state.push(key, self.clock(), gen)

    def _exit(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        now = self.clock()
        try:
            state = self._tls.state
        except AttributeError:
            return
        key: Any = fregs.frame if self._key is None else self._key(fregs.frame)
        seg = state.pop_to(key, now)
        if seg is None:
            return
        duration, children, gen = seg
        spent = duration
        if not self.inst.options["graph-time"]:
            spent = max(0, duration - children)
        event = fregs.event
        if ip.code.co_flags & _GEN_FLAGS:
            if self._key is None:
                key = id(key)
            call = self._open.get(key) if event == Event.YIELD else self._open.pop(key, None)
            if call is None or call[1] != self._generation or call[2] is not ip.code:
                return  # started before the profiler or before the last reset
            call[0] += spent
            if event == Event.YIELD:
                return
            spent = call[0]
        elif gen != self._generation:
            return
        state.add(ip, spent)

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
            for state in self._states:
                state.clear_table()
        for rec in self.recorders:
            rec.generation = self._generation

    def stop(self) -> None:
        super().stop()
        self._open.clear()

    def records(self) -> list[tuple[Function, int, int, int]]:
        """(function, hits, time ns, sum of squared ns) per function hit, merged over threads."""
        with self._lock:
            states = list(self._states)
        merged: dict[Function, list[int]] = {}
        for state in states:
            for fn, hits, total, squares in state.records():
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


# -- the instance files ------------------------------------------------------------------


def enable(inst: Instance, on: bool) -> None:
    """function_profile_enabled.  The profile stays readable after it is disabled, as
    in the kernel; enabling the profiler again starts a fresh table."""
    if on and not inst.profile_on:
        prof = FunctionProfiler(inst)
        prof.start()
        inst.profile, inst.profile_on = prof, True
    elif not on and inst.profile_on and inst.profile is not None:
        inst.profile.stop()
        inst.profile_on = False


def _reset(inst: Instance, text: str, append: bool) -> None:
    if inst.profile is not None:
        inst.profile.reset()


def register_files(table: FileTable) -> None:
    table.file("function_profile_enabled", lambda inst: f"{int(inst.profile_on)}\n",
               lambda inst, text, append: enable(
                   inst, parse_bool(text, "function_profile_enabled")))
    table.file("trace_stat/function0",
               lambda inst: inst.profile.render() if inst.profile is not None else "", _reset)
    table.on_close(lambda inst: enable(inst, False))
