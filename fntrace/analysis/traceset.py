"""The recordings an export reads: files opened once, with their process and thread names.

Every exporter (speedscope, Perfetto, pstats, the viewer) needs the same three
things from a set of trace files: the records in time order, a display name
per process and per thread, and the problems the reader found (said once, on
stderr, before any output is written).  Gathering them here keeps the names a
person sees the same in every format.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

from fntrace.analysis.window import Selection, narrow
from fntrace.formats.tracefile import Record, TraceFile, exit_status, merged_records, open_traces

__all__ = ["TraceSet", "open_set"]


@dataclass
class TraceSet:
    """Trace files read together (a recording and its --follow children, or several)."""

    files: list[TraceFile]
    #: The slice asked for (--from/--to/--thread); everything by default.
    selection: Selection = field(default_factory=Selection)

    def records(self) -> Iterator[Record]:
        """Every record of every file (of the selection), in time order (the files
        share one clock)."""
        return narrow(merged_records(self.files), self.files, self.selection)

    def process_names(self) -> dict[int, str]:
        """pid -> ``program (pid N)``."""
        out: dict[int, str] = {}
        for f in self.files:
            prog = str(f.header.get("program") or "python")
            out[f.pid] = f"{prog} (pid {f.pid})"
        return out

    def thread_names(self) -> dict[tuple[int, int], str]:
        """(pid, tid) -> the thread's name as recorded (``MainThread``)."""
        out: dict[tuple[int, int], str] = {}
        for f in self.files:
            for key, info in f.threads.items():
                out[key] = info.name
        return out

    def argv(self, pid: int) -> list[str]:
        for f in self.files:
            if f.pid == pid:
                argv = f.header.get("argv")
                return list(argv) if isinstance(argv, list) else []
        return []

    @property
    def tracer(self) -> str:
        """The tracer of the recording (``function`` has calls only, no durations)."""
        tracers = {f.header.get("tracer") for f in self.files}
        return "function_graph" if "function_graph" in tracers else str(
            next(iter(tracers - {None}), "function_graph"))

    @property
    def exit_status(self) -> int:
        return exit_status(self.files)


def open_set(paths: Sequence[str], warn: IO[str] | None = None) -> TraceSet:
    """Open each path with the files of its --follow children; say what is wrong.

    Raises ``fntrace.formats.tracefile.TraceFileError`` for a file that is no
    trace at all; a damaged one is read as far as it goes, its problems written
    to ``warn`` (stderr by default), one line each.
    """
    stream = sys.stderr if warn is None else warn
    files: list[TraceFile] = []
    for path in paths:
        files.extend(open_traces(path))
    for f in files:
        for problem in f.problems:
            print(f"fntrace: {f.path}: {problem}", file=stream)
    return TraceSet(files)
