"""``fntrace replay FILE``: a recorded trace as the live ``trace`` file shows it.

Records are turned back into ring-buffer events (with light stand-ins for
Function objects) and rendered by the recorded tracer's own renderer through
a throwaway instance carrying the recorded options, so the text is the live
format by construction.  Filters (-F/-N, with set_ftrace_filter semantics:
only matching functions), depth, time range and threads apply at read time.
Several processes (files of ``--follow``) are merged and each line is
labelled with its pid.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fntrace.analysis.reading import open_files, progress
from fntrace.core.filter import Filter, parse
from fntrace.formats.tracefile import (
    Record,
    TraceFile,
    exit_status,
    merged_records,
)
from fntrace.tracing import ftrace_text
from fntrace.tracing.ring_buffer import BufferSet, ThreadBuffer

__all__ = ["ReplayOptions", "render", "replay"]

TEXT = "~"  # (ts, size, "~", rendered line): a line recorded already rendered

def _render_text(inst: Any, buf: ThreadBuffer, ev: tuple[Any, ...]) -> str:
    return str(ev[3]) + "\n"


ftrace_text.RENDERERS[TEXT] = _render_text


@dataclass(frozen=True)
class ReplayOptions:
    """What ``fntrace replay`` is asked for: the file, the read-time selection
    (set_ftrace_filter patterns, nesting depth, seconds from the start, thread
    ids) and where the text goes (None: stdout)."""

    file: str
    filter: tuple[str, ...] = ()
    notrace: tuple[str, ...] = ()
    depth: int | None = None
    since: float | None = None
    until: float | None = None
    thread: tuple[int, ...] = ()
    output: str | None = None


class StandIn:
    """What the renderers read of a Function: ``name``, ``module``, ``qualname``, flags."""

    __slots__ = ("code", "module", "name", "qualname")

    def __init__(self, name: str, flags: int) -> None:
        self.name = name
        self.module, _, self.qualname = name.partition(":")
        self.code = types.SimpleNamespace(co_flags=flags)


def select(records: Iterable[Record], ns: ReplayOptions, start: int) -> Iterator[Record]:
    """The records the read-time options keep."""
    filt = Filter(parse(ns.filter or ()))
    notrace = Filter(parse(ns.notrace or ()))
    check_names = bool(filt.lines or notrace.lines)
    since = start + int(ns.since * 1e9) if ns.since is not None else None
    until = start + int(ns.until * 1e9) if ns.until is not None else None
    threads = set(ns.thread or ())
    for rec in records:
        if since is not None and rec.ts < since:
            continue
        if until is not None and rec.ts > until:
            continue
        if threads and rec.tid not in threads:
            continue
        if rec.func and check_names:
            module, _, qualname = rec.func.partition(":")
            if not filt.selects(module, qualname) or notrace.excludes(module, qualname):
                continue
        if ns.depth is not None and rec.kind in ("entry", "exit") and rec.depth >= ns.depth:
            continue
        yield rec


def render(files: list[TraceFile], records: Iterable[Record]) -> tuple[str, dict[int, int]]:
    """The trace text of ``records`` and, when several processes, cpu -> pid."""
    from fntrace.tracing import tracers
    from fntrace.tracing.instance import Instance

    first = files[0]
    header = first.header
    many = len(files) > 1
    bufs = BufferSet(1, True)
    by_key: dict[tuple[int, int], ThreadBuffer] = {}
    cpu_pid: dict[int, int] = {}
    for tf in files:
        for key, info in sorted(tf.threads.items(), key=lambda kv: kv[1].cpu):
            cpu = len(by_key) if many else info.cpu
            buf = ThreadBuffer(info.tid, info.name, cpu, 0, True, info.flags)
            buf.overrun = tf.lost.get(key, 0)
            by_key[key] = buf
            bufs.by_tid[len(by_key) if many else info.tid] = buf
            cpu_pid[cpu] = info.pid
    funcs: dict[tuple[str, int], StandIn] = {}

    def fn(name: str, flags: int) -> StandIn:
        key = (name, flags)
        found = funcs.get(key)
        if found is None:
            found = funcs[key] = StandIn(name, flags)
        return found

    for rec in records:
        found = by_key.get((rec.pid, rec.tid))
        if found is None:
            continue
        buf = found
        ev: tuple[Any, ...]
        if rec.kind == "call":
            ev = (rec.ts, 0, "F", fn(rec.func, rec.code_flags),
                  fn(rec.parent, 0) if rec.parent is not None else None, rec.args, rec.event)
        elif rec.kind == "entry":
            ev = (rec.ts, 0, "E", fn(rec.func, rec.code_flags), rec.depth, rec.args,
                  rec.event)
        elif rec.kind == "exit":
            ev = (rec.ts, 0, "X", fn(rec.func, rec.code_flags), rec.depth, rec.duration or 0,
                  rec.event, rec.value)
        elif rec.kind == "marker":
            ev = (rec.ts, 0, ftrace_text.MARKER, rec.text)
        else:
            ev = (rec.ts, 0, TEXT, rec.text)
        buf.events.append(ev)
    for buf in by_key.values():
        buf.written = len(buf.events) + buf.overrun
    inst = Instance("replay")
    try:
        saved = header.get("options", {}).get("instance_options", {})
        for name, value in saved.items():
            if name in inst.options:
                inst.options[name] = int(value)
        inst.rb.live = bufs
        cls = tracers.get(str(header.get("tracer", "function")))
        inst.tracer = cls(inst) if cls is not None else None  # rendering only, never started
        text = ftrace_text.render_trace(inst, bufs)
    finally:
        inst.tracer = None
        inst.close()
    return text, (cpu_pid if many else {})


_GRAPH_CPU = re.compile(r"^(?:\s*\d+\.\d+ \|  )?\s*(\d+)\) ")
_FUNC_CPU = re.compile(r"^.{16}-\d+\s*\[(\d+)\]")


def label_pids(text: str, cpu_pid: dict[int, int]) -> Iterator[str]:
    """Each line prefixed by its process id (header lines and continuations follow)."""
    width = max(len(str(p)) for p in cpu_pid.values())
    current = " " * width
    for line in text.splitlines(keepends=True):
        if line.startswith("#"):
            yield f"#{' ' * width} {line[1:]}" if line.strip() != "#" else line
            continue
        m = _FUNC_CPU.match(line) or _GRAPH_CPU.match(line)
        if m is not None and int(m.group(1)) in cpu_pid:
            current = f"{cpu_pid[int(m.group(1))]:>{width}}"
        yield f"{current} {line}"


def replay(ns: ReplayOptions) -> int:
    """What ``fntrace replay`` prints; the exit status."""
    if ns.since is not None and ns.until is not None and ns.until < ns.since:
        raise SystemExit("fntrace replay: --until is before --since")
    try:
        Filter(parse(ns.filter or ()))
        Filter(parse(ns.notrace or ()))
    except ValueError as exc:
        raise SystemExit(f"fntrace replay: {exc}") from None
    files = open_files(ns.file, "replay")
    start = min(tf.start_ts for tf in files)
    records = progress(merged_records(files), "fntrace replay")
    text, cpu_pid = render(files, select(records, ns, start))
    out = open(ns.output, "w", encoding="utf-8") if ns.output else sys.stdout
    try:
        if cpu_pid:
            out.writelines(label_pids(text, cpu_pid))
        else:
            out.write(text)
        out.flush()
    except BrokenPipeError:
        return 0
    finally:
        if out is not sys.stdout:
            out.close()
    return exit_status(files)
