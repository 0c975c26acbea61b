"""``fntrace replay``'s function_graph text written in C, a batch of records at a time.

Rendered in Python (fntrace/tracing/graph_text.py) a line costs microseconds,
most of a replay; the C renderer (fntrace/csrc/render_graph.c GraphRenderer)
writes the same text from the Records themselves, a few thousand at a time
into one string.  It is taken for a whole run or not at all, decided before
the first line: on the C path, for function_graph, when the trace has no
asyncio task notes and no task column is asked for (GraphText's task
tracking stays in Python).  What it is not given it does not render: the
caller then renders with GraphText, the reference, whose output it equals
byte for byte (tests/test_render_c.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from fntrace.core import accel
from fntrace.core.events import ENTRY, EXIT, MARKER, TASK
from fntrace.core.flags import Event
from fntrace.formats.tracefile import RECORD_FIELDS, Record
from fntrace.tracing import ftrace_text
from fntrace.tracing.graph_text import SRCLINE, GraphText, Thread, abstime_text

__all__ = ["graph_renderer", "render"]


def graph_renderer(threads: Mapping[tuple[int, int], Thread], options: Mapping[str, int],
                   ctx: ftrace_text.Context, labels: list[str] | None,
                   event_of: Any) -> Any:
    """A GraphRenderer for records of ``threads`` (by (pid, tid), in the CPU
    column's order) with ``options``, each line after its thread's label when
    ``labels`` are given (several processes); None where GraphText is to render
    (the pure path; the asyncio task column).  ``event_of(record)``: the ring
    event of a record of another kind (a call, a text), rendered as the Python
    path renders it."""
    speedups = accel.speedups
    if speedups is None or not hasattr(speedups, "GraphRenderer"):
        return None
    if options.get("funcgraph-task", 0):
        return None
    order = list(threads.values())
    # The columns before the duration are a thread's own but for the time: made
    # by GraphText itself, once per thread.
    plain = dict(options)
    plain["funcgraph-abstime"] = 0
    nthreads = ctx.nthreads

    def other(_buf: Any, _ev: Any) -> str:
        return ""

    heads = [GraphText(plain, nthreads, other).prefix(t, 0) for t in order]
    columns = GraphText(options, nthreads, other)

    def slow(what: str, value: int) -> str:
        """What C's 64 bits cannot hold, formatted by graph_text itself."""
        return abstime_text(value) if what == "time" else columns.column(value)

    def render_other(index: int, rec: Record) -> str:
        return ftrace_text.render_one(order[index], event_of(rec), ctx)

    keys = {key: i for i, key in enumerate(threads)}
    return speedups.GraphRenderer(
        Record, RECORD_FIELDS, (ENTRY.record, EXIT.record, MARKER.record, TASK.name),
        (Event.UNWIND, Event.YIELD), keys, heads, labels,
        bool(options["funcgraph-abstime"]), bool(options["funcgraph-duration"]),
        bool(options["funcgraph-overhead"]), bool(options["funcgraph-tail"]),
        bool(options.get(SRCLINE, 0)), render_other, slow)


def render(renderer: Any, batches: Iterable[list[Record]]) -> Iterator[str]:
    """The text of records in lists (in time order), a list's worth per string."""
    for batch in batches:
        text = renderer.render(batch)
        if text:
            yield text
    text = renderer.finish()
    if text:
        yield text
