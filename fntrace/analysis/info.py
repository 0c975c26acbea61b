"""``fntrace info FILE``: what a trace file holds, without printing the trace."""

from __future__ import annotations

import datetime
import os
from collections import Counter

from fntrace.formats.tracefile import FLUSH_INTERVAL, TraceFile, exit_status

__all__ = ["describe", "info"]


def _when(ns: int) -> str:
    stamp = datetime.datetime.fromtimestamp(ns / 1e9).astimezone()
    return stamp.isoformat(timespec="milliseconds")


def describe(files: list[TraceFile]) -> str:
    """The info text for a file and its followed children."""
    first = files[0]
    head = first.header
    counts: Counter[tuple[int, int]] = Counter()
    last_ts = first.start_ts
    last_by_file: dict[str, int] = {}
    for tf in files:
        for rec in tf.records():
            counts[(rec.pid, rec.tid)] += 1
            last_ts = max(last_ts, rec.ts)
            last_by_file[tf.path] = max(last_by_file.get(tf.path, rec.ts), rec.ts)
    ends = [tf.end_ts for tf in files if tf.end_ts is not None]
    end = max([*ends, last_ts])
    lost_total = sum(sum(tf.lost.values()) for tf in files)
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
    for tf in files:
        h = tf.header
        lines.append(f"  pid {h.get('pid')} (parent {h.get('ppid')}): "
                     f"{len(tf.threads)} threads, {tf.events} events, "
                     f"{sum(tf.lost.values())} lost  {tf.path}")
    nthreads = sum(len(tf.threads) for tf in files)
    lines.append(f"threads:     {nthreads}")
    for tf in files:
        for key, t in sorted(tf.threads.items(), key=lambda kv: (kv[0][0], kv[1].cpu)):
            lines.append(f"  {t.name}-{t.tid} [{t.cpu:03d}] pid {t.pid}: "
                         f"{counts[key]} events, {tf.lost.get(key, 0)} lost")
    lines.append(f"events:      {sum(counts.values())}")
    lines.append(f"lost:        {lost_total}")
    problems = [f"{tf.path}: {p}" for tf in files for p in tf.problems]
    lines.append("status:      " + ("complete" if not problems else "truncated or corrupt"))
    lines.extend(f"  {p}" for p in problems)
    lines.extend(_cuts(files, last_by_file))
    return "\n".join(lines) + "\n"


def _cuts(files: list[TraceFile], last_by_file: dict[str, int]) -> list[str]:
    """Where each file without its footer stops, and what that can have cost.

    The recorder writes the buffers to the file every FLUSH_INTERVAL seconds
    (and sooner when they fill), so a process killed outright (SIGKILL, a
    crash) or a file that could not grow (a full disk) loses what came after
    the last whole chunk: for a kill, at most the last FLUSH_INTERVAL.
    """
    out = []
    for tf in files:
        if tf.footer is not None:
            continue
        last = last_by_file.get(tf.path)
        when = (f"the last event read is at +{(last - tf.start_ts) / 1e9:.6f} s"
                if last is not None else "no event was read")
        out.append(f"  {tf.path}: cut at byte {os.path.getsize(tf.path)}, {tf.events} events "
                   f"kept; {when}; what the process did after it is lost (a killed process "
                   f"loses at most its last {FLUSH_INTERVAL:g} s: the recorder's flush interval)")
    return out


def info(file: str) -> int:
    """What ``fntrace info FILE`` prints; the exit status."""
    from fntrace.analysis.reading import open_files

    files = open_files(file, "info")
    print(describe(files), end="")
    return exit_status(files)
