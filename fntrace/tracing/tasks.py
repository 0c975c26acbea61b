"""asyncio tasks: which task runs each traced event, noted where the task changes.

Asking ``asyncio.current_task()`` at every event would cost every call.  A
thread's running task changes only at the boundaries of a task's steps, and
every step runs through one of three places of asyncio, which an ops of its
own watches (the tracers' C recorders write the calls as before):

* ``Handle._run``: the event loop runs each callback there; a task's step
  is the bound method ``task.__step`` (or ``__wakeup``) of the task.  Its entry
  switches the thread to that task (or to no task, 0, for any other callback)
  and ends the step begun before it (noting its task's end if that step
  ended it).  Its exit is not watched: that was an event per step, and the
  loop runs nothing traced between two callbacks of one iteration;
* ``BaseEventLoop._run_once``: an iteration of the loop; its entry switches
  to no task, its exit ends the iteration's last step and switches back to
  what ran before (no task, or the step of a loop run inside a callback);
* ``BaseEventLoop.create_task``: its return value is the new task, numbered
  there, with its name, the task that created it and the first function outside
  asyncio that asked for it (``asyncio.create_task``, ``TaskGroup.create_task``,
  ``gather`` and ``asyncio.run`` all come here);
* ``asyncio.tasks._set_task_name`` (3.11): where 3.11's ``create_task`` and
  ``TaskGroup.create_task`` name the task, after create_task returned it;
* asyncio's current-task dictionary (``asyncio.tasks._current_tasks``, 3.12+,
  the C path, which watches it with a dictionary watcher): every step puts
  its task there as it begins and takes it out as it ends, in C.  A task put
  there that Handle._run did not just begin the step of is a step no watched
  function sees, an eager task's first step (the eager factory's or
  ``asyncio.Task(coro, eager_start=True)``'s, run inside the C constructor)
  or a step of uvloop's loop: the thread runs that task until the change that
  restores the dictionary (its ``new`` note, for a task first seen there, is
  written then, when an eager task's name is known and before its creator's
  create_task notes it).  The watcher costs every step two calls, so the
  dictionary is watched only while such a step may come: from
  ``BaseEventLoop.is_running`` returning True (the C Task asks it right
  before an eager first step) until the next ``Handle._run`` or
  ``_run_once``, and for good once ``uvloop.new_event_loop`` made a loop (or
  uvloop was imported when tracing started);
* the same steps on the pure path (3.12+), which cannot watch a dictionary:
  over the same span (is_running's True to the thread's next Handle._run or
  _run_once, or its iteration's end; for good under uvloop) the tracer's ops get probing callbacks,
  which ask ``asyncio.current_task()`` before each traced event of a probed
  thread and note there what the watcher notes at the change: the step
  begun (``run N``, N numbered if first seen), the steps ended (their
  ``new``, ``end`` and the switch back).  A thread's task matters only at
  its events, so every event gets the task the C path gives it, and the
  notes are the watcher's, note for note, unless a step makes no traced call
  (below).  Outside that span no event is probed: the core calls the ops'
  callbacks as they are at each call, and they are the tracer's own.

Each change is one ring event of the kind ``TASK`` (fntrace/core/events.py)
in the thread's own buffer, so it sits exactly between the events it
separates, and a thread's task at any event is the last ``run`` note before
it.  Notes: ``run N`` (0: no task), ``new {"task", "name", "creator",
"func"}`` (later fields complete earlier ones: a task first seen at a step
Handle._run did not begin is named at that step's end, its creator at
create_task's exit), ``end {"task", "state"}``
(``done``, ``cancelled`` or ``raised E``), ``wake {"task", "by"}``: the step
``Handle._run`` begins is the wakeup of task ``task`` (its callback is the
task's ``task_wakeup``/``__wakeup``, not its ``__step``), and the future it was
woken by (the Handle's argument) ended with tasks ``by``: that future itself
when it is a task (``await task``, 3.12+ ``wait_for``), or gather's outer
future's children that are tasks whose end is noted.  What the awaited
future's end came from is not followed otherwise: a TaskGroup's or
``asyncio.wait``'s (and 3.11 ``wait_for``'s) own waiter future, a nested
gather, a sleep, a lock, are futures of no task (no note).  A reader that does
not know a verb skips the note, so older readers read newer files.  A program that never imports
asyncio never reaches these functions: it pays nothing.

Limits: on 3.11 (no eager tasks, no dictionary watchers) uvloop, which runs
its Handles, the tasks' steps and create_task in C, is not followed: nothing
is noted rather than a wrong task.  Under uvloop (3.12+) no task has a
creator (uvloop's create_task is C) and no ``wake`` is noted (its wakeups run
in C, not through Handle._run).  On the pure path a step of that kind that
makes no traced call is not seen at all (its task, if it ended there, has no
``run``, ``new`` or ``end`` note, unless create_task returned it: then its
``new`` and, if it ended, its ``end``), and a thread's last such step has
its end noted at the thread's next traced event (or when the tracer stops,
for the thread that stops it).  At most eight tracers watch the dictionary
at once (a ninth follows no such step on the C path).
A loop that runs Handles but not through ``BaseEventLoop._run_once`` (Pyodide's)
leaves a thread in its last step's task until its next callback.  What runs
between two callbacks of one iteration outside them (a finalizer, a signal
handler) is noted as the earlier callback's.
Task numbers are per process.
"""

