"""A slice of a recording: a time window and a set of threads, for every reader.

A huge trace is often wanted for a few hundred milliseconds of one thread
(to load a viewer, to read a report of that moment).  ``--from/--to`` are
times relative to the recording's start; ``--thread`` is a tid or a thread
name.  The readers differ in what a call crossing a boundary becomes:

- ``replay`` shows the events inside the window, as they were recorded (an
  exit whose entry came before ``--from`` is shown bare, as the kernel shows
  the exits of calls that were running when tracing started);
- ``report`` and ``dump`` read the window as a recording of that interval
  would be: a call already running at ``--from`` has no entry in it and its
  exit's duration is cut at ``--from`` (so it begins there and nests inside
  its callers); a call still running at ``--to`` ends there, as if it
  returned at ``--to``.  Each call's time is its time inside the window, so
  begins and ends nest in the exports.

Chunks carry no time range in their header, so the file is still read up to
``--to``; nothing after ``--to`` is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fntrace.formats.tracefile import Record, TraceFile

__all__ = ["Selection", "SelectionError", "narrow", "thread_keys"]

Key = tuple[int, int]


class SelectionError(ValueError):
    """A --thread that names no thread of the recording (one line, for the user)."""


@dataclass(frozen=True)
class Selection:
    """What the options select: ns from the recording's start (None: its start, its
    end) and threads (tids or names, as typed; empty: every thread)."""

    start: int | None = None
    end: int | None = None
    threads: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return self.start is None and self.end is None and not self.threads


def thread_keys(files: list[TraceFile], wanted: tuple[str, ...]) -> set[Key]:
    """The (pid, tid) of each thread named (by tid or by name) in ``wanted``;
    SelectionError naming one that is no thread of the files."""
    known = {key: info.name for tf in files for key, info in tf.threads.items()}
    out: set[Key] = set()
    for want in wanted:
        found = {key for key, name in known.items()
                 if name == want or (want.isdigit() and key[1] == int(want))}
        if not found:
            listed = ", ".join(f"{name}-{tid}" for (_, tid), name in sorted(known.items()))
            raise SelectionError(f"--thread {want}: no such thread (threads: {listed or 'none'})")
        out |= found
    return out


def narrow(records: Iterable[Record], files: list[TraceFile],
           sel: Selection) -> Iterator[Record]:
    """The records of ``sel`` as ``report`` and ``dump`` read them (module docstring):
    ``records`` in time order, their files' start as time zero."""
    if sel.everything:
        yield from records
        return
    keys = thread_keys(files, sel.threads) if sel.threads else None
    zero = min(tf.start_ts for tf in files) if files else 0
    start = None if sel.start is None else zero + sel.start
    end = None if sel.end is None else zero + sel.end
    # Per thread, the entries not exited yet, by depth (pairing as segments.walk pairs).
    frames: dict[Key, dict[int, Record]] = {}
    for rec in records:
        key = (rec.pid, rec.tid)
        if keys is not None and key not in keys:
            continue
        if end is not None and rec.ts > end:
            yield from _ends(frames, start, end)
            return
        if rec.kind == "entry":
            open_ = frames.setdefault(key, {})
            for d in [d for d in open_ if d >= rec.depth]:
                del open_[d]
            open_[rec.depth] = rec
        elif rec.kind == "exit":
            open_ = frames.setdefault(key, {})
            entry = open_.get(rec.depth)
            if entry is not None and entry.func == rec.func:
                for d in [d for d in open_ if d >= rec.depth]:
                    del open_[d]
        if start is not None and rec.ts < start:
            continue
        if (start is not None and rec.kind == "exit" and rec.duration is not None
                and rec.ts - rec.duration < start):
            rec = dataclasses.replace(rec, duration=rec.ts - start)
        yield rec


def _ends(frames: dict[Key, dict[int, Record]], start: int | None,
          end: int) -> Iterator[Record]:
    """The calls still running at ``end``, ended there, innermost first per thread."""
    for key in sorted(frames):
        open_ = frames[key]
        for d in sorted(open_, reverse=True):
            entry = open_[d]
            begin = entry.ts if start is None else max(entry.ts, start)
            yield dataclasses.replace(entry, kind="exit", ts=end, duration=end - begin,
                                      event="return", args=None, value=None)
