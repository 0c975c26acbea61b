"""Function triggers: the command lines of set_ftrace_filter.

``func:traceon[:N]``, ``func:traceoff[:N]``, ``func:snapshot[:N]``,
``func:stacktrace[:N]`` and ``func:dump`` act when a matching function is
entered (a call, not a resumption), as the kernel's function probes do:

* traceon / traceoff set the instance's ``tracing_on``; like the kernel they
  act only when that changes something, and only an action uses up a count;
* snapshot swaps the live buffer into the snapshot (each hit uses a count);
* stacktrace writes a stack event, only while tracing is on (a hit while it is
  off uses nothing up);
* dump writes the whole ``trace`` file to stderr, once (the kernel registers
  it with a count of 1: "only dump once").

Triggers do not depend on the current tracer, on the function filter, on
set_ftrace_notrace or on the pid files: each instance has one ops of its own
(the kernel's probe ops), whose filter is the union of the trigger globs,
registered while at least one trigger exists.  That ops records nothing
itself; only the actions above write.

Counts are kept per trigger line, not per matched function as the kernel
keeps them: Python functions are found lazily, so a glob cannot be expanded
into a fixed list of functions when it is written, and ``set_ftrace_filter``
shows each line once, ``glob:cmd:count=N`` (remaining) or ``glob:cmd:unlimited``.

Callbacks never take the instance lock: ``apply`` runs under it and may wait
(in unregister) for callbacks in flight.
"""

from __future__ import annotations

import sys
import threading

from fntrace.core import engine, forksafe
from fntrace.core.filter import EVENT_COMMANDS, Filter, FilterLine, parse_line
from fntrace.core.flags import Event
from fntrace.core.ops import Ops

TYPE_CHECKING = False
if TYPE_CHECKING:
    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function
    from fntrace.tracing.files import FileTable
    from fntrace.tracing.instance import Instance

__all__ = ["Trigger", "Triggers", "apply", "register_files", "text"]


class Trigger:
    """One trigger line and its remaining count (None: unlimited)."""

    __slots__ = ("line", "remaining")

    def __init__(self, line: FilterLine) -> None:
        self.line = line
        # dump fires once, as in the kernel; the others take the line's count.
        self.remaining: int | None = 1 if line.command == "dump" else line.count

    def text(self) -> str:
        tail = "unlimited" if self.remaining is None else f"count={self.remaining}"
        return f"{self.line.glob}:{self.line.command}:{tail}\n"


def _renew_lock(triggers: Triggers) -> None:
    triggers.lock = threading.Lock()  # see fntrace/core/forksafe.py


class Triggers:
    """An instance's triggers and the ops that fires them."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.active: tuple[Trigger, ...] = ()
        # Module -> qualname -> the triggers matching it; replaced whole with
        # ``active``.  Keyed by name, which is all a match reads: code made and
        # dropped over and over (exec, dataclasses) adds no entry per code object;
        # and by its two parts, whose strings keep their hash (nothing is made
        # per event).
        self.cache: dict[str, dict[str, tuple[Trigger, ...]]] = {}
        self.lock = threading.Lock()  # count check-and-decrement
        forksafe.renew_in_child(self, _renew_lock)
        self.ops = Ops(self.entry)  # filter set by set() before registering

    def set(self, active: tuple[Trigger, ...]) -> None:
        """Install a new trigger set: ops filter first, then the set it serves.

        ``active`` is stored before ``cache`` and ``matching`` reads them in the
        other order, so a new cache never receives an entry computed from an
        old set.
        """
        filt = _union(active)
        if not self.ops.registered:
            self.ops.filter = filt
            self.active, self.cache = active, {}
            engine.register(self.ops)
            return
        engine.update_filters(self.ops, filt, Filter())
        self.active, self.cache = active, {}

    def stop(self) -> None:
        if self.ops.registered:
            engine.unregister(self.ops)
        self.active, self.cache = (), {}

    def matching(self, ip: Function) -> tuple[Trigger, ...]:
        cache = self.cache  # read once, before active (see set)
        in_module = cache.get(ip.module)
        found = in_module.get(ip.qualname) if in_module is not None else None
        if found is None:
            found = tuple(t for t in self.active if t.line.matches(ip.module, ip.qualname))
            cache.setdefault(ip.module, {})[ip.qualname] = found
        return found

    def entry(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        if fregs.event != Event.START:
            return
        for trig in self.matching(ip):
            self.fire(trig, fregs)

    def fire(self, trig: Trigger, fregs: FtraceRegs) -> None:
        inst = self.inst
        command = trig.line.command
        if command in ("traceon", "traceoff"):
            on = command == "traceon"
            if trig.remaining is None:
                inst.tracing_on = on
                return
            with self.lock:
                if trig.remaining <= 0 or inst.tracing == on:
                    return
                inst.tracing_on = on
                trig.remaining -= 1
            return
        if command == "stacktrace" and not inst.tracing:
            return
        if not self.use(trig):
            return
        if command == "snapshot":
            inst.rb.take_snapshot()
        elif command == "stacktrace":
            from fntrace.tracing.tracers.function import write_stack

            write_stack(inst, fregs.frame)
        elif command == "dump":
            sys.stderr.write(inst.read("trace"))
            sys.stderr.flush()

    def use(self, trig: Trigger) -> bool:
        """Take one from the count; False when it is used up."""
        if trig.remaining is None:
            return True
        with self.lock:
            if trig.remaining <= 0:
                return False
            trig.remaining -= 1
            return True


def _union(active: tuple[Trigger, ...]) -> Filter:
    """A function filter selecting every function some trigger names."""
    return Filter([parse_line(t.line.glob) for t in active])


def apply(inst: Instance, lines: list[FilterLine]) -> None:
    """Make ``lines`` the instance's trigger set.

    A line already in the set (the same object, kept by the instance) keeps
    its remaining count; a line written again is a new object and starts
    over.  Raises ValueError, changing nothing, for commands fntrace cannot
    serve (enable_event/disable_event: there are no events).
    """
    for ln in lines:
        if ln.command in EVENT_COMMANDS:
            raise ValueError(f"set_ftrace_filter: {ln.text!r}: fntrace has no trace events "
                             f"for {ln.command}")
    current: Triggers | None = inst.triggers
    if not lines:
        if current is not None:
            current.stop()
            inst.triggers = None
        return
    old = {id(t.line): t for t in current.active} if current is not None else {}
    active = tuple(old.get(id(ln)) or Trigger(ln) for ln in lines)
    trig = current if current is not None else Triggers(inst)
    trig.set(active)
    inst.triggers = trig


def text(inst: Instance) -> str:
    """The trigger lines of set_ftrace_filter, with their remaining counts."""
    current: Triggers | None = inst.triggers
    if current is None:
        return ""
    return "".join(t.text() for t in current.active)


def _close(inst: Instance) -> None:
    if inst.triggers is not None:
        apply(inst, [])


def register_files(table: FileTable) -> None:
    """Triggers are lines of set_ftrace_filter (filter_files.py); closing removes them."""
    table.on_close(_close)
