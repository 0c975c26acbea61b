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


def aggregator(files: list[TraceFile], per_thread: bool) -> Any:
    """A ReportAggregator holding every event of ``files`` (in the order the reader
    API reads them), or None: the pure path, or a chunk the C decoder leaves to
    the Python one (a corrupt chunk, a number over 64 bits)."""
    speedups = accel.speedups
    if speedups is None or not hasattr(speedups, "ReportAggregator"):
        return None
    agg = speedups.ReportAggregator(per_thread, MAX_DEPTH)
    for tf in files:
        for chunk in tf.chunks():
            if not isinstance(chunk, Chunk) or not agg.add(
                    chunk.data, chunk.pos, chunk.count, len(chunk.strings),
                    [row[0] for row in chunk.funcs], [row[0] for row in chunk.threads],
                    tf.pid):
                return None
    return agg
