"""FtraceRegs and FullRegs: what a callback can read of the traced call.

As in the kernel mail this project starts from: every callback gets an
``FtraceRegs`` that can read the function's arguments; only a call that went
through the regs trampoline (some ops at the site asked for SAVE_REGS) also
carries a ``FullRegs``, returned by :func:`get_regs`.  ``get_regs`` returns the
complete object or ``None``, never something half filled, so a callback can
never mistake a partial view for the whole frame.

An FtraceRegs is a thin view over the live frame: nothing is copied at the
trampoline except the few fields already in hand, so an ops that reads no
argument pays for none.
"""

from __future__ import annotations

import sys
import types
from collections import namedtuple

from fntrace.core.flagbits import Event
from fntrace.core.framelocals import read_locals, write_back
from fntrace.core.symbols import Function, function_for_frame

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple

__all__ = ["CallSite", "FtraceRegs", "FullRegs", "get_regs"]

_PY313 = sys.version_info >= (3, 13)


if TYPE_CHECKING:

    class CallSite(NamedTuple):
        """Where the traced function was called (or resumed) from."""

        filename: str
        lineno: int
        function: Function

else:
    # The same tuple type built by collections (already imported by threading), so
    # that typing is not imported at run time.
    CallSite = namedtuple("CallSite", ["filename", "lineno", "function"], module=__name__)
    CallSite.__doc__ = "Where the traced function was called (or resumed) from."


class FullRegs:
    """The whole frame of the traced call: the kernel's full ``pt_regs``.

    Built only by the regs trampoline, always complete: ``frame``, ``code``,
    ``locals``, ``globals``, ``lineno`` (the current line) and ``back`` (the
    caller's frame, or None).
    """

    __slots__ = ("frame",)

    def __init__(self, frame: types.FrameType) -> None:
        self.frame = frame

    @property
    def code(self) -> types.CodeType:
        return self.frame.f_code

    @property
    def locals(self) -> Any:
        """The frame's locals (a write-through proxy on 3.13+, a snapshot before)."""
        return self.frame.f_locals

    @property
    def globals(self) -> dict[str, Any]:
        return self.frame.f_globals

    @property
    def lineno(self) -> int:
        return self.frame.f_lineno

    @property
    def back(self) -> types.FrameType | None:
        return self.frame.f_back

    def __repr__(self) -> str:
        return f"<FullRegs {self.code.co_qualname} line {self.lineno}>"


class FtraceRegs:
    """The arguments-level view every callback receives.

    ``event`` tells why the callback runs (see :class:`fntrace.Event`).
    ``return_value`` is set for RETURN and YIELD exits, ``exception`` for
    UNWIND exits; both are None otherwise.  Arguments read at an exit are the
    parameter variables as they are then (a function may have rebound them).
    """

    __slots__ = ("_full", "_parent", "_targets", "event", "exception", "frame", "function",
                 "offset", "return_value")

    # Set by the engine on entries of sites with return callbacks (shadow stack).
    _parent: Function | None
    _targets: tuple[Any, ...]

    def __init__(self, function: Function, frame: types.FrameType, event: str, offset: int,
                 value: Any = None, exception: BaseException | None = None,
                 full: bool = False) -> None:
        self.function = function
        self.frame = frame
        self.event = event
        self.offset = offset
        self.return_value = value
        self.exception = exception
        self._full: FullRegs | None = FullRegs(frame) if full else None

    # -- arguments -------------------------------------------------------
    def _read(self, names: tuple[str, ...]) -> dict[str, Any]:
        return read_locals(self.frame, names)

    def get_argument(self, n: int) -> Any:
        """The n-th argument (0-based, in signature order; ``*args`` is a tuple)."""
        names = self.function.argnames
        if not 0 <= n < len(names):
            raise IndexError(f"{self.function.name} has {len(names)} parameters, not {n + 1}")
        return self._read(names)[names[n]]

    @property
    def arguments(self) -> dict[str, Any]:
        """Parameter name → value, in signature order (``*args``/``**kwargs`` included)."""
        return self._read(self.function.argnames)

    def set_argument(self, which: int | str, value: Any) -> None:
        """Change what the function receives; only at entry (event START)."""
        if self.event != Event.START:
            raise RuntimeError("set_argument is only possible at function entry")
        name = self._name_of(which)
        if _PY313:
            self.frame.f_locals[name] = value
        else:
            # Before 3.13 f_locals is a snapshot; write it back into the fast
            # locals with the C API debuggers have always used for this.
            snapshot = self.frame.f_locals
            snapshot[name] = value
            write_back(self.frame)

    def _name_of(self, which: int | str) -> str:
        names = self.function.argnames
        if isinstance(which, int):
            if not 0 <= which < len(names):
                raise IndexError(f"{self.function.name} has no argument {which}")
            return names[which]
        if which not in names:
            raise KeyError(f"{self.function.name} has no parameter {which!r}")
        return which

    # -- where ---------------------------------------------------------
    @property
    def instruction_pointer(self) -> tuple[types.CodeType, int]:
        """(code object, bytecode offset) where the event happened."""
        return (self.function.code, self.offset)

    @property
    def caller(self) -> CallSite | None:
        """The call site: file, line and function of the caller, or None at a thread's base."""
        back = self.frame.f_back
        if back is None:
            return None
        return CallSite(back.f_code.co_filename, back.f_lineno, function_for_frame(back))

    # -- IPMODIFY (only the stub path allows these) ----------------------
    def set_instruction_pointer(self, replacement: Any) -> None:
        raise RuntimeError("set_instruction_pointer needs an IPMODIFY ops at function entry")

    def override_function_with_return(self, value: Any) -> None:
        raise RuntimeError("override_function_with_return needs an IPMODIFY ops at function entry")

    def __repr__(self) -> str:
        return f"<FtraceRegs {self.event} {self.function.name}>"


def get_regs(fregs: FtraceRegs) -> FullRegs | None:
    """The full frame if this call went through the regs trampoline, else None."""
    return fregs._full