from __future__ import annotations

import json
import sys
import threading
import types
import weakref
from json.encoder import encode_basestring_ascii as _quote

from fntrace.core import accel as _accel
from fntrace.core.events import EVENT_OVERHEAD, TASK, TASK_PREFIX
from fntrace.core.flags import Event
from fntrace.core.ops import Ops
from fntrace.core.oscaps import native_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function
    from fntrace.tracing.instance import Instance

__all__ = ["WATCHED", "TaskInfo", "TaskTable", "TaskTracker", "end_state", "parse_note"]

_TAG = TASK.tag
_RUN, _CREATE, _NAME, _LOOP, _IMPORT, _RUNNING, _UVLOOP = range(7)
#: The functions the tracker's ops watches, by name, and what each is.
RUN = "asyncio.events:Handle._run"
LOOP = "asyncio.base_events:BaseEventLoop._run_once"
#: asyncio.tasks imported: its current-task dictionary exists (the C path watches it, 3.12+).
IMPORTED = "asyncio.tasks:<module>"
#: Called by the C Task right before an eager first step (True: the loop runs).
RUNNING = "asyncio.base_events:BaseEventLoop.is_running"
#: Every uvloop loop is made here (uvloop.run, its policy, by hand).
UVLOOP = "uvloop:new_event_loop"
WATCHED = {
    RUN: _RUN,
    "asyncio.base_events:BaseEventLoop.create_task": _CREATE,
    # Pyodide's event loop (3.14 in WebAssembly) makes its tasks in a copy of its own.
    "pyodide.webloop:WebLoop.create_task": _CREATE,
    "asyncio.tasks:_set_task_name": _NAME,
    LOOP: _LOOP,
    IMPORTED: _IMPORT,
    RUNNING: _RUNNING,
    # Pyodide's loop (3.14 in WebAssembly) says True always; it runs Handles.
    "pyodide.webloop:WebLoop.is_running": _RUNNING,
    UVLOOP: _UVLOOP,
}
_RETURN = Event.RETURN
#: Steps nest only through an event loop run inside a callback; a bound far
#: above what programs nest (the C path's too).
MAX_STEPS = 4096


def end_state(task: Any) -> str:
    """``done``, ``cancelled`` or ``raised E`` of a finished task, read without
    marking its exception retrieved (``task.exception()`` would: asyncio would
    then no longer log an exception nobody awaited)."""
    if task.cancelled():
        return "cancelled"
    exc = getattr(task, "_exception", None)
    return "done" if exc is None else f"raised {type(exc).__name__}"


