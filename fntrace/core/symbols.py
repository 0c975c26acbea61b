"""Function symbols: how a code object is named, and which code objects exist.

The kernel names a traced function by its symbol; fntrace names a code object
``module:qualname``.  The module is not stored in a code object, so it is taken
from the globals the code runs with (at the first event of a code object) or
from the module being walked (for ``available_filter_functions``).  One
:class:`Function` exists per code object, cached here, so every part of fntrace
agrees on a function's name.
"""

from __future__ import annotations

import gc
import sys
import types
import weakref
from collections.abc import Callable, Iterator

from fntrace.core import accel as _accel
from fntrace.core import naming
from fntrace.core.forklock import ForkSafeLock

TYPE_CHECKING = False  # typing for the type checker only (import fntrace stays cheap)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Function",
    "GoneCode",
    "RootFunction",
    "available_filter_functions",
    "cache",
    "caller",
    "clear",
    "function_for_code",
    "function_for_frame",
    "guards",
    "is_internal",
    "iter_loaded_code",
    "off_code_gone",
    "on_code_gone",
    "plain_name",
]

_PKG_DIR = __file__.rsplit("/", 2)[0] + "/"  # .../fntrace/ (this file is fntrace/core/symbols.py)


class GoneCode:
    """What :attr:`Function.code` gives once the code object is gone.

    Events already recorded keep their Function (and format its flags) after
    the program dropped the code; the code object itself is not kept alive
    for them (see :class:`Function`).
    """

    __slots__ = ("co_filename", "co_firstlineno", "co_flags", "co_name", "co_qualname")

    def __init__(self, fn: Function) -> None:
        self.co_flags = fn.flags
        self.co_name = fn.qualname.rsplit(".", 1)[-1]
        self.co_qualname = fn.qualname
        self.co_filename = fn.filename
        self.co_firstlineno = fn.lineno

    def __repr__(self) -> str:
        return f"<gone code {self.co_qualname} at {self.co_filename}:{self.co_firstlineno}>"


class Function(weakref.ref[types.CodeType]):
    """One traceable function: a code object and its ``module:qualname`` name.

    ``argnames`` lists the parameters in signature order (positional-only,
    positional-or-keyword, ``*args``, keyword-only, ``**kwargs``) so argument
    fetching by position is a tuple index, computed once per code object.

    The code object is held weakly: a program that makes and drops code (exec,
    dataclasses, templates) must be able to free it while traced, and the
    cache below would otherwise keep every code object ever looked at.  When
    the code goes, its cache entry goes with it (and every per-code table that
    registered with :func:`on_code_gone`); a Function still held elsewhere (an
    event in a ring buffer) keeps its name, and its ``code`` is then a
    :class:`GoneCode` with the same flags.

    A Function *is* its weak reference to the code (a ``weakref.ref`` whose
    ``key`` is the code's id, which the callback needs once the code is gone):
    one object per function, not two, and no name string kept (made when
    asked): bench/site_memory.py.  It compares and hashes by identity, as any
    object, not by its code's content as a plain weak reference would.
    """

    __slots__ = ("_argnames", "filename", "flags", "key", "lineno", "module", "qualname", "site")

    __hash__ = object.__hash__
    __eq__ = object.__eq__
    __ne__ = object.__ne__

    def __new__(cls, code: types.CodeType, module: str, qualname: str | None = None) -> Function:
        return super().__new__(cls, code, _code_gone)

    def __init__(self, code: types.CodeType, module: str, qualname: str | None = None) -> None:
        super().__init__(code, _code_gone)  # type: ignore[call-arg]
        self.key = id(code)
        self.module = module
        self.qualname: str = qualname if qualname is not None else code.co_qualname
        self.filename = code.co_filename
        self.lineno = code.co_firstlineno
        self.flags = code.co_flags
        self._argnames: tuple[str, ...] | None = None
        #: While the function is patched, its dispatch configuration (the engine's
        #: Site, shared by the functions the same ops want); else None.
        self.site: Any = None

    def __copy__(self) -> Function:
        """Itself: one Function exists per code object (a weak reference would
        not copy at all)."""
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Function:
        return self

    @property
    def name(self) -> str:
        """``module:qualname``, as filters and traces show it."""
        return f"{self.module}:{self.qualname}"

    @property
    def argnames(self) -> tuple[str, ...]:
        """Computed at first use: reading ``co_varnames`` makes CPython build and
        keep a tuple on the code object, which untraced code must not pay for."""
        names = self._argnames
        if names is None:
            code = self()
            names = self._argnames = signature_names(code) if code is not None else ()
        return names

    @property
    def code(self) -> types.CodeType:
        """The code object, or a :class:`GoneCode` stand-in once it is gone."""
        code = self()
        return code if code is not None else GoneCode(self)  # type: ignore[return-value]

    def live_code(self) -> types.CodeType | None:
        """The code object, or None once it is gone."""
        return self()

    def __repr__(self) -> str:
        return f"<Function {self.name} at {self.filename}:{self.lineno}>"

    def __str__(self) -> str:
        return self.name


