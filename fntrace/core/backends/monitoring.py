"""sys.monitoring backend (Python 3.12+): dynamic patching of code objects.

One tool id for the whole process, taken among the free ones (never one in
use, so coverage.py, cProfile and debuggers keep working beside fntrace).
Every ops goes through it.

* PY_START is a global event used for discovery only: the first call of a
  code object asks the engine whether some ops wants it; if not, the callback
  returns DISABLE and that code runs at untraced speed from then on.
  PY_RESUME is global for the same reason: a generator or coroutine started
  before its ops was registered is discovered at its next resume.
* A wanted code object becomes a *site*: local events PY_RESUME, and
  PY_RETURN/PY_YIELD while an ops there has a return callback.
* PY_THROW and PY_UNWIND cannot be local.  PY_THROW is global while some ops
  is registered (a generator thrown into is discovered there, as at a resume).
  With the C callbacks, PY_UNWIND is global only while some site has a return
  callback (the Python callbacks keep it: see _set_global_events): an
  exception crossing a frame (an import's ImportError, a module's
  AttributeError caught by hasattr) otherwise costs a callback per frame for
  nothing.  Both are dropped at once for code that is no site.
* When the selection may grow (an ops registered, a filter widened),
  ``restart_events`` re-arms the DISABLEd locations so new filters apply to
  code already seen.
"""

from __future__ import annotations

import sys
import types

from fntrace.core import accel as _accel
from fntrace.core.flagbits import Event
from fntrace.core.interrupts import interrupt_token

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.backends import Registry
    from fntrace.core.engine import Site
    from fntrace.core.symbols import Function

__all__ = ["MonitoringBackend", "choose_tool_id"]

mon = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
E = mon.events
_PREFERRED = (4, 3, 5, 0, 1, 2)  # unassigned slots first; never one in use
TOOL_NAME = "fntrace"


def choose_tool_id() -> int:
    for tool in _PREFERRED:
        if mon.get_tool(tool) is None:
            return tool
    raise RuntimeError("fntrace: all six sys.monitoring tool ids are in use")