def parse_note(info: str) -> tuple[str, Any]:
    """A note's verb and value: ("run", N), ("new", dict), ("end", dict),
    ("wake", dict); ("", None) for text that is no note (a newer writer's, or
    damage: a reader older than a verb skips it, as this one skips newer ones)."""
    verb, _, rest = info.partition(" ")
    try:
        if verb == "run":
            return verb, int(rest)
        if verb in ("new", "end", "wake"):
            value = json.loads(rest)
            if type(value) is dict and type(value.get("task")) is int:
                return verb, value
    except ValueError:
        pass
    return "", None


class TaskInfo:
    """What the notes say of one task."""

    __slots__ = ("creator", "func", "name", "number", "state")

    def __init__(self, number: int) -> None:
        self.number = number
        self.name: str | None = None
        self.creator: int | None = None  # 0: created outside any task
        self.func: str | None = None
        self.state: str | None = None    # None while it runs (or the trace ends first)

    @property
    def label(self) -> str:
        """``name-N`` (``#N`` while the notes have not named it)."""
        return f"{self.name}-{self.number}" if self.name is not None else f"#{self.number}"


class TaskTable:
    """The tasks of a stream of notes and each thread's running task (readers:
    the task column, ``replay --task``, ``report --by-task``, the exports)."""

    def __init__(self) -> None:
        self.tasks: dict[int, TaskInfo] = {}
        self.current: dict[Any, int] = {}

    def info(self, n: int) -> TaskInfo:
        found = self.tasks.get(n)
        if found is None:
            found = self.tasks[n] = TaskInfo(n)
        return found

    def note(self, thread: Any, text: str) -> None:
        """Read one note written by ``thread`` (any key that tells threads apart)."""
        verb, value = parse_note(text)
        if verb == "run":
            self.current[thread] = value
            if value:
                self.info(value)
        elif verb == "new":
            info = self.info(value["task"])
            for field in ("name", "func"):
                if type(value.get(field)) is str:
                    setattr(info, field, value[field])
            if type(value.get("creator")) is int:
                info.creator = value["creator"]
        elif verb == "end" and type(value.get("state")) is str:
            self.info(value["task"]).state = value["state"]

    def running(self, thread: Any) -> int:
        """The task ``thread`` runs now (0: none, or no note of it yet)."""
        return self.current.get(thread, 0)

    def label(self, n: int) -> str:
        return self.info(n).label if n else "-"

    def select(self, which: str) -> set[int]:
        """The numbers ``replay --task`` means by ``which``: a number, or a name."""
        if which.isdigit():
            return {int(which)} if int(which) in self.tasks else set()
        return {n for n, t in self.tasks.items() if t.name == which}


def _creating_function(frame: Any) -> str | None:
    """The first function outside the event loop's code (asyncio, and Pyodide's
    own loop) on the stack below ``frame``."""
    f = frame.f_back
    while f is not None:
        module = f.f_globals.get("__name__", "?")
        if not (module == "asyncio" or module.startswith("asyncio.")
                or module == "pyodide.webloop"):
            return f"{module}:{f.f_code.co_qualname}"
        f = f.f_back
    return None


class _PyTaskThread:
    """One thread's task state in pure Python (the C path's ``TaskThread``):
    the running task, the last run note written (-1: none), the task of the
    step begun last and its number, and what the loop's iterations saved,
    each (running task, last step's task or None, its number).  The probes
    (3.12+, see TaskTracker.probe): whether this thread is probed until its
    next Handle._run (``armed``), whether an eager first step may begin at its
    next probe (``pending``), and the steps Handle._run did not begin that
    run now, innermost last, each (task, what ran before it, that one's
    number, the task's number, its name if it was numbered there)."""

    __slots__ = ("armed", "cur", "foreign", "last", "last_n", "pending", "stack", "written")

    def __init__(self) -> None:
        self.cur = 0
        self.written = -1
        self.last: Any = None
        self.last_n = 0
        self.stack: list[tuple[int, Any, int]] = []
        self.armed = False
        self.pending = False
        self.foreign: list[tuple[Any, Any, int, int, str | None]] = []

    def push(self, prev: int, task: Any, n: int = 0) -> None:
        if len(self.stack) >= MAX_STEPS:
            raise RecursionError("asyncio task steps nested too deeply")
        self.stack.append((prev, task, n))

    def pop(self) -> tuple[int, Any, int] | None:
        return self.stack.pop() if self.stack else None

    def __len__(self) -> int:
        return len(self.stack)


