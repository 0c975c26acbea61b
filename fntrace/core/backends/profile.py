"""sys.setprofile backend (Python 3.11): the kernel's non-dynamic case.

3.11 has no per-code events, so every Python call and return of every thread
reaches the profile function, which looks the code object up and returns at
once when it is no site (a negative cache keeps that to one dict lookup).
Cost: measured in bench/, roughly the interpreter's profile-hook overhead on
every call whether traced or not.

What 3.11 cannot give (docs/design.md, "sys.setprofile (3.11)"):
* the exception object of an unwinding frame (the interpreter hides it from
  profile functions): ``fregs.exception`` is None on UNWIND exits, the event
  itself is exact;
* events are told apart by the opcode at ``f_lasti``: RESUME 0 → START,
  RESUME n → RESUME, YIELD_VALUE on entry → THROW; RETURN_VALUE → RETURN,
  YIELD_VALUE → YIELD (UNWIND when it follows a THROW into the same yield with
  no value), anything else → UNWIND.
Threads already running when the first ops registers are hooked through the C
API (``PyEval_SetProfile`` is per thread), see ``_hook_other_threads``.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import types
from opcode import opmap  # dis's table, without dis (its imports cost start-up)

from fntrace.core import accel as _accel
from fntrace.core import symbols
from fntrace.core.flagbits import Event
from fntrace.core.interrupts import interrupt_token

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.backends import Registry
    from fntrace.core.engine import Site
    from fntrace.core.symbols import Function

__all__ = ["ProfileBackend"]

_RESUME = opmap["RESUME"]
_RETURN_VALUE = opmap["RETURN_VALUE"]
_YIELD_VALUE = opmap["YIELD_VALUE"]
_NO_SITE = object()  # decided: no site, and the code's Function reports its end


class ProfileBackend:
    """Turns sys.setprofile events into trampoline calls.

    ``decided`` maps id(code) to the code's Function when it is patched (its
    configuration in ``site``), or, when it is no site, to
    ``_NO_SITE`` (the code has a Function, whose weak reference removes the
    entry when the code is freed: see ``_code_gone``) or else to the code
    object itself (which keeps the id from being reused; fntrace's own code).
    One lookup and two identity tests dismiss untraced code, and a code object
    the program drops leaves nothing here.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.decided: dict[int, Any] = {}
        self.hook: Any = None
        self.native: Any = None  # the C profile function, when fntrace._speedups is there

    def _code_gone(self, key: int) -> None:
        """A code object was freed: drop what was decided of it (a code object
        stored here is alive, so any other value under its id is about it)."""
        entry = self.decided.get(key)
        if entry is not None and type(entry) is not types.CodeType:
            self.decided.pop(key, None)

    def start(self) -> None:
        speedups = _accel.speedups
        native = getattr(speedups, "ProfileHook", None)
        if native is not None:
            # The same hook in C (fntrace/csrc/): untraced code is dismissed
            # and recorded sites written with no Python frame.  Threads that start
            # later call it through threading.setprofile once, then directly.
            registry = self.registry
            fast = native(registry.sites, registry.discover, registry.exit_call, {},
                          (Event.START, Event.RESUME, Event.THROW, Event.RETURN,
                           Event.YIELD, Event.UNWIND),
                          (_RESUME, _RETURN_VALUE, _YIELD_VALUE), symbols.cache())
            self.hook = self.native = fast
            threading.setprofile(fast)
            fast.install_all()
            return
        decided = self.decided
        decided_get = decided.get
        registry = self.registry
        sites_get = registry.sites.get
        discover = registry.discover
        exit_call = registry.exit_call
        generation = registry.generation
        START, RESUME, THROW = Event.START, Event.RESUME, Event.THROW
        RETURN, YIELD, UNWIND = Event.RETURN, Event.YIELD, Event.UNWIND
        throws: dict[types.FrameType, int] = {}
        no_site = _NO_SITE
        guards = symbols.guards

        def hook(frame: types.FrameType, event: str, arg: Any) -> Any:
            # A KeyboardInterrupt that lands in fntrace's code goes back to the
            # program through the result (fntrace/core/interrupts.py); raising it
            # here would also make CPython drop this profile function.
            try:
                code = frame.f_code
                fn = decided_get(id(code))
                if fn is no_site or fn is code:
                    return None
                if event == "call":
                    if fn is None:
                        gen = generation()
                        fn = discover(code, frame)
                        if gen == generation():  # else a rebuild cleared decided meanwhile
                            if fn is not None:
                                decided[id(code)] = fn
                            else:
                                decided[id(code)] = no_site if guards(code) is not None else code
                        if fn is None:
                            return None
                    site = fn.site
                    if site is None:  # unpatched meanwhile
                        return None
                    lasti = frame.f_lasti
                    raw = code.co_code
                    if raw[lasti] == _RESUME:
                        kind = RESUME if raw[lasti + 1] else START
                    else:
                        kind = THROW
                        if site.has_ret:  # else no exit pops it: it would keep the frame alive
                            throws[frame] = lasti
                    site.enter(fn, site, frame, kind, lasti)
                elif event == "return":
                    if fn is None:
                        # decided is cleared by every rebuild; a call that entered
                        # before it must still get its exit: ask the engine.
                        fn = sites_get(id(code))
                    site = None if fn is None else fn.site
                    if site is None or not site.has_ret:
                        return None
                    lasti = frame.f_lasti
                    op = code.co_code[lasti]
                    thrown = throws.pop(frame, -1) if throws else -1
                    if op == _RETURN_VALUE:
                        exit_call(fn, site, frame, RETURN, lasti, arg, None)
                    elif op == _YIELD_VALUE and not (thrown == lasti and arg is None):
                        exit_call(fn, site, frame, YIELD, lasti, arg, None)
                    else:
                        exit_call(fn, site, frame, UNWIND, lasti, None, None)
            except KeyboardInterrupt:
                return interrupt_token()
            except RecursionError:
                pass  # the program is at the limit: the event is lost, the hook kept
            return None

        self.hook = hook
        symbols.on_code_gone(self._code_gone)
        threading.setprofile(hook)
        sys.setprofile(hook)
        _hook_other_threads(hook)

    def stop(self) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]
        native, self.native = self.native, None
        if native is not None:
            native.uninstall_all()
            native.clear()
            return
        if self.hook is not None and sys.getprofile() is not self.hook:
            _lost_thread()
        sys.setprofile(None)
        _hook_other_threads(None)
        symbols.off_code_gone(self._code_gone)
        self.decided.clear()

    def patch(self, fn: Function, site: Site, had_ret: bool) -> None:
        code = fn.live_code()
        if code is None:
            return
        if self.native is not None:
            self.native.forget(code)  # decided again from engine.sites
        else:
            self.decided[fn.key] = fn

    def unpatch(self, code: types.CodeType, had_ret: bool) -> None:
        if self.native is not None:
            self.native.forget(code)
        else:
            self.decided.pop(id(code), None)

    def sites_changed(self) -> None:
        """Sites were replaced or removed (the decided cache is kept by generation)."""

    def code_gone(self, key: int, had_ret: bool) -> None:
        """Nothing kept per code here beyond what the generation drops."""

    def rediscover(self, grow: bool) -> None:
        # Sites may have been replaced: forget every decision, sites included.
        if self.native is not None:
            self.native.clear()
        else:
            self.decided.clear()


