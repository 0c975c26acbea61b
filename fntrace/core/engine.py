"""The ftrace core: registered ops, patched sites, trampolines.

A *site* is one code object that some ops wants: its :class:`Function`, in
``sites``.  The function's ``site`` is an immutable configuration (which
ops, whether any wants full regs, whether any wants returns) and the
trampoline chosen for it, as the kernel picks the target patched into a call
site:

* one ops with an entry callback → a trampoline that calls it directly;
* several → a trampoline that walks the list;
* either in the *regs* flavour while some ops at the site wants SAVE_REGS.

A configuration is replaced whole (one attribute store) when the function's
ops change, so a thread running the trampoline sees either the old or the new
one, never a mix; every function the same ops want shares one (a patched
function costs the engine no object of its own).  Backends (``backends/``,
chosen there) turn interpreter events into calls of :func:`Site.enter` and
:func:`exit_call`; they see the engine only
through the :class:`~fntrace.core.backends.Registry` it hands them.  Code no
ops wants is never a site and, with sys.monitoring, gets no events at all
after its first call.

Returns are paired with entries through a per-thread shadow stack
(``shadow.py``, the kernel's function-graph return stack): ``ret`` reaches
exactly the ops that saw the matching entry, so exits of calls that started
before an ops was registered are never reported to it.

IPMODIFY ops are served by ``ipmodify.py`` (imported only once one
registers); the state both modules read (lock, global switch, fntrace's own
code) is in ``state.py``, below both.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Iterator

from fntrace.core import backends, flagbits, state, symbols, sync
from fntrace.core import ops as _ops_module
from fntrace.core.filter import join_bounds
from fntrace.core.ops import Ops
from fntrace.core.regs import FtraceRegs, FullRegs
from fntrace.core.shadow import FrameStack
from fntrace.core.state import BusyError, is_marked_internal, mark_internal, unmark_internal
from fntrace.core.symbols import (
    Function,
    caller,
    function_for_frame,
    is_internal,
    is_internal_module,
    parent_for_frame,
    plain_name,
)
from fntrace.core.symbols import cache as _symbol_cache

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.backends import Backend
    from fntrace.core.filter import ModuleBound

_fn_cache = _symbol_cache()  # the dict itself: read per parent lookup, never replaced

# The flags as plain ints: enum.Flag's `&` runs Python code (enum.py), which would
# be traced when register/unregister run in a traced thread with a catch-all filter.
_REGS = flagbits.SAVE_REGS | flagbits.SAVE_REGS_IF_SUPPORTED
_IPMODIFY = flagbits.IPMODIFY
_PERMANENT = flagbits.PERMANENT

__all__ = [
    "BusyError",
    "Site",
    "backend",
    "enabled_functions",
    "exit_call",
    "ftrace_enabled",
    "is_marked_internal",
    "mark_internal",
    "register",
    "registered_ops",
    "set_ftrace_enabled",
    "thread_shadow_stack",
    "unmark_internal",
    "unregister",
]


Trampoline = Callable[[Function, "Site", types.FrameType, str, int], None]

# -- registry state (changed only under _lock) --------------------------------
_lock = state.lock  # shared with ipmodify (state.py)
_ops: list[Ops] = []
# The patched functions, keyed by id(code) (the int their Function's weak
# reference keeps: one int per function): hashing a code object hashes its
# whole content, far too slow for the hot path.  A function's entry goes with
# its code (_code_gone), before the id can be reused.
sites: dict[int, Function] = {}
#: [modules whose code no active ops can select: name -> True].  A first look
#: refuses the rest of such a module by its name alone (the C dispatcher reads
#: it before calling discover).  Every rebuild puts a new dict in: a refusal
#: decided on older filters lands in the dict read when it began, read by no
#: one any more.
refused_modules: list[dict[str, bool]] = [{}]
#: [the modules some active ops can select a function of, or None when not known
#: (filter.Filter.module_bound, joined over the active ops)]: the C first look
#: DISABLEs code of any other module without calling discover.  Recomputed by
#: every rebuild, None while the ops change.
allowed_modules: list[ModuleBound | None] = [None]
_internal_codes = state.internal_codes  # stubs and other code fntrace makes
_backend: Backend | None = None
_tls = threading.local()
# Bumped by every _rebuild: a backend that decided about a code object outside
# _lock (DISABLE, a cached "no site") drops that decision if a rebuild came between.
generation = 0


#: The trampolines' names (enabled_functions shows them), one str each.
_TRAMPOLINES = {(flavour, kind): f"{flavour}_{kind}"
                for flavour in ("regs", "args") for kind in ("none", "one", "list")}
#: The configuration of each set of ops some function is patched for: the
#: functions the same ops want share one Site.  Emptied by every _rebuild
#: (register, unregister, a filter set), which puts back the ones still in
#: use, so an unregistered ops is held by no entry here.
_site_cache: dict[tuple[Ops, ...], Site] = {}


def _site_for(ops: tuple[Ops, ...]) -> Site:
    """The one Site of ``ops`` (made the first time)."""
    site = _site_cache.get(ops)
    if site is None:
        site = _site_cache[ops] = Site(ops)
    return site


class Site:
    """The immutable dispatch configuration of the functions one set of ops
    wants (``Function.site``): shared by all of them (_site_for), so that a
    patched function costs no object of its own (bench/site_memory.py)."""

    __slots__ = (
        "enter",
        "entry_op",
        "entry_ops",
        "fast",
        "has_ret",
        "ops",
        "regs",
        "ret_ops",
        "trampoline",
    )

    def __init__(self, ops: tuple[Ops, ...]) -> None:
        self.ops = ops
        self.entry_ops = tuple(op for op in ops if op.func is not None)
        self.ret_ops = tuple(op for op in ops if op.ret is not None)
        self.has_ret = bool(self.ret_ops)
        self.regs = any(op._flags & _REGS
                        for op in ops)
        self.entry_op = self.entry_ops[0] if len(self.entry_ops) == 1 else None
        flavour = "regs" if self.regs else "args"
        enter: Trampoline
        if not self.entry_ops:
            enter, kind = _enter_none, "none"
        elif self.entry_op is not None:
            enter, kind = _enter_one, "one"
        else:
            enter, kind = _enter_list, "list"
        self.enter = enter
        self.trampoline = _TRAMPOLINES[flavour, kind]
        # The C hot path (fntrace/csrc/) records this site itself when its
        # one ops carries a recorder (and the recorder says it may, recorder.ok).
        self.fast = ops[0].fast if len(ops) == 1 and not self.regs else None


# -- per-thread shadow stack ----------------------------------------------------
# Each entry is the FtraceRegs of the entry itself: it carries the frame, and
# (in `_targets`, `_parent`) the ops that get the return and the caller.  The
# exit reuses that object, so a call with return callbacks allocates one
# FtraceRegs and nothing else (an FtraceRegs is only valid during a callback,
# as the kernel's stack-allocated ftrace_regs).


def _stack() -> FrameStack[FtraceRegs]:
    try:
        return _tls.stack  # type: ignore[no-any-return]
    except AttributeError:
        stack: FrameStack[FtraceRegs] = FrameStack()
        _tls.stack = stack
        return stack


def thread_shadow_stack() -> list[FtraceRegs]:
    """A copy of this thread's shadow stack (entries awaiting their exit), oldest first."""
    return list(getattr(_tls, "stack", ()))


