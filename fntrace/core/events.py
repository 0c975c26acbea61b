"""The one event schema: every kind of event fntrace writes, declared once.

An event lives as a plain tuple in a thread's ring buffer (the hot path
builds a tuple literal: nothing cheaper exists in CPython), is stored in the
trace file as a record of one of five file kinds, and is rendered as text by
the renderer registered for its kind (fntrace/tracing/ftrace_text.py).  This
module is what all of them agree on, and it imports nothing of fntrace, so
the ring buffer, the tracers, the trace-file format and the test that checks
the C extension's constants (tests/test_event_schema.py) all read it:

* the ring tuple of each kind, field by field: ``(ts, size, tag, *payload)``.
  Readers index it by name through the kind's ``at`` (``ev[CALL.at.ip]``):
  a NamedTuple of indices, read by a C-level attribute getter, so no reader
  counts positions and no writer pays anything;
* the kind's file record (``call``, ``entry``, ``exit``, ``marker``, or
  ``text``: a kind the file does not store field by field is stored as the
  line its renderer makes of it when it is recorded) and that record's code;
* ``EVENT_OVERHEAD``, the bytes a ring buffer accounts for an event before
  its text fields (the C extension has the same number).

The file's event codes (the entry/exit event: ``start``... ``unwind``) are
here too: they are ``fntrace.core.flags.Event``'s values, numbered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

__all__ = [
    "BY_TAG",
    "CALL",
    "C_CONSTANTS",
    "ENTRY",
    "EVENT_CODES",
    "EVENT_NAMES",
    "EVENT_OVERHEAD",
    "EXIT",
    "FAIL",
    "KINDS",
    "MARKER",
    "PROBE",
    "RECORD_CODES",
    "RECORD_KINDS",
    "STACK",
    "TEXT",
    "EventKind",
]

#: Bytes a ring buffer accounts for an event before its text fields (a tuple and
#: its ints); the C recorders account the same (tests/test_event_schema.py).
EVENT_OVERHEAD = 64


# The ring tuple of each kind, as a NamedTuple of its field names (the instance
# kept in ``EventKind.at`` holds each field's index).
class CallAt(NamedTuple):
    """function tracer: one call (or resumption) and its caller."""

    ts: int
    size: int
    kind: int
    ip: int        # the Function called
    parent: int    # its caller's Function, or None
    args: int      # the arguments' text (func-args), or None
    event: int     # start / resume / throw


class EntryAt(NamedTuple):
    """function_graph: a call segment starts."""

    ts: int
    size: int
    kind: int
    fn: int        # the Function
    depth: int     # its nesting level in its thread
    args: int      # the arguments' text (funcgraph-args), or None
    event: int     # start / resume / throw


class ExitAt(NamedTuple):
    """function_graph: a call segment ends."""

    ts: int
    size: int
    kind: int
    fn: int
    depth: int
    duration: int  # ns since its entry
    event: int     # return / yield / unwind
    value: int     # the return value's text (funcgraph-retval), the exception's type, or None


class MarkerAt(NamedTuple):
    """A trace_marker write (or a note of fntrace's own)."""

    ts: int
    size: int
    kind: int
    text: int


class StackAt(NamedTuple):
    """func_stack_trace / a stacktrace trigger: the Python stack, innermost first."""

    ts: int
    size: int
    kind: int
    lines: int     # a tuple of ``module:qualname (file:line)`` strings


class FailAt(NamedTuple):
    """fail_function: one injected failure."""

    ts: int
    size: int
    kind: int
    ip: int        # the Function that failed
    text: int      # what it was made to do


class ProbeAt(NamedTuple):
    """A dynamic (probe) event's hit."""

    ts: int
    size: int
    kind: int
    name: int      # the event's name
    fn: int        # the Function probed
    text: int      # its fields, ``name=value ...``
    event: int


class TextAt(NamedTuple):
    """A line recorded already rendered (a text record read back from a file)."""

    ts: int
    size: int
    kind: int
    text: int


A = TypeVar("A", bound=tuple[Any, ...])


@dataclass(frozen=True)
class EventKind(Generic[A]):
    """One kind of event: its ring tuple and its file record."""

    name: str          # the kind's name (renderers are registered by it)
    tag: str           # the ring tuple's third field
    at: A              # field name -> index in the ring tuple
    record: str        # the file record kind it is stored as
    code: int          # that record kind's code in the file (3 low bits of a record's head)

    @property
    def fields(self) -> tuple[str, ...]:
        return self.at._fields  # type: ignore[attr-defined, no-any-return]


def _at(cls: type[A]) -> A:
    return cls(*range(len(cls._fields)))  # type: ignore[attr-defined]


# File record codes: each stored kind's number (readers of old files depend on them).
_CALL, _ENTRY, _EXIT, _MARKER, _TEXT = range(5)

CALL = EventKind("call", "F", _at(CallAt), "call", _CALL)
ENTRY = EventKind("entry", "E", _at(EntryAt), "entry", _ENTRY)
EXIT = EventKind("exit", "X", _at(ExitAt), "exit", _EXIT)
MARKER = EventKind("marker", "M", _at(MarkerAt), "marker", _MARKER)
STACK = EventKind("stack", "K", _at(StackAt), "text", _TEXT)
FAIL = EventKind("fail", "J", _at(FailAt), "text", _TEXT)
PROBE = EventKind("probe", "P", _at(ProbeAt), "text", _TEXT)
TEXT = EventKind("text", "~", _at(TextAt), "text", _TEXT)

#: Every kind, and each by its ring tag.
KINDS: tuple[EventKind[Any], ...] = (CALL, ENTRY, EXIT, MARKER, STACK, FAIL, PROBE, TEXT)
BY_TAG: dict[str, EventKind[Any]] = {k.tag: k for k in KINDS}

#: The file's record kinds, by code (the index).
RECORD_KINDS: tuple[str, ...] = ("call", "entry", "exit", "marker", "text")
RECORD_CODES: dict[str, int] = {name: i for i, name in enumerate(RECORD_KINDS)}

#: The entry/exit events (fntrace.core.flags.Event's values) by their code in the
#: file (the next 3 bits of a record's head; 0: none, a marker or a text line).
EVENT_NAMES: tuple[str, ...] = ("", "start", "resume", "throw", "return", "yield", "unwind")
EVENT_CODES: dict[str, int] = {e: i for i, e in enumerate(EVENT_NAMES)}

#: What the C extension may ``#define`` of this schema, by name: a test reads the
#: C sources and checks every one it defines (EVENT_OVERHEAD must be defined).
C_CONSTANTS: dict[str, int | str] = {
    "EVENT_OVERHEAD": EVENT_OVERHEAD,
    **{f"FNT_RECORD_{name.upper()}": code for code, name in enumerate(RECORD_KINDS)},
    **{f"FNT_TAG_{k.name.upper()}": k.tag for k in (CALL, ENTRY, EXIT)},
    **{f"FNT_EVENT_{name.upper()}": code for code, name in enumerate(EVENT_NAMES) if name},
}
