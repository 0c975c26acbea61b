"""``fntrace replay FILE``: a recorded trace as the live ``trace`` file shows it.

Records are turned back into the ring events they were recorded from (each
function a ``RecordedFunction``: its name, flags and source location) and rendered by the
renderers of their kinds (fntrace/tracing/ftrace_text.py) with the recorded
options, so the text is the live format by construction; no instance and no
tracer are involved.  Lines are written as they are rendered: the output
starts before the last record is read.  Filters (-F/-N, with
set_ftrace_filter semantics: only matching functions), depth, time range and
threads apply at read time; ``--srcline`` ends each line that names a called
function with its ``/* FILE:LINE */`` (the renderers' ``srcline`` option).
Several processes (files of ``--follow``) are
merged and each line is labelled with the pid of the process that wrote its
event.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

from fntrace.analysis import graph_render
from fntrace.analysis.reading import open_files, progress_batches, say_problems
from fntrace.analysis.window import SelectionError, thread_keys
from fntrace.core.events import CALL, ENTRY, EXIT, MARKER, TASK, TASK_PREFIX, TEXT
from fntrace.core.filter import Filter, parse
from fntrace.formats.tracefile import (
    Record,
    TraceFile,
    batched,
    exit_status,
    merged_batches,
    merged_records,
)
from fntrace.tracing import ftrace_text
from fntrace.tracing.graph_text import SRCLINE
from fntrace.tracing.instance import OPTIONS
from fntrace.tracing.tasks import TaskTable

__all__ = ["RecordedFunction", "RecordedThread", "ReplayOptions", "count", "event_of", "lines",
           "replay", "select", "selects"]


@dataclass(frozen=True)
class ReplayOptions:
    """What ``fntrace replay`` is asked for: the file, the read-time selection
    (set_ftrace_filter patterns, nesting depth, ns from the start, threads by tid
    or name) and where the text goes (None: stdout)."""

    file: str
    filter: tuple[str, ...] = ()
    notrace: tuple[str, ...] = ()
    depth: int | None = None
    since: int | None = None
    until: int | None = None
    thread: tuple[str, ...] = ()
    output: str | None = None
    #: ``--task``: only the events of the asyncio task of this number or name.
    task: str | None = None
    #: ``--task-column``: funcgraph-task on, whatever the recording said (it is
    #: on anyway when the files have task notes: recorded with ``--tasks``).
    task_column: bool = False
    #: Each line naming a called function ends with ``/* FILE:LINE */``.
    srcline: bool = False


class RecordedFunction:
    """What the renderers read of a Function: ``name``, ``module``, ``qualname``,
    flags, and its source ``filename`` and first line ``lineno`` (None and 0:
    unknown)."""

    __slots__ = ("code", "filename", "lineno", "module", "name", "qualname")

    def __init__(self, name: str, flags: int, filename: str | None = None,
                 lineno: int = 0) -> None:
        self.name = name
        self.module, _, self.qualname = name.partition(":")
        self.code = _Code(flags)
        self.filename = filename
        self.lineno = lineno


class _Code:
    __slots__ = ("co_flags",)

    def __init__(self, flags: int) -> None:
        self.co_flags = flags


class RecordedThread:
    """What the renderers read of a thread (as of a ThreadBuffer), and its process."""

    __slots__ = ("cpu", "name", "pid", "thread_flags", "tid")

    def __init__(self, pid: int, tid: int, name: str, cpu: int, flags: str) -> None:
        self.pid = pid
        self.tid = tid
        self.name = name
        self.cpu = cpu
        self.thread_flags = flags


def _isatty(out: Any) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):
        return False


def count(files: list[TraceFile], ns: ReplayOptions, start: int,
          keys: set[tuple[int, int]] | None = None,
          files_tasks: TaskTable | None = None) -> int:
    """How many records the read-time options keep (the header's count, written
    before them): every record when no option selects, else a pass of its own."""
    if not selects(ns):
        return sum(tf.events for tf in files)
    records = chain.from_iterable(merged_batches(files, skip_before(ns, start), keys))
    return sum(1 for _ in select(records, ns, start,
                                 keys, files_tasks))


def skip_before(ns: ReplayOptions, start: int) -> int | None:
    """The time before which no record is kept, so whole chunks may go unread:
    ``--from``'s, unless ``--task`` needs the task notes from the start."""
    if ns.since is None or ns.task is not None:
        return None
    return start + ns.since


def selects(ns: ReplayOptions) -> bool:
    """Whether a read-time option leaves records out (else ``select`` keeps all)."""
    return bool(ns.filter or ns.notrace or ns.thread or ns.depth is not None
                or ns.since is not None or ns.until is not None or ns.task is not None)