# -- trampolines (the hot path) -----------------------------------------------
# sync.holder: the locals `op` and `targets` are what unregister() waits on.


@sync.holder
def _enter_one(fn: Function, site: Site, frame: types.FrameType, event: str,
               offset: int) -> None:
    op = site.entry_op
    back = frame.f_back
    parent = None if back is None else (_fn_cache.get(id(back.f_code))
                                        or parent_for_frame(back))
    fregs = FtraceRegs(fn, frame, event, offset, None, None, site.regs)
    if site.has_ret:
        fregs._targets = site.ret_ops
        fregs._parent = parent
        _stack().append(fregs)
    # `op` is a local before _live is read, so unregister() (which clears _live, then
    # waits for frames holding `op`) either waits for this call or makes it skip.
    if not op._live:  # type: ignore[union-attr]
        return
    try:
        op.func(fn, parent, op, fregs)  # type: ignore[union-attr,misc,arg-type]
    except KeyboardInterrupt:
        raise KeyboardInterrupt from None  # the program's (docs/exceptions.md)
    except BaseException as exc:  # SystemExit too: a callback failure is no program exit
        op._callback_failed(exc)  # type: ignore[union-attr]


@sync.holder
def _enter_list(fn: Function, site: Site, frame: types.FrameType, event: str,
                offset: int) -> None:
    targets = site.entry_ops
    back = frame.f_back
    parent = None if back is None else (_fn_cache.get(id(back.f_code))
                                        or parent_for_frame(back))
    fregs = FtraceRegs(fn, frame, event, offset, None, None, site.regs)
    if site.has_ret:
        fregs._targets = site.ret_ops
        fregs._parent = parent
        _stack().append(fregs)
    interrupted = False
    for op in targets:
        if not op._live:  # unregistered meanwhile (see _enter_one)
            continue
        try:
            op.func(fn, parent, op, fregs)  # type: ignore[misc]
        except KeyboardInterrupt:
            interrupted = True  # every ops still sees the event, then the program gets it
        except BaseException as exc:
            op._callback_failed(exc)
    if interrupted:
        raise KeyboardInterrupt from None


