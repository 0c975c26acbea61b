"""``fntrace report``: a per-function table of a recorded trace, like ``uftrace report``.

Numbers, per function (all times inclusive of what the function called,
except self time):

* calls: one per call, counted at its ``start`` entry; a generator's or
  coroutine's resumptions are not calls.  An exit whose entry is not in the
  file (tracing_thresh drops entries) counts one call when it is final
  (return/unwind).
* total: the sum of the durations of all the function's segments (a plain call
  is one segment; a generator has one per run between resume and yield).
  Recursion is counted as uftrace counts it: every call adds its own inclusive
  time, so a recursive function's total includes its nested calls' time again
  and may exceed the wall time.  Self time never overlaps.
* self: total minus the time of the segments that ran directly below.
* avg, min, max: per call, a call's time being the sum of its segments.  A
  generator's segments are joined to their call by thread, function and depth
  (first suspended, first resumed); a generator still suspended when the trace
  ends counts with the time it ran.  avg is total over calls with a known time
  (a call still running at the end of the trace has none).

A trace of the function tracer has entries only ("call" records): the table
then has calls alone, and says that durations need function_graph.

With task notes in the trace (``record --tasks``), two more columns, Run and
Wait: per function, its coroutine calls that suspended, their wall time split
into the time they ran and the time they waited, the sums of what
function_graph says at the end of each such call (``12.4 ms (run 1.10 ms)``;
fntrace/analysis/coro_report.py); ``-`` for a function with no such call.

With ``srcline`` (``report --srcline``) each function is shown with its source
location, ``name [FILE:LINE]`` under the heading ``Function [Source]``; a
function the file has no location for (a version-1 file) is shown bare, one
recorded at several places (a name defined twice) with each, comma-separated.
The default table is unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fntrace.analysis.segments import FINAL_EXITS, RecordLike, Segment, Unfinished, walk

if TYPE_CHECKING:
    from fntrace.analysis.coro_report import Split
    from fntrace.analysis.window import Selection
    from fntrace.formats.tracefile import TraceFile

ThreadKey = tuple[int, int] | None  # (pid, tid), or None for all threads merged
#: A function's name -> its source locations as shown (``FILE:LINE``), in the
#: order first seen (``report --srcline``).
Sources = dict[str, dict[str, None]]



@dataclass
class FuncStats:
    """Accumulated numbers for one function (in one thread, or merged)."""

    calls: int = 0
    total: int = 0
    self_ns: int = 0
    timed: int = 0       # calls whose time is known (min/max/avg are over these)
    min: int = 0
    max: int = 0

    @property
    def avg(self) -> int:
        return self.total // self.timed if self.timed else 0

    def add_call_time(self, ns: int) -> None:
        if self.timed == 0:
            self.min = self.max = ns
        else:
            self.min = min(self.min, ns)
            self.max = max(self.max, ns)
        self.timed += 1

    def metric(self, key: str) -> int:
        return {"calls": self.calls, "total": self.total, "self": self.self_ns,
                "avg": self.avg, "min": self.min, "max": self.max}[key]


@dataclass
class Report:
    """Tables keyed by thread (or one, keyed None), and what kind of trace it was."""

    tables: dict[ThreadKey, dict[str, FuncStats]]
    has_durations: bool
    #: Coroutine calls' run/wait per function, keyed as ``tables`` (empty: no task notes).
    splits: dict[ThreadKey, dict[str, Split]] = field(default_factory=dict)


@dataclass
class _Pending:
    tid: int
    depth: int
    key: ThreadKey
    ns: int


class _Builder:
    def __init__(self, per_thread: bool) -> None:
        self.per_thread = per_thread
        self.tables: dict[ThreadKey, dict[str, FuncStats]] = {}
        self.suspended: dict[tuple[int, str], list[_Pending]] = {}
        self.has_durations = False

    def stats(self, pid: int, tid: int, func: str) -> FuncStats:
        key: ThreadKey = (pid, tid) if self.per_thread else None
        table = self.tables.setdefault(key, {})
        st = table.get(func)
        if st is None:
            st = table[func] = FuncStats()
        return st

    def take(self, seg: Segment) -> int | None:
        waiting = self.suspended.get((seg.pid, seg.func))
        if not waiting:
            return None
        for i, p in enumerate(waiting):
            if p.tid == seg.tid and p.depth == seg.depth:
                return waiting.pop(i).ns
        return waiting.pop(0).ns

    def segment(self, seg: Segment) -> None:
        self.has_durations = True
        st = self.stats(seg.pid, seg.tid, seg.func)
        st.total += seg.duration
        st.self_ns += seg.self_ns
        final = seg.exit_event in FINAL_EXITS
        so_far: int | None
        if seg.entry_event == "start":
            st.calls += 1
            so_far = 0
        elif seg.entry_event:  # resume/throw: continue the call it belongs to
            so_far = self.take(seg)
        else:  # the entry is not in the file
            so_far = self.take(seg) or 0
            if final:
                st.calls += 1
        if so_far is None:
            return  # a resumption of a call whose start was never seen
        ns = so_far + seg.duration
        if final:
            st.add_call_time(ns)
        else:
            key: ThreadKey = (seg.pid, seg.tid) if self.per_thread else None
            self.suspended.setdefault((seg.pid, seg.func), []).append(
                _Pending(seg.tid, seg.depth, key, ns))

    def finish(self) -> Report:
        for (_pid, func), waiting in self.suspended.items():
            for p in waiting:
                self.tables[p.key][func].add_call_time(p.ns)
        self.suspended.clear()
        return Report(self.tables, self.has_durations)


def collect_sources(records: Iterable[RecordLike], into: Sources) -> Iterator[RecordLike]:
    """``records`` as they are, noting each function's source location in ``into``
    as they pass (records without one, such as markers, add nothing)."""
    for rec in records:
        file = getattr(rec, "src_file", None)
        if file is not None and rec.func:
            into.setdefault(rec.func, {})[f"{file}:{getattr(rec, 'src_line', 0)}"] = None
        yield rec


def shown(name: str, sources: Mapping[str, Mapping[str, None]] | None) -> str:
    """A function's cell: its name, with ``[FILE:LINE]`` when sources are asked for
    and known."""
    if sources is None or not sources.get(name):
        return name
    return f"{name} [{', '.join(sources[name])}]"


def build(records: Iterable[RecordLike], per_thread: bool = False) -> Report:
    """Aggregate records (in time order per thread) into per-function numbers."""
    b = _Builder(per_thread)
    for item in walk(records):
        if isinstance(item, Segment):
            b.segment(item)
        elif isinstance(item, Unfinished):
            if item.entry_event == "start":
                b.stats(item.pid, item.tid, item.func).calls += 1
        elif item.kind == "call":
            b.stats(item.pid, item.tid, item.func).calls += 1
    return b.finish()


# -- formatting ----------------------------------------------------------------

def fmt_time(ns: int) -> str:
    """ns below 1 µs, else us/ms/s with three decimals (truncated, never rounded up)."""
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1000:
        return f"{sign}{ns} ns"
    for unit, scale in (("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)):
        if ns < scale * 1000 or unit == "s":
            whole, frac = divmod(ns, scale)
            return f"{sign}{whole}.{frac * 1000 // scale:03d} {unit}"
    raise AssertionError("unreachable")


def fmt_short(ns: int) -> str:
    """A duration in three significant digits (``682ms``, ``7.67ms``, ``210ns``): the
    width-fitted diff's cells, where the exact figures of ``--wide`` do not fit."""
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1000:
        return f"{sign}{ns}ns"
    for unit, scale in (("us", 1e3), ("ms", 1e6), ("s", 1e9)):
        value = ns / scale
        if value < 999.5 or unit == "s":
            digits = 0 if value >= 99.95 else 1 if value >= 9.995 else 2
            return f"{sign}{value:.{digits}f}{unit}"
    raise AssertionError("unreachable")


