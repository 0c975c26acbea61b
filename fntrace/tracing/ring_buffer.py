"""Per-thread bounded ring buffers (the kernel's per-CPU ring buffer).

Each thread writes into its own buffer, so writers never contend: a write is
a deque append on the writer's own buffer.  A buffer holds at most
``size_kb`` KiB of events, by an accounted size per event (a fixed part plus
the length of its text fields); when full it either drops the oldest events
(``overwrite`` on, counted in ``overrun``) or refuses the new one (counted in
``dropped``).  Memory stays bounded however long the program runs.

Readers never block writers.  A consuming reader (``trace_pipe``) pops from
the other end of the same deques; every counter has exactly one writing
thread (the owner, or the readers under their own lock), so no update is
lost.  ``snapshot`` swaps the whole set of buffers for a spare one.

An event is a tuple ``(ts, size, kind, *payload)``: ``ts`` in clock
nanoseconds, ``size`` its accounted bytes, ``kind`` the one-letter tag of its
kind; fntrace/core/events.py declares every kind's fields.
"""

from __future__ import annotations

import heapq
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

from fntrace.core import accel as _accel
from fntrace.core import forksafe
from fntrace.core.events import EVENT_OVERHEAD
from fntrace.core.framelocals import first_local
from fntrace.core.oscaps import native_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CLOCKS", "EVENT_OVERHEAD", "UNKNOWN_NAME", "BufferSet", "RingBuffer", "ThreadBuffer",
           "thread_identity"]

if TYPE_CHECKING:
    Event = tuple[Any, ...]


def _clock(name: str) -> Callable[[], int]:
    return lambda: time.clock_gettime_ns(getattr(time, name))


_counter = iter(range(1, 1 << 62))

#: trace_clock choices; the first is the default.  "local" is the cheapest clock
#: (fntrace/csrc/clock.c local_clock: the TSC anchored on CLOCK_MONOTONIC, as the
#: kernel's local clock is the TSC), "global" always time.perf_counter_ns.
CLOCKS: dict[str, Callable[[], int]] = {
    "local": _accel.built.local_clock if _accel.built is not None else time.perf_counter_ns,
    "global": time.perf_counter_ns,
    "mono": time.monotonic_ns,
    "mono_raw": _clock("CLOCK_MONOTONIC_RAW") if hasattr(time, "CLOCK_MONOTONIC_RAW")
    else time.monotonic_ns,
    "boot": _clock("CLOCK_BOOTTIME") if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic_ns,
    "realtime": time.time_ns,
    "counter": lambda: next(_counter),
}



class _PyRingCore:
    """A thread's events, counters and write(): the pure-Python twin of the C RingCore.

    fntrace/csrc/ has the same class in C (same attributes, same write()),
    which the C recorders call without a Python frame; ThreadBuffer derives from
    whichever is available.
    """

    __slots__ = ("capacity", "dropped", "events", "in_bytes", "on_full", "overrun",
                 "overrun_bytes", "overwrite", "read", "read_bytes", "written")

    def __init__(self, capacity: int, overwrite: bool) -> None:
        # No-loss mode (fntrace record): called when this buffer is full, to drain
        # the buffers to their consumer before the event is dropped or overwrites.
        self.on_full: Callable[[], object] | None = None
        self.capacity = capacity
        self.overwrite = overwrite
        self.events: deque[Event] = deque()
        self.written = 0        # events accepted (owner)
        self.in_bytes = 0       # bytes accepted (owner)
        self.overrun = 0        # oldest events overwritten (owner)
        self.overrun_bytes = 0  # (owner)
        self.dropped = 0        # newest events refused, overwrite off (owner)
        self.read = 0           # events consumed by trace_pipe (readers, under their lock)
        self.read_bytes = 0     # (readers)

    def write(self, event: Event) -> bool:
        """Append one event (owner thread only); False when it was dropped."""
        size = event[1]
        used = self.in_bytes - self.overrun_bytes - self.read_bytes
        if used + size > self.capacity:
            on_full = self.on_full
            if on_full is not None:
                try:
                    on_full()
                except Exception:  # the consumer failed: fall back to the bounded ring
                    self.on_full = None
                used = self.in_bytes - self.overrun_bytes - self.read_bytes
            if used + size > self.capacity:
                if not self.overwrite or size > self.capacity:
                    self.dropped += 1
                    return False
                # Overwrite: drop the oldest events until this one fits (usually one).
                events = self.events
                room = self.capacity - size
                freed = 0
                n = 0
                while used - freed > room:
                    try:
                        freed += events.popleft()[1]
                    except IndexError:  # a reader took it first
                        break
                    n += 1
                self.overrun += n
                self.overrun_bytes += freed
        self.events.append(event)
        self.written += 1
        self.in_bytes += size
        return True


_RingCore: Any = _accel.built.RingCore if _accel.built is not None else _PyRingCore


