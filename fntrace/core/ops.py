"""Ops: the unit of registration (the kernel's ``struct ftrace_ops``).

An ops carries its callbacks, flags, private data and its own filter and
notrace sets.  Filters are immutable :class:`~fntrace.core.filter.Filter`
objects swapped in whole, so a call never sees a half-applied filter.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

from fntrace.core.filter import Filter, parse

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.flags import Flags
    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function

#: A callback's return value is ignored (object, not typing.Any: no typing at run time).
Callback = Callable[["Function", "Function | None", "Ops", "FtraceRegs"], object]

__all__ = ["Callback", "Ops", "set_filters_applier"]

FiltersApplier = Callable[["Ops", Filter, Filter], None]

#: Who swaps a *registered* ops' filters, so that its sites follow at once: the
#: registry (engine.py) installs itself here when it loads.  This module sits
#: below the registry and never imports it; an ops nobody registered yet just
#: takes its new filters.
_apply_filters: FiltersApplier | None = None


def set_filters_applier(apply: FiltersApplier) -> None:
    """Called once by the registry: ``apply(ops, filter, notrace)`` swaps both in one step."""
    global _apply_filters
    _apply_filters = apply


def _as_filter(patterns: str | Iterable[str] | Filter) -> Filter:
    if isinstance(patterns, Filter):
        return patterns
    return Filter(parse(patterns))


class Ops:
    """A pair of callbacks with their own filter.

    ``func(ip, parent_ip, ops, fregs)`` runs at function entry (and at each
    resumption of a generator or coroutine); ``ret(ip, parent_ip, ops, fregs)``
    at every exit of a call whose entry this ops saw: return, exception
    unwinding, and each suspension.  ``fregs.event`` tells which.

    Counters: ``nmissed`` (entries refused by the RECURSION guard),
    ``nerrors`` (exceptions raised by the callbacks, which never reach the
    traced program) and ``last_error`` (the latest, without its traceback, which
    would keep the program's frames alive).
    """

    def __init__(self, func: Callback | None = None, *, ret: Callback | None = None,
                 flags: Flags | int = 0, filter: str | Iterable[str] | Filter = (),
                 notrace: str | Iterable[str] | Filter = (), private: Any = None) -> None:
        if func is None and ret is None:
            raise ValueError("an ops needs a func or a ret callback")
        self.func = func
        self.ret = ret
        if not isinstance(flags, int):
            from fntrace.core.flags import Flags

            Flags(flags)  # the error the enum gives to anything but an int
        self._flags = int(flags)  # what the core tests (see engine._REGS)
        self.private = private
        self.filter = _as_filter(filter)
        self.notrace = _as_filter(notrace)
        self.nmissed = 0
        self.nerrors = 0
        self.last_error: BaseException | None = None
        self._warned = False
        # True from register() until unregister(); the exit path checks it so
        # a return delivered after unregister() never reaches the callback.
        self._live = False
        # fntrace's own tracers: a C recorder (fntrace/csrc/) that writes this
        # ops' events without the trampoline when it is the only ops at a site.
        self.fast: Any = None

    # -- filters -----------------------------------------------------------
    def set_filter(self, patterns: str | Iterable[str], reset: bool = True) -> None:
        """Replace (or with ``reset=False`` extend) the filter, atomically.

        A malformed pattern raises ValueError and nothing changes.
        """
        new = Filter(parse(patterns))
        if not reset:
            new = self.filter.extended(new.lines)
        self._swap(new, self.notrace)

    def set_notrace(self, patterns: str | Iterable[str], reset: bool = True) -> None:
        """Replace (or extend) the notrace set, atomically; notrace wins over filter."""
        new = Filter(parse(patterns))
        if not reset:
            new = self.notrace.extended(new.lines)
        self._swap(self.filter, new)

    def _swap(self, filt: Filter, notrace: Filter) -> None:
        apply = _apply_filters
        if apply is None:  # no registry loaded: this ops cannot be registered
            self.filter, self.notrace = filt, notrace
        else:
            apply(self, filt, notrace)

    def wants(self, fn: Function) -> bool:
        """Whether this ops traces ``fn``: (filter empty or selects) and not notrace."""
        return (self.filter.selects(fn.module, fn.qualname)
                and not self.notrace.excludes(fn.module, fn.qualname))

    def wants_name(self, module: str, qualname: str) -> bool:
        """:meth:`wants` for a function known by name only (a first look decides
        before any :class:`Function` is made)."""
        return self.filter.selects(module, qualname) and not self.notrace.excludes(module, qualname)

    # -- errors ------------------------------------------------------------
    def _callback_failed(self, exc: BaseException) -> None:
        self.nerrors += 1
        # Kept without its traceback and context: those reach the traced program's
        # frames (every caller up the stack) and the exception it was handling, and
        # would keep their objects alive for as long as the ops lives (CPython's
        # test_exceptions test_recursion_error_cleanup found it).
        exc.__traceback__ = None
        exc.__context__ = None
        self.last_error = exc
        if not self._warned:
            self._warned = True
            try:
                warnings.warn(f"fntrace: a callback of {self!r} raised {exc!r}; the traced "
                              "program goes on, further errors are counted in ops.nerrors",
                              RuntimeWarning, stacklevel=2)
            except Exception:  # warnings turned into errors must not reach the program
                pass

    @property
    def flags(self) -> Flags:
        """The ops' flags, as :class:`fntrace.Flags` (the core tests the int ``_flags``)."""
        from fntrace.core.flags import Flags  # enum only when someone looks (flagbits.py)

        return Flags(self._flags)

    @property
    def registered(self) -> bool:
        return self._live

    def __repr__(self) -> str:
        cb = self.func if self.func is not None else self.ret
        name = getattr(cb, "__qualname__", repr(cb))
        return f"<Ops {name} flags={self.flags!s}>"
