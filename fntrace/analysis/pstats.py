"""A recording as a ``pstats`` file: what cProfile writes, from a function_graph trace.

snakeviz, gprof2dot, tuna and the ``pstats`` module read the file
``cProfile.Profile.dump_stats`` writes: a ``marshal``-ed dict mapping a function
``(file, line, name)`` to ``(primitive calls, calls, self s, cumulative s,
callers)``, ``callers`` mapping each calling function to the same four numbers
for the calls it made.  The numbers here are the trace's, exact, counted as
``fntrace report`` counts them:

* calls: one per call, at its ``start`` entry (a generator's resumptions are
  runs, not calls); an exit whose entry is not in the file (tracing_thresh) is
  one call when final (return/unwind); an entry still open at the end of the
  trace is one call with no time;
* primitive calls: the calls made while the function was not already on its
  thread's stack (cProfile's meaning: recursion excluded);
* self time: the sum of the function's runs' self times (duration minus what
  ran directly below), as ``report``;
* cumulative time: the sum of the durations of the runs not nested in a run of
  the same function (so recursion is not counted twice, as cProfile does);
* callers: the function directly below on the stack the call was made from
  (a root function has none).

A function-tracer recording (calls with their caller, no durations) gives the
calls and callers with zero times.

A function is keyed ``(file, first line, "module:qualname")``, its source
file and first line as the trace file keeps them (``pstats`` prints
``file:line(module:qualname)``); where they are not kept (a version-1 file)
``("~", 0, "module:qualname")``, the form cProfile uses for a function with
no source file, which ``pstats`` prints as the name alone.  A caller's key is
the same as its own row's.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from fntrace.analysis.locations import Location, Locations
from fntrace.analysis.segments import FINAL_EXITS, RecordLike, Segment, Unfinished, walk

__all__ = ["FuncKey", "Row", "pstats_dict", "write_pstats"]

FuncKey = tuple[str, int, str]


def func_key(func: str, where: Location | None = None) -> FuncKey:
    """The pstats key of a function named ``module:qualname`` (at ``where``:
    its source file and first line, when known)."""
    return ("~", 0, func) if where is None else (where[0], where[1], func)


@dataclass
class Row:
    """Accumulated numbers for one function, or one caller->callee edge (ns)."""

    cc: int = 0
    nc: int = 0
    tt: int = 0
    ct: int = 0

    def as_tuple(self) -> tuple[int, int, float, float]:
        return (self.cc, self.nc, self.tt / 1e9, self.ct / 1e9)


def _add(row: Row, calls: int, primitive: bool, self_ns: int, cum_ns: int) -> None:
    row.nc += calls
    if primitive:
        row.cc += calls
        row.ct += cum_ns
    row.tt += self_ns


def pstats_dict(records: Iterable[RecordLike]) -> dict[FuncKey, tuple[
        int, int, float, float, dict[FuncKey, tuple[int, int, float, float]]]]:
    """The dict ``pstats.Stats`` loads, from records in time order."""
    rows: dict[str, Row] = {}
    edges: dict[str, dict[str, Row]] = {}

    def account(func: str, caller: str | None, calls: int, primitive: bool,
                self_ns: int, cum_ns: int) -> None:
        row = rows.get(func)
        if row is None:
            row = rows[func] = Row()
        _add(row, calls, primitive, self_ns, cum_ns)
        if caller is not None:
            by = edges.setdefault(func, {})
            edge = by.get(caller)
            if edge is None:
                edge = by[caller] = Row()
            _add(edge, calls, primitive, self_ns, cum_ns)

    locations = Locations()
    for item in walk(locations.watch(records)):
        if isinstance(item, Segment):
            stack = item.stack
            calls = 1 if item.entry_event == "start" or (
                not item.matched and item.exit_event in FINAL_EXITS) else 0
            account(item.func, stack[-2] if len(stack) > 1 else None, calls,
                    item.func not in stack[:-1], item.self_ns, item.duration)
        elif isinstance(item, Unfinished):
            if item.entry_event == "start":
                stack = item.stack
                account(item.func, stack[-2] if len(stack) > 1 else None, 1,
                        item.func not in stack[:-1], 0, 0)
        elif item.kind == "call":
            account(item.func, item.parent, 1, item.func != item.parent, 0, 0)
    out = {}
    where = locations.get
    for func, row in rows.items():
        callers = {func_key(c, where(c)): e.as_tuple() for c, e in edges.get(func, {}).items()}
        out[func_key(func, where(func))] = (*row.as_tuple(), callers)
    return out


def write_pstats(records: Iterable[RecordLike], out: IO[bytes]) -> int:
    """Write the marshal-ed stats to the binary ``out``; returns the number of functions."""
    stats = pstats_dict(records)
    marshal.dump(stats, out)
    return len(stats)
