"""The one event schema: every kind of event fntrace writes, declared once.

An event lives as a plain tuple in a thread's ring buffer (the hot path
builds a tuple literal: nothing cheaper exists in CPython), is stored in the
trace file as a record of one of five file kinds, and is rendered as text by
the renderer registered for its kind (fntrace/tracing/ftrace_text.py).  This
module is what all of them agree on, and it imports nothing of fntrace, so
the ring buffer, the tracers, the trace-file format and the test that checks
the C extension's constants (tests/test_event_schema.py) all read it:

* the ring tuple of each kind, field by field: ``(ts, size, tag, *payload)``.
  Readers index it by name through the kind's ``at`` (``ev[CALL.at.ip]``, a
  class whose attributes are the indexes), so no reader counts positions and
  no writer pays anything;
* the kind's file record (``call``, ``entry``, ``exit``, ``marker``, or
  ``text``: a kind the file does not store field by field is stored as the
  line its renderer makes of it when it is recorded) and that record's code;
* ``EVENT_OVERHEAD``, the bytes a ring buffer accounts for an event before
  its text fields (the C extension has the same number).

The file's event codes (the entry/exit event: ``start``... ``unwind``) are
here too: they are ``fntrace.core.flags.Event``'s values, numbered.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Generic, TypeVar
else:
    class Generic:
        """typing.Generic's stand-in at run time (typing costs more than this whole
        module): subscripting gives the class back, the parameter is the type
        checker's."""

        __slots__ = ()

        def __class_getitem__(cls, item: object) -> type:
            return cls

__all__ = [
    "BY_TAG",
    "CALL",
    "C_CONSTANTS",
    "ENTRY",
    "EVENT_CODES",
    "EVENT_NAMES",
    "EVENT_OVERHEAD",
    "EVENT_SHIFT",
    "EXIT",
    "FAIL",
    "KINDS",
    "MARKER",
    "PROBE",
    "RECORD_CODES",
    "RECORD_KINDS",
    "STACK",
    "TASK",
    "TASK_PREFIX",
    "TEXT",
    "TEXT_FLAG",
    "EventKind",
]

#: Bytes a ring buffer accounts for an event before its text fields (a tuple and
#: its ints); the C recorders account the same (tests/test_event_schema.py).
EVENT_OVERHEAD = 64


class Layout:
    """A ring tuple's fields: each class attribute is a field's index, in order.

    Class attributes, not a NamedTuple: reading ``CALL.at.ip`` is one attribute
    lookup, and defining them costs nothing at import."""

    ts = 0
    size = 1
    kind = 2

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        found = {name: value for c in reversed(cls.__mro__) for name, value in vars(c).items()
                 if type(value) is int and not name.startswith("_")}  # 3.13: __firstlineno__
        ordered = tuple(sorted(found, key=found.__getitem__))
        if [found[n] for n in ordered] != list(range(len(ordered))):
            raise TypeError(f"{cls.__name__}: field indexes are not 0..n-1")
        return ordered


# The ring tuple of each kind: its fields after (ts, size, kind), by index.
class CallAt(Layout):
    """function tracer: one call (or resumption) and its caller."""

    ip = 3        # the Function called
    parent = 4    # its caller's Function, or None
    args = 5      # the arguments' text (func-args), or None
    event = 6     # start / resume / throw


class EntryAt(Layout):
    """function_graph: a call segment starts."""

    fn = 3        # the Function
    depth = 4     # its nesting level in its thread
    args = 5      # the arguments' text (funcgraph-args), or None
    event = 6     # start / resume / throw


class ExitAt(Layout):
    """function_graph: a call segment ends."""

    fn = 3
    depth = 4
    duration = 5  # ns since its entry
    event = 6     # return / yield / unwind
    value = 7     # the return value's text (funcgraph-retval), the exception's type, or None


class MarkerAt(Layout):
    """A trace_marker write (or a note of fntrace's own)."""

    text = 3


class StackAt(Layout):
    """func_stack_trace / a stacktrace trigger: the Python stack, innermost first."""

    lines = 3     # a tuple of ``module:qualname (file:line)`` strings


class FailAt(Layout):
    """fail_function: one injected failure."""

    ip = 3        # the Function that failed
    text = 4      # what it was made to do


class ProbeAt(Layout):
    """A dynamic (probe) event's hit."""

    name = 3      # the event's name
    fn = 4        # the Function probed
    text = 5      # its fields, ``name=value ...``
    event = 6


class TaskAt(Layout):
    """An asyncio task note (fntrace/tracing/tasks.py): the thread's running task
    changed (``run N``), a task was made (``new {json}``) or ended (``end {json}``)."""

    info = 3      # the note's text


class TextAt(Layout):
    """A line recorded already rendered (a text record read back from a file)."""

    text = 3


if TYPE_CHECKING:
    L = TypeVar("L", bound=Layout)
else:
    L = Layout