def _short_metric(key: str, value: int) -> str:
    return str(value) if key == "calls" else fmt_short(value)


def _short_delta(key: str, delta: int) -> str:
    text = str(abs(delta)) if key == "calls" else fmt_short(abs(delta))
    return ("+" if delta > 0 else "-" if delta < 0 else "") + text


def _short_pct(base: int, new: int) -> str:
    if base == 0:
        return "0%" if new == 0 else "new"
    pct = (new - base) * 100 / base
    return f"{pct:+.0f}%" if abs(pct) >= 99.95 else f"{pct:+.1f}%"


def fmt_delta(key: str, delta: int) -> str:
    text = str(abs(delta)) if key == "calls" else fmt_time(abs(delta))
    return ("+" if delta > 0 else "-" if delta < 0 else "") + text


def fmt_pct(base: int, new: int) -> str:
    if base == 0:
        return "0.00%" if new == 0 else "new"
    return f"{(new - base) * 100 / base:+.2f}%"


def _fmt_metric(key: str, value: int) -> str:
    return str(value) if key == "calls" else fmt_time(value)


def sorted_funcs(table: dict[str, FuncStats], key: str) -> list[tuple[str, FuncStats]]:
    if key == "name":
        return sorted(table.items())
    return sorted(table.items(), key=lambda kv: (-kv[1].metric(key), kv[0]))


