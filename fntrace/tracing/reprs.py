"""Bounded, safe reprs of traced values.

By default (``options/repr-call`` 0) a value's text is made without running
any code of the program's (value_text.py): a traced program's objects never
learn they were looked at.  With ``repr-call`` 1 the tracer calls the
program's own ``__repr__``, which may raise, be slow, be huge, or change the
program's state (that last one cannot be undone).  None of the rest may
break or stall the program: exceptions (SystemExit included) become
``<repr of T failed: E>`` (KeyboardInterrupt goes on to the program, see
docs/exceptions.md),
containers are shortened with reprlib before being turned into text, the text
is cut to ``max_len``, and a type whose ``__repr__`` once took longer than
``max_us`` microseconds is from then on shown as ``<T object>`` without
calling it again (a slow repr cannot be interrupted from Python, so the
second call is the one avoided).  The trace says so once per type, in a
marker line (``on_slow``), where the text changes.
"""

from __future__ import annotations

import reprlib
import time
from collections.abc import Callable

from fntrace.tracing.value_text import class_rule, text_maker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SafeRepr", "slow_note"]

_CHEAP = frozenset({int, float, bool, type(None), complex})


class _Repr(reprlib.Repr):
    def repr_instance(self, x: Any, level: int) -> str:
        # reprlib would hide a failing __repr__ behind "<T instance at 0xADDR>" (an
        # address, different on every run); let SafeRepr name the failure instead.
        return repr(x)


class SafeRepr:
    """repr() with limits; one per trace instance (options set the limits)."""

    def __init__(self, max_len: int = 64, max_us: int = 1000,
                 on_slow: Callable[[str], None] | None = None, call: bool = False) -> None:
        self.max_len = max_len
        self.max_us = max_us
        #: options/repr-call: the program's own __repr__ is called (else value_text).
        self.call = call
        self._value_text = text_maker(max_len)
        #: value_text's rules by class, for the C recorder's own walk of values
        #: (fntrace/csrc/value_text.c), which renders what they let it, byte for
        #: byte as value_text does, and hands the rest to this SafeRepr.
        self.class_rule = class_rule
        self.slow_types: set[type] = set()
        #: Told once per type, when its reprs stop: the text of a marker line, so a
        #: reader of the trace knows why an argument's text changed mid-trace.
        self.on_slow = on_slow
        self._reprlib = _Repr()
        self._reprlib.maxlevel = 2
        self._reprlib.maxstring = max_len
        self._reprlib.maxother = max_len
        self._reprlib.maxlist = self._reprlib.maxtuple = self._reprlib.maxdict = 6
        self._reprlib.maxset = self._reprlib.maxfrozenset = 6

    def __call__(self, value: Any, call: bool | None = None) -> str:
        """``value``'s text, by value_text or (``call``; default: the option's)
        the program's repr."""
        cls = type(value)
        if cls in _CHEAP:
            text = repr(value)
        elif cls is str or cls is bytes:
            # Cut before repr: bounded work, so never timed (a pause of the process
            # would otherwise mark str "slow" for the rest of the trace).
            text = repr(value[: self.max_len + 1])
        elif not (self.call if call is None else call):
            try:
                text = self._value_text(value)
            except KeyboardInterrupt:
                raise  # a Ctrl-C that landed in here: the program's (docs/exceptions.md)
            except Exception as exc:  # MemoryError, RecursionError: fntrace's own
                text = f"<repr of {cls.__name__} failed: {type(exc).__name__}>"
        elif cls in self.slow_types:
            return f"<{cls.__name__} object>"
        else:
            text = self._program_repr(value, cls)
        if len(text) > self.max_len:
            text = text[: max(self.max_len - 3, 1)] + "..."
        return text

    def called(self, value: Any) -> str:
        """``value``'s text by the program's own repr, whatever ``call`` says: for
        a spec that asks for it by name (a probe's or a span's ``:repr``, as
        ``:str`` asks for ``str()``)."""
        return self(value, True)

    def _program_repr(self, value: Any, cls: type) -> str:
        t0 = time.perf_counter_ns()
        try:
            text = self._reprlib.repr(value)
        except KeyboardInterrupt:
            raise  # the program's: see docs/exceptions.md
        except BaseException as exc:  # SystemExit too: a failed repr ends no program
            text = f"<repr of {cls.__name__} failed: {type(exc).__name__}>"
        spent = time.perf_counter_ns() - t0
        if spent > self.max_us * 1000:
            self.slow_types.add(cls)
            if self.on_slow is not None:
                self.on_slow(slow_note(cls, spent, self.max_us))
        return text

    def arguments(self, args: dict[str, Any]) -> str:
        return ", ".join(f"{k}={self(v)}" for k, v in args.items())


def slow_note(cls: type, spent_ns: int, max_us: int) -> str:
    """The marker line written when ``cls`` joins the slow types."""
    name = cls.__name__
    return (f"fntrace: repr of {name} took {spent_ns / 1e6:.3f} ms (repr-max-us is {max_us}): "
            f"{name} values show as <{name} object> from here on")
