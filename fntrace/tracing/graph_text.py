"""function_graph's text: calls as nested blocks, rendered from events alone.

The layout is the kernel's trace_functions_graph.c (the forms are listed in
fntrace/tracing/tracers/function_graph.py).  Rendering needs no tracer and no
instance: the events, the options (``funcgraph-*``) and the number of threads
(the CPU column's width), so ``fntrace replay`` renders a file exactly as the
live ``trace`` file renders the ring buffer.

It streams: an entry is written as a leaf ``f();`` when its own thread's next
event is its own exit, so a line waits only until its thread's next event
arrives (lines of other threads queue behind it, in order); nothing else is
held back, and the first line comes out before the last event is read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping

from fntrace.core.events import ENTRY, EXIT, MARKER, TASK
from fntrace.core.flags import Event
from fntrace.tracing.coro_time import CoroutineClock, split_text
from fntrace.tracing.tasks import TaskTable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object  # structural types are the type checker's: at run time, plain classes

__all__ = ["SRCLINE", "UNKNOWN_TYPE", "GraphText", "Thread", "abstime_text", "duration_text",
           "header", "overhead_mark", "srcline_comment"]

_E = ENTRY.at
_X = EXIT.at
_M = MARKER.at
_ENTRY = ENTRY.tag
_EXIT = EXIT.tag
_MARKER = MARKER.tag
_TASK = TASK.tag
_TASK_INFO = TASK.at.info
_UNWIND = Event.UNWIND
_YIELD = Event.YIELD
_MARKS = ((1_000_000_000, "$"), (100_000_000, "@"), (10_000_000, "*"), (1_000_000, "#"),
          (100_000, "!"), (10_000, "+"))
_FILL = "              |  "  # the duration column of an entry or comment line
#: The exception of an unwinding frame, where the interpreter hides it (3.11's
#: profile events): said, rather than an exit that looks complete.
UNKNOWN_TYPE = "(type unknown on 3.11)"

if TYPE_CHECKING:
    Ev = tuple[Any, ...]

#: The rendering option (not an instance option: ``fntrace replay --srcline``
#: sets it in its rendering context) that ends each line naming a called
#: function with its source location, ``/* FILE:LINE */``.
SRCLINE = "srcline"


def srcline_comment(fn: Any) -> str:
    """`` /* FILE:LINE */`` of a function (a Function or a replayed stand-in:
    ``filename``, ``lineno``), or '' where it is unknown (a version-1 file)."""
    file = getattr(fn, "filename", None)
    line = getattr(fn, "lineno", 0)
    return f" /* {file}:{line} */" if file and line else ""


class Thread(Protocol):
    """What a line's prefix reads of the thread that wrote the event (a ThreadBuffer)."""

    name: str
    tid: int
    cpu: int
    thread_flags: str


#: Renders one event of another kind (a probe, a stack...) in the graph's stream.
if TYPE_CHECKING:
    Other = Callable[[Any, Ev], str]


def overhead_mark(ns: int) -> str:
    """The kernel's trace_find_mark: one character for a duration."""
    for limit, mark in _MARKS:
        if ns > limit:
            return mark
    return " "