class TaskTracker:
    """One instance's task notes: four ops on the WATCHED functions, per-thread
    state.  Where the extension reads frames, one C recorder (TaskRecorder)
    serves the ops of Handle._run, _run_once, create_task, _set_task_name and
    is_running, so a step and a task's creation and end are noted without
    Python code; the Python callbacks here serve the pure path (with its
    probes, 3.12+) and any site another ops shares (a trace of asyncio's own
    functions)."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.numbers: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self.ended: set[int] = set()
        self.next = 1
        self.lock = threading.Lock()
        self.tls = threading.local()
        speedups: Any = _accel.speedups
        fast = speedups is not None and getattr(speedups, "frame_key", None) is not None
        self.thread_type: Any = speedups.TaskThread if fast else _PyTaskThread
        # Every step passes Handle._run, whose entry is all the notes need: a
        # step ends where the thread's next callback or the loop's iteration
        # begins, so its exit (an event per step) is not watched.
        self.run_ops = Ops(self.entry, filter=[RUN])
        # create_task and _set_task_name need their exits only (no entry callback);
        # an iteration of the loop both.
        self.ops = Ops(ret=self.exit,
                       filter=[n for n, w in WATCHED.items() if w in (_CREATE, _NAME)])
        self.loop_ops = Ops(self.entry, ret=self.exit, filter=[LOOP])
        self.import_ops = Ops(ret=self.exit, filter=[IMPORTED])
        self.all_ops = [self.run_ops, self.ops, self.loop_ops]
        self.recorder: Any = None
        if fast:
            # The C recorder serves the ops of a step, an iteration, create_task and
            # _set_task_name when it is the only ops at their site.  It reads and
            # writes the dictionary behind the WeakKeyDictionary (weak reference ->
            # number) as that dictionary's own methods do, and the ended set; the
            # task numbers come from its counter on both paths (take_number).
            data = self.numbers.data  # type: ignore[attr-defined]
            rec = speedups.TaskRecorder(inst.rb, self.tls, data, self.ended,
                                        _task_types, _quote, _TAG, TASK_PREFIX)
            rec.report = self.run_ops._callback_failed
            rec.ok = True
            self.run_ops.fast = rec
            self.ops.fast = rec
            self.loop_ops.fast = rec
            self.recorder = rec
            if sys.version_info >= (3, 12):
                # The steps Handle._run does not begin (an eager task's first,
                # the eager factory's included, and uvloop's) are seen in C by
                # asyncio's current-task dictionary changing: watched from now,
                # or from when asyncio.tasks is imported.
                # Watched only while such a step may come (the watcher costs
                # every step): from is_running's True until the next
                # Handle._run, and for good once uvloop makes a loop.
                self.watch_ops = Ops(ret=self.exit, filter=[RUNNING, UVLOOP])
                self.watch_ops.fast = rec
                self.all_ops = [self.run_ops, self.ops, self.loop_ops, self.watch_ops]
                if not self.watch_tasks():
                    self.all_ops.append(self.import_ops)
                if "uvloop" in sys.modules:  # a loop may be made (or run) already
                    rec.want(2)
        # The pure path (3.12+) has no dictionary watcher: it probes instead
        # (see probe), from is_running's True until the thread's next
        # Handle._run, and for good once uvloop makes a loop.
        self.probing = not fast and sys.version_info >= (3, 12)
        self.always = False  # probing every thread for good (uvloop)
        self.armed = 0       # threads probed until their next Handle._run
        self.hot = False     # always or armed: the tracker's own callbacks probe too
        self.traced: list[tuple[Ops, Any, Any]] = []  # the tracer's ops and their callbacks
        self.running_task: Any = None  # (the running loop's) current task, once asyncio runs
        if self.probing:
            self.watch_ops = Ops(ret=self.exit,
                                 filter=[n for n, w in WATCHED.items() if w in (_RUNNING, _UVLOOP)])
            self.all_ops.append(self.watch_ops)
            self.always = "uvloop" in sys.modules  # a loop may be made (or run) already

    def watch_tasks(self) -> bool:
        """Have the C recorder watch asyncio's current-task dictionary (False:
        asyncio.tasks is not imported yet, or the recorder cannot)."""
        mod = sys.modules.get("asyncio.tasks")
        current = getattr(mod, "_current_tasks", None)
        return type(current) is dict and bool(self.recorder.watch(current))

    # -- probes (the pure path, 3.12+) -----------------------------------------
    # asyncio's C Task runs an eager first step inside its constructor, and
    # uvloop every step in C: no Python function of asyncio begins or ends
    # them, and pure Python cannot watch the current-task dictionary.  What it
    # can do is ask ``asyncio.current_task()`` (C, cheap) at the thread's next
    # traced event, and note the change there: a thread's task matters only at
    # its events, so the notes put before each event give every event the
    # task the C path gives it.  Asking costs every event, so it is done only
    # while such a step may come, as the C path watches: the tracer's ops get
    # probing callbacks (the core calls ``ops.func``/``ops.ret`` as they are at
    # each call: nothing is asked of any event otherwise) from
    # BaseEventLoop.is_running's True (the C Task asks it right before an eager
    # first step) until the thread's next Handle._run or _run_once, and for
    # good once uvloop makes a loop.
    def follow(self, traced: list[Ops]) -> None:
        """The tracer's ops, whose events the probes ask at (the pure path)."""
        if not self.probing:
            return
        self.traced = [(op, op.func, op.ret) for op in traced]
        if self.always:  # uvloop is imported: asyncio too
            self.running_task = _running_task_getter()
            self.install()

    def install(self) -> None:
        """The tracer's ops probe before each of their callbacks, and so do the
        tracker's own (self.lock held, or before the ops registered)."""
        if not self.hot:
            self.hot = True
            for op, func, ret in self.traced:
                if func is not None:
                    op.func = self.probing_callback(func)
                if ret is not None:
                    op.ret = self.probing_callback(ret)
            self.run_ops.func = self.loop_ops.func = self.probed_entry
            self.ops.ret = self.loop_ops.ret = self.probed_exit

    def uninstall(self) -> None:
        """The tracer's own callbacks again, and the tracker's (self.lock held)."""
        if self.hot:
            self.hot = False
            for op, func, ret in self.traced:
                op.func, op.ret = func, ret
            self.run_ops.func = self.loop_ops.func = self.entry
            self.ops.ret = self.loop_ops.ret = self.exit

    def probed_entry(self, ip: Function, parent: Function | None, ops: Ops,
                     fregs: FtraceRegs) -> None:
        """Handle._run's or _run_once's entry while probing: the steps that
        ended before it are noted first; no eager first step is open any more
        (unless one runs this loop), so the thread's probes stop."""
        tls = self.state()
        if tls.armed or self.always:
            self.resolve(tls)
            self.disarm(tls)
        self.entry(ip, parent, ops, fregs)

    def probed_exit(self, ip: Function, parent: Function | None, ops: Ops,
                    fregs: FtraceRegs) -> None:
        """create_task's, _set_task_name's or _run_once's exit while probing (the
        iteration's end stops the thread's probes too: a thread whose loop
        stops after it may run no Handle._run again)."""
        tls = self.state()
        probed = tls.armed or self.always
        if probed:
            self.resolve(tls)
        self.exit(ip, parent, ops, fregs)
        what = WATCHED.get(ip.name)
        if what == _LOOP:
            self.disarm(tls)
        elif probed and what == _CREATE and fregs.event == _RETURN:
            # An eager first step that made no traced call was not probed:
            # the task create_task returns may have ended in it.
            task = fregs.return_value
            n = self.numbers.get(task) if task is not None and _is_task(task) else None
            if n is not None:
                self.note_end(n, task)

    def probing_callback(self, callback: Any) -> Any:
        probe = self.probe
        report = self.run_ops._callback_failed

        def probing(ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
            try:
                probe()
            except Exception as exc:  # a failing probe costs no event of the tracer's
                report(exc)
            callback(ip, parent, ops, fregs)
        return probing

    def probe(self) -> None:
        """A traced event of this thread: note the step it runs in first, if that
        is a step Handle._run did not begin (or one such has ended)."""
        tls = self.state()
        if tls.armed or self.always:
            self.resolve(tls)

    def arm(self, tls: Any) -> None:
        """is_running returned True on this thread: an eager first step may
        begin before its next probe; probe until its next Handle._run."""
        tls.pending = True
        if self.running_task is None:
            self.running_task = _running_task_getter()
        if not tls.armed:
            tls.armed = True
            with self.lock:
                self.armed += 1
                self.install()

    def disarm(self, tls: Any) -> None:
        """Handle._run or _run_once begins: no eager first step of this thread
        is open, so its probes stop (unless uvloop's keep every thread's)."""
        if tls.armed and not tls.foreign:
            tls.armed = False
            with self.lock:
                self.armed -= 1
                if not self.armed and not self.always:
                    self.uninstall()

    def probe_for_good(self) -> None:
        """uvloop made a loop: its steps are probed at every traced event."""
        if self.running_task is None:
            self.running_task = _running_task_getter()
        with self.lock:
            self.always = True
            self.install()

    def resolve(self, tls: Any) -> None:
        """Note what changed since this thread's last probe: the steps that
        ended (each its ``new`` note if numbered at its start, its ``end`` if
        it finished, the switch back, as the C path's dictionary watcher
        notes them) and the step begun (numbered if first seen)."""
        pending, tls.pending = tls.pending, False
        getter = self.running_task
        if getter is None:
            return
        actual = getter()
        steps = tls.foreign
        if steps:
            if actual is steps[-1][0]:
                return
            for i in range(len(steps) - 2, -1, -1):
                if steps[i][0] is actual:  # the steps begun inside it have ended
                    while len(steps) > i + 1:
                        self.foreign_leave(tls)
                    return
            # Not one of them: they have all ended, unless an eager first step
            # begins inside the innermost (is_running's True came just before).
            if not pending or actual is None or actual is steps[0][1] or not _is_task(actual):
                while steps:
                    self.foreign_leave(tls)
        if actual is None or (not steps and actual is tls.last) or not _is_task(actual):
            return
        if len(steps) >= MAX_STEPS:
            raise RecursionError("asyncio task steps nested too deeply")
        n = self.numbers.get(actual)
        name = None
        if n is None:
            n = self.numbers[actual] = self.take_number()
            # Its name as the step runs: the watcher notes it at the step's
            # end, before anything after the step (3.13's create_task names
            # a factory's task after the factory returned) renames it.
            name = str(actual.get_name())
        steps.append((actual, steps[-1][0] if steps else tls.last, tls.cur, n, name))
        self.switch(tls, n)

    def foreign_leave(self, tls: Any) -> None:
        task, _, prev, n, name = tls.foreign.pop()
        if name is not None:  # numbered at the step: its creator noted it no earlier
            self.note_new(n, task, None, None, name)
        self.note_end(n, task)
        self.switch(tls, prev)

    def close(self) -> None:
        """Tracing of tasks stops: this thread's open steps are noted as ended
        where they have, and the tracer's ops get their own callbacks back."""
        if not self.probing:
            return
        try:
            tls = self.tls.thread
        except AttributeError:
            tls = None
        if tls is not None and (tls.armed or self.always):
            self.resolve(tls)
        with self.lock:
            self.uninstall()

    # -- notes ----------------------------------------------------------------
    def write(self, info: str) -> bool:
        inst = self.inst
        if not inst.tracing or (inst.pid_filtered and not inst.pid_allowed(native_id())):
            return False
        rb = inst.rb
        rb.write((rb.now(), EVENT_OVERHEAD + len(info), _TAG, info))
        return True

    def state(self) -> Any:
        try:
            return self.tls.thread
        except AttributeError:
            tls = self.tls.thread = self.thread_type()
            return tls

    def switch(self, tls: Any, n: int) -> None:
        tls.cur = n
        if tls.written != n:
            tls.written = n if self.write(f"run {n}") else -1

    def take_number(self) -> int:
        if self.recorder is not None:
            return int(self.recorder.take_number())
        with self.lock:
            n = self.next
            self.next += 1
        return n

    def note_new(self, n: int, task: Any, creator: int | None, func: str | None,
                 name: str | None = None) -> None:
        # The JSON json.dumps(sort_keys=True) makes, put together by hand: this
        # runs once per task, where json.dumps' own frames cost as much as the rest.
        if name is None and task is not None:
            name = task.get_name()
        text = "new {"
        if creator is not None:
            text += f'"creator": {int(creator)}, '
        if func is not None:
            text += f'"func": {_quote(func)}, '
        text += f'"name": {"null" if name is None else _quote(str(name))}, "task": {int(n)}}}'
        self.write(text)

    def first_seen(self, task: Any) -> int:
        """The task's number; one taken (and noted) for a task first seen here."""
        n = self.numbers.get(task)
        if n is None:
            n = self.numbers[task] = self.take_number()
            self.note_new(n, task, None, None)
        return n

    def note_end(self, n: int, task: Any) -> None:
        if n not in self.ended and task.done():
            self.ended.add(n)
            self.write(f'end {{"state": {_quote(end_state(task))}, "task": {int(n)}}}')

    def note_wake(self, n: int, fut: Any) -> None:
        """Task n resumes because ``fut`` is done (a wakeup step): note the
        tasks whose end woke it, ``wake {"by": [...], "task": n}``: ``fut`` if it is
        a task, or gather's outer future's children that are tasks, those whose
        end is noted.  Any other future (a sleep's, a lock's, a TaskGroup's or
        asyncio.wait's own waiter) names no task: nothing is noted."""
        if not self.inst.tracing:
            return
        if _is_task(fut):
            sources: Any = (fut,)
        elif _is_gather(fut):
            sources = getattr(fut, "_children", None)
            if not isinstance(sources, (list, tuple)):
                return
        else:
            return
        by = []
        for task in tuple(sources):
            if _is_task(task):
                m = self.numbers.get(task)
                if m is not None and m in self.ended:
                    by.append(str(m))
        if by:
            self.write(f'wake {{"by": [{", ".join(by)}], "task": {int(n)}}}')

    def close_step(self, tls: Any) -> None:
        """The step begun last has ended: note its task's end if it finished."""
        task = tls.last
        if task is not None:
            tls.last = None
            self.note_end(tls.last_n, task)

    # -- the ops --------------------------------------------------------------
    def entry(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        what = WATCHED.get(ip.name)
        tls = self.state()
        if self.recorder is not None and what in (_RUN, _LOOP):
            self.recorder.want(0)  # the C recorder's, served in Python (shared site)
        if what == _RUN:
            self.close_step(tls)
            task = None
            handle = fregs.get_argument(0)
            owner = getattr(getattr(handle, "_callback", None), "__self__", None)
            if owner is not None and _is_task(owner):
                task = owner
            n = 0 if task is None else self.first_seen(task)
            tls.last, tls.last_n = task, n
            self.switch(tls, n)
            if n and _is_wakeup(getattr(handle, "_callback", None)):
                args = getattr(handle, "_args", None)
                if isinstance(args, tuple) and args:
                    self.note_wake(n, args[0])
        elif what == _LOOP:
            tls.push(tls.cur, tls.last, tls.last_n)
            tls.last = None
            self.switch(tls, 0)

    def exit(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        what = WATCHED.get(ip.name)
        tls = self.state()
        if what == _CREATE:
            task = fregs.return_value
            if fregs.event == _RETURN and task is not None and _is_task(task):
                n = self.numbers.get(task)
                if n is None:
                    n = self.numbers[task] = self.take_number()
                self.note_new(n, task, tls.cur, _creating_function(fregs.frame))
            return
        if what in (_RUNNING, _UVLOOP):  # the C recorder's, served in Python (shared site)
            if fregs.event != _RETURN or (what == _RUNNING and fregs.return_value is not True):
                return
            if self.recorder is not None:
                self.recorder.want(2 if what == _UVLOOP else 1)
            elif self.probing:
                if tls.armed or self.always:  # a step that ended before is no outer step
                    self.resolve(tls)
                if what == _UVLOOP:
                    self.probe_for_good()
                else:
                    self.arm(tls)
            return
        if what == _IMPORT:
            if self.recorder is not None and fregs.event == _RETURN:
                self.watch_tasks()
            return
        if what == _NAME:
            if fregs.get_argument(1) is None:  # no name given: nothing to note
                return
            task = fregs.get_argument(0)
            n = self.numbers.get(task) if task is not None else None
            if n is not None:
                self.note_new(n, task, None, None)
            return
        if what == _LOOP:
            self.close_step(tls)
            top = tls.pop()
            prev = 0
            if top is not None:
                prev, tls.last, tls.last_n = top
            self.switch(tls, prev)


def _running_task_getter() -> Any:
    """A function giving the task the thread's running loop runs now (None: no
    loop runs, or no task), made once asyncio is loaded: two C calls."""
    mod = sys.modules["asyncio"]
    running_loop = mod.events._get_running_loop
    current = mod.current_task

    def running_task() -> Any:
        loop = running_loop()
        return None if loop is None else current(loop)
    return running_task


def _task_types() -> tuple[tuple[type, ...], type | None] | None:
    """asyncio's Task classes (C and pure) and gather's outer future class (the
    C recorder's), None while asyncio is not loaded."""
    mod = sys.modules.get("asyncio")
    if mod is None:
        return None
    return ((mod.Task, getattr(mod.tasks, "_PyTask", mod.Task)),
            getattr(mod.tasks, "_GatheringFuture", None))


def _is_gather(obj: Any) -> bool:
    """gather's outer future (its ``_children`` are what it waits for)."""
    mod = sys.modules.get("asyncio")
    kind = getattr(getattr(mod, "tasks", None), "_GatheringFuture", None)
    return kind is not None and isinstance(obj, kind)


def _is_wakeup(callback: Any) -> bool:
    """A Handle's callback that wakes its task because a future it awaited is
    done (the C Task's ``task_wakeup``, the pure Task's ``__wakeup``), not a step."""
    if isinstance(callback, types.BuiltinMethodType):
        return callback.__name__ == "task_wakeup"
    return (isinstance(callback, types.MethodType)
            and isinstance(callback.__func__, types.FunctionType)
            and callback.__func__.__name__ == "__wakeup")


def _is_task(obj: Any) -> bool:
    """An asyncio Task (C or pure), without importing asyncio (loaded: it called us)."""
    mod = sys.modules.get("asyncio")
    if mod is None:
        return False
    return isinstance(obj, mod.Task) or isinstance(obj, getattr(mod.tasks, "_PyTask", mod.Task))