class RootFunction(Function):
    """The code that runs the traced program (``fntrace record``'s runner).

    The program's top frame is the root of every stack: its caller is
    fntrace's, not the program's.  A RootFunction is false as a truth value, so
    the engine's ``cache.get(id(code)) or parent_for_frame(back)`` (and the C
    recorders' cache test) fall through to :func:`parent_for_frame`, which
    says "no parent"; ordinary Functions pay nothing for it.
    """

    __slots__ = ()

    def __bool__(self) -> bool:
        return False


def signature_names(code: types.CodeType) -> tuple[str, ...]:
    """Parameter names of ``code`` in ``inspect.signature`` order."""
    names = code.co_varnames
    npos = code.co_argcount
    nkw = code.co_kwonlyargcount
    out = list(names[:npos])
    i = npos + nkw
    if code.co_flags & 0x04:  # CO_VARARGS
        out.append(names[i])
        i += 1
    out.extend(names[npos:npos + nkw])
    if code.co_flags & 0x08:  # CO_VARKEYWORDS
        out.append(names[i])
    return tuple(out)


# Keyed by id(code) (hashing a code object hashes its content).  An entry goes
# when its code object goes (_code_gone, run by the Function's weak reference
# before the code's memory, hence its id, can be reused) and all entries go
# when the last ops is unregistered (clear()).
_cache: dict[int, Function] = {}
_lock = ForkSafeLock()  # see forklock.py: a forked child's first look can take it
# Called with the id of each code object that goes: the engine's sites, the
# backends' decisions and the C hot path's direct-mapped tables drop it.
_gone_hooks: list[Callable[[int], None]] = []