#: Threads seen to have lost the pure-Python hook (counted when the backend stops).
lost_threads = 0


def _lost_thread() -> None:
    """CPython 3.11 removes a Python profile function that raises, for its thread.

    The hook cannot catch every error of its own: at the recursion limit its
    frame cannot even start (the program's RecursionError), and an exception
    raised at its first instruction (a signal handler's) precedes its ``try``.
    Tracing of that thread then stops for the rest of the run; nothing of
    fntrace runs in it again to notice sooner, so it is said when tracing ends.
    The C hook (fntrace._speedups) and 3.12+ have no such gap.
    """
    global lost_threads
    lost_threads += 1
    import warnings

    try:
        warnings.warn(f"fntrace: thread {threading.current_thread().name!r} stopped being traced "
                      "before the end (Python 3.11 without the C extension drops a profile "
                      "function that raised, e.g. at the recursion limit); its later calls "
                      "are missing from the trace", RuntimeWarning, stacklevel=2)
    except Exception:  # warnings turned into errors must not reach the program
        pass


# -- other threads --------------------------------------------------------------
# sys.setprofile only hooks the calling thread.  CPython 3.11 keeps the profile
# function in each PyThreadState (c_profilefunc, c_profileobj); we copy ours
# from this thread's state to the others through _PyEval_SetProfile.  The field
# offsets are checked against this thread's state before anything is written;
# when they do not match, other running threads stay unhooked (new threads are
# always hooked through threading.setprofile) and a warning says so.

_OFF_FUNC = 64
_OFF_OBJ = 80


def _hook_other_threads(hook: Any) -> None:
    if sys.implementation.name != "cpython" or sys.version_info[:2] != (3, 11):
        return
    others = [t for t in threading.enumerate() if t.ident != threading.get_ident()]
    if not others:
        return
    try:
        api = ctypes.pythonapi
        api.PyThreadState_Get.restype = ctypes.c_void_p
        api.PyInterpreterState_Get.restype = ctypes.c_void_p
        api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
        api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
        api.PyThreadState_Next.restype = ctypes.c_void_p
        api.PyThreadState_Next.argtypes = [ctypes.c_void_p]
        setprof = api._PyEval_SetProfile
        setprof.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        setprof.restype = ctypes.c_int
        me = api.PyThreadState_Get()
        func = ctypes.c_void_p.from_address(me + _OFF_FUNC).value
        obj = ctypes.c_void_p.from_address(me + _OFF_OBJ).value
        if hook is not None and obj != id(hook):
            raise RuntimeError("unexpected PyThreadState layout")
        arg = id(hook) if hook is not None else None
        if hook is None:
            func = None
        ts = api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Get())
        while ts:
            if ts != me:
                setprof(ts, func, arg)
            ts = api.PyThreadState_Next(ts)
    except Exception as exc:  # pragma: no cover - depends on the build
        import warnings

        warnings.warn(f"fntrace: threads already running are not traced on this Python "
                      f"({exc})", RuntimeWarning, stacklevel=3)