class MonitoringBackend:
    """Turns sys.monitoring events into trampoline calls."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.tool = -1
        self.dispatcher: Any = None  # the C callbacks, when fntrace._speedups is there
        #: How many patched functions have a return callback (PY_UNWIND is global
        #: while there is one): counted under the engine's lock, less the ones
        #: whose code was freed since (code_gone appends to ``exits_gone``
        #: without the lock; a list append is one step).  A count, not a set of
        #: ids: a set would cost every patched function a table slot
        #: (bench/site_memory.py).  And the global events now set.
        self.exits = 0
        self.exits_gone: list[bool] = []
        self.global_events = 0

    def start(self) -> None:
        tool = choose_tool_id()
        mon.use_tool_id(tool, TOOL_NAME)
        self.tool = tool
        registry = self.registry
        sites = registry.sites
        sites_get = sites.get
        getframe = sys._getframe
        is_finalizing = sys.is_finalizing
        discover = registry.discover
        exit_call = registry.exit_call
        generation = registry.generation
        disable = mon.DISABLE
        START, RESUME, THROW = Event.START, Event.RESUME, Event.THROW
        RETURN, YIELD, UNWIND = Event.RETURN, Event.YIELD, Event.UNWIND

        def first_look(code: types.CodeType, frame: types.FrameType) -> Any:
            """The Function of `code` once patched (its ``site`` set), or what the
            callback returns for no site:
            DISABLE, or None when a rebuild happened meanwhile.  No switch point
            lies between the generation test and the DISABLE taking effect (the
            callers return at once), so a filter widened meanwhile (restart_events)
            is never undone."""
            try:
                gen = generation()
                fn = discover(code, frame)
                if fn is None:
                    return disable if gen == generation() else None
                return fn
            except Exception:
                # At interpreter exit, code run by finalizers (a code object's
                # weak-reference callback) can reach here after this module's
                # globals were cleared: the event is dropped, nothing is printed.
                if is_finalizing():
                    return None
                raise

        # Each callback hands a KeyboardInterrupt that landed in fntrace's code back
        # to the program through its result (fntrace/core/interrupts.py).  A
        # RecursionError of fntrace's own frames (the program is at the limit) is
        # the event lost, never an exception of the program with fntrace frames in
        # its traceback (CPython's test_traceback test_recursive_traceback_python).

        def py_start(code: types.CodeType, offset: int) -> Any:
            try:
                fn = sites_get(id(code))
                frame = getframe(1)
                if fn is None:
                    fn = first_look(code, frame)
                    if fn is None or fn is disable:
                        return fn
                site = fn.site
                if site is not None:  # None: unpatched meanwhile
                    site.enter(fn, site, frame, START, offset)
            except KeyboardInterrupt:
                return interrupt_token()
            except RecursionError:
                pass  # at the limit, the program's own next call raises it
            return None

        def py_resume(code: types.CodeType, offset: int) -> Any:
            # A generator/coroutine started before the ops that wants it was
            # registered has no PY_START left: it is discovered at its resume
            # (PY_RESUME is global for that, DISABLEd per location like PY_START).
            try:
                fn = sites_get(id(code))
                frame = getframe(1)
                if fn is None:
                    fn = first_look(code, frame)
                    if fn is None or fn is disable:
                        return fn
                site = fn.site
                if site is not None:  # None: unpatched meanwhile
                    site.enter(fn, site, frame, RESUME, offset)
            except KeyboardInterrupt:
                return interrupt_token()
            except RecursionError:
                pass  # at the limit, the program's own next call raises it
            return None

        def py_throw(code: types.CodeType, offset: int, exc: BaseException) -> Any:
            try:
                fn = sites_get(id(code))
                site = None if fn is None else fn.site
                if site is not None:
                    site.enter(fn, site, getframe(1), THROW, offset)
            except KeyboardInterrupt:
                return interrupt_token()
            except RecursionError:
                pass  # at the limit, the program's own next call raises it
            return None

        def py_return(code: types.CodeType, offset: int, value: Any) -> Any:
            try:
                fn = sites_get(id(code))
                site = None if fn is None else fn.site
                if site is not None and site.has_ret:
                    exit_call(fn, site, getframe(1), RETURN, offset, value, None)
            except KeyboardInterrupt:
                return interrupt_token()
            except RecursionError:
                pass  # at the limit, the program's own next call raises it
            return None

        def py_yield(code: types.CodeType, offset: int, value: Any) -> Any:
            try:
                fn = sites_get(id(code))
                site = None if fn is None else fn.site
                if site is not None and site.has_ret:
                    exit_call(fn, site, getframe(1), YIELD, offset, value, None)
            except KeyboardInterrupt:
                return interrupt_token()
            except RecursionError:
                pass  # at the limit, the program's own next call raises it
            return None

        def py_unwind(code: types.CodeType, offset: int, exc: BaseException) -> Any:
            try:
                fn = sites_get(id(code))
                site = None if fn is None else fn.site
                if site is not None and site.has_ret:
                    exit_call(fn, site, getframe(1), UNWIND, offset, None, exc)
            except KeyboardInterrupt:
                return interrupt_token()
            except RecursionError:
                pass  # at the limit, the program's own next call raises it
            return None

        callbacks = {E.PY_START: py_start, E.PY_RESUME: py_resume, E.PY_THROW: py_throw,
                     E.PY_RETURN: py_return, E.PY_YIELD: py_yield, E.PY_UNWIND: py_unwind}
        speedups = _accel.speedups
        if speedups is not None:
            def discover_at(code: types.CodeType, offset: int) -> Any:
                """First look for the C callbacks: the new site (whose entry they
                dispatch themselves), or what py_start returns for no site."""
                fn = sites_get(id(code))
                return fn if fn is not None else first_look(code, getframe(1))

            # The same callbacks in C: a known site costs no Python frame before its
            # trampoline (or none at all when its recorder writes the event); unknown
            # code goes to discover_at above.
            fast = speedups.Dispatcher(sites, discover_at, discover_at, exit_call,
                                       (START, RESUME, THROW, RETURN, YIELD, UNWIND),
                                       disable, registry.refused, registry.allowed)
            self.dispatcher = fast
            callbacks = {E.PY_START: fast.py_start, E.PY_RESUME: fast.py_resume,
                         E.PY_THROW: fast.py_throw, E.PY_RETURN: fast.py_return,
                         E.PY_YIELD: fast.py_yield, E.PY_UNWIND: fast.py_unwind}
        for event, cb in callbacks.items():
            mon.register_callback(tool, event, cb)
        self.exits = 0
        self.exits_gone = []
        self._set_global_events()

    def _set_global_events(self) -> None:
        """The global events: PY_UNWIND only while a site has a return callback,
        with the C callbacks.  The Python callbacks keep it always: at the
        recursion limit a PY_START callback cannot start, CPython raises the
        RecursionError in the program's frame, and the PY_UNWIND callback that
        cannot start either is what leaves that frame out of the traceback, as
        untraced (CPython's test_traceback test_recursive_traceback_python)."""
        events = E.PY_START | E.PY_RESUME | E.PY_THROW
        if self._exits_now() > 0 or self.dispatcher is None:
            events |= E.PY_UNWIND
        if events != self.global_events:
            mon.set_events(self.tool, events)
            self.global_events = events

    def _exits_now(self) -> int:
        """The patched functions with a return callback (under the engine's lock)."""
        gone = self.exits_gone
        n = len(gone)
        if n:
            del gone[:n]  # only what was counted: an append meanwhile stays
            self.exits -= n
        return self.exits

    def stop(self) -> None:
        tool = self.tool
        if tool < 0:
            return
        mon.set_events(tool, 0)
        self.global_events = 0
        self.exits = 0
        self.exits_gone = []
        for event in (E.PY_START, E.PY_RESUME, E.PY_THROW, E.PY_RETURN, E.PY_YIELD,
                      E.PY_UNWIND):
            mon.register_callback(tool, event, None)
        mon.free_tool_id(tool)
        self.tool = -1
        self.dispatcher = None

    def sites_changed(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.sites_changed()

    def patch(self, fn: Function, site: Site, had_ret: bool) -> None:
        events = E.PY_RESUME
        if site.has_ret:
            events |= E.PY_RETURN | E.PY_YIELD
            if not had_ret:
                # before the site is published (engine.discover): no exit missed
                self.exits += 1
                self._set_global_events()
        elif had_ret:
            self.exits -= 1
        mon.set_local_events(self.tool, fn.live_code(), events)
        if not site.has_ret:
            self._set_global_events()

    def unpatch(self, code: types.CodeType, had_ret: bool) -> None:
        mon.set_local_events(self.tool, code, 0)
        if had_ret:
            self.exits -= 1
        self._set_global_events()

    def code_gone(self, key: int, had_ret: bool) -> None:
        """A patched function's code object was freed: it unwinds no more.  The
        global events are left as they are (no set_events inside a
        deallocation): the next patch or unpatch sets them."""
        if had_ret:
            self.exits_gone.append(True)

    def rediscover(self, grow: bool) -> None:
        if grow:
            mon.restart_events()
