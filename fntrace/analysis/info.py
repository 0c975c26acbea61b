"""``fntrace info FILE``: what a trace file holds, without printing the trace."""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from fntrace.analysis.reading import ChunkProgress
from fntrace.formats.tracefile import (
    FLUSH_INTERVAL,
    Finished,
    ThreadInfo,
    TraceFile,
    TraceFileError,
    child_paths,
    open_trace,
    read_finished,
)

__all__ = ["Facts", "describe", "facts_of_file", "facts_of_footer", "info", "read_facts"]

Key = tuple[int, int]


@dataclass
class Facts:
    """What info shows of one file (one process), from its footer or from reading it."""

    path: str
    header: dict[str, Any]
    end_ts: int | None
    threads: dict[Key, ThreadInfo]
    counts: dict[Key, int]
    lost: dict[Key, int]
    problems: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    #: The last event's time, when the events were read (None: not read, or none).
    last_ts: int | None = None

    @property
    def start_ts(self) -> int:
        value = self.header.get("start_ts", 0)
        return value if isinstance(value, int) else 0

    @property
    def events(self) -> int:
        return sum(self.counts.values())


def facts_of_footer(fin: Finished) -> Facts:
    """A finished file's facts from its footer's summary (no event read)."""
    pid = fin.header.get("pid", 0)
    threads = {(pid, r.tid): ThreadInfo(pid, r.tid, r.name, r.cpu, r.flags) for r in fin.threads}
    return Facts(fin.path, fin.header, fin.footer["end_ts"], threads,
                 {(pid, r.tid): r.events for r in fin.threads},
                 {(pid, r.tid): r.lost for r in fin.threads})


def facts_of_file(tf: TraceFile) -> Facts:
    """A file's facts from every record in it (the file was read whole)."""
    counts, last = tf.tally()
    return Facts(tf.path, tf.header, tf.end_ts, dict(tf.threads), counts, dict(tf.lost),
                 list(tf.problems), list(tf.corrupt), last)


def _when(ns: int) -> str:
    stamp = datetime.datetime.fromtimestamp(ns / 1e9).astimezone()
    return stamp.isoformat(timespec="milliseconds")


def describe(files: list[Facts]) -> str:
    """The info text for a file and its followed children."""
    first = files[0]
    head = first.header
    last_ts = max([first.start_ts, *(f.last_ts for f in files if f.last_ts is not None)])
    ends = [f.end_ts for f in files if f.end_ts is not None]
    end = max([*ends, last_ts])
    lost_total = sum(sum(f.lost.values()) for f in files)
    options = head.get("options", {})
    shown = {k: v for k, v in options.items()
             if k not in ("instance_options", "tracer") and v not in (None, False, [])}
    lines = [
        f"file:        {first.path} ({os.path.getsize(first.path)} bytes, "
        f"format version {head.get('version')})",
        f"program:     {head.get('program', '')}",
        f"argv:        {' '.join(head.get('argv', []))}",
        f"python:      {head.get('python', '?')} ({head.get('implementation', '?')})",
        f"host:        {head.get('hostname', '?')}",
        f"started:     {_when(int(head.get('start_realtime_ns', 0)))}",
        f"duration:    {(end - first.start_ts) / 1e9:.6f} s"
        + ("" if first.end_ts is not None else " (up to the last event read)"),
        f"tracer:      {head.get('tracer', '?')} (clock {head.get('clock', '?')})",
        f"options:     {' '.join(f'{k}={v}' for k, v in sorted(shown.items())) or '-'}",
        f"processes:   {len(files)}",
    ]
    for f in files:
        h = f.header
        lines.append(f"  pid {h.get('pid')} (parent {h.get('ppid')}): "
                     f"{len(f.threads)} threads, {f.events} events, "
                     f"{sum(f.lost.values())} lost  {f.path}")
    nthreads = sum(len(f.threads) for f in files)
    lines.append(f"threads:     {nthreads}")
    for f in files:
        for key, t in sorted(f.threads.items(), key=lambda kv: (kv[0][0], kv[1].cpu)):
            lines.append(f"  {t.name}-{t.tid} [{t.cpu:03d}] pid {t.pid}: "
                         f"{f.counts.get(key, 0)} events, {f.lost.get(key, 0)} lost")
    lines.append(f"events:      {sum(f.events for f in files)}")
    lines.append(f"lost:        {lost_total}")
    problems = [f"{f.path}: {p}" for f in files for p in f.problems]
    lines.append("status:      " + ("complete" if not problems else "truncated or corrupt"))
    lines.extend(f"  {p}" for p in problems)
    lines.extend(_cuts(files))
    return "\n".join(lines) + "\n"


def _cuts(files: list[Facts]) -> list[str]:
    """Where each file without its footer stops, and what that can have cost.

    The recorder writes the buffers to the file every FLUSH_INTERVAL seconds
    (and sooner when they fill), so a process killed outright (SIGKILL, a
    crash) or a file that could not grow (a full disk) loses what came after
    the last whole chunk: for a kill, at most the last FLUSH_INTERVAL.
    """
    out = []
    for tf in files:
        if tf.end_ts is not None:
            continue
        last = tf.last_ts
        when = (f"the last event read is at +{(last - tf.start_ts) / 1e9:.6f} s"
                if last is not None else "no event was read")
        out.append(f"  {tf.path}: cut at byte {os.path.getsize(tf.path)}, {tf.events} events "
                   f"kept; {when}; what the process did after it is lost (a killed process "
                   f"loses at most its last {FLUSH_INTERVAL:g} s: the recorder's flush interval)")
    return out


def read_facts(path: str, scan: bool = False) -> Facts:
    """One file's facts: from its footer when it has a summary (and ``scan`` is not
    asked), else by reading it whole, with the percentage read on a terminal.
    Its problems are said on stderr; SystemExit when it is no trace at all."""
    fin = None if scan else read_finished(path)
    if fin is not None:
        return facts_of_footer(fin)
    shown = ChunkProgress(f"fntrace info: reading {path}")
    try:
        tf = open_trace(path, shown.on_chunk)
    except TraceFileError as exc:
        raise SystemExit(f"fntrace info: {exc}") from None
    finally:
        shown.done()
    for problem in tf.problems:
        print(f"fntrace info: warning: {tf.path}: {problem}", file=sys.stderr)
    return facts_of_file(tf)


def info(file: str, scan: bool = False) -> int:
    """What ``fntrace info FILE`` prints; the exit status (1: a corrupt header or footer).

    A cleanly finished file is described from its preamble and footer alone
    (constant time); ``scan`` reads every chunk instead, checking each one.
    """
    files = [read_facts(path, scan) for path in [file, *child_paths(file)]]
    print(describe(files), end="")
    return 1 if any(f.corrupt for f in files) else 0