def _code_gone(ref: Function, cache: dict[int, Function] | None = None,
               hooks: list[Callable[[int], None]] | None = None,
               finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
    """A code object some Function named has been freed (weakref callback).

    Runs during the code's deallocation, in whatever thread dropped it, so it
    takes no lock of its own; nothing can look the dead code up any more.
    At interpreter exit (module globals already torn down) it does nothing:
    the defaults bind what it needs when the module is loaded.
    """
    if finalizing() or cache is None or hooks is None:
        return
    key = ref.key
    fn = cache.get(key)
    if fn is ref:
        cache.pop(key, None)
    built = _accel.built
    if built is not None and hasattr(built, "code_gone"):
        built.code_gone(key)  # C tables that borrowed the code's address
    failed: Exception | None = None
    for hook in list(hooks):
        try:
            hook(key)
        except Exception as exc:  # every hook runs; Python reports the error as unraisable
            failed = exc
    if failed is not None:
        raise failed


_code_gone.__defaults__ = (_cache, _gone_hooks, sys.is_finalizing)


def on_code_gone(hook: Callable[[int], None]) -> None:
    """Call ``hook(id(code))`` whenever a code object with a Function is freed."""
    if hook not in _gone_hooks:
        _gone_hooks.append(hook)


def off_code_gone(hook: Callable[[int], None]) -> None:
    """Stop calling ``hook`` (see :func:`on_code_gone`)."""
    if hook in _gone_hooks:
        _gone_hooks.remove(hook)


def guards(code: types.CodeType) -> Function | None:
    """The cached Function whose weak reference will report ``code``'s end.

    A per-code table may key on ``id(code)`` without holding the code only
    while it holds this Function (whose reference then outlives the code).
    """
    fn = _cache.get(id(code))
    return fn if fn is not None and fn() is code else None


def cache() -> dict[int, Function]:
    """The cache itself, id(code) -> Function, for the C hot path's lookups
    (it reads it without calling back; entries come and go as described above)."""
    return _cache


def clear() -> None:
    """Forget every Function (the last ops was unregistered: tracing leaves
    nothing behind) but the roots.  Functions held elsewhere (recorded events)
    stay valid; the C hot path's tables drop their entries too."""
    with _lock:
        _cache.clear()
        _cache.update(roots)
    built = _accel.built
    if built is not None and hasattr(built, "forget_codes"):
        built.forget_codes()


def function_for_code(code: types.CodeType, module: str | None = None,
                      qualname: str | None = None) -> Function:
    """The one :class:`Function` of ``code``; ``module``/``qualname`` name it on first sight."""
    fn = _cache.get(id(code))
    if fn is None:
        with _lock:
            fn = _cache.get(id(code))
            if fn is None:
                fn = Function(code, module if module is not None else _guess_module(code),
                              qualname)
                _cache[fn.key] = fn  # the ref's int, not one more (id > 256)
    return fn


# Codes that run the program, id(code) -> RootFunction (they live as long as
# fntrace, so they are held): see RootFunction.
roots: dict[int, RootFunction] = {}


def mark_root(code: types.CodeType, module: str) -> None:
    """``code`` runs the traced program: the program's frames end below it."""
    with _lock:
        fn = RootFunction(code, module)
        roots[id(code)] = fn
        _cache[id(code)] = fn


def parent_for_frame(frame: types.FrameType) -> Function | None:
    """The Function of a caller frame, None when it is a root (fntrace's runner)."""
    fn = function_for_frame(frame)
    return fn if fn else None


def caller(frame: types.FrameType) -> Function | None:
    """The Function that called ``frame`` (the kernel's ``parent_ip``), None at a root.

    The trampolines inline the cache lookup; this is the same for the others
    (IPMODIFY stubs, entries without an entry callback).
    """
    back = frame.f_back
    if back is None:
        return None
    return _cache.get(id(back.f_code)) or parent_for_frame(back)


def function_for_frame(frame: types.FrameType) -> Function:
    """The :class:`Function` running in ``frame`` (named from its globals)."""
    code = frame.f_code
    fn = _cache.get(id(code))
    if fn is None:
        name = frame.f_globals.get("__name__")
        module, qualname = naming.user_name(
            frame, name if isinstance(name, str) else _guess_module(code))
        fn = function_for_code(code, module, qualname)
    return fn


def plain_name(frame: types.FrameType) -> tuple[str, str] | None:
    """(module, qualname) of the code running in ``frame`` when that is simply its
    globals' ``__name__`` and its ``co_qualname`` (most code: not generated, not
    nested in a function), as :func:`function_for_frame` would name it; None
    otherwise.  A first look decides on it without making a Function, which an
    unselected code object then never gets."""
    code = frame.f_code
    qualname = code.co_qualname
    module = frame.f_globals.get("__name__")
    if (type(module) is not str or ".<locals>." in qualname
            or (code.co_filename[:1] == "<" and naming.generated(code, frame.f_globals))):
        return None
    return module, qualname


def _guess_module(code: types.CodeType) -> str:
    """Module name for a code object seen without its globals: by file name."""
    filename = code.co_filename
    for name, mod in list(sys.modules.items()):
        if getattr(mod, "__file__", None) == filename:
            return name
    return "?"


def is_internal(code: types.CodeType) -> bool:
    """True for fntrace's own code, which is never traced (the kernel's notrace)."""
    return code.co_filename.startswith(_PKG_DIR)


_PKG_NAME = __name__.split(".", 1)[0]  # "fntrace"


def is_internal_module(module: str) -> bool:
    """True for fntrace's own modules: code they generate at run time (dataclass
    ``__init__``, namedtuple methods) has no file of ours, only our globals."""
    return module == _PKG_NAME or module.startswith(_PKG_NAME + ".")


def _walk_code(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _walk_code(const)


def iter_loaded_code(keep: bool = True,
                     modules: Callable[[str], bool] | None = None) -> Iterator[Function]:
    """Every traceable code object that currently exists, as a Function.

    Function objects are found by the garbage collector (so functions made by
    ``exec``, closures, and methods are included); code nested in them (inner
    functions, lambdas, comprehensions) is found through ``co_consts``.
    ``keep`` False: Functions not cached yet are made for the caller only
    (listing names must not leave a Function per loaded code behind).
    ``modules``: only functions of the modules it accepts (a caller that needs
    a few modules skips making a Function for each of the thousands of others).
    """
    seen: set[types.CodeType] = set()
    skipped: set[str] = set()  # modules decided against once (a large process has ~10^5
    function_type = types.FunctionType  # objects, ~10^4 functions of ~10^3 modules)
    for obj in gc.get_objects():
        if type(obj) is not function_type:
            continue
        code = obj.__code__
        if code in seen:
            continue
        # The globals' __name__, as at run time (__module__ may be rewritten by wraps).
        name = obj.__globals__.get("__name__")
        module = name if isinstance(name, str) else "?"
        if module in skipped:
            continue
        if is_internal_module(module) or (modules is not None and not modules(module)):
            skipped.add(module)
            continue
        # The function's own __qualname__ where naming.user_name would take it.
        qualname: str | None = obj.__qualname__ if isinstance(obj.__qualname__, str) else None
        if qualname is not None and not (
                naming.generated(code, obj.__globals__)
                or (".<locals>." in code.co_qualname
                    and qualname.rpartition(".")[2] == code.co_name)):
            qualname = None
        for inner in _walk_code(code):
            if inner in seen or is_internal(inner):
                continue
            seen.add(inner)
            name = qualname if inner is code else None
            known = _cache.get(id(inner))
            if known is not None or keep:
                yield known if known is not None else function_for_code(inner, module, name)
            else:
                yield Function(inner, module, name)


def available_filter_functions() -> list[str]:
    """The content of tracefs ``available_filter_functions``: sorted names."""
    return sorted({fn.name for fn in iter_loaded_code(keep=False)})
