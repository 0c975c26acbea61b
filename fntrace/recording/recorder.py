"""Streaming an instance's ring buffer into a trace file while the program runs.

A background thread consumes the instance's buffers every ``interval``
seconds (as a trace_pipe reader would) and appends one chunk per batch, so
memory stays bounded by the ring buffer however long the program runs and the
file holds everything up to the last batch if the process dies.  ``finish``
(idempotent) stops the tracer, writes the last batch and the footer; the
``fntrace record`` runner calls it at exit, on SIGTERM/SIGINT and before
``os._exit``.
"""

from __future__ import annotations

import _thread
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterable

from fntrace.core import forksafe
from fntrace.core.oscaps import native_id, thread_native_id
from fntrace.formats.tracewriter import FLUSH_INTERVAL, Render, TraceWriter
from fntrace.tracing import ftrace_text
from fntrace.tracing.ring_buffer import UNKNOWN_NAME, BufferSet

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from fntrace.tracing.instance import Instance
else:
    Protocol = object  # structural types are the type checker's: at run time, plain classes

__all__ = ["FLUSH_INTERVAL", "InstanceText", "Recorder", "Sink", "TextSink", "fix_names",
           "hostname", "mute", "unmute"]



def mute(inst: Instance, tid: int) -> None:
    """Stop tracing thread ``tid`` (set_ftrace_notrace_pid, appended)."""
    inst.write("set_ftrace_notrace_pid", str(tid), append=True)


def unmute(inst: Instance, tid: int) -> None:
    inst.write("set_ftrace_notrace_pid", " ".join(str(t) for t in inst.notrace_pids if t != tid))


class Sink(Protocol):
    """Where a recording goes: the trace file (``TraceWriter``, fntrace record) or
    text (``TextSink``, fntrace run).  The recorder calls these and nothing else."""

    closed: bool

    def take(self, bufs: BufferSet, render: Render) -> tuple[int, set[int]]:
        """Consume the events now in ``bufs`` and write them: (events, tids seen)."""

    def write_lost(self, rows: Iterable[tuple[int, str, int, str, int]]) -> None:
        """Threads (tid, name, cpu, flags, lost) whose lost count changed, no event."""

    def finish(self, end_ts: int, extra: dict[str, Any]) -> None:
        """The end: what the sink says of a complete recording."""

    def let_go(self) -> None:
        """In a forked child: write nothing more, release what is the parent's."""


class InstanceText:
    """An instance's renderers, as the sinks ask for text (``Render``)."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst

    def one(self, buf: Any, ev: tuple[Any, ...]) -> str:
        return ftrace_text.render_one(buf, ev, ftrace_text.context(self.inst))

    def lines(self, pairs: list[tuple[Any, tuple[Any, ...]]]) -> Iterable[str]:
        return ftrace_text.render_events(self.inst, pairs)


def header_for(inst: Instance, argv: list[str], options: dict[str, Any]) -> dict[str, Any]:
    return {
        "program": argv[0] if argv else "",
        "argv": list(argv),
        "python": sys.version.split()[0],
        "implementation": sys.implementation.name,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "start_realtime_ns": time.time_ns(),
        "start_ts": inst.rb.clock(),
        "clock": inst.rb.clock_name,
        "tracer": inst.tracer.name if inst.tracer is not None else "nop",
        "options": options,
        "hostname": hostname(),
    }


def hostname() -> str:
    """This machine's name as ``socket.gethostname()`` gives it: uname's node name
    where there is uname (the same value), since importing socket (its enums,
    selectors) would cost every recording's start-up ~15M instructions."""
    uname = getattr(os, "uname", None)
    if uname is not None:
        return str(uname().nodename)
    import socket

    return socket.gethostname()


def _wake_pipe() -> tuple[int, int]:
    """A non-blocking pipe (as a signal wakeup fd must be), closed on exec."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    return r, w


def fix_names(bufs: BufferSet) -> None:
    """Name the buffers of threads ``threading`` did not know when they were made
    (see ring_buffer.thread_identity) as it knows them now."""
    unknown = [b for b in bufs.buffers() if b.name == UNKNOWN_NAME]
    if unknown:
        names = {thread_native_id(t): t.name for t in threading.enumerate()}
        for buf in unknown:
            buf.name = names.get(buf.tid, buf.name)


class TextSink:
    """Where ``fntrace run`` sends its trace: rendered lines, as trace_pipe gives them."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.closed = False

    def take(self, bufs: BufferSet, render: Render) -> tuple[int, set[int]]:
        pairs = bufs.consume()
        if pairs:
            self._write("".join(render.lines(pairs)))
        return len(pairs), {buf.tid for buf, _ in pairs}

    def write_lost(self, rows: Iterable[tuple[int, str, int, str, int]]) -> None:
        return None  # the text says what was lost at the end (finish)

    def let_go(self) -> None:
        self.closed = True  # the program's stream, not ours to close

    def _write(self, text: str) -> None:
        """Write and flush; a reader that went away (``fntrace run ... | head``) ends
        the trace quietly, as it would end the output of any command."""
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            self.closed = True
            try:
                # Nothing more can reach the reader; the unflushed rest must not
                # raise again when the stream is collected.
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.out.fileno())
            except (AttributeError, OSError, ValueError):
                pass

    def finish(self, end_ts: int, extra: dict[str, Any]) -> None:
        lost = sum(extra.get("lost", {}).values())
        if not self.closed:
            self._write(f"# fntrace: {lost} events lost (buffers overwritten)\n" if lost else "")
        self.closed = True


