"""Probe events: what ``dynamic_events`` defines, and how each one records.

One event is one Ops of its own, independent of the current tracer (it works
under ``nop``), registered only while the event is enabled: as in the kernel,
dynamic events are created disabled (``events/GRP/EVENT/enable``: 1 enables).
Entry events fire at a call's start (not at generator resumptions); %return
events fire when the call ends (a return, or an exception leaving it — not at
a ``yield``).  A %return event captures its entry fields (everything except
``$retval`` and ``$stack``) when the call starts, in a dict keyed by the
frame: a generator's frame may leave its thread's stack between its start and
its end, so a per-thread stack could not find it again.  The dict is bounded
(``MAX_PENDING``; calls beyond it are counted in ``nmissed`` and not
reported) and cleared when the event is disabled.

Events respect ``tracing_on`` (checked when writing) and the pid files, and a
filter (``events/GRP/EVENT/filter``) on the fetched fields.  Callbacks never
take the instance lock: enable/disable run under it and may wait (in
unregister) for callbacks in flight.
"""

from __future__ import annotations

import types

from fntrace.core import engine
from fntrace.core.events import EVENT_OVERHEAD
from fntrace.core.events import PROBE as _PROBE_KIND
from fntrace.core.filter import Filter
from fntrace.core.flags import Event
from fntrace.core.ops import Ops
from fntrace.core.oscaps import native_id
from fntrace.tracing.probes.fetch import fetch_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function
    from fntrace.tracing.files import FileTable
    from fntrace.tracing.instance import Instance
    from fntrace.tracing.probes.condition import Condition
    from fntrace.tracing.probes.fetch import Field
    from fntrace.tracing.probes.parser import ProbeSpec, RemoveSpec, SpecError

__all__ = ["MAX_PENDING", "PROBE", "ProbeEvent", "ProbeEvents", "register_files"]

PROBE = _PROBE_KIND.tag  # (ts, size, "P", event name, fn, fields text, event): events.ProbeAt
MAX_PENDING = 4096


class ProbeEvent:
    """One defined event: its spec, enable switch, filter and (when enabled) ops."""

    def __init__(self, inst: Instance, spec: ProbeSpec) -> None:
        self.inst = inst
        self.spec = spec
        self.cond: Condition | None = None
        self.ops: Ops | None = None
        self.pending: dict[types.FrameType, list[list[Field]]] = {}
        self.nmissed = 0
        self.entry_args = tuple(a for a in spec.args if not a.at_exit)
        self.exit_args = tuple(a for a in spec.args if a.at_exit)
        names = [a.name for a in spec.args]
        # $arg* names fields after the parameters of whatever function matched.
        self.field_names: set[str] | None = None if "$arg*" in names else set(names)

    @property
    def enabled(self) -> bool:
        return self.ops is not None

    def enable(self) -> None:
        if self.ops is not None:
            return
        filt = Filter([self.spec.func])
        if self.spec.is_return:
            ops = Ops(self._stash if self.entry_args else None, ret=self._exit, filter=filt)
        else:
            ops = Ops(self._entry, filter=filt)
        engine.register(ops)
        self.ops = ops

    def disable(self) -> None:
        ops, self.ops = self.ops, None
        if ops is not None:
            engine.unregister(ops)
        self.pending.clear()

    def set_filter(self, text: str) -> None:
        if text.strip() == "0":
            self.cond = None
        else:
            from fntrace.tracing.probes.condition import parse_condition

            self.cond = parse_condition(text.strip("\n"), self.field_names)

    # -- callbacks (hot path) ------------------------------------------------
    def _allowed(self) -> bool:
        inst = self.inst
        return not inst.pid_filtered or inst.pid_allowed(native_id())

    def _entry(self, ip: Function, parent: Function | None, ops: Ops,
               fregs: FtraceRegs) -> None:
        if fregs.event != Event.START or not self.inst.tracing or not self._allowed():
            return
        self._record(ip, fregs, fetch_all(self.spec.args, fregs, self.inst.safe_repr))

    def _stash(self, ip: Function, parent: Function | None, ops: Ops,
               fregs: FtraceRegs) -> None:
        if fregs.event != Event.START or not self._allowed():
            return
        if len(self.pending) >= MAX_PENDING:
            self.nmissed += 1
            return
        self.pending[fregs.frame] = fetch_all(self.entry_args, fregs, self.inst.safe_repr)

    def _exit(self, ip: Function, parent: Function | None, ops: Ops,
              fregs: FtraceRegs) -> None:
        if fregs.event == Event.YIELD:
            return
        if self.entry_args:
            saved = self.pending.pop(fregs.frame, None)
            if saved is None:  # the entry was not seen (enabled meanwhile, or missed)
                return
        else:
            saved = []
        if not self.inst.tracing or not self._allowed():
            return
        late = iter(fetch_all(self.exit_args, fregs, self.inst.safe_repr))
        early = iter(saved)
        groups = [next(late) if a.at_exit else next(early) for a in self.spec.args]
        self._record(ip, fregs, groups)

    def _record(self, ip: Function, fregs: FtraceRegs, groups: list[list[Field]]) -> None:
        cond = self.cond
        if cond is not None:
            values: dict[str, Any] = {n: v for group in groups for n, v, _ in group}
            if not cond.matches(values):
                return
        text = " ".join(f"{n}={t}" for group in groups for n, _, t in group)
        rb = self.inst.rb
        rb.write((rb.now(), EVENT_OVERHEAD + len(text), PROBE, self.spec.event, ip, text,
                  fregs.event))


