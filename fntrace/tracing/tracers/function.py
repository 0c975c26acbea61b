"""The function tracer: one line per function entry, ``func <-parent``.

Options: ``func-args`` adds the arguments (``func(a=1, b='x') <-parent``,
reprs bounded by options/repr-max-len and repr-max-us); ``func_stack_trace``
records the Python stack after each entry; ``print-parent`` 0 drops the
``<-parent`` part.  Resumptions of generators and coroutines are entries too,
flagged ``r`` (``t`` when thrown into) in the FLAGS column.
"""

from __future__ import annotations

import threading
import types

from fntrace.core import accel as _accel
from fntrace.core import symbols
from fntrace.core.events import CALL, EVENT_OVERHEAD, STACK
from fntrace.core.ops import Ops
from fntrace.tracing.tracers.base import Tracer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function
    from fntrace.tracing.instance import Instance
    from fntrace.tracing.tracers import TracerRegistry

__all__ = ["FunctionTracer", "register_tracer", "stack_lines"]

FUNC = CALL.tag  # (ts, size, "F", ip, parent, args text or None, event): events.CallAt
_STACK = STACK.tag  # (ts, size, "K", lines): events.StackAt
MAX_STACK = 64


def stack_lines(frame: types.FrameType | None, limit: int = MAX_STACK) -> tuple[str, ...]:
    """``module:qualname (file:line)`` for ``frame`` and its callers, innermost
    first, up to the program's top frame (fntrace's runner and launcher are not
    the program's: see symbols.RootFunction)."""
    from fntrace.core.symbols import function_for_frame

    out: list[str] = []
    while frame is not None and len(out) < limit:
        fn = function_for_frame(frame)
        if not fn:
            break
        out.append(f"{fn.name} ({frame.f_code.co_filename}:{frame.f_lineno})")
        frame = frame.f_back
    return tuple(out)


def write_stack(inst: Instance, frame: types.FrameType | None) -> None:
    lines = stack_lines(frame)
    rb = inst.rb
    rb.write((rb.now(), EVENT_OVERHEAD + sum(len(s) for s in lines), _STACK, lines))


class FunctionTracer(Tracer):
    name = "function"
    notes_tasks = True

    def __init__(self, inst: Instance) -> None:
        super().__init__(inst)
        self._tls = threading.local()  # this thread's pid filter decision

    def make_ops(self) -> list[Ops]:
        inst = self.inst
        ops = Ops(self.entry, filter=inst.filter, notrace=inst.notrace)
        speedups = _accel.speedups
        if speedups is not None:
            self.attach(speedups.FuncRecorder(inst.rb, symbols.cache(),
                                              symbols.parent_for_frame), ops)
        return [ops]

    def fast_ok(self) -> bool:
        # The C recorder writes the plain entry event: no arguments, no stack trace
        # (tracing_on and the pid filters it applies itself).
        inst = self.inst
        return not (inst.options["func-args"]
                    or inst.options["func_stack_trace"])

    def entry(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        inst = self.inst
        if not inst.tracing:
            return
        if inst.pid_filtered and not self.pid_allows(self._tls):  # once per thread
            return
        rb = inst.rb
        args = None
        size = EVENT_OVERHEAD
        if inst.options["func-args"]:
            args = inst.safe_repr.arguments(fregs.arguments)
            size += len(args)
        rb.write((rb.now(), size, FUNC, ip, parent, args, fregs.event))
        if inst.options["func_stack_trace"]:
            write_stack(inst, fregs.frame)


def register_tracer(registry: TracerRegistry) -> None:
    """The plugin: current_tracer ``function``."""
    registry.register(FunctionTracer.name, FunctionTracer)
