"""IPMODIFY: redirecting a function's calls (the kernel's livepatch hook).

sys.monitoring can observe a call but not change where it goes, so an
IPMODIFY ops is served by a *stub*: every function object running the target
code gets, as ``__code__``, a generated code object with the same signature
and the same free variables (CPython only lets ``__code__`` change when the
number of free variables matches, and the function keeps its defaults,
closure, ``__dict__`` and identity).  The stub hands its bound arguments, and
its real closure cells (through a tiny lambda over the free variables), to a
per-function *handle*.  The handle runs the IPMODIFY ops and tells the stub
what to call: the original code (rebuilt as a function over the same globals
and cells, so ``nonlocal`` writes reach the enclosing scope), the
replacement, or a tiny function of fntrace's that returns the override value.
The stub makes that call itself, so exactly one extra frame -- the stub's, named like the function
and placed on its first line (``co_firstlineno``: the ``def``, or its first
decorator), without columns -- appears in tracebacks.  Callbacks of other ops
see the body's parent as the function itself (the stub frame is named as the
original), and the IPMODIFY ops sees the real caller.  The original code
object is kept and put back on unregister: ``f.__code__ is original`` again.

Generator and coroutine functions get generator and coroutine stubs that
delegate with ``yield from`` / ``await``, so ``inspect.isgeneratorfunction``
and ``iscoroutinefunction`` answer as before; their IPMODIFY callback runs when
the body would start (first ``next()`` / first ``await``), as the START event
of every other ops does.

Functions defined after registration (a module imported later) are patched
when their module finishes loading, through an import hook.  Function objects
created later by a *running* enclosing function (new closures) keep the
original code: they are not redirected.  Async generator functions, class
bodies, comprehensions and generator expressions cannot be modified.

Everything here is keyed by ``id(code)``: code objects compare by content, so
two distinct but equal code objects (a reloaded module, the same source
exec'd twice) would otherwise be confused.  Each key's code object is kept
alive by the value stored with it, so ids are never reused while they are keys.
"""

from __future__ import annotations

import gc
import keyword
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Iterable, Iterator

from fntrace.core import state, symbols, sync
from fntrace.core.filter import Filter
from fntrace.core.flags import Event, Flags
from fntrace.core.ops import Ops
from fntrace.core.regs import FtraceRegs
from fntrace.core.symbols import (
    Function,
    caller,
    function_for_code,
    is_internal,
    is_internal_module,
    iter_loaded_code,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "StubRegs",
    "attach",
    "check",
    "detach",
    "holdings",
    "make_stub",
    "one_line_table",
    "retarget",
]

_PLACEHOLDER = "__fntrace_handle_placeholder__"
_RESERVED_PREFIX = "__fntrace_"  # names the stub source uses for itself
_CO_OPTIMIZED = 0x1  # inspect.CO_OPTIMIZED
_CO_NEWLOCALS = 0x2  # inspect.CO_NEWLOCALS
_CO_VARARGS = 0x4  # inspect.CO_VARARGS
_CO_VARKEYWORDS = 0x8  # inspect.CO_VARKEYWORDS
_CO_GENERATOR = 0x20  # inspect.CO_GENERATOR
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE
_CO_ITERABLE_COROUTINE = 0x100  # inspect.CO_ITERABLE_COROUTINE
_CO_ASYNC_GENERATOR = 0x200  # inspect.CO_ASYNC_GENERATOR


class StubRegs(FtraceRegs):
    """FtraceRegs for a call entering through a stub: arguments are bound values.

    The stub has already bound the caller's arguments into a dict, so reading
    and ``set_argument`` work on that dict on every Python version (no frame
    write-back needed), and the IPMODIFY accessors are allowed at entry.  The
    same dict backs the exit view, so ``ret`` sees the arguments the body
    actually received.
    """

    __slots__ = ("_args", "_overridden", "_override", "_target")

    def __init__(self, function: Function, frame: types.FrameType, args: dict[str, Any],
                 full: bool, event: str = Event.START, value: Any = None,
                 exception: BaseException | None = None) -> None:
        super().__init__(function, frame, event, 0, value, exception, full)
        self._args = args
        self._target: Any = None
        self._override: Any = None
        self._overridden = False

    def _read(self, names: tuple[str, ...]) -> dict[str, Any]:
        values = self._args
        return {name: values[name] for name in names if name in values}

    def set_argument(self, which: int | str, value: Any) -> None:
        if self.event != Event.START:
            raise RuntimeError("set_argument is only possible at function entry")
        self._args[self._name_of(which)] = value

    def set_instruction_pointer(self, replacement: Any) -> None:
        """Continue the call in ``replacement`` (same arguments; the caller gets its result)."""
        if self.event != Event.START:
            super().set_instruction_pointer(replacement)
        if not callable(replacement):
            raise TypeError(f"replacement {replacement!r} is not callable")
        self._target = replacement
        self._overridden = False

    def override_function_with_return(self, value: Any) -> None:
        """Skip the body: the caller gets ``value`` (a generator returns it at once)."""
        if self.event != Event.START:
            super().override_function_with_return(value)
        self._override = value
        self._overridden = True
        self._target = None


