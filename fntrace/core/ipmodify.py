"""IPMODIFY: redirecting a function's calls (the kernel's livepatch hook).

sys.monitoring can observe a call but not change where it goes, so an
IPMODIFY ops is served by a *stub*: every function object running the target
code gets, as ``__code__``, a generated code object with the same signature
and the same free variables.  The stub hands its arguments (and, through a
small lambda, its real closure cells) to a per-function *handle*, which calls
the IPMODIFY ops and then continues in the original code, in the
replacement, or returns the override value.  The original code object is kept
and put back on unregister: ``f.__code__ is original`` again.

Generator and coroutine functions get generator and coroutine stubs that
delegate with ``yield from`` / ``await``, so ``inspect.isgeneratorfunction``
and ``iscoroutinefunction`` answer as before.

Functions defined after registration (a module imported later) are patched
when their module finishes loading, through an import hook.  Function objects
created later by a *running* enclosing function (new closures) keep the
original code: they are not redirected.
"""

from __future__ import annotations

import gc
import importlib.abc
import inspect
import sys
import threading
import types
import weakref
from collections.abc import Iterable
from typing import Any

from . import engine
from .filter import Filter
from .flags import Event, Flags
from .ops import Ops
from .regs import FtraceRegs
from .symbols import Function, function_for_code, is_internal, iter_loaded_code

__all__ = ["TRAMPOLINE_CODES", "attach", "check", "detach", "holdings", "retarget"]

_PLACEHOLDER = "__fntrace_handle_placeholder__"
_CO_GENERATOR, _CO_COROUTINE, _CO_ASYNC_GENERATOR = 0x20, 0x100, 0x200
_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08


class StubRegs(FtraceRegs):
    """FtraceRegs for a call entering through a stub: arguments are bound values.

    Here ``set_argument`` works on every Python version, and the IPMODIFY
    accessors are allowed.
    """

    __slots__ = ("_args", "_override", "_overridden", "_target")

    def __init__(self, function: Function, frame: types.FrameType, args: dict[str, Any],
                 full: bool) -> None:
        super().__init__(function, frame, Event.START, 0, None, None, full)
        self._args = args
        self._target: Any = None
        self._override: Any = None
        self._overridden = False

    def _values(self) -> Any:
        return self._args

    def set_argument(self, which: int | str, value: Any) -> None:
        if self.event != Event.START:
            raise RuntimeError("set_argument is only possible at function entry")
        self._args[self._name_of(which)] = value

    def set_instruction_pointer(self, replacement: Any) -> None:
        """Continue the call in ``replacement`` (same arguments; the caller gets its result)."""
        if not callable(replacement):
            raise TypeError(f"replacement {replacement!r} is not callable")
        self._target = replacement
        self._overridden = False

    def override_function_with_return(self, value: Any) -> None:
        """Skip the body: the caller gets ``value``."""
        self._override = value
        self._overridden = True
        self._target = None


class _Handle:
    """Per target code: what a stub calls.  Holds the IPMODIFY ops."""

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
        self.regs = bool(holder.flags & (Flags.SAVE_REGS | Flags.SAVE_REGS_IF_SUPPORTED))
        self.originals: dict[tuple[int, Any], types.FunctionType] = {}

    def original(self, globals_: dict[str, Any], cells: Any) -> types.FunctionType:
        key = (id(globals_), cells)
        func = self.originals.get(key)
        if func is None:
            if len(self.originals) > 256:
                self.originals.clear()
            func = types.FunctionType(self.code, globals_, self.code.co_name, None, cells)
            func.__qualname__ = self.code.co_qualname
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

    def __call__(self, cells: Any, args: dict[str, Any]) -> Any:
        op = self.holder
        frame = sys._getframe(1)
        parent = engine._parent(frame)
        fregs = StubRegs(self.fn, frame, args, self.regs)
        if op._live and op.func is not None:
            guard = bool(op.flags & Flags.RECURSION)
            if guard and _inside(op):
                op.nmissed += 1
            else:
                if guard:
                    _enter_guard(op)
                try:
                    op.func(self.fn, parent, op, fregs)
                except Exception as exc:
                    op._callback_failed(exc)
                finally:
                    if guard:
                        _leave_guard(op)
        holder = op
        op = None  # noqa: F841 - the body may run long: unregister must not wait for it
        if fregs._overridden:
            value = fregs._override
            callee: Any = (lambda *a, **k: _gen_return(value) if self.kind == "gen" else
                           _coro_return(value) if self.kind == "coro" else value)
        else:
            callee = fregs._target or self.original(frame.f_globals, cells)
        pos, kw = self.call_args(fregs._args)
        wants_ret = holder.ret is not None
        if self.kind == "plain":
            if not wants_ret:
                return callee(*pos, **kw)
            try:
                result = callee(*pos, **kw)
            except BaseException as exc:
                _deliver_ret(holder, self.fn, parent, frame, Event.UNWIND, None, exc)
                raise
            _deliver_ret(holder, self.fn, parent, frame, Event.RETURN, result, None)
            return result
        inner = callee(*pos, **kw)
        if not wants_ret:
            return inner
        if self.kind == "gen":
            return _drive_gen(holder, self.fn, parent, frame, inner)
        return _drive_coro(holder, self.fn, parent, frame, inner)


