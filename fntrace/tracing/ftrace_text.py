"""The kernel's text formats for the trace and trace_pipe files.

Events in the ring buffer are tuples ``(ts, size, kind, *payload)``; this
module renders them.  Each tracer module registers a renderer for the kinds
it writes (``RENDERERS[kind] = fn``) and the header of its trace file
(``HEADERS[tracer_name] = fn``), as each kernel tracer has its print_line.

The common line prefix is the kernel's ``TASK-PID [CPU] FLAGS TIMESTAMP:``
with TASK the thread name, PID the thread's native id and CPU a stable small
index per thread (the order in which threads first wrote).  FLAGS, 5
characters, replace the kernel's irq/preempt flags (meaningless here):

====  =========================================================
 1    ``M`` main thread, ``.`` other
 2    ``d`` daemon thread, ``.`` not
 3    ``g`` generator, ``c`` coroutine, ``a`` async generator, ``.`` plain function
 4    ``r`` resumed after a yield/await, ``t`` resumed by throw(), ``.`` a call
 5    ``.`` reserved
====  =========================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from fntrace.core.flags import Event

if TYPE_CHECKING:
    from fntrace.tracing.instance import Instance
    from fntrace.tracing.ring_buffer import BufferSet, ThreadBuffer

__all__ = ["HEADERS", "MARKER", "RENDERERS", "STACK", "code_flag", "prefix", "render_events",
           "render_trace"]

MARKER = "M"   # (ts, size, "M", text)
STACK = "K"    # (ts, size, "K", (frame line, ...))

Renderer = Callable[["Instance", "ThreadBuffer", tuple[Any, ...]], str]
RENDERERS: dict[str, Renderer] = {}
HEADERS: dict[str, Callable[[Instance], str]] = {}

_RESUME_FLAG = {Event.START: ".", Event.RESUME: "r", Event.THROW: "t"}


def code_flag(flags: int) -> str:
    if flags & 0x200:
        return "a"
    if flags & 0x80:
        return "c"
    if flags & 0x20:
        return "g"
    return "."


def prefix(buf: ThreadBuffer, ts: int, code_flags: int = 0, event: str = Event.START) -> str:
    flags = f"{buf.thread_flags}{code_flag(code_flags)}{_RESUME_FLAG.get(event, '.')}."
    return f"{buf.name[-16:]:>16}-{buf.tid:<7} [{buf.cpu:03d}] {flags} {ts / 1e9:12.6f}: "


def _marker(inst: Instance, buf: ThreadBuffer, ev: tuple[Any, ...]) -> str:
    return f"{prefix(buf, ev[0])}tracing_mark_write: {ev[3]}\n"


def _stack(inst: Instance, buf: ThreadBuffer, ev: tuple[Any, ...]) -> str:
    head = f"{prefix(buf, ev[0])}<stack trace>\n"
    return head + "".join(f" => {line}\n" for line in ev[3])


RENDERERS[MARKER] = _marker
RENDERERS[STACK] = _stack


def function_header(inst: Instance, bufs: BufferSet) -> str:
    entries, written = bufs.totals()
    name = inst.tracer.name if inst.tracer is not None else "nop"
    return (f"# tracer: {name}\n#\n"
            f"# entries-in-buffer/entries-written: {entries}/{written}   "
            f"#P:{len(bufs.by_tid)}\n#\n"
            "#                                _-----=> main thread\n"
            "#                               / _----=> daemon thread\n"
            "#                              | / _---=> generator/coroutine/async gen\n"
            "#                              || / _--=> resumed / thrown into\n"
            "#                              ||| / _-=> reserved\n"
            "#                              |||| /\n"
            "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
            "#              | |         |   |||||     |         |\n")


def render_events(inst: Instance, events: Iterable[tuple[ThreadBuffer, tuple[Any, ...]]],
                  ) -> Iterable[str]:
    """Lines for (buffer, event) pairs, in the order given."""
    tracer = inst.tracer
    custom = getattr(tracer, "render_events", None)
    if custom is not None:
        yield from custom(events)
        return
    for buf, ev in events:
        fn = RENDERERS.get(ev[2])
        if fn is not None:
            yield fn(inst, buf, ev)


def render_trace(inst: Instance, bufs: BufferSet) -> str:
    """The whole ``trace`` file: header, then every event in time order."""
    name = inst.tracer.name if inst.tracer is not None else "nop"
    header = HEADERS.get(name)
    head = header(inst) if header is not None else function_header(inst, bufs)
    if header is not None:
        entries, written = bufs.totals()
        head = (f"# tracer: {name}\n#\n# entries-in-buffer/entries-written: "
                f"{entries}/{written}   #P:{len(bufs.by_tid)}\n#\n") + head
    return head + "".join(render_events(inst, bufs.merged()))