# -- the handle: what a stub calls ----------------------------------------------------


def _return_value(value: Any) -> Any:
    return value


def _gen_return(value: Any) -> Any:
    return value
    yield  # pragma: no cover - makes this a generator


async def _coro_return(value: Any) -> Any:
    return value


# What the stub calls instead of the body when the ops overrode the call; these
# live in fntrace's own file, so no ops ever sees them as the function's body.
_OVERRIDE = {"plain": _return_value, "gen": _gen_return, "coro": _coro_return}

# Function objects a handle rebuilt around an original code object: never to be
# patched themselves (the stub would then call itself).
_made: weakref.WeakSet[types.FunctionType] = weakref.WeakSet()

# A ret token: the parent seen at entry and the bound arguments.
if TYPE_CHECKING:
    _Token = tuple[Function | None, dict[str, Any]]


class _Handle:
    """Per target code: runs the IPMODIFY ops for a call and says what the stub calls.

    ``CATCH`` is read by the stub instead of the name ``BaseException``, which
    a parameter or free variable of the target could shadow.
    """

    CATCH = BaseException

    def __init__(self, fn: Function, holder: Ops) -> None:
        code = fn.code
        self.fn = fn
        self.code = code
        self.holder = holder
        self.kind = ("gen" if code.co_flags & _CO_GENERATOR else
                     "coro" if code.co_flags & _CO_COROUTINE else "plain")
        npos, nkw = code.co_argcount, code.co_kwonlyargcount
        names = code.co_varnames
        self.pos = names[:npos]
        i = npos + nkw
        self.varargs = names[i] if code.co_flags & _CO_VARARGS else None
        i += 1 if self.varargs else 0
        self.kwonly = names[npos:npos + nkw]
        self.varkw = names[i] if code.co_flags & _CO_VARKEYWORDS else None
        # Flags tested once here: IntFlag operations cost a microsecond a call.
        flags = holder.flags
        self.regs = bool(flags & (Flags.SAVE_REGS | Flags.SAVE_REGS_IF_SUPPORTED))
        self.guard = bool(flags & Flags.RECURSION)
        self.permanent = bool(flags & Flags.PERMANENT)
        self.originals: dict[tuple[int, ...], types.FunctionType] = {}

    def original(self, globals_: dict[str, Any],
                 cells: tuple[Any, ...] | None) -> types.FunctionType:
        """A function running the original code over the caller's globals and cells.

        Cached by the identity of the globals and of each cell (cells compare
        by *content* and are unhashable, so they cannot be keys themselves);
        the cached function keeps them alive, so the ids stay valid.
        """
        key = (id(globals_),) if cells is None else (id(globals_), *map(id, cells))
        func = self.originals.get(key)
        if func is None:
            if len(self.originals) >= 256:
                self.originals.clear()
            func = types.FunctionType(self.code, globals_, self.code.co_name, None, cells)
            func.__qualname__ = self.code.co_qualname
            _made.add(func)
            self.originals[key] = func
        return func

    def call_args(self, args: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        pos = [args[n] for n in self.pos]
        if self.varargs:
            pos.extend(args[self.varargs])
        kw = {n: args[n] for n in self.kwonly}
        if self.varkw:
            kw.update(args[self.varkw])
        return pos, kw

    @sync.holder
    def enter(self, cells: tuple[Any, ...] | None, args: dict[str, Any]
              ) -> tuple[Any, Any, dict[str, Any], _Token | None]:
        """Run the ops' entry callback; return (callee, positional, keywords, ret token).

        The local ``op`` is what sync.wait_quiescent looks for (sync.holder):
        unregister waits while another thread is in here with the ops.  The body itself
        runs after this returns, in the stub, so a long body never holds it up.
        """
        op = self.holder
        frame = sys._getframe(1)  # the stub's frame
        fregs: StubRegs | None = None
        token: _Token | None = None
        if op._live and (state.enabled or self.permanent):
            guard = self.guard
            if guard and _inside(op):
                op.nmissed += 1
            else:
                parent = caller(frame)
                if op.func is not None:
                    fregs = StubRegs(self.fn, frame, args, self.regs)
                    if guard:
                        _enter_guard(op)
                    try:
                        op.func(self.fn, parent, op, fregs)
                    except KeyboardInterrupt:
                        raise  # the program's (docs/exceptions.md)
                    except BaseException as exc:  # SystemExit too
                        op._callback_failed(exc)
                    finally:
                        if guard:
                            _leave_guard(op)
                if op.ret is not None:
                    token = (parent, args)
        if fregs is not None:
            if fregs._overridden:
                return _OVERRIDE[self.kind], (fregs._override,), {}, token
            if fregs._target is not None:
                pos, kw = self.call_args(args)
                return fregs._target, pos, kw, token
        pos, kw = self.call_args(args)
        return self.original(frame.f_globals, cells), pos, kw, token

    def returned(self, token: _Token, value: Any) -> None:
        self._deliver(token, Event.RETURN, value, None, sys._getframe(1))

    def unwind(self, token: _Token, exc: BaseException) -> None:
        self._deliver(token, Event.UNWIND, None, exc, sys._getframe(1))

    @sync.holder
    def _deliver(self, token: _Token, event: str, value: Any, exc: BaseException | None,
                 frame: types.FrameType) -> None:
        """The ops' ``ret`` callback for a call whose entry it saw.

        Under RECURSION the ret callback is guarded like the entry callback:
        a call it makes of the function is refused (and counted) instead of
        recursing forever.  An exit reached while the guard is already held
        (a generator resumed inside a callback) is dropped.
        """
        op = self.holder
        if not op._live or op.ret is None:
            return
        guard = self.guard
        if guard and _inside(op):
            return
        parent, args = token
        fregs = StubRegs(self.fn, frame, args, self.regs, event, value, exc)
        if guard:
            _enter_guard(op)
        try:
            op.ret(self.fn, parent, op, fregs)
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # SystemExit too
            op._callback_failed(error)
        finally:
            if guard:
                _leave_guard(op)


_guard = threading.local()


def _inside(op: Ops) -> bool:
    return op in getattr(_guard, "ops", ())


def _enter_guard(op: Ops) -> None:
    active = getattr(_guard, "ops", None)
    if active is None:
        active = _guard.ops = set()
    active.add(op)


def _leave_guard(op: Ops) -> None:
    _guard.ops.discard(op)


# -- stub generation ---------------------------------------------------------------


def _identifier(name: str) -> bool:
    return (name.isidentifier() and not keyword.iskeyword(name)
            and not name.startswith(_RESERVED_PREFIX))


def modifiable(code: types.CodeType) -> bool:
    """Whether a stub can stand in for ``code``.

    Not: fntrace's own code and stubs; class bodies and module code (not
    optimized functions); comprehensions and generator expressions (no
    function object outlives a call, and their parameter ``.0`` is no Python
    name); async generators (delegating ``asend``/``athrow`` is not done);
    code whose names the stub source could not spell, or whose free variables
    are not in the compiler's sorted order (the stub's would then differ).
    """
    if state.is_marked_internal(code) or is_internal(code):
        return False
    flags = code.co_flags
    if flags & _CO_ASYNC_GENERATOR or (flags & (_CO_OPTIMIZED | _CO_NEWLOCALS)
                                       != _CO_OPTIMIZED | _CO_NEWLOCALS):
        return False
    if code.co_name != "<lambda>" and not code.co_name.isidentifier():
        return False
    freevars = code.co_freevars
    if list(freevars) != sorted(freevars):
        return False
    return all(_identifier(n) for n in (*symbols.signature_names(code), *freevars))


def _signature_source(code: types.CodeType) -> tuple[str, list[str]]:
    """The parameter list of ``code`` as source, and its names in signature order."""
    names = code.co_varnames
    npos, nposonly, nkw = code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount
    parts: list[str] = []
    for i, name in enumerate(names[:npos]):
        parts.append(name)
        if nposonly and i == nposonly - 1:
            parts.append("/")
    i = npos + nkw
    ordered = list(names[:npos])
    if code.co_flags & _CO_VARARGS:
        parts.append("*" + names[i])
        ordered.append(names[i])
        i += 1
    elif nkw:
        parts.append("*")
    parts.extend(names[npos:npos + nkw])
    ordered.extend(names[npos:npos + nkw])
    if code.co_flags & _CO_VARKEYWORDS:
        parts.append("**" + names[i])
        ordered.append(names[i])
    return ", ".join(parts), ordered


def one_line_table(code: types.CodeType) -> bytes:
    """A location table putting every instruction on ``co_firstlineno``, without columns.

    The stub is compiled from generated source, so its own line numbers and
    columns would point at unrelated text of the target's file.  Format
    (CPython 3.11-3.13, Objects/locations.md): entries of up to 8 code units,
    first byte ``0x80 | code << 3 | (units - 1)``; code 13 means "no column
    information" and is followed by the line delta as a signed varint (0).
    """
    units = len(code.co_code) // 2
    table = bytearray()
    while units > 0:
        n = min(units, 8)
        table += bytes((0x80 | 13 << 3 | (n - 1), 0))
        units -= n
    return bytes(table)


def make_stub(code: types.CodeType, handle: _Handle) -> types.CodeType:
    """A code object with ``code``'s signature and free variables that calls ``handle``.

    The handle object is put in place of a string constant after compiling
    (source cannot spell an arbitrary object), so the stub has no extra
    local or global for it.  The call to the body is made by the stub itself
    so that the body's frame sits right under the stub's in a traceback.
    """
    params, ordered = _signature_source(code)
    freevars = code.co_freevars
    h = repr(_PLACEHOLDER)
    cells = f"(lambda: ({', '.join(freevars)},)).__closure__" if freevars else "None"
    argdict = "{" + ", ".join(f"{n!r}: {n}" for n in ordered) + "}"
    call = "__fntrace_c__(*__fntrace_a__, **__fntrace_k__)"
    if code.co_flags & _CO_GENERATOR:
        prefix, run = "def", f"(yield from {call})"
    elif code.co_flags & _CO_COROUTINE:
        prefix, run = "async def", f"(await {call})"
    else:
        prefix, run = "def", call
    lines = ["def __fntrace_outer__():"]
    if freevars:
        lines.append(f"    {' = '.join(freevars)} = None")
    lines += [
        f"    {prefix} __fntrace_stub__({params}):",
        f"        __fntrace_c__, __fntrace_a__, __fntrace_k__, __fntrace_t__ = "
        f"{h}.enter({cells}, {argdict})",
        "        if __fntrace_t__ is None:",
        f"            return {run}",
        "        try:",
        f"            __fntrace_r__ = {run}",
        f"        except {h}.CATCH as __fntrace_e__:",
        f"            {h}.unwind(__fntrace_t__, __fntrace_e__)",
        "            raise",
        f"        {h}.returned(__fntrace_t__, __fntrace_r__)",
        "        return __fntrace_r__",
        "    return __fntrace_stub__",
    ]
    namespace: dict[str, Any] = {}
    # Compiled under this file's name, so the nested cell lambda is fntrace's own code.
    exec(compile("\n".join(lines), __file__, "exec"), namespace)
    stub: types.CodeType = namespace["__fntrace_outer__"]().__code__
    if stub.co_freevars != freevars:
        raise RuntimeError(f"cannot build a stub for {code.co_qualname}: free variables differ")
    consts = tuple(handle if c == _PLACEHOLDER else c for c in stub.co_consts)
    stub = stub.replace(co_consts=consts)
    return stub.replace(
        co_name=code.co_name, co_qualname=code.co_qualname, co_filename=code.co_filename,
        co_firstlineno=code.co_firstlineno, co_linetable=one_line_table(stub),
        co_flags=stub.co_flags | (code.co_flags & _CO_ITERABLE_COROUTINE))


def _walk_code(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _walk_code(const)


# -- holdings ----------------------------------------------------------------------


class _Redirect:
    """One modified code object: its stub, handle, and the function objects patched."""

    def __init__(self, fn: Function, holder: Ops) -> None:
        self.fn = fn
        self.code = fn.code
        self.holder = holder
        self.handle = _Handle(fn, holder)
        self.stub = make_stub(fn.code, self.handle)
        self.internal = tuple(_walk_code(self.stub))
        self.patched: list[weakref.ref[types.FunctionType]] = []

    def activate(self) -> None:
        """Make the stub invisible as itself before any function runs it.

        It is internal (never a site), and its Function is the original's, so
        the symbol walk (``available_filter_functions``, the BusyError check)
        finds the original through a patched function object, and the body's
        callbacks see the function itself as parent instead of a stub.
        """
        for code in self.internal:
            state.mark_internal(code)
        symbols.cache()[id(self.stub)] = self.fn

    def patch(self, func: types.FunctionType) -> None:
        if func.__code__ is self.code:
            func.__code__ = self.stub
            self.patched.append(weakref.ref(func))

    def restore(self) -> None:
        """Put the original code object back, and forget the stub (no leak of the ops)."""
        for ref in self.patched:
            func = ref()
            if func is not None and func.__code__ is self.stub:
                func.__code__ = self.code
        self.patched.clear()
        for code in self.internal:
            state.unmark_internal(code)
        if symbols.cache().get(id(self.stub)) is self.fn:
            del symbols.cache()[id(self.stub)]


_held: dict[int, _Redirect] = {}  # id(original code) -> its redirect
# The IPMODIFY ops attached (registered), in order: the import hook serves them.
_holders: list[Ops] = []
# Targets computed by check() for the attach()/retarget() that follows it under
# the same lock hold: (ops, filter, targets); saves a second walk of the heap.
_plan: tuple[Ops, Filter, dict[int, Function]] | None = None


def holdings() -> dict[types.CodeType, tuple[Function, Ops]]:
    """Original code object -> (its Function, the IPMODIFY ops holding it)."""
    return {r.code: (r.fn, r.holder) for r in list(_held.values())}


def _targets(filt: Filter, functions: Iterable[Function]) -> dict[int, Function]:
    """The modifiable functions ``filt`` selects, by id of their code."""
    out: dict[int, Function] = {}
    for fn in functions:
        key = id(fn.code)
        # The filter first: it rejects nearly everything, and cheaply.
        if (key not in out and filt.selects(fn.module, fn.qualname)
                and not is_internal_module(fn.module) and modifiable(fn.code)):
            out[key] = fn
    return out


def _take_plan(ops: Ops, filt: Filter) -> dict[int, Function]:
    """The targets check() just computed for this (ops, filter), else computed anew."""
    global _plan
    plan, _plan = _plan, None
    if plan is not None and plan[0] is ops and plan[1] is filt:
        return plan[2]
    return _targets(filt, iter_loaded_code())


def check(ops: Ops, filt: Filter, notrace: Filter) -> None:
    """Refuse an IPMODIFY configuration before anything is touched."""
    global _plan
    _plan = None
    if filt.is_empty:
        raise ValueError("an IPMODIFY ops needs a filter: it may not modify every function")
    if notrace.lines:
        raise ValueError("an IPMODIFY ops may not have a notrace set")
    targets = _targets(filt, iter_loaded_code())
    for key in targets:
        other = _held.get(key)
        if other is not None and other.holder is not ops:
            raise state.BusyError(f"{other.fn.name} is already modified by {other.holder!r}")
    _plan = (ops, filt, targets)


def _functions_by_code(keys: Iterable[int]) -> list[types.FunctionType]:
    """Every function object running one of these code objects (closures, methods...).

    The heap is the only complete index: a function may be held by a
    decorator's closure, a container, or another module's namespace.
    """
    wanted = set(keys)
    return [obj for obj in gc.get_objects()
            if type(obj) is types.FunctionType and id(obj.__code__) in wanted
            and obj not in _made]


def _build(ops: Ops, targets: dict[int, Function]) -> dict[int, _Redirect]:
    """Stubs for the targets not held yet; raises before anything is touched."""
    return {key: _Redirect(fn, ops) for key, fn in targets.items() if key not in _held}


def _apply(redirects: dict[int, _Redirect]) -> None:
    """Patch the function objects of freshly built redirects and hold their code."""
    if not redirects:
        return
    funcs = _functions_by_code(redirects)
    for r in redirects.values():
        r.activate()
    for func in funcs:
        redirects[id(func.__code__)].patch(func)
    _held.update(redirects)


def attach(ops: Ops, filt: Filter) -> None:
    """Patch what ``filt`` selects (``check`` has passed), and watch later imports."""
    _apply(_build(ops, _take_plan(ops, filt)))
    if ops not in _holders:
        _holders.append(ops)
    _ImportWatcher.install()


def detach(ops: Ops) -> None:
    """Restore every function ``ops`` modified; drop the import hook when no IPMODIFY is left."""
    for key in [k for k, r in _held.items() if r.holder is ops]:
        _held.pop(key).restore()
    if ops in _holders:
        _holders.remove(ops)
    if not _holders:
        _ImportWatcher.remove()


def retarget(ops: Ops, filt: Filter) -> None:
    """Move ``ops`` to a new filter: leaving functions restored, new ones patched."""
    wanted = _take_plan(ops, filt)
    redirects = _build(ops, wanted)
    for key in [k for k, r in _held.items() if r.holder is ops and k not in wanted]:
        _held.pop(key).restore()
    _apply(redirects)


# -- modules imported later --------------------------------------------------------


def _module_functions(module: types.ModuleType) -> list[types.FunctionType]:
    """Function objects a freshly imported module defines (classes and wrappers included)."""
    found: list[types.FunctionType] = []
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, (staticmethod, classmethod)):
            visit(obj.__func__, depth + 1)
        elif isinstance(obj, property):
            for f in (obj.fget, obj.fset, obj.fdel):
                if f is not None:
                    visit(f, depth + 1)
        elif type(obj) is types.FunctionType:
            found.append(obj)
            wrapped = obj.__dict__.get("__wrapped__")
            if wrapped is not None:
                visit(wrapped, depth + 1)
        elif isinstance(obj, type):
            if obj.__module__ == module.__name__:
                for value in list(vars(obj).values()):
                    visit(value, depth + 1)
        else:
            # functools wrappers (lru_cache, partial-like objects): only an
            # instance __dict__ is read, never __getattr__ of an arbitrary object.
            try:
                attrs = object.__getattribute__(obj, "__dict__")
            except Exception:
                return
            wrapped = attrs.get("__wrapped__") if isinstance(attrs, dict) else None
            if wrapped is not None:
                visit(wrapped, depth + 1)

    for value in list(vars(module).values()):
        visit(value, 0)
    return found


def _on_module_loaded(module: types.ModuleType) -> None:
    if is_internal_module(module.__name__):
        # Never modifiable, and fntrace imports its own modules while holding
        # the registry lock: taking it here from another thread could deadlock.
        return
    funcs = _module_functions(module)
    if not funcs:
        return
    with state.lock:
        holders = [op for op in _holders if op._live]
        if not holders:
            return
        fns: list[Function] = []
        for func in funcs:
            name = func.__globals__.get("__name__")
            module_name = name if isinstance(name, str) else "?"
            fns.extend(function_for_code(c, module_name) for c in _walk_code(func.__code__))
        for ops in holders:
            targets = {k: fn for k, fn in _targets(ops.filter, fns).items() if k not in _held}
            if targets:
                _apply(_build(ops, targets))


class _ImportWatcher:
    """Applies IPMODIFY filters to modules imported after registration.

    It finds nothing itself: it asks the finders after it and wraps the
    loader of the spec they return, so it sees the module when it finishes
    executing.  Present in ``sys.meta_path`` only while an IPMODIFY ops is
    registered.
    """

    _instance: _ImportWatcher | None = None

    @classmethod
    def install(cls) -> None:
        if cls._instance is None:
            cls._instance = cls()
            sys.meta_path.insert(0, cls._instance)

    @classmethod
    def remove(cls) -> None:
        if cls._instance is not None:
            try:
                sys.meta_path.remove(cls._instance)
            except ValueError:
                pass
            cls._instance = None

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                loader = spec.loader
                if loader is not None and hasattr(loader, "exec_module"):
                    spec.loader = _WatchingLoader(loader)  # type: ignore[assignment]
                return spec
        return None


class _WatchingLoader:
    """Delegates to the real loader and patches the module once it has run.

    The real loader is put back in ``__spec__.loader`` and ``__loader__``
    right after execution, so nothing (importlib.resources, reload, pickling
    of specs) keeps seeing the wrapper.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        try:
            self.loader.exec_module(module)
        finally:
            spec = getattr(module, "__spec__", None)
            if spec is not None and spec.loader is self:
                spec.loader = self.loader
            if getattr(module, "__loader__", None) is self:
                module.__loader__ = self.loader
        try:
            _on_module_loaded(module)
        except Exception as exc:  # a failed patch must never fail the program's import
            warnings.warn(f"fntrace: IPMODIFY could not patch {module.__name__}: {exc!r}",
                          RuntimeWarning, stacklevel=2)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)