def _deliver_ret(op: Ops, fn: Function, parent: Function | None, frame: types.FrameType,
                 event: str, value: Any, exc: BaseException | None) -> None:
    if op._live and op.ret is not None:
        fregs = FtraceRegs(fn, frame, event, 0, value, exc, False)
        try:
            op.ret(fn, parent, op, fregs)
        except Exception as error:
            op._callback_failed(error)


def _gen_return(value: Any) -> Any:
    return value
    yield  # pragma: no cover - makes this a generator


async def _coro_return(value: Any) -> Any:
    return value


def _drive_gen(op: Ops, fn: Function, parent: Function | None, frame: types.FrameType,
               inner: Any) -> Any:
    try:
        result = yield from inner
    except BaseException as exc:
        _deliver_ret(op, fn, parent, frame, Event.UNWIND, None, exc)
        raise
    _deliver_ret(op, fn, parent, frame, Event.RETURN, result, None)
    return result


async def _drive_coro(op: Ops, fn: Function, parent: Function | None, frame: types.FrameType,
                      inner: Any) -> Any:
    try:
        result = await inner
    except BaseException as exc:
        _deliver_ret(op, fn, parent, frame, Event.UNWIND, None, exc)
        raise
    _deliver_ret(op, fn, parent, frame, Event.RETURN, result, None)
    return result


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


TRAMPOLINE_CODES = {_Handle.__call__.__code__, _deliver_ret.__code__}


# -- stub generation ---------------------------------------------------------------


def _signature_source(code: types.CodeType) -> tuple[str, list[str]]:
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


def make_stub(code: types.CodeType, handle: _Handle) -> types.CodeType:
    """A code object with ``code``'s signature and free variables that calls ``handle``."""
    params, ordered = _signature_source(code)
    freevars = code.co_freevars
    cells = f"(lambda: ({', '.join(freevars)},)).__closure__" if freevars else "None"
    argdict = "{" + ", ".join(f"{n!r}: {n}" for n in ordered) + "}"
    call = f"__fntrace_h__({cells}, {argdict})"
    if code.co_flags & _CO_GENERATOR:
        prefix, body = "def", f"return (yield from {call})"
    elif code.co_flags & _CO_COROUTINE:
        prefix, body = "async def", f"return await {call}"
    else:  # plain functions, and async generators (which return the original's object)
        prefix, body = "def", f"return {call}"
    lines = ["def __fntrace_outer__():"]
    if freevars:
        lines.append(f"    {' = '.join(freevars)} = None")
    lines += [f"    {prefix} {code.co_name}({params}):",
              f"        __fntrace_h__ = {_PLACEHOLDER!r}",
              f"        {body}",
              f"    return {code.co_name}"]
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<fntrace-stub>", "exec"), namespace)
    stub = namespace["__fntrace_outer__"]().__code__
    if stub.co_freevars != freevars:
        raise RuntimeError(f"cannot build a stub for {code.co_qualname}: free variables differ")
    consts = tuple(handle if c == _PLACEHOLDER else c for c in stub.co_consts)
    stub = stub.replace(co_consts=consts, co_qualname=code.co_qualname,
                        co_filename=code.co_filename, co_firstlineno=code.co_firstlineno)
    for inner in (stub, *(c for c in stub.co_consts if isinstance(c, types.CodeType))):
        engine.mark_internal(inner)
    return stub


# -- holdings ----------------------------------------------------------------------