COLUMNS = (("total", "Total time"), ("self", "Self time"), ("calls", "Calls"),
           ("avg", "Average"), ("min", "Minimum"), ("max", "Maximum"))


def _rows(header: list[str], rows: list[list[str]]) -> list[str]:
    """Right-aligned columns, the last (function names) left-aligned, uftrace style."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    widths = [max(w, 10) for w in widths[:-1]] + [20]

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) for c, w in zip(cells[:-1], widths, strict=False)]
        return ("  " + "  ".join([*out, cells[-1]])).rstrip()

    return [line(header), line(["=" * w for w in widths]), *(line(r) for r in rows)]


def format_table(table: dict[str, FuncStats], key: str = "total", limit: int | None = None,
                 has_durations: bool = True, sources: Sources | None = None,
                 splits: Mapping[str, Split] | None = None) -> list[str]:
    """The report's lines (without newlines) for one table; with ``sources`` each
    function shows its ``[FILE:LINE]``; with ``splits`` (a trace with task notes)
    the Run and Wait columns."""
    funcs = sorted_funcs(table, "calls" if not has_durations and key != "name" else key)
    if limit is not None:
        funcs = funcs[:limit]
    heading = "Function" if sources is None else "Function [Source]"
    if not has_durations:
        rows = [[str(st.calls), shown(name, sources)] for name, st in funcs]
        return ["# calls only: durations need the function_graph tracer "
                "(fntrace record -t function_graph)", *_rows(["Calls", heading], rows)]
    titles = [title for _, title in COLUMNS]
    if splits is not None:
        def run_wait(name: str) -> list[str]:
            sp = splits.get(name)
            return ["-", "-"] if sp is None else [fmt_time(sp.run), fmt_time(sp.wait)]

        rows = [[_fmt_metric(k, st.metric(k)) for k, _ in COLUMNS] + run_wait(name)
                + [shown(name, sources)] for name, st in funcs]
        return ["# Run, Wait: the coroutine calls that suspended, their wall time = "
                "time run + time waited (by asyncio task)",
                *_rows([*titles, "Run", "Wait", heading], rows)]
    rows = [[_fmt_metric(k, st.metric(k)) for k, _ in COLUMNS] + [shown(name, sources)]
            for name, st in funcs]
    return _rows([*titles, heading], rows)


#: The narrowest name column a width-limited diff leaves (names are cut from the left).
MIN_NAME = 20


def cut_left(name: str, width: int) -> str:
    """``name`` in at most ``width`` characters, keeping its end (the function's own
    name and class matter more than the package path in front)."""
    if len(name) <= width:
        return name
    return "..." + name[len(name) - width + 3:] if width > 3 else name[-width:]


def format_diff(base: dict[str, FuncStats], new: dict[str, FuncStats], key: str = "total",
                limit: int | None = None, has_durations: bool = True,
                width: int | None = None, sources: Sources | None = None) -> list[str]:
    """Two runs side by side: base, new, difference and percentage per metric.

    Functions seen in one run only are marked ``[base only]`` / ``[new only]``;
    rows are ordered by the size of the change in the sort key.  With ``width``
    (a terminal's columns) the table fits it: base, new, difference and
    percentage of the sort metric, the difference alone of the others, figures
    in three significant digits, and the names cut from the left to what is left
    (at least :data:`MIN_NAME`).  Without, every column with exact figures
    (``report --diff --wide``).  With ``sources`` each function shows its
    ``[FILE:LINE]`` (of either run).
    """
    metrics = ["total", "self", "calls"] if has_durations else ["calls"]
    if key in ("avg", "min", "max") and has_durations:
        metrics.append(key)
    sort_metric = key if key in metrics else "calls" if not has_durations else "total"
    empty = FuncStats()
    names = sorted(set(base) | set(new))

    def change(name: str) -> int:
        return abs(new.get(name, empty).metric(sort_metric)
                   - base.get(name, empty).metric(sort_metric))

    if key != "name":
        names.sort(key=lambda n: -change(n))
    if limit is not None:
        names = names[:limit]
    titles = {"total": "Total", "self": "Self", "calls": "Calls", "avg": "Avg",
              "min": "Min", "max": "Max"}
    header: list[str] = []
    rows = []
    if width is None:
        for m in metrics:
            header += [f"{titles[m]} base", f"{titles[m]} new", f"{titles[m]} diff", "%"]
        header.append("Function" if sources is None else "Function [Source]")
        for name in names:
            a, b = base.get(name), new.get(name)
            row = []
            for m in metrics:
                va = a.metric(m) if a else 0
                vb = b.metric(m) if b else 0
                row += [_fmt_metric(m, va) if a else "-", _fmt_metric(m, vb) if b else "-",
                        fmt_delta(m, vb - va), fmt_pct(va, vb)]
            rows.append([*row, shown(name, sources) + _only_mark(a, b)])
        return _rows(header, rows)
    others = [m for m in ("total", "self", "calls") if m in metrics and m != sort_metric]
    header = ["base", "new", "diff", "%", *(f"{titles[m]} diff" for m in others),
              "Function" if sources is None else "Function [Source]"]
    m = sort_metric
    for name in names:
        a, b = base.get(name), new.get(name)
        va = a.metric(m) if a else 0
        vb = b.metric(m) if b else 0
        row = [_short_metric(m, va) if a else "-", _short_metric(m, vb) if b else "-",
               _short_delta(m, vb - va), _short_pct(va, vb)]
        for o in others:
            row.append(_short_delta(o, (b.metric(o) if b else 0) - (a.metric(o) if a else 0)))
        rows.append([*row, shown(name, sources) + _only_mark(a, b)])
    said = f"{titles[m].lower()}: base, new, diff, %"
    if others:
        said += "; " + " and ".join(titles[o].lower() for o in others) + ": diff"
    return [f"# {said} (--wide: all, exact)", *_fitted(header, rows, width)]


def _only_mark(a: FuncStats | None, b: FuncStats | None) -> str:
    return " [base only]" if b is None else " [new only]" if a is None else ""


def _fitted(header: list[str], rows: list[list[str]], width: int) -> list[str]:
    """Right-aligned columns as wide as their content, the names cut to fit ``width``."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header[:-1])]
    used = 2 + sum(w + 2 for w in widths)
    name_width = max(MIN_NAME, width - used)

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) for c, w in zip(cells[:-1], widths, strict=False)]
        return ("  " + "  ".join([*out, cut_left(cells[-1], name_width)])).rstrip()

    rule = ["=" * w for w in widths] + ["=" * min(name_width, max(
        [len(header[-1]), *(len(r[-1]) for r in rows)]))]
    return [line(header), line(rule), *(line(r) for r in rows)]


