"""The kernel's text formats for the trace and trace_pipe files, by event kind.

Events are the ring tuples of fntrace/core/events.py.  Each kind of the schema
has one renderer here, a function of (thread, event, context) where the
context is the options and the number of threads: no instance and no tracer,
so a recorded file renders exactly as the live buffer does.  The table
``RENDERERS`` names every kind explicitly (a test checks none is missing), as
``HEADERS`` names the tracers with a header of their own.  function_graph
renders a stream, not single events (a call whose exit follows its entry is
one leaf line): fntrace/tracing/graph_text.py.

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

from collections.abc import Callable, Iterable, Iterator, Mapping

from fntrace.core import events
from fntrace.core.flags import Event
from fntrace.tracing.graph_text import SRCLINE, GraphText, Thread, srcline_comment
from fntrace.tracing.graph_text import header as graph_header
from fntrace.tracing.tasks import TaskTable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.tracing.instance import Instance
    from fntrace.tracing.ring_buffer import BufferSet

__all__ = ["HEADERS", "MARKER", "RENDERERS", "STACK", "Context", "code_flag", "context", "lines",
           "prefix", "render_events", "render_one", "render_trace", "thread_lines",
           "trace_header"]

MARKER = events.MARKER.tag
STACK = events.STACK.tag

if TYPE_CHECKING:
    Ev = tuple[Any, ...]


class Context:
    """What rendering reads besides the events: the options, and the number of
    threads (function_graph's CPU column is as wide as the largest index).

    A plain slotted class, not a dataclass: a recording makes one before the
    program starts, and dataclasses (with inspect) would cost its start-up more
    than all the rendering code."""

    __slots__ = ("nthreads", "options", "tasks")

    def __init__(self, options: Mapping[str, int], nthreads: int,
                 tasks: TaskTable | None = None) -> None:
        self.options = options
        self.nthreads = nthreads
        #: The asyncio tasks a reader already knows (names read ahead), or None.
        self.tasks = tasks


if TYPE_CHECKING:
    Renderer = Callable[[Thread, Ev, Context], str]

_RESUME_FLAG = {Event.START: ".", Event.RESUME: "r", Event.THROW: "t"}


def code_flag(flags: int) -> str:
    if flags & 0x200:
        return "a"
    if flags & 0x80:
        return "c"
    if flags & 0x20:
        return "g"
    return "."


def prefix(buf: Thread, ts: int, code_flags: int = 0, event: str = Event.START) -> str:
    flags = f"{buf.thread_flags}{code_flag(code_flags)}{_RESUME_FLAG.get(event, '.')}."
    return f"{buf.name[-16:]:>16}-{buf.tid:<7} [{buf.cpu:03d}] {flags} {ts / 1e9:12.6f}: "


# -- one renderer per kind ---------------------------------------------------------
_C = events.CALL.at
_MK = events.MARKER.at
_K = events.STACK.at
_J = events.FAIL.at
_P = events.PROBE.at
_T = events.TEXT.at


def _call(buf: Thread, ev: Ev, ctx: Context) -> str:
    """``func <-parent``; ``func(args)`` with func-args; no parent with print-parent 0."""
    ip = ev[_C.ip]
    args = ev[_C.args]
    parent = ev[_C.parent]
    name = ip.name if args is None else f"{ip.name}({args})"
    tail = f" <-{parent.name}" if parent is not None and ctx.options["print-parent"] else ""
    if ctx.options.get(SRCLINE, 0):
        tail += srcline_comment(ip)
    return f"{prefix(buf, ev[_C.ts], ip.code.co_flags, ev[_C.event])}{name}{tail}\n"


def _graph_one(buf: Thread, ev: Ev, ctx: Context) -> str:
    """A function_graph entry or exit on its own (another tracer reads a buffer
    function_graph wrote)."""
    return "".join(text for _, text in
                   GraphText(ctx.options, ctx.nthreads, _unknown).lines([(buf, ev)]))


def _marker(buf: Thread, ev: Ev, ctx: Context) -> str:
    return f"{prefix(buf, ev[_MK.ts])}tracing_mark_write: {ev[_MK.text]}\n"


def _stack(buf: Thread, ev: Ev, ctx: Context) -> str:
    head = f"{prefix(buf, ev[_K.ts])}<stack trace>\n"
    return head + "".join(f" => {line}\n" for line in ev[_K.lines])


def _fail(buf: Thread, ev: Ev, ctx: Context) -> str:
    ip = ev[_J.ip]
    return f"{prefix(buf, ev[_J.ts], ip.code.co_flags)}fail_function: {ip.name} {ev[_J.text]}\n"


def _probe(buf: Thread, ev: Ev, ctx: Context) -> str:
    fn = ev[_P.fn]
    text = ev[_P.text]
    tail = f" {text}" if text else ""
    return (f"{prefix(buf, ev[_P.ts], fn.code.co_flags, ev[_P.event])}"
            f"{ev[_P.name]}: ({fn.name}){tail}\n")


def _text(buf: Thread, ev: Ev, ctx: Context) -> str:
    return f"{ev[_T.text]}\n"


def _task(buf: Thread, ev: Ev, ctx: Context) -> str:
    """An asyncio task note is no line: function_graph's task column reads it."""
    return ""


def _unknown(buf: Thread, ev: Ev) -> str:
    return ""


#: Every kind of the schema, by name -> its renderer (tests/test_event_schema.py
#: checks the table covers the schema).
RENDERERS: dict[str, Renderer] = {
    events.CALL.name: _call,
    events.ENTRY.name: _graph_one,
    events.EXIT.name: _graph_one,
    events.MARKER.name: _marker,
    events.STACK.name: _stack,
    events.FAIL.name: _fail,
    events.PROBE.name: _probe,
    events.TEXT.name: _text,
    events.TASK.name: _task,
}
_BY_TAG: dict[str, Renderer] = {k.tag: RENDERERS[k.name] for k in events.KINDS}


def render_one(buf: Thread, ev: Ev, ctx: Context) -> str:
    """One event's text ('' for a tag no kind of the schema has)."""
    fn = _BY_TAG.get(ev[2])
    return fn(buf, ev, ctx) if fn is not None else ""


def lines(tracer: str, pairs: Iterable[tuple[Thread, Ev]], ctx: Context) -> Iterator[str]:
    """The text of (thread, event) pairs in the order given, as ``tracer`` shows
    them, one event's text at a time (the stream is read as it is rendered)."""
    if tracer == "function_graph":
        for _, text in thread_lines(tracer, pairs, ctx):
            yield text
        return
    by_tag = _BY_TAG
    for buf, ev in pairs:
        fn = by_tag.get(ev[2])
        if fn is not None:
            yield fn(buf, ev, ctx)


def thread_lines(tracer: str, pairs: Iterable[tuple[Thread, Ev]], ctx: Context,
                 ) -> Iterator[tuple[Any, str]]:
    """``lines`` with the thread each text was made of (the pid of a replayed
    line is its thread's)."""
    if tracer == "function_graph":
        yield from GraphText(ctx.options, ctx.nthreads,
                             lambda buf, ev: render_one(buf, ev, ctx), ctx.tasks).lines(pairs)
        return
    by_tag = _BY_TAG
    for buf, ev in pairs:
        fn = by_tag.get(ev[2])
        if fn is not None:
            yield buf, fn(buf, ev, ctx)


# -- headers -----------------------------------------------------------------------
def _function_header(options: Mapping[str, int]) -> str:
    return ("#                                _-----=> main thread\n"
            "#                               / _----=> daemon thread\n"
            "#                              | / _---=> generator/coroutine/async gen\n"
            "#                              || / _--=> resumed / thrown into\n"
            "#                              ||| / _-=> reserved\n"
            "#                              |||| /\n"
            "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
            "#              | |         |   |||||     |         |\n")


#: The tracers whose column titles are not the function tracer's.
HEADERS: dict[str, Callable[[Mapping[str, int]], str]] = {"function_graph": graph_header}


def trace_header(tracer: str, options: Mapping[str, int], entries: int, written: int,
                 nbuffers: int) -> str:
    """The ``trace`` file's header: tracer, counts, column titles."""
    titles = HEADERS.get(tracer, _function_header)
    return (f"# tracer: {tracer}\n#\n# entries-in-buffer/entries-written: "
            f"{entries}/{written}   #P:{nbuffers}\n#\n") + titles(options)


# -- an instance's buffers -----------------------------------------------------------
def context(inst: Instance) -> Context:
    return Context(inst.options, len(inst.rb.live.by_tid))


def _tracer(inst: Instance) -> str:
    return inst.tracer.name if inst.tracer is not None else "nop"


def render_events(inst: Instance, pairs: Iterable[tuple[Thread, Ev]]) -> Iterator[str]:
    """Lines for (buffer, event) pairs of ``inst``, in the order given."""
    return lines(_tracer(inst), pairs, context(inst))


def render_trace(inst: Instance, bufs: BufferSet) -> str:
    """The whole ``trace`` file: header, then every event in time order."""
    entries, written = bufs.totals()
    head = trace_header(_tracer(inst), inst.options, entries, written, len(bufs.by_tid))
    return head + "".join(render_events(inst, bufs.merged()))