def _enter_none(fn: Function, site: Site, frame: types.FrameType, event: str,
                offset: int) -> None:
    fregs = FtraceRegs(fn, frame, event, offset, None, None, site.regs)
    fregs._targets = site.ret_ops
    fregs._parent = caller(frame)
    _stack().append(fregs)


@sync.holder
def exit_call(fn: Function, site: Site, frame: types.FrameType, event: str, offset: int,
              value: Any, exc: BaseException | None) -> None:
    """Deliver an exit to the ops that saw this call's entry."""
    stack: FrameStack[FtraceRegs] | None = getattr(_tls, "stack", None)
    fregs: FtraceRegs | None = None
    if stack:
        fregs = stack.pop()
        if fregs.frame is not frame:
            stack.append(fregs)
            fregs = stack.pop_to(frame)
    if fregs is None:
        if site.fast is None:
            return
        # The entry may have been recorded by the site's C recorder, which has
        # stepped aside since (an option it lacks was set during the call): its
        # tracer keeps its own stack of entries and knows whether it saw this one.
        fregs = FtraceRegs(fn, frame, event, offset, value, exc, site.regs)
        fregs._targets = site.ret_ops
        fregs._parent = caller(frame)
    else:
        fregs.event = event
        fregs.offset = offset
        fregs.return_value = value
        fregs.exception = exc
        if site.regs is not (fregs._full is not None):  # the site changed trampoline
            fregs._full = FullRegs(frame) if site.regs else None
    targets = fregs._targets
    parent = fregs._parent
    interrupted = False
    for op in targets:
        if op._live:
            try:
                op.ret(fn, parent, op, fregs)  # type: ignore[misc]
            except KeyboardInterrupt:
                interrupted = True
            except BaseException as error:
                op._callback_failed(error)
    if interrupted:
        raise KeyboardInterrupt from None


# -- discovery and (re)patching -------------------------------------------------


def _active() -> list[Ops]:
    return [op for op in _ops
            if not op._flags & _IPMODIFY and (state.enabled or op._flags & _PERMANENT)]


def _module_bound(active: list[Ops]) -> ModuleBound | None:
    """The modules any of these ops can select a function of (None: not known)."""
    if not active:
        return None
    return join_bounds(op.filter.module_bound() for op in active)


def discover(code: types.CodeType, frame: types.FrameType) -> Function | None:
    """First look at a code object: patch its function (and return it, its
    ``site`` set) if some ops wants it."""
    if id(code) in _internal_codes or is_internal(code):
        return None
    if id(code) not in _fn_cache:
        # Most code is refused here by name, without the lock and without making a
        # Function (and a weak reference) it would keep for nothing.  No lock needed:
        # the ops and their filters are replaced whole, and a rebuild meanwhile
        # makes the caller drop the "no site" answer (the generation test).
        refused = refused_modules[0]  # before reading the ops: see refused_modules
        name = plain_name(frame)
        if name is not None:
            module, qualname = name
            if module in refused:
                return None
            active = _active()
            if is_internal_module(module) or not any(
                    op.wants_name(module, qualname) for op in active):
                if is_internal_module(module) or all(
                        op.filter.selects_nothing_in(module) for op in active):
                    refused[module] = True
                return None
    fn = function_for_frame(frame)
    if is_internal_module(fn.module):  # code generated by fntrace (dataclass __init__...)
        return None
    with _lock:
        found = sites.get(id(code))
        if found is not None:
            return found
        selected = tuple(op for op in _active() if op.wants(fn))
        if not selected:
            return None
        site = _site_for(selected)
        # Patch before publishing: once another thread can find the site (and record
        # a call's entry through it), the code must already report that call's exit.
        if _backend is not None:
            _backend.patch(fn, site, False)
        fn.site = site
        sites[fn.key] = fn
        return fn


