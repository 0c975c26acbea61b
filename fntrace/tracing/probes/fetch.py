"""Evaluating fetchargs against a call, without ever breaking the traced program.

A fetcharg is a base value (a parameter, ``$argN``, ``$retval``, ``$stack``)
followed by the steps the parser produced: ``getattr``, ``obj[literal]`` and
``len``.  Nothing from the spec is executed; but these operations run the
traced objects' own code — a property getter, ``__getattr__``,
``__getitem__``, ``__len__``, ``__str__`` for ``:str``, ``__repr__`` for the
rendering — exactly as a debugger's watch expression would.  Any exception
they raise is caught here and the field renders as ``<error: TypeName>``; it
never reaches the program, and such a field satisfies no filter predicate.

Values are rendered with the instance's ``safe_repr`` (bounded length and
time), ``:str`` as a double-quoted bounded ``str()``, ``:x`` as hexadecimal,
``:len`` as a decimal count.
"""

from __future__ import annotations

from fntrace.core.flags import Event
from fntrace.core.symbols import function_for_frame

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.regs import FtraceRegs
    from fntrace.tracing.probes.parser import FetchArg
    from fntrace.tracing.reprs import SafeRepr

__all__ = ["STACK_DEPTH", "Failed", "Field", "fetch_all", "fetch_arg"]

#: $stack shows at most this many callers, innermost first.
STACK_DEPTH = 4

#: (name, value seen by filters, rendered text)
if TYPE_CHECKING:
    Field = tuple[str, Any, str]


class Failed:
    """A fetch that raised; its text is ``<error: TypeName>``."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def text(self) -> str:
        return f"<error: {self.what}>"

    def __repr__(self) -> str:
        return self.text()


class _Ctx:
    """Per-event lazy state: the frame's locals are read once, only if needed."""

    __slots__ = ("_locals", "fregs")

    def __init__(self, fregs: FtraceRegs) -> None:
        self.fregs = fregs
        self._locals: Any = None

    def param(self, name: str) -> Any:
        if name not in self.fregs.function.argnames:
            raise NameError(name)
        if self._locals is None:
            self._locals = self.fregs.frame.f_locals
        try:
            return self._locals[name]
        except KeyError:
            raise UnboundLocalError(name) from None


def _stack(fregs: FtraceRegs) -> str:
    names: list[str] = []
    frame = fregs.frame.f_back
    while frame is not None and len(names) < STACK_DEPTH:
        names.append(function_for_frame(frame).name)
        frame = frame.f_back
    return "<-".join(names)


def _base(arg: FetchArg, ctx: _Ctx) -> Any:
    fregs = ctx.fregs
    if arg.base == "param":
        assert arg.param is not None
        return ctx.param(arg.param)
    if arg.base == "arg":
        names = fregs.function.argnames
        if arg.index >= len(names):
            raise IndexError(f"{fregs.function.name} has no argument {arg.index + 1}")
        return ctx.param(names[arg.index])
    if arg.base == "retval":
        if fregs.exception is not None:
            raise _Unwound(type(fregs.exception).__name__)
        if fregs.event == Event.UNWIND:
            raise _Unwound("unwind")
        return fregs.return_value
    return _stack(fregs)


class _Unwound(Exception):
    """$retval of a call left by an exception: rendered with the exception's type."""


def _render(arg: FetchArg, value: Any, safe_repr: SafeRepr) -> tuple[Any, str]:
    """(filter value, text) after the :TYPE conversion; may raise."""
    typ = arg.type
    if typ is None:
        if arg.base == "stack" and not arg.steps:
            return value, value
        return value, safe_repr(value)
    if typ == "repr":
        text = safe_repr.called(value)
        return text, text
    if typ == "str":
        s = str(value)
        cut = s[: safe_repr.max_len]
        esc = cut.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return s, f'"{esc}"' + ("..." if len(s) > len(cut) else "")
    if typ == "x":
        if not isinstance(value, int):
            raise TypeError(f"{type(value).__name__} is not an integer")
        n = int(value)
        return n, f"-{-n:#x}" if n < 0 else f"{n:#x}"
    n = len(value)
    return n, str(n)


def _one(arg: FetchArg, name: str, value_of: Any, ctx: _Ctx, safe_repr: SafeRepr) -> Field:
    try:
        value = value_of(arg, ctx)
        for step in arg.steps:
            if step.op == "attr":
                value = getattr(value, step.arg)  # type: ignore[arg-type]
            elif step.op == "item":
                value = value[step.arg]
            else:
                value = len(value)
        shown, text = _render(arg, value, safe_repr)
    except _Unwound as exc:
        failed = Failed(str(exc))
        return name, failed, failed.text()
    except Exception as exc:
        failed = Failed(type(exc).__name__)
        return name, failed, failed.text()
    return name, shown, text


def fetch_arg(arg: FetchArg, fregs: FtraceRegs, safe_repr: SafeRepr,
              ctx: _Ctx | None = None) -> list[Field]:
    """The fields of one fetcharg (``$arg*`` gives one per parameter)."""
    ctx = ctx or _Ctx(fregs)
    if arg.base == "args":
        return [_one(arg, pname, lambda a, c, p=pname: c.param(p), ctx, safe_repr)
                for pname in fregs.function.argnames]
    return [_one(arg, arg.name, _base, ctx, safe_repr)]


def fetch_all(args: tuple[FetchArg, ...], fregs: FtraceRegs,
              safe_repr: SafeRepr) -> list[list[Field]]:
    """Fields for each fetcharg, in order, sharing one read of the frame's locals."""
    ctx = _Ctx(fregs)
    return [fetch_arg(a, fregs, safe_repr, ctx) for a in args]