def duration_text(ns: int) -> str:
    """``1.382 us    ``: µs with at most 7 digits, then padding to the kernel's width."""
    text = str(ns // 1000)
    if len(text) < 7:
        text += "." + f"{ns % 1000:03d}"[: 7 - len(text)]
    return f"{text} us " + " " * (8 - len(text))


def abstime_text(ts: int) -> str:
    """The funcgraph-abstime column: ``SECS.USECS |  `` of a ns timestamp."""
    secs, ns = divmod(ts, 1_000_000_000)
    return f"{secs:5d}.{ns // 1000:06d} |  "


def header(options: Mapping[str, int]) -> str:
    """The two column-title lines, as print_graph_headers_flags writes them."""
    first, second = "#", "#"
    if options["funcgraph-abstime"]:
        first += "     TIME       "
        second += "      |          "
    first += " CPU"
    second += " |  "
    if options["funcgraph-proc"]:
        first += "  TASK/PID       "
        second += "   |    |        "
    if options.get("funcgraph-task", 0):
        first += "  ASYNCIO TASK   "
        second += "      |          "
    if options["funcgraph-duration"]:
        first += "  DURATION   "
        second += "   |   |      "
    return f"{first}               FUNCTION CALLS\n{second}               |   |   |   |\n"


class GraphText:
    """One read's worth of rendering state: per-thread open blocks and level."""

    def __init__(self, options: Mapping[str, int], nthreads: int, other: Other,
                 tasks: TaskTable | None = None) -> None:
        self.abstime = options["funcgraph-abstime"]
        self.proc = options["funcgraph-proc"]
        self.task = options.get("funcgraph-task", 0)
        # The asyncio task notes (fntrace/tracing/tasks.py) read so far: each
        # thread's running task.  A reader that read the whole trace first passes
        # its table, so a task named after its first events shows its name there.
        self.tasks = tasks if tasks is not None else TaskTable()
        self.duration = options["funcgraph-duration"]
        self.overhead = options["funcgraph-overhead"]
        self.tail = options["funcgraph-tail"]
        self.srcline = bool(options.get(SRCLINE, 0))
        self.cpu_width = len(str(max(nthreads - 1, 0)))
        self.other = other
        self.open: dict[Any, list[tuple[Any, int]]] = {}
        self.level: dict[Any, int] = {}
        # Each coroutine call's wall and running time, told by its task: only
        # while the trace has task notes (coro_time.py says why).
        self.clock = CoroutineClock()

    def lines(self, events: Iterable[tuple[Any, Ev]]) -> Iterator[tuple[Any, str]]:
        """(thread, text) of (thread, event) pairs, in their order, as each text
        becomes final."""
        # [thread, text or None while its entry waits for its thread's next event]
        queue: deque[list[Any]] = deque()
        # thread -> (its entry's place in the queue, the entry) while a leaf is possible
        waiting: dict[Any, tuple[list[Any], Ev, int]] = {}
        tasks = self.tasks
        for buf, ev in events:
            kind = ev[2]
            if kind == _TASK:  # no line; an entry waiting for its exit waits on
                tasks.note(buf, ev[_TASK_INFO])
                continue
            held = waiting.pop(buf, None)
            if held is not None:
                place, entry, task = held
                if (kind == _EXIT and ev[_X.fn] is entry[_E.fn]
                        and ev[_X.depth] == entry[_E.depth]):
                    place[1] = self.leaf(buf, entry, ev, task)
                    while queue and queue[0][1] is not None:
                        first = queue.popleft()
                        yield first[0], first[1]
                    continue
                place[1] = self.enter(buf, entry, task)
            if kind == _ENTRY:
                place = [buf, None]
                queue.append(place)
                task = tasks.running(buf)
                waiting[buf] = (place, ev, task)
                if tasks.tasks:
                    self.clock.entry((buf, task, ev[_E.depth], ev[_E.fn]), ev[_E.event],
                                     ev[_E.ts])
                continue
            if kind == _EXIT:
                text = self.close(buf, ev)
            elif kind == _MARKER:
                text = self.comment(buf, ev)
            else:
                text = self.other(buf, ev)
            if queue:
                queue.append([buf, text])
                while queue and queue[0][1] is not None:
                    first = queue.popleft()
                    yield first[0], first[1]
            else:
                yield buf, text
        for buf, (place, entry, task) in waiting.items():
            place[1] = self.enter(buf, entry, task)
        for place in queue:
            yield place[0], place[1]

    def prefix(self, buf: Thread, ts: int, task: int | None = None) -> str:
        """The columns before the duration; ``task``: the asyncio task the event
        ran in (None: the thread's running task now)."""
        out = abstime_text(ts) if self.abstime else ""
        out += f" {buf.cpu:{self.cpu_width}d}) "
        if self.proc:
            out += f"{buf.name[-16:]}-{buf.tid}".center(14) + " | "
        if self.task:
            n = self.tasks.running(buf) if task is None else task
            out += self.tasks.label(n)[-16:].center(14) + " | "
        return out

    def column(self, ns: int | None) -> str:
        if not self.duration:
            return ""
        if ns is None:
            return _FILL
        mark = overhead_mark(ns) if self.overhead else " "
        return f"{mark} {duration_text(ns)}|  "

    def enter(self, buf: Thread, ev: Ev, task: int | None = None) -> str:
        fn = ev[_E.fn]
        depth = ev[_E.depth]
        self.open.setdefault(buf, []).append((fn, depth))
        self.level[buf] = depth + 1
        where = srcline_comment(fn) if self.srcline else ""
        return (f"{self.prefix(buf, ev[_E.ts], task)}{self.column(None)}{'  ' * depth}"
                f"{_call(fn, ev[_E.args])} {{{where}\n")

    def leaf(self, buf: Thread, ev: Ev, ex: Ev, task: int | None = None) -> str:
        depth = ev[_E.depth]
        self.level[buf] = depth
        notes = _joined(_notes(ex[_X.event], ex[_X.value]), self.split(buf, ex))
        comment = f" /* {notes} */" if notes else ""
        if self.srcline:
            comment += srcline_comment(ev[_E.fn])
        return (f"{self.prefix(buf, ev[_E.ts], task)}{self.column(ex[_X.duration])}{'  ' * depth}"
                f"{_call(ev[_E.fn], ev[_E.args])};{comment}\n")

    def close(self, buf: Thread, ev: Ev) -> str:
        fn = ev[_X.fn]
        depth = ev[_X.depth]
        opened = self.open.get(buf)
        matched = False
        while opened and opened[-1][1] >= depth:
            ofn, odepth = opened.pop()
            if odepth == depth:
                matched = ofn is fn
                break
        self.level[buf] = depth
        notes = _joined(_notes(ev[_X.event], ev[_X.value]), self.split(buf, ev))
        if notes or self.tail or not matched:
            text = f"}} /* {fn.name} {notes} */" if notes else f"}} /* {fn.name} */"
        else:
            text = "}"
        return (f"{self.prefix(buf, ev[_X.ts])}{self.column(ev[_X.duration])}{'  ' * depth}"
                f"{text}\n")

    def split(self, buf: Thread, ex: Ev) -> str:
        """``12.4 ms (run 1.10 ms)`` at the end of a coroutine call that suspended
        (its wall time, then the time it ran); '' for any other exit."""
        if not self.tasks.tasks:
            return ""
        key = (buf, self.tasks.running(buf), ex[_X.depth], ex[_X.fn])
        done = self.clock.exit(key, ex[_X.event], ex[_X.ts], ex[_X.duration] or 0)
        if done is None or done[2] < 2:
            return ""
        return split_text(done[0], done[1])

    def comment(self, buf: Thread, ev: Ev) -> str:
        level = self.level.get(buf, 0)
        return (f"{self.prefix(buf, ev[_M.ts])}{self.column(None)}{'  ' * level}"
                f"/* {ev[_M.text]} */\n")


def _joined(notes: str, split: str) -> str:
    return f"{notes}; {split}" if notes and split else notes or split


def _call(fn: Any, args: str | None) -> str:
    return f"{fn.name}()" if args is None else f"{fn.name}({args})"


def _notes(event: str, value: str | None) -> str:
    """The comment of an exit, without the function name ('' for a plain return)."""
    if event == _UNWIND:
        return f"raised {value}" if value else f"raised {UNKNOWN_TYPE}"
    if event == _YIELD:
        return "yield" if value is None else f"yield ret={value}"
    return "" if value is None else f"ret={value}"
