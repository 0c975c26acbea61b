"""A failed test's function_graph, cut to what a reader needs: the tail, the raise marked.

The pytest plugin and the IPython magic read an instance's ``trace`` file (the
kernel's function_graph text) and show it under a failure.  Two things make
that text useful there: only its last lines (the calls just before the
failure; a long test writes thousands), and a mark on the call the failure's
exception came out of, found from the traceback rather than guessed from the
text, since a test may have caught and survived other exceptions before.

Pure text and frames: nothing here traces or imports the core.
"""

from __future__ import annotations

import types
from collections.abc import Iterator

__all__ = ["MARK", "graph_lines", "mark_raise", "section", "traceback_names"]

#: Appended to the line of the call the exception came out of.
MARK = "  <-- raised here"


def graph_lines(trace_text: str) -> list[str]:
    """The event lines of a ``trace`` read, without its ``#`` header."""
    return [ln for ln in trace_text.splitlines() if ln and not ln.startswith("#")]


def traceback_names(tb: types.TracebackType | None) -> list[str]:
    """``module:qualname`` of each frame of a traceback, innermost first: the names
    fntrace gives those functions (the module is the frame's ``__name__``)."""
    names: list[str] = []
    while tb is not None:
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__")
        names.append(f"{module if isinstance(module, str) else '?'}:{frame.f_code.co_qualname}")
        tb = tb.tb_next
    names.reverse()
    return names


def _body(line: str) -> str:
    """The FUNCTION CALLS column of a function_graph line."""
    _, bar, rest = line.partition("|")
    return rest.strip() if bar else ""


def _raised_by(line: str, name: str) -> bool:
    """Whether ``line`` is ``name`` leaving by an exception: ``/* raised */``, or
    ``/* raised TYPE */`` where the exception is known (3.12+)."""
    body = _body(line)
    if body.startswith(f"}} /* {name} raised"):  # the closing line of a call with children
        return True
    # A leaf call: ``name(args); /* raised ... */`` (args may be absent).
    return body.startswith(f"{name}(") and "; /* raised" in body


def mark_raise(lines: list[str], names: list[str]) -> int | None:
    """Mark the line of the innermost traceback function that the trace shows raising
    (its last such line); returns its index, or None when no traced function raised it
    (the test's own code did, or the raise is older than the lines kept)."""
    for name in names:
        for i in range(len(lines) - 1, -1, -1):
            if _raised_by(lines[i], name):
                lines[i] += MARK
                return i
    return None


def _tail(lines: list[str], limit: int) -> Iterator[str]:
    if limit and len(lines) > limit:
        yield f"... {len(lines) - limit} earlier lines not shown"
        yield from lines[-limit:]
    else:
        yield from lines


def section(trace_text: str, exc_tb: types.TracebackType | None, limit: int) -> str:
    """The section text: the graph's last ``limit`` lines (0: all), the raise marked.

    The raise is marked before the cut, so a mark is never lost to it; when the
    marked line falls outside the tail, the tail still ends with the calls after it.
    """
    lines = graph_lines(trace_text)
    if not lines:
        return "(no traced call in this test)\n"
    mark_raise(lines, traceback_names(exc_tb))
    return "".join(f"{ln}\n" for ln in _tail(lines, limit))
