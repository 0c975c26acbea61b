"""Names of generated code: after what the user wrote, not how it was made.

A code object's ``co_qualname`` is where its text was compiled.  For code a
library generates at run time that is not what the user knows it by: a
dataclass's ``__init__`` is compiled as ``__create_fn__.<locals>.__init__``
(and the function object renamed ``Item.__init__`` afterwards), a namedtuple's
``__new__`` is a ``<lambda>`` renamed ``Point.__new__``.  The interpreter does
not say which function object a frame runs (``f_func`` is not public), so at a
code object's first sight, from its frame:

* a method is found through its first argument (``self`` or ``cls``): the
  function in that class (or its MRO) under the code's name, or for generated
  code any function of the class whose ``__code__`` is this code; its
  ``__qualname__`` is used when it names the same function (its last part is
  the code's name) or the code is generated.  So ``functools.wraps``, which
  copies the wrapped function's ``__qualname__`` onto a wrapper, does not make
  the wrapper look like the function it wraps;
* the module body of generated text (what ``exec``/``eval`` ran) is named
  ``<exec>`` in the module whose code ran it (``dataclasses:<exec>``): it is
  the library's doing, not a call of the user's ``<module>``.  Functions that
  text defines and that are no methods keep their own names in the globals
  they run with (dataclasses' factory is ``__main__:__create_fn__``): who
  calls one first says nothing about who made it.

*Generated* means compiled from a pseudo-file (``<string>``, ``<...>``) while
running in the globals of a module that has a real file, or in globals that
are no loaded module's (namedtuple's namespace; ``python -c`` code runs in
``__main__``'s own globals and is not generated).  Only such code and
nested functions (``.<locals>.`` in their name) are looked at, once per code
object; nothing here runs the program's own code (descriptors are read from
class dictionaries, never through attribute lookup on the program's objects).
"""

from __future__ import annotations

import sys
import types

from fntrace.core.framelocals import first_local

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["generated", "user_name"]

_TYPE_DICT = type.__dict__["__dict__"]
_MAX_WRAPPED = 8  # __wrapped__ links followed
_MODULE_DICT: Any = vars(types.ModuleType)["__dict__"]
_TYPE_MRO = type.__dict__["__mro__"]


def generated(code: types.CodeType, globals_: dict[str, Any]) -> bool:
    """Code compiled from text at run time into a module that has a file."""
    filename = code.co_filename
    if not filename.startswith("<") or filename.startswith("<frozen "):
        return False
    mod_file = globals_.get("__file__")
    if isinstance(mod_file, str):
        return mod_file != filename
    # No file: generated unless these are a loaded module's own globals (python -c).
    # The module's dict is read past any __getattribute__ (a lazy module loads on it).
    name = globals_.get("__name__")
    mod = sys.modules.get(name) if isinstance(name, str) else None
    if mod is None or not issubclass(type(mod), types.ModuleType):
        return True
    return _MODULE_DICT.__get__(mod) is not globals_


def _function_in(klass_dict: Any, name: str, code: types.CodeType,
                 anywhere: bool) -> types.FunctionType | None:
    """The function of ``code`` in a class dictionary: under ``name``, or (when
    ``anywhere``) under any name."""
    candidates = [klass_dict.get(name)]
    if anywhere:
        candidates.extend(klass_dict.values())
    for attr in candidates:
        if type(attr) in (staticmethod, classmethod):
            attr = attr.__func__
        outer = attr
        # A wrapper made by functools.wraps (reprlib.recursive_repr around a
        # dataclass __repr__) keeps the function it wraps in __wrapped__: the
        # class attribute's name is the user's name of the code it wraps.
        for _ in range(_MAX_WRAPPED):
            if type(attr) is not types.FunctionType:
                break
            if attr.__code__ is code:
                return outer
            attr = attr.__dict__.get("__wrapped__")
    return None


def _method_qualname(frame: types.FrameType, code: types.CodeType, gen: bool) -> str | None:
    if code.co_argcount == 0:
        return None
    try:
        first = first_local(frame)
    except Exception:  # a frame whose locals cannot be read: keep the code's name
        return None
    klass = first if type in _TYPE_MRO.__get__(type(first)) else type(first)
    name = code.co_name
    for k in _TYPE_MRO.__get__(klass):
        func = _function_in(_TYPE_DICT.__get__(k), name, code, gen and k is klass)
        if func is None:
            continue
        qualname = func.__qualname__
        if not isinstance(qualname, str):
            return None
        if gen or qualname.rpartition(".")[2] == name:
            return qualname
        return None
    return None


def user_name(frame: types.FrameType, module: str) -> tuple[str, str | None]:
    """(module, qualname) for the code running in ``frame``, first seen there;
    qualname None: the code's own ``co_qualname``."""
    code = frame.f_code
    gen = generated(code, frame.f_globals)
    if not gen and ".<locals>." not in code.co_qualname:
        return module, None
    if gen and code.co_name == "<module>":
        back = frame.f_back
        caller = back.f_globals.get("__name__") if back is not None else None
        if isinstance(caller, str):
            return caller, "<exec>"
        return module, "<exec>"
    return module, _method_qualname(frame, code, gen)
