"""What every tracer is: a client of the core that writes into an instance.

A tracer owns one or more ops, built from its instance's filters, and writes
events into the instance's ring buffer.  ``filters_changed`` swaps the ops'
filters in place (atomically, through Ops.set_filter semantics) rather than
re-registering, so no call is missed or doubled while filters change.
"""

from __future__ import annotations

import threading

from fntrace.core import engine
from fntrace.core.ops import Ops
from fntrace.core.oscaps import native_id
from fntrace.tracing.tasks import TaskTracker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from fntrace.tracing.instance import Instance

__all__ = ["Tracer"]


class Tracer:
    """Base class: register/unregister the tracer's ops with the instance's filters."""

    name: ClassVar[str] = "nop"
    #: Whether the tracer notes asyncio task switches (options/tasks; tasks.py).
    notes_tasks: ClassVar[bool] = False

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.ops: list[Ops] = []
        # C recorders (fntrace/csrc/) of this tracer's ops, when the extension
        # is there: they write the events of the commonest configuration themselves.
        self.recorders: list[Any] = []
        # The asyncio task notes (fntrace/tracing/tasks.py) while options/tasks is on.
        self.tasks: TaskTracker | None = None

    def make_ops(self) -> list[Ops]:
        raise NotImplementedError

    def start(self) -> None:
        self.ops = self.make_ops()
        # Made before any ops registers: making it runs library code (weakref,
        # threading) the tracer must not record as the program's.
        tracker = TaskTracker(self.inst) if self.wants_tasks() else None
        _register_all(self.ops)
        if tracker is not None:
            self.start_tasks(tracker)

    def wants_tasks(self) -> bool:
        return self.notes_tasks and bool(self.inst.options["tasks"])

    def tasks_changed(self) -> None:
        """Start or stop the task notes as options/tasks says (a tracer that runs)."""
        want = self.wants_tasks() and bool(self.ops)
        if want and self.tasks is None:
            self.start_tasks(TaskTracker(self.inst))
        elif not want and self.tasks is not None:
            self.stop_tasks()

    def start_tasks(self, tracker: TaskTracker) -> None:
        """Register the tracker's ops; its C recorder (if any) is told of
        tracing_on, the pid filters and the ring as the tracer's own are."""
        rec = tracker.recorder
        if rec is not None:
            self.recorders.append(rec)
            self.inst.rb.watchers.append(rec)
        self.tasks = tracker
        tracker.follow(self.ops)  # the pure path probes at this tracer's events (tasks.py)
        self.fast_refresh()
        try:
            _register_all(tracker.all_ops)
        except BaseException:
            self.stop_tasks()
            raise

    def stop_tasks(self) -> None:
        tracker, self.tasks = self.tasks, None
        if tracker is None:
            return
        tracker.close()
        rec = tracker.recorder
        if rec is not None:
            rec.ok = False  # before unregister: no note after the tracker stopped
            if rec in self.recorders:
                self.recorders.remove(rec)
            if rec in self.inst.rb.watchers:
                self.inst.rb.watchers.remove(rec)
        for ops in tracker.all_ops:
            if ops.registered:
                engine.unregister(ops)

    def attach(self, rec: Any, ops: Ops, ring: bool = True) -> None:
        """Give ``ops`` the C recorder ``rec`` (see fast_refresh for when it may write);
        ``ring``: it writes the instance's ring buffer, so it is told of its changes."""
        rec.report = ops._callback_failed
        ops.fast = rec
        self.recorders.append(rec)
        if ring:
            self.inst.rb.watchers.append(rec)
        self.fast_refresh()

    def stop(self) -> None:
        self.stop_tasks()
        watchers = self.inst.rb.watchers
        for rec in self.recorders:
            rec.ok = False  # before unregister: no event after the tracer stopped
            if rec in watchers:
                watchers.remove(rec)
        self.recorders = []
        for ops in self.ops:
            if ops.registered:
                engine.unregister(ops)
        self.ops = []

    def filters_changed(self) -> None:
        inst = self.inst
        for ops in self.ops:
            engine.update_filters(ops, inst.filter, inst.notrace)

    def fast_ok(self) -> bool:
        """Whether the options allow the C recorders to write (no option they lack)."""
        return False

    def fast_refresh(self) -> None:
        """An option, filter or setting changed: tell the recorders whether they may write."""
        ok = self.fast_ok()
        inst = self.inst
        check = inst.pid_check()
        tasks = self.tasks.recorder if self.tasks is not None else None
        for rec in self.recorders:
            rec.pid_check = check  # each thread decided once, again when the filter changes
            rec.tracing = inst.tracing_on
            rec.ok = ok or rec is tasks  # the task notes need no tracer option

    def reset(self) -> None:
        """The trace was cleared (``echo > trace``): drop per-thread state if any."""

    def pid_allows(self, tls: threading.local) -> bool:
        """Whether the pid filters let this thread be traced: the answer kept in
        ``tls.pid`` with the filters' generation, asked again only when the
        filters changed (or in a forked child), since asking is a thread id
        system call and a Python call.  The pure path's entries call this only
        while a pid filter is set."""
        try:
            gen, allowed = tls.pid
        except AttributeError:
            gen = allowed = None
        if gen == self.inst.pid_gen:
            return bool(allowed)
        inst = self.inst
        allowed = inst.pid_allowed(native_id())
        tls.pid = (inst.pid_gen, allowed)
        return allowed


def _register_all(opses: list[Ops]) -> None:
    """Register each ops, or none: those registered are unregistered if one fails."""
    done: list[Ops] = []
    try:
        for ops in opses:
            engine.register(ops)
            done.append(ops)
    except BaseException:
        for ops in done:
            engine.unregister(ops)
        raise