def tasks_of(files: list[TraceFile]) -> TaskTable:
    """Every asyncio task the files' notes name (by pid, number: one table per
    file would do, the numbers being per process; the pids keep them apart)."""
    table = TaskTable()
    if not any(tf.has_notes(TASK_PREFIX) for tf in files):
        return table  # no note anywhere: no pass over the events
    for rec in merged_records(files):
        if rec.kind == TASK.name:
            table.note((rec.pid, rec.tid), rec.text or "")
    table.current.clear()
    return table


def task_numbers(table: TaskTable, which: str) -> set[int]:
    """The task numbers ``--task`` names; SystemExit when none."""
    found = table.select(which)
    if not found:
        known = ", ".join(sorted({t.label for t in table.tasks.values()})[:10]) or "none"
        raise SystemExit(f"fntrace replay: no asyncio task {which!r} in the trace "
                         f"(tasks: {known})")
    return found


def select(records: Iterable[Record], ns: ReplayOptions, start: int,
           keys: set[tuple[int, int]] | None = None,
           files_tasks: TaskTable | None = None) -> Iterator[Record]:
    """The records the read-time options keep (``keys``: the threads of
    ``ns.thread``, as window.thread_keys finds them; ``files_tasks``: the trace's
    tasks, needed for ``--task``)."""
    files_tasks = files_tasks if files_tasks is not None else TaskTable()
    filt = Filter(parse(ns.filter or ()))
    notrace = Filter(parse(ns.notrace or ()))
    check_names = bool(filt.lines or notrace.lines)
    since = start + ns.since if ns.since is not None else None
    until = start + ns.until if ns.until is not None else None
    # --task: each thread's running task, from the task notes as they come
    # (the notes themselves are kept: the renderers read them too).
    wanted = task_numbers(files_tasks, ns.task) if ns.task is not None else None
    running = TaskTable()
    for rec in records:
        if wanted is not None:
            if rec.kind == TASK.name:
                running.note((rec.pid, rec.tid), rec.text or "")
            elif running.running((rec.pid, rec.tid)) not in wanted:
                continue
        if since is not None and rec.ts < since:
            continue
        if until is not None and rec.ts > until:
            break  # in time order: nothing after it is in the window
        if keys is not None and (rec.pid, rec.tid) not in keys:
            continue
        if rec.func and check_names:
            module, _, qualname = rec.func.partition(":")
            if not filt.selects(module, qualname) or notrace.excludes(module, qualname):
                continue
        if ns.depth is not None and rec.kind in ("entry", "exit") and rec.depth >= ns.depth:
            continue
        yield rec


#: A replayed function's identity: name, flags, source file, first line.
FunctionKey = tuple[str, int, str | None, int]


class Functions(dict[FunctionKey, RecordedFunction]):
    """One RecordedFunction per (name, flags, file, line): the renderers pair an
    exit with its entry by identity, as the live ones pair Function objects."""

    def __missing__(self, key: FunctionKey) -> RecordedFunction:
        fn = self[key] = RecordedFunction(*key)
        return fn


def event_of(rec: Record, funcs: Functions) -> tuple[Any, ...]:
    """The ring event ``rec`` was recorded from (the tuple fntrace/core/events.py
    declares for its kind; a size of 0: nothing accounts it any more)."""
    kind = rec.kind
    if kind == CALL.record:
        return (rec.ts, 0, CALL.tag, funcs[rec.func, rec.code_flags, rec.src_file, rec.src_line],
                funcs[rec.parent, 0, None, 0] if rec.parent is not None else None, rec.args,
                rec.event)
    if kind == ENTRY.record:
        return (rec.ts, 0, ENTRY.tag, funcs[rec.func, rec.code_flags, rec.src_file, rec.src_line],
                rec.depth, rec.args, rec.event)
    if kind == EXIT.record:
        return (rec.ts, 0, EXIT.tag, funcs[rec.func, rec.code_flags, rec.src_file, rec.src_line],
                rec.depth, rec.duration or 0, rec.event, rec.value)
    if kind == MARKER.record:
        return (rec.ts, 0, MARKER.tag, rec.text)
    if kind == TASK.name:
        return (rec.ts, 0, TASK.tag, rec.text)
    return (rec.ts, 0, TEXT.tag, rec.text)


def threads(files: list[TraceFile]) -> dict[tuple[int, int], RecordedThread]:
    """Every thread of the files by (pid, tid); several files number their CPUs anew."""
    many = len(files) > 1
    out: dict[tuple[int, int], RecordedThread] = {}
    for tf in files:
        for key, info in sorted(tf.threads.items(), key=lambda kv: kv[1].cpu):
            cpu = len(out) if many else info.cpu
            out[key] = RecordedThread(info.pid, info.tid, info.name, cpu, info.flags)
    return out