# -- command line ----------------------------------------------------------------

def thread_label(files: list[TraceFile], key: tuple[int, int]) -> str:
    for f in files:
        info = f.threads.get(key)
        if info is not None:
            return f"{info.name}-{key[1]} (pid {key[0]})"
    return f"{key[1]} (pid {key[0]})"


def read_report(path: str, per_thread: bool, label: str, sources: Sources | None = None,
                sel: Selection | None = None, splits: bool = False,
                ) -> tuple[Report, list[TraceFile]]:
    """The report of the file at ``path`` (and its followed children's), narrowed to
    ``sel``, noting the functions' source locations in ``sources`` when given;
    with ``splits``, its coroutine calls' run and wait when it has task notes."""
    from fntrace.analysis.reading import open_files
    from fntrace.core.events import TASK_PREFIX

    files = open_files(path)
    fast = None
    if sources is None and (sel is None or sel.everything):
        fast = build_from_chunks(files, per_thread)
    if fast is not None:
        report = fast
    else:
        report = build(_records(files, label, sources, sel), per_thread)
    if not report.has_durations:
        report.has_durations = any(
            f.header.get("tracer") == "function_graph" for f in files)
    if splits and report.has_durations and any(f.has_notes(TASK_PREFIX) for f in files):
        from fntrace.analysis.coro_report import coroutine_splits

        report.splits = coroutine_splits(_records(files, label, None, sel), per_thread)
    return report, files