def _rebuild(grow: bool = True) -> None:
    """Recompute every site after the set of ops or a filter changed (under _lock).

    ``grow``: the selection may now include code already looked at and
    dismissed, which the backend must then look at again.
    """
    refused_modules[0] = {}  # first: no refusal of the old filters is read after this
    allowed_modules[0] = None
    _site_cache.clear()
    active = _active()
    for key, fn in list(sites.items()):
        old: Site | None = fn.site
        if old is None:  # its code was freed since the list was made (_code_gone)
            continue
        selected = tuple(op for op in active if op.wants(fn))
        code = fn.live_code()
        if not selected or code is None:
            # Whoever takes a function out of sites (here, or _code_gone when its
            # code is freed meanwhile) tells the backend: one of them, once.
            if sites.pop(key, None) is not fn:
                continue
            fn.site = None
            if _backend is not None:
                if code is not None:
                    _backend.unpatch(code, old.has_ret)
                else:
                    _backend.code_gone(key, old.has_ret)
        elif selected != old.ops:
            site = _site_for(selected)
            # Exits switched on before the site that wants them is published, off
            # after (as in discover): an entry is never recorded without its exit.
            backend = _backend if site.has_ret != old.has_ret else None
            if backend is not None and site.has_ret:
                backend.patch(fn, site, old.has_ret)
            # `code` (held here) keeps the code alive, so _code_gone cannot have
            # removed this function meanwhile.
            fn.site = site
            if backend is not None and not site.has_ret:
                backend.patch(fn, site, old.has_ret)
        else:
            _site_cache.setdefault(old.ops, old)  # still in use: shared again
    allowed_modules[0] = _module_bound(active)
    global generation
    generation += 1
    if _backend is not None:
        _backend.sites_changed()
        _backend.rediscover(grow)


def _generation() -> int:
    return generation


def _ensure_backend() -> None:
    global _backend
    if _backend is None:
        backend = backends.create(backends.Registry(sites, discover, exit_call, _generation,
                                                    refused_modules, allowed_modules))
        backend.start()
        _backend = backend


def _release_backend() -> None:
    global _backend
    if _backend is not None and not _ops:
        backend, _backend = _backend, None
        for fn in list(sites.values()):
            code = fn.live_code()
            if code is not None:
                backend.unpatch(code, fn.site.has_ret)
            fn.site = None  # recorded events keep the Function, not its ops
        sites.clear()
        _site_cache.clear()
        backend.stop()
        # Nothing is traced: every Function goes (events recorded keep theirs).
        symbols.clear()
        # No ops is left to get an exit: drop every thread's shadow stack, whose
        # entries for calls still running (their exits never come now) would
        # otherwise keep those frames alive for the thread's lifetime.
        global _tls
        _tls = threading.local()


# -- public API -------------------------------------------------------------------


def _ipmodify(ops: Ops) -> Any:
    """The ipmodify module, imported only once some ops needs it (it is not small)."""
    if ops._flags & _IPMODIFY:
        from fntrace.core import ipmodify

        return ipmodify
    return sys.modules.get(__package__ + ".ipmodify")


def register(ops: Ops) -> None:
    """Start tracing with ``ops``; its callbacks may run before this returns."""
    ipmodify = _ipmodify(ops)

    with _lock:
        if ops._live or ops in _ops:
            raise BusyError(f"{ops!r} is already registered")
        if ops._flags & _PERMANENT and not state.enabled:
            raise BusyError("ftrace is disabled: a PERMANENT ops cannot be registered")
        if ops._flags & _IPMODIFY:
            ipmodify.check(ops, ops.filter, ops.notrace)
        _ensure_backend()
        if ops._flags & _IPMODIFY:
            try:
                ipmodify.attach(ops, ops.filter)
            except BaseException:
                _release_backend()
                raise
        ops._live = True
        _ops.append(ops)
        _rebuild()