def lines(files: list[TraceFile], records: Iterable[Record], entries: int,
          tasks: TaskTable | None = None, task_column: bool = False,
          srcline: bool = False, no_notes: bool = False,
          batches: Iterable[list[Record]] | None = None) -> Iterator[str]:
    """The trace text of ``records`` (``entries`` of them, the header's count), line
    by line as the records are read; each line labelled with its pid when the
    files are several processes'; with ``srcline`` each line naming a called
    function ends with its ``/* FILE:LINE */``.  ``no_notes``: the caller knows
    the records hold no asyncio task note, so function_graph's text may be
    written by the C renderer (graph_render.py), several lines per string;
    ``batches``: the same records in lists (the renderer takes a list at once),
    read instead of ``records`` when given."""
    header = files[0].header
    by_key = threads(files)
    lost = sum(tf.lost.get(key, 0) for tf in files for key in tf.threads)
    options = dict(OPTIONS)
    saved = header.get("options", {}).get("instance_options", {})
    for name, value in saved.items():
        if name in options:
            options[name] = int(value)
    if task_column:
        options["funcgraph-task"] = 1
    tracer = str(header.get("tracer", "function"))
    if srcline:
        options[SRCLINE] = 1
    ctx = ftrace_text.Context(options, len(by_key), tasks)
    head = ftrace_text.trace_header(tracer, options, entries, entries + lost, len(by_key))
    funcs = Functions()
    width = max((len(str(t.pid)) for t in by_key.values()), default=1)
    fast = None
    if tracer == "function_graph" and no_notes:
        labels = [f"{t.pid:>{width}} " for t in by_key.values()] if len(files) > 1 else None
        fast = graph_render.graph_renderer(by_key, options, ctx, labels,
                                           lambda rec: event_of(rec, funcs))
    if len(files) == 1:
        yield head
    else:
        for line in head.splitlines(keepends=True):
            yield f"#{' ' * width} {line[1:]}" if line.strip() != "#" else line
    if fast is not None:
        yield from graph_render.render(fast, batches if batches is not None
                                       else batched(records))
        return
    pairs = ((by_key[rec.pid, rec.tid], event_of(rec, funcs)) for rec in records)
    if len(files) == 1:
        yield from ftrace_text.lines(tracer, pairs, ctx)
        return
    for thread, text in ftrace_text.thread_lines(tracer, pairs, ctx):
        label = f"{thread.pid:>{width}} "
        for line in text.splitlines(keepends=True):
            yield label + line


def replay(ns: ReplayOptions) -> int:
    """What ``fntrace replay`` prints; the exit status."""
    if ns.since is not None and ns.until is not None and ns.until < ns.since:
        raise SystemExit("fntrace replay: --to is before --from")
    try:
        Filter(parse(ns.filter or ()))
        Filter(parse(ns.notrace or ()))
    except ValueError as exc:
        raise SystemExit(f"fntrace replay: {exc}") from None
    files = open_files(ns.file, "replay", indexed=True)
    start = min(tf.start_ts for tf in files)
    keys = None
    if ns.thread:
        try:
            keys = thread_keys(files, ns.thread)
        except SelectionError as exc:
            raise SystemExit(f"fntrace replay: {exc}") from None
    no_notes = not any(tf.has_notes(TASK_PREFIX) for tf in files)
    tasks = TaskTable() if no_notes else tasks_of(files)
    if ns.task is not None:
        task_numbers(tasks, ns.task)  # the error before any output
    out = open(ns.output, "w", encoding="utf-8") if ns.output else sys.stdout
    try:
        entries = count(files, ns, start, keys, tasks)
        # --thread: only the chunks the index says hold those threads' events are read
        batches: Iterable[list[Record]] = merged_batches(files, skip_before(ns, start), keys)
        if not _isatty(out):  # on a terminal the lines themselves show the progress
            batches = progress_batches(batches, "fntrace replay")
        if selects(ns):
            batches = batched(select(chain.from_iterable(batches), ns, start, keys, tasks))
        out.writelines(lines(files, chain.from_iterable(batches), entries, tasks,
                             ns.task_column or bool(tasks.tasks), ns.srcline, no_notes,
                             batches))
        out.flush()
    except BrokenPipeError:
        return 0
    except KeyError as exc:
        # A record of a thread the footer's thread list leaves out: the renderer
        # took the threads from the footer before the chunks were read.
        key = exc.args[0] if len(exc.args) == 1 else exc.args  # C raises the key as args
        if not (isinstance(key, tuple) and len(key) == 2):
            raise
        pid, tid = key
        out.flush()
        raise SystemExit(f"fntrace replay: corrupt footer: thread {tid} of pid {pid} has "
                         f"events but is not in the footer's thread list; "
                         f"`fntrace info --scan` reads the file in full") from None
    finally:
        if out is not sys.stdout:
            out.close()
    say_problems(files, "replay")  # a chunk found broken when the replay reached it
    return exit_status(files)