def _records(files: list[TraceFile], label: str, sources: Sources | None,
             sel: Selection | None) -> Iterable[RecordLike]:
    """The records a report of ``files`` reads (the Python path)."""
    from fntrace.analysis.reading import progress
    from fntrace.analysis.window import Selection, narrow
    from fntrace.formats.tracefile import merged_records

    records: Iterable[RecordLike] = narrow(progress(merged_records(files), label), files,
                                           sel or Selection())
    if sources is not None:
        records = collect_sources(records, sources)
    return records


def build_from_chunks(files: list[TraceFile], per_thread: bool = False) -> Report | None:
    """The report ``build`` makes of ``files``' records, made in C from their encoded
    chunks (fntrace/csrc/aggregate.c: one pass, no record objects); None where
    that cannot be (the pure path, a chunk the C decoder leaves to Python, a sum
    over 64 bits), and ``build`` is to make it."""
    from fntrace.analysis.chunk_agg import aggregator

    agg = aggregator(files, per_thread)
    if agg is None:
        return None
    done = agg.finish()
    if done is None:
        return None
    has_durations, raw = done
    tables: dict[ThreadKey, dict[str, FuncStats]] = {
        key: {name: FuncStats(calls, total, self_ns, timed, low, high)
              for name, (calls, total, self_ns, timed, low, high) in table.items()}
        for key, table in raw.items()}
    return Report(tables, has_durations)


def terminal_width() -> int:
    """The width to fit: $COLUMNS, else the terminal's, else 120 (a pipe or a file);
    never below 80."""
    import shutil

    return max(80, shutil.get_terminal_size((120, 24)).columns)


def report(file: str = "fntrace.dat", sort: str = "total", limit: int | None = None,
           threads: bool = False, diff: str | None = None, wide: bool = False,
           srcline: bool = False, sel: Selection | None = None) -> int:
    """What ``fntrace report`` prints (see its help): the table of ``file`` (one per
    thread with ``threads``), or its comparison with ``diff`` (both files narrowed to
    ``sel``, each from its own start); with ``srcline`` each function's source
    location; the exit status."""
    from fntrace.analysis.reading import quiet_stdout
    from fntrace.analysis.window import SelectionError
    from fntrace.formats.tracefile import TraceFileError, exit_status

    out: list[str] = []
    read: list[TraceFile] = []
    sources: Sources | None = {} if srcline else None
    try:
        rep, files = read_report(file, threads and not diff, "fntrace report", sources, sel,
                                 splits=not diff)
        read += files
        if diff:
            other, other_files = read_report(diff, False, "fntrace report", sources, sel)
            read += other_files
            durations = rep.has_durations and other.has_durations
            out += [f"# base: {file}", f"# new:  {diff}", "#"]
            out += format_diff(rep.tables.get(None, {}), other.tables.get(None, {}), sort,
                               limit, durations, None if wide else terminal_width(), sources)
        elif threads:
            for key in sorted(rep.tables, key=lambda k: k or (0, 0)):
                if key is None:
                    continue
                if out:
                    out.append("")
                out.append(f"# thread {thread_label(files, key)}")
                out += format_table(rep.tables[key], sort, limit, rep.has_durations, sources,
                                    rep.splits.get(key, {}) if rep.splits else None)
        else:
            out += format_table(rep.tables.get(None, {}), sort, limit, rep.has_durations,
                                sources, rep.splits.get(None, {}) if rep.splits else None)
    except (OSError, TraceFileError, SelectionError) as exc:
        print(f"fntrace report: {exc}", file=sys.stderr)
        return 1
    try:
        sys.stdout.write("".join(line + "\n" for line in out))
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
    return exit_status(read)