class ThreadBuffer(_RingCore):  # type: ignore[misc]
    """One thread's events and counters (see _PyRingCore for write())."""

    __slots__ = ("cpu", "name", "thread_flags", "tid")

    def __init__(self, tid: int, name: str, cpu: int, capacity: int, overwrite: bool,
                 thread_flags: str = "..") -> None:
        super().__init__(capacity, overwrite)
        self.tid = tid
        self.name = name
        self.thread_flags = thread_flags  # "M" main thread, "d" daemon (FLAGS column)
        self.cpu = cpu

    @property
    def bytes(self) -> int:
        return self.in_bytes - self.overrun_bytes - self.read_bytes  # type: ignore[no-any-return]

    @property
    def entries(self) -> int:
        return len(self.events)

    def stats(self) -> str:
        """per_thread/<tid>/stats, in the kernel's per_cpu/cpuN/stats words."""
        return (f"entries: {self.entries}\noverrun: {self.overrun}\n"
                f"commit overrun: 0\nbytes: {self.bytes}\n"
                f"oldest event ts: {self._oldest()}\nnow ts: {time.perf_counter_ns() / 1e9:.6f}\n"
                f"dropped events: {self.dropped}\nread events: {self.read}\n")

    def _oldest(self) -> str:
        try:
            return f"{self.events[0][0] / 1e9:.6f}"
        except IndexError:
            return "0.000000"


#: The name of a thread not known (yet) to ``threading``: ftrace's own mark for an
#: unknown comm.  The recorder names it when the thread registers (fix_names).
UNKNOWN_NAME = "<...>"

_BOOTSTRAP = threading.Thread._bootstrap.__code__  # type: ignore[attr-defined]


def thread_identity() -> tuple[str, str]:
    """(name, FLAGS column) of the calling thread, without ever registering it.

    ``threading.current_thread()`` would make a ``_DummyThread`` of a thread not
    registered yet (3.12+ trace a thread's first calls before ``threading`` adds
    it to its table) or never registered (``_thread`` threads): the dummy would
    then show in the program's ``threading.enumerate()``, use up one of its
    ``Thread-N`` numbers, and on 3.13 its removal at thread exit would run traced
    code in a thread being torn down (CPython's test_threading
    test_foreign_thread).  So threading's table is read, not asked (dict lookups
    are atomic; no lock is taken: this thread may hold threading's), and a
    ``threading.Thread`` not registered yet is known from its first frame,
    ``Thread._bootstrap(self)``, whose ``self`` has had its name since it was made.
    """
    active: dict[int, threading.Thread] = getattr(threading, "_active", {})
    thread = active.get(threading.get_ident())
    if thread is None:
        frame = sys._getframe(1)
        while frame.f_back is not None:
            frame = frame.f_back
        if frame.f_code is _BOOTSTRAP:
            owner = first_local(frame)
            if isinstance(owner, threading.Thread):
                thread = owner
    if thread is None:
        return UNKNOWN_NAME, ".."
    main = "M" if thread is threading.main_thread() else "."
    return thread.name, main + ("d" if thread.daemon else ".")


def _renew_lock(bufs: BufferSet) -> None:
    bufs.lock = threading.RLock()  # see fntrace/core/forksafe.py


class BufferSet:
    """The buffers of all threads; the unit ``snapshot`` swaps."""

    def __init__(self, size_kb: int, overwrite: bool,
                 on_full: Callable[[], object] | None = None) -> None:
        self.capacity = size_kb * 1024
        self.overwrite = overwrite
        self.on_full = on_full
        self.local = threading.local()
        self.by_tid: dict[int, ThreadBuffer] = {}
        # Creation of buffers and consuming reads.  Reentrant: a signal handler (the
        # recorder's SIGTERM path) may consume while this thread is consuming.
        self.lock = threading.RLock()
        forksafe.renew_in_child(self, _renew_lock)

    def new_buffer(self) -> ThreadBuffer:
        tid = native_id()
        with self.lock:
            buf = self.by_tid.get(tid)
            if buf is None:
                name, flags = thread_identity()
                buf = ThreadBuffer(tid, name, len(self.by_tid), self.capacity,
                                   self.overwrite, flags)
                buf.on_full = self.on_full
                self.by_tid[tid] = buf
        self.local.buf = buf
        return buf

    def buffers(self) -> list[ThreadBuffer]:
        return sorted(self.by_tid.values(), key=lambda b: b.cpu)

    def resize(self, size_kb: int) -> None:
        self.capacity = size_kb * 1024
        for buf in self.by_tid.values():
            buf.capacity = self.capacity

    def set_overwrite(self, overwrite: bool) -> None:
        self.overwrite = overwrite
        for buf in self.by_tid.values():
            buf.overwrite = overwrite

    def clear(self) -> None:
        with self.lock:
            for buf in self.by_tid.values():
                n = len(buf.events)
                nbytes = buf.bytes
                buf.events.clear()
                buf.read += n
                buf.read_bytes += nbytes

    def merged(self) -> Iterator[tuple[ThreadBuffer, Event]]:
        """All events in time order, without consuming them."""
        streams = [[(ev[0], buf.cpu, i, buf, ev) for i, ev in enumerate(list(buf.events))]
                   for buf in self.buffers()]
        for _, _, _, buf, ev in heapq.merge(*streams, key=lambda t: (t[0], t[1], t[2])):
            yield buf, ev

    def consume(self) -> list[tuple[ThreadBuffer, Event]]:
        """Take every event now in the buffers, oldest first (for trace_pipe)."""
        built = _accel.built
        if built is not None:  # the same, in C (ThreadBuffer is then a RingCore)
            with self.lock:
                return built.take_all(self.buffers())  # type: ignore[no-any-return]
        return self._consume_py()

    def _consume_py(self) -> list[tuple[ThreadBuffer, Event]]:
        taken: list[tuple[int, int, int, ThreadBuffer, Event]] = []
        with self.lock:
            for buf in self.buffers():
                events = buf.events
                n = len(events)
                for i in range(n):
                    try:
                        ev = events.popleft()
                    except IndexError:  # overwritten meanwhile
                        break
                    buf.read += 1
                    buf.read_bytes += ev[1]
                    taken.append((ev[0], buf.cpu, i, buf, ev))
        taken.sort(key=lambda t: (t[0], t[1], t[2]))
        return [(buf, ev) for _, _, _, buf, ev in taken]

    def totals(self) -> tuple[int, int]:
        """(entries in buffer, entries written) as the trace header shows them."""
        bufs = list(self.by_tid.values())
        return sum(len(b.events) for b in bufs), sum(b.written for b in bufs)