class _Redirect:
    def __init__(self, fn: Function, holder: Ops) -> None:
        self.fn = fn
        self.holder = holder
        self.handle = _Handle(fn, holder)
        self.stub = make_stub(fn.code, self.handle)
        self.patched: list[weakref.ref[types.FunctionType]] = []

    def patch(self, func: types.FunctionType) -> None:
        if func.__code__ is self.fn.code:
            func.__code__ = self.stub
            self.patched.append(weakref.ref(func))

    def restore(self) -> None:
        for ref in self.patched:
            func = ref()
            if func is not None and func.__code__ is self.stub:
                func.__code__ = self.fn.code
        self.patched.clear()


_held: dict[types.CodeType, _Redirect] = {}


def holdings() -> dict[types.CodeType, tuple[Function, Ops]]:
    return {code: (r.fn, r.holder) for code, r in _held.items()}


def _targets(filt: Filter, functions: Iterable[Function]) -> dict[types.CodeType, Function]:
    return {fn.code: fn for fn in functions
            if not is_internal(fn.code) and fn.code.co_name != "<module>"
            and not fn.code.co_flags & _CO_ASYNC_GENERATOR
            and filt.selects(fn.module, fn.qualname)}


def check(ops: Ops, filt: Filter, notrace: Filter) -> None:
    """Refuse an IPMODIFY configuration before anything is touched."""
    if filt.is_empty:
        raise ValueError("an IPMODIFY ops needs a filter: it may not modify every function")
    if notrace.lines:
        raise ValueError("an IPMODIFY ops may not have a notrace set")
    for code in _targets(filt, iter_loaded_code()):
        other = _held.get(code)
        if other is not None and other.holder is not ops:
            raise engine.BusyError(f"{other.fn.name} is already modified by {other.holder!r}")


def _functions_by_code(codes: set[types.CodeType]) -> list[types.FunctionType]:
    return [obj for obj in gc.get_objects()
            if type(obj) is types.FunctionType and obj.__code__ in codes]


def _install(ops: Ops, targets: dict[types.CodeType, Function]) -> None:
    redirects = {code: _Redirect(fn, ops) for code, fn in targets.items() if code not in _held}
    for func in _functions_by_code(set(redirects)):
        redirects[func.__code__].patch(func)
    _held.update(redirects)


def attach(ops: Ops, filt: Filter) -> None:
    _install(ops, _targets(filt, iter_loaded_code()))
    _ImportWatcher.install()


def detach(ops: Ops) -> None:
    for code in [c for c, r in _held.items() if r.holder is ops]:
        _held.pop(code).restore()
    if not any(op.flags & Flags.IPMODIFY for op in engine.registered_ops()):
        _ImportWatcher.remove()


def retarget(ops: Ops, filt: Filter) -> None:
    wanted = _targets(filt, iter_loaded_code())
    for code in [c for c, r in _held.items() if r.holder is ops and c not in wanted]:
        _held.pop(code).restore()
    _install(ops, wanted)


def _module_functions(module: types.ModuleType) -> list[types.FunctionType]:
    """Function objects a freshly imported module defines (classes included)."""
    found: list[types.FunctionType] = []
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if isinstance(obj, property):
            for f in (obj.fget, obj.fset, obj.fdel):
                if f is not None:
                    visit(f, depth + 1)
            return
        if type(obj) is types.FunctionType:
            found.append(obj)
            wrapped = inspect.unwrap(obj)
            if wrapped is not obj:
                visit(wrapped, depth + 1)
        elif isinstance(obj, type) and obj.__module__ == module.__name__:
            for value in list(vars(obj).values()):
                visit(value, depth + 1)

    for value in list(vars(module).values()):
        visit(value, 0)
    return found


def _on_module_loaded(module: types.ModuleType) -> None:
    holders = [op for op in engine.registered_ops() if op.flags & Flags.IPMODIFY]
    if not holders:
        return
    name = module.__name__
    funcs = _module_functions(module)
    with engine._lock:
        for ops in holders:
            fns = [function_for_code(f.__code__, name) for f in funcs]
            targets = {c: fn for c, fn in _targets(ops.filter, fns).items() if c not in _held}
            if not targets:
                continue
            redirects = {c: _Redirect(fn, ops) for c, fn in targets.items()}
            for func in funcs:
                r = redirects.get(func.__code__)
                if r is not None:
                    r.patch(func)
            _held.update(redirects)


class _ImportWatcher(importlib.abc.MetaPathFinder):
    """Applies IPMODIFY filters to modules imported after registration."""

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
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                loader = spec.loader
                if loader is not None and hasattr(loader, "exec_module"):
                    spec.loader = _WatchingLoader(loader)
                return spec
        return None


class _WatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)
        _on_module_loaded(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)
