"""The exports ``fntrace dump`` writes besides Chrome JSON and folded stacks.

One entry point for the formats made for other viewers (speedscope, Perfetto's
protobuf, pstats), so the command line (and anything embedding fntrace) names
output paths and nothing else: ``-`` is standard output, as for ``--chrome``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from fntrace.analysis.perfetto import write_perfetto
from fntrace.analysis.pstats import write_pstats
from fntrace.analysis.speedscope import write_speedscope
from fntrace.analysis.traceset import TraceSet

__all__ = ["write_exports"]


@contextmanager
def _binary(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with open(path, "wb") as f:
        yield f


@contextmanager
def _text(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with open(path, "w", encoding="utf-8") as f:
        yield f


def write_exports(traces: TraceSet, speedscope: str | None = None,
                  perfetto: str | None = None, pstats: str | None = None) -> None:
    """Write each format asked for (a path, or ``-`` for stdout) from ``traces``.

    OSError when an output cannot be written; what was written before stays.
    """
    processes = traces.process_names()
    threads = traces.thread_names()
    if speedscope:
        name = traces.files[0].path if traces.files else "fntrace"
        with _text(speedscope) as out:
            write_speedscope(traces.records(), out, processes, threads, name=name)
    if perfetto:
        argv = {f.pid: traces.argv(f.pid) for f in traces.files}
        with _binary(perfetto) as out:
            write_perfetto(traces.records(), out, processes, threads, argv)
    if pstats:
        with _binary(pstats) as out:
            write_pstats(traces.records(), out)
