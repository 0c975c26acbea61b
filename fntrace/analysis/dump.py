"""The writers behind ``fntrace dump``: Chrome's Trace Event Format and folded stacks.

Both stream from the merged records of a recording's files (a process track per
pid, a thread track per thread; segments paired as ``analysis/segments.py``
pairs them), so a large trace converts without being held in memory.  What
each output contains, as the user reads it, is the command's help
(``fntrace/cli/dump.py``); the other exports are ``export.py``'s.
"""

from __future__ import annotations

import gzip
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

from fntrace.analysis.locations import Location, Locations
from fntrace.analysis.reading import open_files, progress, progress_batches, quiet_stdout
from fntrace.analysis.segments import RecordLike, Segment, Unfinished, walk
from fntrace.analysis.window import Selection, SelectionError, narrow, thread_keys

if TYPE_CHECKING:
    from fntrace.formats.tracefile import TraceFile


def _us(ns: int) -> float:
    return ns / 1000


def _located(args: dict[str, Any], where: Location | None) -> dict[str, Any]:
    """``args`` with the function's ``file`` and ``line`` where they are known."""
    if where is not None:
        args["file"], args["line"] = where
    return args


class ChromeWriter:
    """Turns records into Trace Event Format events, one JSON object per line.

    A function's complete (``X``) and call (``i``) events carry its source
    ``file`` and ``line`` in ``args`` where the trace file keeps them."""

    def __init__(self, processes: dict[int, str], threads: dict[tuple[int, int], str],
                 t0: int | None = None) -> None:
        self.processes = dict(processes)
        self.threads = dict(threads)
        self.t0 = t0 if t0 is not None else 0
        self.t0_known = t0 is not None
        self.last = self.t0
        self.named: set[tuple[int, int]] = set()
        self.unfinished: list[Unfinished] = []
        self.locations = Locations()

    def metadata(self) -> Iterator[dict[str, Any]]:
        for pid, name in sorted(self.processes.items()):
            yield {"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                   "args": {"name": name}}
        for (pid, tid), name in sorted(self.threads.items()):
            yield from self._thread_name(pid, tid, name)

    def _thread_name(self, pid: int, tid: int, name: str) -> Iterator[dict[str, Any]]:
        self.named.add((pid, tid))
        yield {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
               "args": {"name": f"{name}-{tid}"}}

    def name_new(self, pid: int, tid: int) -> Iterator[dict[str, Any]]:
        """The metadata of a thread met in the records but not named yet (and of
        its process, when it is not named either); nothing when it is named."""
        if (pid, tid) in self.named:
            return
        if pid not in self.processes:
            self.processes[pid] = f"pid {pid}"
            yield {"name": "process_name", "ph": "M", "pid": pid, "tid": 0,
                   "args": {"name": self.processes[pid]}}
        yield from self._thread_name(pid, tid, "thread")

    def _ts(self, ns: int) -> float:
        return _us(max(ns - self.t0, 0))

    def events(self, records: Iterable[RecordLike]) -> Iterator[dict[str, Any]]:
        yield from self.metadata()
        stream = iter(self.locations.watch(records))
        first = next(stream, None)
        if first is None:
            return
        if not self.t0_known:  # the earliest record: the stream is in time order
            self.t0 = first.ts
            if first.kind == "exit" and first.duration:  # its call began before it
                self.t0 = max(first.ts - first.duration, 0)
            self.last = self.t0
            self.t0_known = True
        for item in walk(itertools.chain((first,), stream)):
            pid, tid = item.pid, item.tid
            if (pid, tid) not in self.named:
                yield from self.name_new(pid, tid)
            if isinstance(item, Segment):
                self.last = max(self.last, item.end)
                yield self._segment(item)
            elif isinstance(item, Unfinished):
                self.unfinished.append(item)  # closed below, innermost first
            else:
                self.last = max(self.last, item.ts)
                ev = self._record(item)
                if ev is not None:
                    yield ev
        yield from self.close_unfinished()

    def close_unfinished(self) -> Iterator[dict[str, Any]]:
        """End entries still open when the records end, at the last timestamp seen."""
        for u in sorted(self.unfinished, key=lambda u: (u.pid, u.tid, -u.depth)):
            args = _entry_args(u.entry_event, u.args)
            args["unfinished"] = True
            start = max(u.start, self.t0)
            yield {"name": u.func, "cat": "function", "ph": "X", "ts": self._ts(start),
                   "dur": _us(max(self.last - start, 0)), "pid": u.pid, "tid": u.tid,
                   "args": _located(args, self.locations.get(u.func))}

    def _segment(self, seg: Segment) -> dict[str, Any]:
        """A complete ``X`` event: begin and duration in one object (a B/E pair
        repeats name, pid, tid and a timestamp: about half the bytes)."""
        args = _entry_args(seg.entry_event, seg.args) if seg.matched else {}
        args["exit"] = seg.exit_event
        if seg.value is not None:
            args["raised" if seg.exit_event == "unwind" else
                 "yielded" if seg.exit_event == "yield" else "retval"] = seg.value
        start = max(seg.start, self.t0)
        return {"name": seg.func, "cat": "function", "ph": "X", "ts": self._ts(start),
                "dur": _us(seg.end - start), "pid": seg.pid, "tid": seg.tid,
                "args": _located(args, self.locations.get(seg.func))}

    def _record(self, rec: RecordLike) -> dict[str, Any] | None:
        base = {"pid": rec.pid, "tid": rec.tid, "ts": self._ts(rec.ts)}
        if rec.kind == "call":
            args: dict[str, Any] = {}
            if rec.parent is not None:
                args["parent"] = rec.parent
            if rec.args is not None:
                args["args"] = rec.args
            return {"name": rec.func, "cat": "call", "ph": "i", "s": "t", **base,
                    "args": _located(args, self.locations.get(rec.func))}
        if rec.kind in ("marker", "text"):
            return {"name": rec.text or "", "cat": rec.kind, "ph": "i", "s": "t", **base}
        return None


def _entry_args(event: str, args: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"entry": event}
    if args is not None:
        out["args"] = args
    return out


def write_chrome(records: Iterable[RecordLike], out: IO[str], processes: dict[int, str],
                 threads: dict[tuple[int, int], str], t0: int | None = None) -> int:
    """Stream the whole JSON document to ``out``; returns the number of events.

    ``t0`` (ns) is time zero; by default the first record's time.
    """
    writer = ChromeWriter(processes, threads, t0)
    out.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
    n = 0
    for ev in writer.events(records):
        out.write((",\n" if n else "") + json.dumps(ev, ensure_ascii=True))
        n += 1
    out.write("\n]}\n")
    return n


def folded_stacks(records: Iterable[RecordLike], per_thread: bool = False,
                  thread_names: dict[tuple[int, int], str] | None = None) -> dict[str, int]:
    """Unique stack -> self ns (or, with no durations recorded, caller;callee -> calls)."""
    names = thread_names or {}
    out: dict[str, int] = {}
    for item in walk(records):
        if isinstance(item, Segment):
            frames = item.stack
            value = item.self_ns
        elif isinstance(item, Unfinished):
            continue
        elif item.kind == "call":
            frames = (item.parent, item.func) if item.parent else (item.func,)
            value = 1
        else:
            continue
        parts = [_frame(f) for f in frames]
        if per_thread:
            label = names.get((item.pid, item.tid), "thread")
            parts.insert(0, _frame(f"{label}-{item.tid}"))
        key = ";".join(parts)
        out[key] = out.get(key, 0) + value
    return out


def folded_from_chunks(files: list[TraceFile], per_thread: bool = False,
                       thread_names: dict[tuple[int, int], str] | None = None,
                       ) -> dict[str, int] | None:
    """What ``folded_stacks`` makes of ``files``' records, made in C from their
    encoded chunks (fntrace/csrc/aggregate.c); None where that cannot be (the pure
    path, a chunk left to the Python decoder, a sum over 64 bits)."""
    from fntrace.analysis.chunk_agg import aggregator

    agg = aggregator(files, per_thread, folded=True)
    done = agg.folded() if agg is not None else None
    if done is None:
        return None
    nodes, names, threads = done
    labels = thread_names or {}
    frames = [_frame(name) for name in names]
    keys: list[str] = []
    out: dict[str, int] = {}
    for parent, ident, value in nodes:  # parents before their children
        if ident < 0:
            pid, tid = threads[-1 - ident]
            frame = _frame(f"{labels.get((pid, tid), 'thread')}-{tid}")
        else:
            frame = frames[ident]
        key = frame if parent < 0 else f"{keys[parent]};{frame}"
        keys.append(key)
        if value is not None:
            out[key] = value
    return out


def _frame(name: str) -> str:
    """A frame name that cannot break the format (';' separates, the last ' ' counts)."""
    return name.replace(";", ":").replace("\n", " ").replace("\r", " ")


def write_folded(stacks: dict[str, int], out: IO[str]) -> int:
    for key in sorted(stacks):
        out.write(f"{key} {stacks[key]}\n")
    return len(stacks)


# -- command line ----------------------------------------------------------------

def _names(files: list[TraceFile]) -> tuple[dict[int, str], dict[tuple[int, int], str]]:
    processes: dict[int, str] = {}
    threads: dict[tuple[int, int], str] = {}
    for f in files:
        prog = str(f.header.get("program") or "python")
        pid = int(f.header.get("pid", 0))
        processes[pid] = f"{prog} (pid {pid})"
        for key, info in f.threads.items():
            threads[key] = info.name
    return processes, threads


def _t0(files: list[TraceFile]) -> int | None:
    """Time zero: the first record, unless entries may be missing (tracing_thresh).

    With a threshold, exits come without their entries and a slice may begin
    before the first record; the recording's start (read before anything was
    recorded) is then time zero.
    """
    if any((f.header.get("options") or {}).get("thresh") for f in files):
        starts = [int(f.header["start_ts"]) for f in files if "start_ts" in f.header]
        return min(starts) if starts else None
    return None


def _open_out(path: str) -> IO[str]:
    """The output: stdout for ``-``; gzip for a name ending in ``.gz`` (Perfetto UI and
    chrome://tracing open ``trace.json.gz`` as they are; level 1: the JSON shrinks
    about tenfold at a fraction of level 9's time)."""
    if path == "-":
        return sys.stdout
    if path.endswith(".gz"):
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=1)
    return open(path, "w", encoding="utf-8")


