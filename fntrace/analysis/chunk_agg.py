"""The C aggregator (fntrace/csrc/aggregate.c) fed a recording's encoded chunks.

``report`` and ``dump --folded`` keep a few numbers per function or per stack
of millions of events; made from Records in Python each event costs
microseconds, made in C from the chunks as stored it costs tens of
nanoseconds.  The Python path (report.build, dump.folded_stacks over
segments.walk) stays the reference and the fallback: this gives None whenever
the C path cannot give exactly what it would.
"""

from __future__ import annotations

from typing import Any

from fntrace.core import accel
from fntrace.formats.tracefile import MAX_DEPTH, Chunk, TraceFile

__all__ = ["aggregator"]


def aggregator(files: list[TraceFile], per_thread: bool, folded: bool = False) -> Any:
    """A ReportAggregator (``folded``: making dump --folded's stacks) holding every
    event of ``files``, or None: the pure path, or a chunk the C decoder leaves to
    the Python one (a corrupt chunk, a number over 64 bits).

    The chunks go in in the order of their first timestamps and the aggregator
    walks what precedes the next one's before it is added, so it holds only the
    rows of chunks whose times overlap; the walk's order is the reader API's
    (one stable sort of every record by time: files, then chunks, in order)."""
    speedups = accel.speedups
    if speedups is None or not hasattr(speedups, "ReportAggregator"):
        return None
    agg = speedups.ReportAggregator(per_thread, MAX_DEPTH, folded)
    placed: list[tuple[TraceFile, Chunk]] = []
    starts: list[tuple[int, int]] = []
    for tf in files:
        for chunk in tf.chunks():
            if not isinstance(chunk, Chunk):
                return None
            first = tf.chunk_span(chunk)[0]
            if first is not None:
                starts.append((first, len(placed)))
            placed.append((tf, chunk))
    starts.sort()
    for k, (_, order) in enumerate(starts):
        tf, chunk = placed[order]
        if not agg.add(chunk.data, chunk.pos, chunk.count, len(chunk.strings),
                       [row[0] for row in chunk.funcs], [row[0] for row in chunk.threads],
                       tf.pid, order, chunk.version):
            return None
        if k + 1 < len(starts):
            agg.advance(*starts[k + 1])
    return agg
