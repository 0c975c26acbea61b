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
import os
import sys
import threading
import types
from collections.abc import Iterator

__all__ = [
    "Function",
    "available_filter_functions",
    "function_for_code",
    "function_for_frame",
    "is_internal",
    "iter_loaded_code",
]

_PKG_DIR = __file__.rsplit("/", 2)[0] + "/"  # .../fntrace/ (this file is fntrace/core/symbols.py)


class Function:
    """One traceable function: a code object and its ``module:qualname`` name.

    ``argnames`` lists the parameters in signature order (positional-only,
    positional-or-keyword, ``*args``, keyword-only, ``**kwargs``) so argument
    fetching by position is a tuple index, computed once per code object.
    """

    __slots__ = ("__weakref__", "argnames", "code", "filename", "lineno", "module", "name",
                 "qualname")

    def __init__(self, code: types.CodeType, module: str) -> None:
        self.code = code
        self.module = module
        self.qualname: str = code.co_qualname
        self.name = f"{module}:{self.qualname}"
        self.filename = code.co_filename
        self.lineno = code.co_firstlineno
        self.argnames = signature_names(code)

    def __repr__(self) -> str:
        return f"<Function {self.name} at {self.filename}:{self.lineno}>"

    def __str__(self) -> str:
        return self.name


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


# Keyed by id(code) (hashing a code object hashes its content); each Function
# keeps its code alive, so an id is never reused while it is a key here.
_cache: dict[int, Function] = {}
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at fork time


if hasattr(os, "register_at_fork"):  # absent where there is no fork (Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)


def function_for_code(code: types.CodeType, module: str | None = None) -> Function:
    """The one :class:`Function` of ``code``; ``module`` names it on first sight."""
    fn = _cache.get(id(code))
    if fn is None:
        with _lock:
            fn = _cache.get(id(code))
            if fn is None:
                fn = Function(code, module if module is not None else _guess_module(code))
                _cache[id(code)] = fn
    return fn


def function_for_frame(frame: types.FrameType) -> Function:
    """The :class:`Function` running in ``frame`` (named from its globals)."""
    code = frame.f_code
    fn = _cache.get(id(code))
    if fn is None:
        name = frame.f_globals.get("__name__")
        fn = function_for_code(code, name if isinstance(name, str) else _guess_module(code))
    return fn


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


def iter_loaded_code() -> Iterator[Function]:
    """Every traceable code object that currently exists, as a Function.

    Function objects are found by the garbage collector (so functions made by
    ``exec``, closures, and methods are included); code nested in them (inner
    functions, lambdas, comprehensions) is found through ``co_consts``.
    """
    seen: set[types.CodeType] = set()
    for obj in gc.get_objects():
        if type(obj) is not types.FunctionType:
            continue
        code = obj.__code__
        if code in seen:
            continue
        # The globals' __name__, as at run time (__module__ may be rewritten by wraps).
        name = obj.__globals__.get("__name__")
        module = name if isinstance(name, str) else "?"
        if is_internal_module(module):
            continue
        for inner in _walk_code(code):
            if inner in seen or is_internal(inner):
                continue
            seen.add(inner)
            yield function_for_code(inner, module)


def available_filter_functions() -> list[str]:
    """The content of tracefs ``available_filter_functions``: sorted names."""
    return sorted({fn.name for fn in iter_loaded_code()})