def dump(file: str = "fntrace.dat", chrome: str | None = None, folded: str | None = None,
         threads: bool = False, speedscope: str | None = None, perfetto: str | None = None,
         pstats: str | None = None, sel: Selection | None = None) -> int:
    """What ``fntrace dump`` writes (see its help): ``file`` as Chrome JSON into
    ``chrome``, folded stacks into ``folded``, a speedscope profile, a Perfetto
    trace and/or a pstats file ("-": stdout), of the slice ``sel``; the exit status."""
    from fntrace.core.events import TASK_PREFIX
    from fntrace.formats.tracefile import (
        Record,
        TraceFileError,
        batched,
        exit_status,
        merged_batches,
        merged_records,
    )

    if not (chrome or folded or speedscope or perfetto or pstats):
        print("fntrace dump: say what to write: --chrome OUT.json, --folded OUT.txt, "
              "--speedscope OUT.json, --perfetto OUT.pftrace and/or --pstats OUT.prof",
              file=sys.stderr)
        return 2
    files: list[TraceFile] = []
    sel = sel or Selection()
    try:
        files = open_files(file)
        processes, names = _names(files)
        if sel.threads:
            thread_keys(files, sel.threads)  # said before any output is made

        def records() -> Iterator[RecordLike]:
            return narrow(progress(merged_records(files), "fntrace dump"), files, sel)

        def batches() -> Iterator[list[Record]]:
            """records() in lists, for the C writer."""
            if sel.everything:
                return progress_batches(merged_batches(files), "fntrace dump")
            return batched(narrow(progress(merged_records(files), "fntrace dump"), files, sel))

        if chrome:
            t0 = _t0(files)
            if sel.start is not None:  # a slice keeps the recording's time axis
                t0 = min(f.start_ts for f in files)
            from fntrace.analysis import chrome_c
            from fntrace.analysis.chrome_tasks import write_chrome_tasks  # a track per task

            # Task notes: a track per task, chrome_tasks' (Python); else in C.
            in_c = chrome_c.available() and not any(tf.has_notes(TASK_PREFIX) for tf in files)
            with _ManagedOut(chrome) as out:
                writer = ChromeWriter(processes, names, t0)
                if in_c:
                    chrome_c.write_chrome_c(writer, batches(), out)
                else:
                    write_chrome_tasks(writer, records(), out)
        if folded:
            fast = folded_from_chunks(files, threads, names) if sel.everything else None
            stacks = fast if fast is not None else folded_stacks(records(), threads, names)
            with _ManagedOut(folded) as out:
                write_folded(stacks, out)
        if speedscope or perfetto or pstats:
            from fntrace.analysis.export import write_exports
            from fntrace.analysis.traceset import TraceSet

            write_exports(TraceSet(files, sel), speedscope=speedscope, perfetto=perfetto,
                          pstats=pstats)
    except BrokenPipeError:
        quiet_stdout()
    except (OSError, TraceFileError, SelectionError) as exc:
        print(f"fntrace dump: {exc}", file=sys.stderr)
        return 1
    return exit_status(files)


class _ManagedOut:
    def __init__(self, path: str) -> None:
        self.path = path
        self.out: IO[str] | None = None

    def __enter__(self) -> IO[str]:
        self.out = _open_out(self.path)
        return self.out

    def __exit__(self, *exc: object) -> None:
        if self.out is not None and self.out is not sys.stdout:
            self.out.close()
        elif self.out is not None:
            self.out.flush()
