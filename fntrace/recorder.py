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

import os
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from . import _accel
from .core.oscaps import native_id, thread_native_id
from .formats import ftrace_text, tracefile
from .formats.tracefile import TraceWriter, WEvent
from .ring_buffer import BufferSet

if TYPE_CHECKING:
    from .instance import Instance
    from .ring_buffer import ThreadBuffer

__all__ = ["Recorder", "mute", "to_wevent", "unmute"]


def mute(inst: Instance, tid: int) -> None:
    """Stop tracing thread ``tid`` (set_ftrace_notrace_pid, appended)."""
    inst.write("set_ftrace_notrace_pid", str(tid), append=True)


def unmute(inst: Instance, tid: int) -> None:
    inst.write("set_ftrace_notrace_pid", " ".join(str(t) for t in inst.notrace_pids if t != tid))


def to_wevent(inst: Instance, buf: ThreadBuffer, ev: tuple[Any, ...]) -> WEvent:
    """A ring-buffer event as the writer's tuple (other kinds rendered to text now)."""
    lost = buf.overrun + buf.dropped
    head = (buf.tid, buf.name, buf.cpu, buf.thread_flags, lost)
    kind = ev[2]
    ts = ev[0]
    if kind == "F":
        _, _, _, ip, parent, args, event = ev
        return (*head, "call", ts, event, ip.name, ip.code.co_flags,
                parent.name if parent is not None else None, args)
    if kind == "E":
        _, _, _, fn, depth, args, event = ev
        return (*head, "entry", ts, event, fn.name, fn.code.co_flags, depth, args)
    if kind == "X":
        _, _, _, fn, depth, duration, event, value = ev
        return (*head, "exit", ts, event, fn.name, fn.code.co_flags, depth, duration, value)
    if kind == ftrace_text.MARKER:
        return (*head, "marker", ts, "", str(ev[3]))
    render = ftrace_text.RENDERERS.get(kind)
    text = render(inst, buf, ev) if render is not None else f"<event {kind}>\n"
    return (*head, "text", ts, "", text.rstrip("\n"))


def _other(inst: Instance, buf: ThreadBuffer, ev: tuple[Any, ...]) -> tuple[int, str]:
    """(kind code, text) of an event the C encoder does not know (markers, text)."""
    w = to_wevent(inst, buf, ev)
    return tracefile.KIND_CODES[w[5]], w[8]


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
        "hostname": socket.gethostname(),
    }


def _fix_names(bufs: BufferSet) -> None:
    """A thread's first traced call can precede its registration (3.12+), so its buffer
    was named ``Dummy-N``; name it as the thread is known now."""
    dummies = [b for b in bufs.buffers() if b.name.startswith("Dummy-")]
    if dummies:
        names = {thread_native_id(t): t.name for t in threading.enumerate()}
        for buf in dummies:
            buf.name = names.get(buf.tid, buf.name)