class ProbeEvents:
    """An instance's probe events and their files (``dynamic_events``, ``events/``)."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.events: dict[tuple[str, str], ProbeEvent] = {}

    # -- dynamic_events ---------------------------------------------------------
    def read(self) -> str:
        return "".join(f"{ev.spec.text()}\n" for ev in self.events.values())

    def write(self, text: str, append: bool) -> None:
        """Apply every line, or none: a malformed line or a conflict changes nothing.

        Without append the existing events are removed first (the kernel's
        O_TRUNC), which is refused while one of them is enabled (EBUSY), as is
        removing an enabled event with ``-:``.
        """
        # The grammar is loaded by the first definition: an instance that never
        # defines an event (every recording without probes) never imports it.
        from fntrace.tracing.probes.parser import RemoveSpec, SpecError, parse_spec

        lines = text.splitlines()
        specs: list[tuple[int, str, ProbeSpec | RemoveSpec]] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                specs.append((number, line, parse_spec(line)))
            except SpecError as exc:
                raise _numbered(exc, number, len(lines)) from None
        if not append:
            busy = [k for k, ev in self.events.items() if ev.enabled]
            if busy:
                raise engine.BusyError(f"dynamic_events: {busy[0][0]}/{busy[0][1]} is "
                                       "enabled; disable it before clearing")
        new = dict(self.events) if append else {}
        for number, line, spec in specs:
            key = (spec.group, spec.event)
            if isinstance(spec, RemoveSpec):
                old = new.get(key)
                if old is None:
                    error = SpecError(line, spec.name_column, f"no event {key[0]}/{key[1]}")
                    raise _numbered(error, number, len(lines))
                if old.enabled:
                    raise engine.BusyError(f"dynamic_events: {key[0]}/{key[1]} is enabled; "
                                           "disable it before removing it")
                del new[key]
            else:
                if key in new:
                    error = SpecError(line, spec.name_column,
                                      f"event {key[0]}/{key[1]} already exists")
                    raise _numbered(error, number, len(lines))
                new[key] = ProbeEvent(self.inst, spec)
        self.events = new

    # -- events/GRP/EVENT/{enable,filter} ----------------------------------------
    def files(self) -> set[str]:
        out: set[str] = set()
        for group, event in self.events:
            out |= {f"events/{group}/{event}/enable", f"events/{group}/{event}/filter"}
        return out

    def _lookup(self, path: str) -> tuple[ProbeEvent, str] | None:
        parts = path.split("/")
        if len(parts) != 4 or parts[0] != "events" or parts[3] not in ("enable", "filter"):
            return None
        ev = self.events.get((parts[1], parts[2]))
        return None if ev is None else (ev, parts[3])

    def read_file(self, path: str) -> str | None:
        found = self._lookup(path)
        if found is None:
            return None
        ev, what = found
        if what == "enable":
            return f"{int(ev.enabled)}\n"
        return f"{ev.cond.text if ev.cond is not None else 'none'}\n"

    def write_file(self, path: str, text: str) -> bool:
        """Write events/GRP/EVENT/enable or filter; False if there is no such file."""
        found = self._lookup(path)
        if found is None:
            return False
        ev, what = found
        if what == "filter":
            ev.set_filter(text)
            return True
        value = text.strip()
        if value == "1":
            ev.enable()
        elif value == "0":
            ev.disable()
        else:
            raise ValueError(f"{path}: expected 0 or 1, got {text!r}")
        return True

    def close(self) -> None:
        for ev in self.events.values():
            ev.disable()


def _numbered(exc: SpecError, number: int, nlines: int) -> SpecError:
    """Name the line of a multi-line write in the message (the column stays in-line)."""
    if nlines > 1:
        exc.args = (f"line {number}: {exc.args[0]}",)
    return exc


# -- the instance files ------------------------------------------------------------------


class EventFiles:
    """``events/GRP/EVENT/enable`` and ``filter`` of the instance's probe events."""

    def names(self, inst: Instance) -> list[str]:
        return [path.partition("/")[2] for path in inst.probes.files()]

    def read(self, inst: Instance, path: str) -> str | None:
        return inst.probes.read_file(f"events/{path}")

    def write(self, inst: Instance, path: str, text: str, append: bool) -> bool:
        return inst.probes.write_file(f"events/{path}", text)


def register_files(table: FileTable) -> None:
    table.file("dynamic_events", lambda inst: inst.probes.read(),
               lambda inst, text, append: inst.probes.write(text, append))
    table.directory("events", EventFiles())
    table.on_close(lambda inst: inst.probes.close())