def unregister(ops: Ops) -> None:
    """Stop tracing with ``ops``; once this returns, no callback of it runs again."""
    ipmodify = _ipmodify(ops)

    with _lock:
        if ops not in _ops:
            raise ValueError(f"{ops!r} is not registered")
        ops._live = False
        _ops.remove(ops)
        if ops._flags & _IPMODIFY:
            ipmodify.detach(ops)
        _rebuild(grow=False)
        _release_backend()
    # Outside the lock: a thread inside a callback may need the lock to finish.
    sync.wait_quiescent(ops)


def update_filters(ops: Ops, filt: Any, notrace: Any) -> None:
    """Swap an ops' filter and notrace sets in one step (see Ops.set_filter)."""
    ipmodify = _ipmodify(ops)
    with _lock:
        if not ops._live:
            ops.filter, ops.notrace = filt, notrace
            return
        if ops._flags & _IPMODIFY:
            ipmodify.check(ops, filt, notrace)
            ipmodify.retarget(ops, filt)
        ops.filter, ops.notrace = filt, notrace
        _rebuild()


def registered_ops() -> list[Ops]:
    """The ops registered now, in registration order."""
    with _lock:
        return list(_ops)


def ftrace_enabled() -> bool:
    """The global switch (the kernel's ``ftrace_enabled`` sysctl)."""
    return state.enabled


def set_ftrace_enabled(enabled: bool) -> None:
    """Turn all non-PERMANENT ops on or off; refused while a PERMANENT one is registered."""
    with _lock:
        if not enabled and any(op._flags & _PERMANENT for op in _ops):
            raise BusyError("a PERMANENT ops is registered: ftrace cannot be disabled")
        state.enabled = bool(enabled)
        _rebuild(grow=state.enabled)


def iter_sites() -> Iterator[tuple[Function, int, str, str]]:
    """(function, refcount, flags, trampoline) for every patched function."""
    ipmodify = sys.modules.get(__package__ + ".ipmodify")
    with _lock:
        held = ipmodify.holdings() if ipmodify is not None else {}
        rows: dict[types.CodeType, tuple[Function, int, str, str]] = {}
        for fn in sites.values():
            code = fn.live_code()
            site = fn.site
            if code is None or site is None:
                continue
            flags = "R" if site.regs else " "
            flags += "I" if code in held else " "
            tramp = site.trampoline
            n = len(site.ops) + (1 if code in held else 0)
            rows[code] = (fn, n, flags, tramp)
        for code, (fn, holder) in held.items():
            if code not in rows:
                wants = holder._flags & _REGS
                regs = "R" if wants else " "
                rows[code] = (fn, 1, regs + "I", "ipmodify_stub")
            else:
                f, n, fl, tr = rows[code]
                rows[code] = (f, n, fl, tr + "+ipmodify_stub")
    yield from sorted(rows.values(), key=lambda r: r[0].name)


def enabled_functions() -> str:
    """The tracefs ``enabled_functions`` file: one patched function a line."""
    return "".join(f"{fn.name} ({n}) {flags}\ttramp: {tramp}\n"
                   for fn, n, flags, tramp in iter_sites())


def backend() -> Backend | None:
    """The running backend (None while no ops is registered)."""
    return _backend


def _code_gone(key: int) -> None:
    """A code object was freed: its site (if any) goes, before its id is reused.

    No lock (this runs inside a deallocation, in any thread, possibly while
    another thread holds _lock and waits for an import this one is running):
    whoever stores a site under a key holds that code (discover runs its
    frame, _rebuild holds it through the store), so no site for this freed
    code can be stored after this runs.
    """
    fn = sites.get(key)
    if fn is not None and fn.live_code() is None and sites.pop(key, None) is fn:
        old = fn.site  # this thread took it out of sites: it alone tells the backend
        fn.site = None
        backend = _backend
        if backend is not None:
            backend.code_gone(key, old is not None and old.has_ret)


symbols.on_code_gone(_code_gone)




# An ops' new filters, set while it is registered, are applied by the registry.
_ops_module.set_filters_applier(update_filters)