class TextSink:
    """Where ``fntrace run`` sends its trace: rendered lines, as trace_pipe gives them."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.closed = False

    def write_pairs(self, inst: Instance, pairs: list[tuple[ThreadBuffer, Any]]) -> int:
        if pairs:
            self._write("".join(ftrace_text.render_events(inst, pairs)))
        return len(pairs)

    def write_lost(self, rows: Any) -> None:
        return None

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

    def finish(self, end_ts: int, stats: dict[str, Any]) -> None:
        lost = sum(stats.get("lost", {}).values())
        if not self.closed:
            self._write(f"# fntrace: {lost} events lost (buffers overwritten)\n" if lost else "")
        self.closed = True


class Recorder:
    """One process's recording: instance -> background thread -> TraceWriter."""

    def __init__(self, inst: Instance, path: str, header: dict[str, Any],
                 interval: float = 0.1, writer: Any = None) -> None:
        self.inst = inst
        self.path = path
        self.interval = interval
        self.header = header
        # The sink: a TraceWriter (record), or a TextSink (run: the trace as text).
        self.writer = writer if writer is not None else TraceWriter(path, header)
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.finished = False
        self.lost_seen: dict[int, int] = {}
        self.thread: threading.Thread | None = None
        self.writer_tid = -1

    def start(self) -> None:
        started = threading.Event()

        def loop() -> None:
            # The writer's own calls (Event.wait...) are not the program's.
            sys.setprofile(None)  # 3.11's hook is per thread: the writer pays none of it
            self.writer_tid = native_id()
            mute(self.inst, self.writer_tid)
            started.set()
            wait = self.interval
            while not self.stop_event.wait(wait):
                try:
                    # A busy program gets polled sooner, before its buffers overwrite.
                    wait = self.interval / 10 if self.poll() > 1000 else self.interval
                except Exception as exc:  # a full disk must not kill the program
                    print(f"fntrace record: {self.path}: {exc}", file=sys.stderr)
                    return

        thread = threading.Thread(target=loop, name="fntrace-record", daemon=True)
        try:
            thread.start()
        except RuntimeError:
            # A Python that cannot start threads (WebAssembly builds): no periodic
            # writer, the buffers drain to the file when one fills and at finish().
            self.thread = None
        else:
            self.thread = thread
            started.wait(5)
        # No loss: a thread whose buffer fills before the writer's next turn drains
        # the buffers to the file itself (it waits for the file, it never drops).
        self.inst.rb.set_on_full(self.poll)

    def poll(self) -> int:
        """Write what the buffers hold now as one chunk; returns the events written."""
        with self.lock:
            if self.writer.closed:
                return 0
            inst = self.inst
            bufs = inst.rb.live
            _fix_names(bufs)
            speedups = _accel.speedups
            if speedups is not None and not isinstance(self.writer, TextSink):
                # The same chunk in one pass in C: the buffers consumed and their
                # events encoded without a tuple each (to_wevent only for markers
                # and the events other tracers render as text).
                with bufs.lock:
                    payload, n, tids = speedups.encode_buffers(
                        bufs.buffers(), lambda buf, ev: _other(inst, buf, ev),
                        tracefile.EVENT_CODES)
                if n:
                    self.writer.write_payload(payload, n)
                seen = set(tids)
            else:
                pairs = bufs.consume()
                if isinstance(self.writer, TextSink):
                    return self.writer.write_pairs(inst, pairs)
                n = self.writer.write_events(to_wevent(inst, buf, ev) for buf, ev in pairs)
                seen = {buf.tid for buf, _ in pairs}
            changed = []
            for buf in bufs.buffers():
                lost = buf.overrun + buf.dropped
                if lost != self.lost_seen.get(buf.tid, 0):
                    self.lost_seen[buf.tid] = lost
                    if buf.tid not in seen:
                        changed.append((buf.tid, buf.name, buf.cpu, buf.thread_flags, lost))
            if changed:
                self.writer.write_lost(changed)
            return n

    def finish(self, unregister: bool = True) -> None:
        """Stop tracing, write the last batch and the footer (once; safe from anywhere).

        ``unregister=False`` (from a signal handler, which may have interrupted
        the core itself) only turns tracing off instead of unregistering.
        """
        with self.lock:
            if self.finished:
                return
            self.finished = True
            self.stop_event.set()
            self.inst.rb.set_on_full(None)
            self.inst.tracing_on = False
            if unregister:
                try:
                    self.inst.close()
                except Exception:  # stopping must not keep the file from being finished
                    pass
            try:
                self.poll()
                self.writer.finish(self.inst.rb.clock(), {"lost": dict(self.lost_seen)})
            except OSError as exc:
                print(f"fntrace record: {self.path}: {exc}", file=sys.stderr)
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)

    def abandon(self) -> None:
        """In a forked child not being followed: write nothing, trace nothing."""
        self.finished = True
        self.inst.tracing_on = False
        self.writer.closed = True  # the parent owns the file; never close its fd here

    def restart_in_child(self, path: str, header: dict[str, Any]) -> None:
        """In a followed forked child: a fresh buffer, file and writer thread."""
        inst = self.inst
        rb = inst.rb
        rb.live = BufferSet(rb.size_kb, rb.overwrite, rb.on_full)  # the parent's are its own
        unmute(inst, self.writer_tid)
        self.writer.closed = True
        self.path = path
        self.writer = TraceWriter(path, header)
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.finished = False
        self.lost_seen = {}
        self.start()