class RingBuffer:
    """An instance's buffer: the live BufferSet, an optional snapshot, a clock.

    ``live`` and ``clock`` are properties because C recorders (fntrace/_speedups.c)
    cache both: their setters tell every recorder in ``watchers`` (ring_changed),
    so the next event goes to the new set, stamped by the new clock.
    """

    def __init__(self, size_kb: int = 1408, overwrite: bool = True) -> None:
        self.watchers: list[Any] = []
        self.size_kb = size_kb
        self.overwrite = overwrite
        self.on_full: Callable[[], object] | None = None
        self._live = BufferSet(size_kb, overwrite)
        self.snapshot: BufferSet | None = None
        self.clock_name = "local"
        #: The clock as a plain attribute, for the pure-Python writers, which stamp
        #: every event (a property read costs a Python call per event: ~600
        #: instructions on 3.11).  Read it; set the clock through ``clock``.
        self.now: Callable[[], int] = CLOCKS["local"]
        self.data_ready = threading.Condition(threading.Lock())

    @property
    def live(self) -> BufferSet:
        """The buffers being written (``trace``, ``trace_pipe``)."""
        return self._live

    @live.setter
    def live(self, bufs: BufferSet) -> None:
        self._live = bufs
        self._ring_changed()

    @property
    def clock(self) -> Callable[[], int]:
        """The timestamp clock (nanoseconds); ``set_clock`` picks one by its trace_clock name."""
        return self.now

    @clock.setter
    def clock(self, fn: Callable[[], int]) -> None:
        self.now = fn
        self._ring_changed()

    def _ring_changed(self) -> None:
        for rec in self.watchers:
            rec.ring_changed()

    def buffer(self) -> ThreadBuffer:
        """The calling thread's buffer in the live set (created on first use)."""
        live = self._live
        try:
            return live.local.buf  # type: ignore[no-any-return]
        except AttributeError:
            return live.new_buffer()

    def write(self, event: Event) -> bool:
        live = self._live
        try:
            buf: ThreadBuffer = live.local.buf
        except AttributeError:
            buf = live.new_buffer()
        return buf.write(event)

    def set_on_full(self, hook: Callable[[], object] | None) -> None:
        """No-loss mode: ``hook`` drains the buffers when one is full (see ThreadBuffer)."""
        self.on_full = hook
        live = self.live
        live.on_full = hook
        for buf in live.by_tid.values():
            buf.on_full = hook

    def resize(self, size_kb: int) -> None:
        if size_kb <= 0:
            raise ValueError("buffer_size_kb must be a positive integer")
        self.size_kb = size_kb
        self.live.resize(size_kb)
        if self.snapshot is not None:
            self.snapshot.resize(size_kb)

    def set_overwrite(self, overwrite: bool) -> None:
        self.overwrite = overwrite
        self.live.set_overwrite(overwrite)

    def set_clock(self, name: str) -> None:
        if name not in CLOCKS:
            raise ValueError(f"unknown trace_clock {name!r}; available: {' '.join(CLOCKS)}")
        self.clock_name = name
        self.clock = CLOCKS[name]
        self.live.clear()  # timestamps of two clocks do not mix, as in the kernel

    def take_snapshot(self) -> None:
        """Swap the live buffers into the snapshot; tracing goes on in fresh ones."""
        old = self.live
        self.live = BufferSet(self.size_kb, self.overwrite, self.on_full)
        self.snapshot = old

    def clear_snapshot(self) -> None:
        if self.snapshot is not None:
            self.snapshot = BufferSet(self.size_kb, self.overwrite)

    def free_snapshot(self) -> None:
        self.snapshot = None

    def total_kb(self) -> int:
        """buffer_total_size_kb: the live buffers of every thread seen, plus the snapshot."""
        n = len(self.live.by_tid) or 1
        extra = len(self.snapshot.by_tid) if self.snapshot is not None else 0
        return self.size_kb * (n + extra)