class EventKind(Generic[L]):
    """One kind of event: its ring tuple and its file record."""

    __slots__ = ("at", "code", "fields", "name", "record", "tag")

    def __init__(self, name: str, tag: str, at: type[L], record: str, code: int) -> None:
        self.name = name        # the kind's name (renderers are registered by it)
        self.tag = tag          # the ring tuple's third field
        self.at = at            # field name -> index in the ring tuple
        self.fields = at.fields()  # the ring tuple's field names, in order
        self.record = record    # the file record kind it is stored as
        self.code = code        # that record kind's code (3 low bits of a record's head)

    def __repr__(self) -> str:
        return f"<event kind {self.name} {self.tag!r}: {', '.join(self.fields)}>"


# File record codes: each stored kind's number (readers of old files depend on them).
_CALL, _ENTRY, _EXIT, _MARKER, _TEXT = range(5)

CALL = EventKind("call", "F", CallAt, "call", _CALL)
ENTRY = EventKind("entry", "E", EntryAt, "entry", _ENTRY)
EXIT = EventKind("exit", "X", ExitAt, "exit", _EXIT)
MARKER = EventKind("marker", "M", MarkerAt, "marker", _MARKER)
STACK = EventKind("stack", "K", StackAt, "text", _TEXT)
FAIL = EventKind("fail", "J", FailAt, "text", _TEXT)
PROBE = EventKind("probe", "P", ProbeAt, "text", _TEXT)
TEXT = EventKind("text", "~", TextAt, "text", _TEXT)
#: Stored as a marker record whose text starts with TASK_PREFIX, so a reader that
#: knows no tasks still reads the file (it shows the note as a marker line).
TASK = EventKind("task", "T", TaskAt, "marker", _MARKER)
#: A task note's marker text begins with this (a control character no trace_marker
#: write may start with: fntrace/tracing/trace_files.py refuses it).
TASK_PREFIX = "\x1ftask "

#: Every kind, and each by its ring tag.
KINDS: tuple[EventKind[Any], ...] = (CALL, ENTRY, EXIT, MARKER, STACK, FAIL, PROBE, TEXT, TASK)
BY_TAG: dict[str, EventKind[Any]] = {k.tag: k for k in KINDS}

#: The file's record kinds, by code (the index).
RECORD_KINDS: tuple[str, ...] = ("call", "entry", "exit", "marker", "text")
RECORD_CODES: dict[str, int] = {name: i for i, name in enumerate(RECORD_KINDS)}

#: The entry/exit events (fntrace.core.flags.Event's values) by their code in the
#: file (the next 3 bits of a record's head; 0: none, a marker or a text line).
EVENT_NAMES: tuple[str, ...] = ("", "start", "resume", "throw", "return", "yield", "unwind")
EVENT_CODES: dict[str, int] = {e: i for i, e in enumerate(EVENT_NAMES)}
#: A record's head byte: record code in the low bits, event code shifted by this.
EVENT_SHIFT = 3
#: And this bit set when a call, entry or exit record carries a text (its
#: arguments, or its value) after its fields (format version 4; before it
#: every such record stored an optional text, 0 when it had none).
TEXT_FLAG = 1 << 6

#: What the C extension ``#define``s of this schema (fntrace/csrc/events.h), by
#: name: tests/test_event_schema.py reads the C sources and checks that each is
#: defined there once, with this value (CALL's ip and ENTRY's fn share index 3).
C_CONSTANTS: dict[str, int | str] = {
    "EVENT_OVERHEAD": EVENT_OVERHEAD,
    **{f"EVENT_TAG_{k.name.upper()}": k.tag for k in (CALL, ENTRY, EXIT, TASK)},
    "EVENT_TS": Layout.ts, "EVENT_SIZE": Layout.size, "EVENT_KIND": Layout.kind,
    "EVENT_FN": EntryAt.fn,
    "CALL_PARENT": CallAt.parent, "CALL_ARGS": CallAt.args, "CALL_EVENT": CallAt.event,
    "CALL_LEN": len(CALL.fields),
    "ENTRY_DEPTH": EntryAt.depth, "ENTRY_ARGS": EntryAt.args, "ENTRY_EVENT": EntryAt.event,
    "ENTRY_LEN": len(ENTRY.fields),
    "EXIT_DEPTH": ExitAt.depth, "EXIT_DURATION": ExitAt.duration, "EXIT_EVENT": ExitAt.event,
    "EXIT_VALUE": ExitAt.value, "EXIT_LEN": len(EXIT.fields),
    **{f"FILE_KIND_{k.name.upper()}": k.code for k in (CALL, ENTRY, EXIT, MARKER)},
    "TASK_INFO": TaskAt.info, "TASK_LEN": len(TASK.fields),
    "FILE_EVENT_SHIFT": EVENT_SHIFT,
    "FILE_TEXT_FLAG": TEXT_FLAG,
}
