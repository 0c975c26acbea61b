"""KeyboardInterrupt that lands in fntrace's Python code, handed back to the program.

A Ctrl-C is raised by the program's SIGINT handler at the next bytecode check
of the main thread, which may come while fntrace's code runs (a repr, a
callback).  It is the program's, so it must reach the program, at the program's
own next check, with no fntrace frame in its traceback (docs/exceptions.md).

The C path re-arms it with ``PyThreadState_SetAsyncExc`` as the last thing its
callback does.  A Python callback (the pure path) cannot do that itself: any
call it makes is followed by a check in its own frame, where the re-armed
interrupt would fire again.  So it returns a *token* to the interpreter
instead: when the interpreter drops the callback's result, the token's
weakref callback, a C function (ctypes' ``PyThreadState_SetAsyncExc`` bound
to the thread), arms the interrupt with no Python frame left to take it.
"""

from __future__ import annotations

import functools
import threading
import weakref

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["interrupt_token"]


class _Token:
    __slots__ = ("__weakref__",)


class _Ref(weakref.ref):  # type: ignore[type-arg]
    # The weakref callback gets the weakref as an extra argument; ctypes passes it
    # to the C function as this integer, which the function ignores (cdecl).
    _as_parameter_ = 0


# Per thread: the weakref must outlive its referent for its callback to run.
_armed: dict[int, _Ref] = {}


def interrupt_token() -> object:
    """What a callback returns to the interpreter to hand a KeyboardInterrupt on.

    Once the interpreter drops it (right after the callback returns), the calling
    thread gets KeyboardInterrupt at its next bytecode check.
    """
    tid = threading.get_ident()
    token = _Token()
    _armed[tid] = _Ref(token, functools.partial(_set_async_exc(), tid, KeyboardInterrupt))
    return token


@functools.cache
def _set_async_exc() -> Any:
    """ctypes' ``PyThreadState_SetAsyncExc``, made on the first interrupt.

    Importing ctypes costs about 19M instructions, more than the rest of the
    backend: a process that never sees a Ctrl-C inside fntrace's code (nearly
    every one) should not pay it at start-up.
    """
    import ctypes

    func = ctypes.pythonapi.PyThreadState_SetAsyncExc
    func.argtypes = [ctypes.c_ulong, ctypes.py_object]
    func.restype = ctypes.c_int
    return func