class Recorder:
    """One process's recording: instance -> background writer -> TraceWriter.

    The writer is a bare ``_thread`` thread, not a ``threading.Thread``: the
    program's own thread logic (``threading.enumerate()``, ``active_count()``,
    joining every thread) must not see it, and interpreter exit must not wait
    for it (``finish``, run by atexit, stops it and waits for it itself).
    """

    def __init__(self, inst: Instance, path: str, header: dict[str, Any],
                 interval: float = FLUSH_INTERVAL, writer: Sink | None = None,
                 compress: str | None = None) -> None:
        self.inst = inst
        # The event chunks' compression (tracewriter.compressor), for every file this
        # recording writes (a followed fork's too).
        self.compress = compress
        self.path = path
        self.interval = interval
        self.header = header
        # The sink: a TraceWriter (record), or a TextSink (run: the trace as text).
        self.writer: Sink = (writer if writer is not None
                             else TraceWriter(path, header, compress))
        self.render = InstanceText(inst)
        self.lost_seen: dict[int, int] = {}
        self.writer_tid = -1
        # Why the file stopped growing (a full disk...): said once, then nothing
        # more is written.
        self.failed: str | None = None
        # A signal that arrived while this thread was inside poll/finish (a signal
        # handler runs between two bytecodes of whatever the main thread does): its
        # action runs once the interrupted work is complete (see ``interrupt``).
        self.deferred: tuple[int, Callable[[int], None]] | None = None
        # What the writer does when it hears of a signal on its wake pipe (record.py
        # makes the pipe the signal wakeup fd); the pipe also wakes it to stop.
        self.on_signal: Callable[[int], None] | None = None
        self.wake_r, self.wake_w = _wake_pipe()
        self._fresh_state()
        forksafe.renew_in_child(self, Recorder._fresh_state)

    def _fresh_state(self) -> None:
        """Locks and flags, new (and, in a forked child, in place of ones another
        thread of the parent may have held at fork time)."""
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.finished = False
        self.busy = 0  # the ident of the thread inside poll/finish, under self.lock
        self.thread_done: Any = None  # a lock the writer holds while it runs
        self.thread_ident = -1

    def start(self) -> None:
        started = threading.Event()
        done = _thread.allocate_lock()
        done.acquire()
        stop = self.stop_event
        wake = self.wake_r

        def loop() -> None:
            try:
                # The writer's own calls (select...) are not the program's.
                sys.setprofile(None)  # 3.11's hook is per thread: the writer pays none of it
                self.writer_tid = native_id()
                mute(self.inst, self.writer_tid)
                started.set()
                wait = self.interval
                while True:
                    if select.select([wake], [], [], wait)[0]:
                        self._heard(wake)
                    if stop.is_set():
                        break
                    # A busy program gets polled sooner, before its buffers overwrite.
                    wait = self.interval / 10 if self.poll() > 1000 else self.interval
                    if self.on_signal is not None:
                        self.on_signal(0)  # a turn: signals heard earlier may need more
            except BaseException as exc:  # never reaches the program (nor its stderr twice)
                self._failure(exc)
            finally:
                done.release()

        try:
            ident = _thread.start_new_thread(loop, ())
        except RuntimeError:
            # A Python that cannot start threads (WebAssembly builds): no periodic
            # writer, the buffers drain to the file when one fills and at finish().
            done.release()
        else:
            self.thread_done = done
            self.thread_ident = ident
            started.wait(5)
        # No loss: a thread whose buffer fills before the writer's next turn drains
        # the buffers to the file itself (it waits for the file, it never drops).
        self.inst.rb.set_on_full(self.poll)

    def _heard(self, wake: int) -> None:
        try:
            data = os.read(wake, 512)
        except OSError:  # BlockingIOError: nothing after all
            return
        on_signal = self.on_signal
        if on_signal is not None:
            for signum in set(data) - {0}:
                on_signal(signum)

    def wake(self) -> None:
        """Wake the writer now (to stop)."""
        try:
            os.write(self.wake_w, b"\0")
        except OSError:  # full (it is awake anyway) or closed
            pass

    def close_wake_pipe(self) -> None:
        """In a forked child: its copy of the parent's pipe (once no signal writes to it)."""
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.wake_r = self.wake_w = -1

    def new_wake_pipe(self) -> None:
        """In a forked child: a pipe of its own (the parent's writer reads the old one)."""
        self.close_wake_pipe()
        self.wake_r, self.wake_w = _wake_pipe()

    def os_threads(self) -> int:
        """OS threads this recording runs now (its writer), for forkwarning."""
        done = self.thread_done
        return 1 if done is not None and done.locked() else 0

    command = "record"  # how its one error line names fntrace (record or run)

    def _failure(self, exc: BaseException) -> None:
        """The file cannot grow any more: say so once, stop tracing, keep the program."""
        if self.failed is not None:
            return
        where = ""
        size = getattr(self.writer, "bytes", None)
        if isinstance(size, int):
            where = f"; the file is cut at byte {size}"
        if isinstance(exc, OSError) and exc.strerror:
            why = exc.strerror
        else:
            why = str(exc) or type(exc).__name__
        self.failed = why
        self.inst.rb.set_on_full(None)
        self.inst.tracing_on = False
        print(f"fntrace {self.command}: {self.path}: {why}{where}; recording stopped, "
              f"the program goes on untraced", file=sys.stderr)

    def poll(self) -> int:
        """Write what the buffers hold now as one chunk; returns the events written."""
        n = 0
        with self.lock:
            # busy is only ever set under the lock: set here means this very thread is
            # inside poll/finish already (a signal handler, or on_full from within).
            if not self.busy and self.failed is None:
                self.busy = threading.get_ident()
                try:
                    n = self._write_batch()
                finally:
                    self.busy = 0
        self._run_deferred()
        return n

    def _write_batch(self) -> int:
        if self.writer.closed:
            return 0
        bufs = self.inst.rb.live
        fix_names(bufs)
        try:
            n, seen = self.writer.take(bufs, self.render)
        except OSError as exc:
            self._failure(exc)
            return 0
        changed = []
        for buf in bufs.buffers():
            lost = buf.overrun + buf.dropped
            if lost != self.lost_seen.get(buf.tid, 0):
                self.lost_seen[buf.tid] = lost
                if buf.tid not in seen:
                    changed.append((buf.tid, buf.name, buf.cpu, buf.thread_flags, lost))
        if changed:
            try:
                self.writer.write_lost(changed)
            except OSError as exc:
                self._failure(exc)
        return n

    def interrupt(self, signum: int, action: Callable[[int], None]) -> None:
        """Run a signal's ``action`` (finish the file, then die of it) from its handler.

        A handler runs between two bytecodes of whatever the main thread was
        doing; when that was poll or finish, acting now would write into the
        middle of a chunk or take the file for finished before its footer is
        written, so the action runs as soon as the interrupted call is complete.
        """
        if self.busy == threading.get_ident():
            self.deferred = (signum, action)
            return
        action(signum)

    def _run_deferred(self) -> None:
        deferred = self.deferred
        if deferred is not None and not self.busy:
            self.deferred = None
            deferred[1](deferred[0])

    def finish(self, unregister: bool = True) -> None:
        """Stop tracing, write the last batch and the footer (once; safe from anywhere).

        ``unregister=False`` (from a signal handler, which may have interrupted
        the core itself) only turns tracing off instead of unregistering.
        """
        with self.lock:
            if self.finished or self.busy:  # busy: see interrupt()
                return
            # busy first: a signal whose handler runs between the two (a second SIGTERM)
            # is deferred; the other way round it would find the file finished and
            # act (die) before the footer is written.
            self.busy = threading.get_ident()
            self.finished = True
            try:
                self.stop_event.set()
                self.wake()
                self.inst.rb.set_on_full(None)
                self.inst.tracing_on = False
                if unregister:
                    try:
                        self.inst.close()
                    except Exception:  # stopping must not keep the file from being finished
                        pass
                if self.failed is None:
                    self._write_batch()
                if self.failed is None:
                    try:
                        self.writer.finish(self.inst.rb.clock(), {"lost": dict(self.lost_seen)})
                    except OSError as exc:
                        self._failure(exc)
            finally:
                self.busy = 0
        done = self.thread_done
        if done is not None and self.thread_ident != threading.get_ident():
            # The writer leaves its loop at once (stop_event); bounded all the same.
            if done.acquire(timeout=1.0):
                done.release()
        self._run_deferred()

    def abandon(self) -> None:
        """In a forked child not being followed: write nothing, trace nothing."""
        self.finished = True
        self.inst.rb.set_on_full(None)
        self.inst.tracing_on = False
        self._let_go_of_parents_file()

    def _let_go_of_parents_file(self) -> None:
        """In a forked child: the parent's file is the parent's.  Nothing more is
        written to it from here; this process's copy of its descriptor is closed
        (unbuffered: closing writes nothing), so no ResourceWarning or stray fd."""
        self.writer.let_go()

    def restart_in_child(self, path: str, header: dict[str, Any]) -> None:
        """In a followed forked child: a fresh buffer, file and writer thread.

        The parent's buffers and writer are left as they are (another thread may
        have been half-way through them at fork time); the locks are new already
        (see fntrace/core/forksafe.py).
        """
        inst = self.inst
        rb = inst.rb
        rb.live = BufferSet(rb.size_kb, rb.overwrite, rb.on_full)  # the parent's are its own
        unmute(inst, self.writer_tid)
        self._let_go_of_parents_file()
        self.path = path
        self.lost_seen = {}
        self.failed = None
        self.deferred = None
        self.new_wake_pipe()
        self._fresh_state()
        self.writer = TraceWriter(path, header, self.compress)
        self.start()
