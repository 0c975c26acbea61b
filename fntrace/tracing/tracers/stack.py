"""The stack tracer: ``stack_tracer_enabled``, ``stack_max_size``, ``stack_trace``.

As the kernel's, it checks the stack at each entry of a traced function
(set_ftrace_filter / set_ftrace_notrace choose which) and keeps the deepest
stack seen, in any thread.  Like the kernel's it ignores tracing_on and
set_ftrace_pid.

Units.  The kernel measures bytes of kernel stack.  A Python frame has no
stack size that means something stable (its interpreter frame lives in a heap
chunk, its C frames depend on the build), while the limit a Python program
hits, ``sys.getrecursionlimit()``, counts frames.  So fntrace counts frames:
``stack_max_size`` is the number of frames from the traced function down to
its thread's first frame, both included.  ``stack_trace`` lists every frame of
that stack, traced or not (as the kernel lists every return address):

```
        Depth    Size   Location    (3 entries)
        -----    ----   --------
  0)        3       1   mod:leaf+0 (/src/mod.py:10)
  1)        2       1   mod:main+2 (/src/mod.py:14)
  2)        1       1   mod:<module>+0 (/src/mod.py:1)
```

Depth is the frame's distance from the base in frames, Size the frames it
accounts for (1; the last row accounts for every frame below it when the
stack is longer than ``MAX_ENTRIES`` rows), so Depth is the sum of Size below,
as in the kernel.  Location is ``name+offset (file:line)``, the offset being
the line relative to the function's first line (the kernel's ``+0x1c``).

Writing a number to stack_max_size sets the maximum to it (``echo 0`` starts
over) and clears the recorded stack (the kernel keeps the old one until a
deeper stack replaces it, which in a kernel is at once).

Cost: each thread keeps a shadow stack of (traced frame, depth); an entry
walks ``f_back`` only up to the nearest traced ancestor, so a depth costs the
untraced frames in between, not the whole stack.  The rows are recorded only
for a new maximum, and only once its deepest frame leaves (or at the next
read), so a recursion that deepens one frame at a time walks its stack once.
"""

from __future__ import annotations

import threading
import types

from fntrace.core import forksafe, symbols
from fntrace.core.ops import Ops
from fntrace.core.shadow import ShadowStack
from fntrace.core.symbols import function_for_frame
from fntrace.tracing.files import parse_bool, parse_uint
from fntrace.tracing.tracers.base import Tracer

TYPE_CHECKING = False
if TYPE_CHECKING:
    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function
    from fntrace.tracing.files import FileTable
    from fntrace.tracing.instance import Instance

__all__ = ["MAX_ENTRIES", "StackTracer", "enable", "register_files"]

#: Rows kept of the deepest stack (the kernel keeps STACK_TRACE_ENTRIES = 500).
MAX_ENTRIES = 500

Row = tuple[str, int, str, int]  # (name, line offset, file, line)


def _renew_lock(tracer: StackTracer) -> None:
    tracer._lock = threading.Lock()  # see fntrace/core/forksafe.py


class StackTracer(Tracer):
    """Deepest stack of traced functions; see the module docstring."""

    name = "stack"

    def __init__(self, inst: Instance) -> None:
        super().__init__(inst)
        self.max_size = 0
        self._rows: list[Row] = []
        # The frame that set the maximum, not yet walked: (frame, line at entry).
        self._pending: tuple[types.FrameType, int] | None = None
        self._lock = threading.Lock()
        forksafe.renew_in_child(self, _renew_lock)
        self._tls = threading.local()

    def make_ops(self) -> list[Ops]:
        inst = self.inst
        return [Ops(self._entry, ret=self._exit, filter=inst.filter, notrace=inst.notrace)]

    # -- hot path ------------------------------------------------------------
    def _entry(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        try:
            stack: ShadowStack[tuple[types.FrameType, int]] = self._tls.stack
        except AttributeError:
            stack = self._tls.stack = ShadowStack()
        frame = fregs.frame
        depth = 1
        back = frame.f_back
        if stack:
            top, top_depth = stack[-1]
            while back is not None and back is not top:
                depth += 1
                back = back.f_back
            if back is None:
                stack.clear()  # exits were missed (site unpatched): start again from here
            else:
                depth += top_depth
        else:
            roots = symbols.roots
            while back is not None and id(back.f_code) not in roots:
                depth += 1
                back = back.f_back
        stack.append((frame, depth))
        if depth > self.max_size:
            with self._lock:
                if depth > self.max_size:
                    self.max_size = depth
                    self._pending = (frame, frame.f_lineno or frame.f_code.co_firstlineno)

    def _exit(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        try:
            stack: ShadowStack[tuple[types.FrameType, int]] = self._tls.stack
        except AttributeError:
            return
        frame = fregs.frame
        stack.pop_to(frame)
        pending = self._pending
        if pending is not None and pending[0] is frame:
            with self._lock:
                self._materialize()

    def _materialize(self) -> None:
        """Walk the pending deepest frame's stack into rows (under _lock)."""
        pending = self._pending
        if pending is None:
            return
        frame: types.FrameType | None
        frame, line = pending
        rows: list[Row] = []
        while frame is not None and len(rows) < MAX_ENTRIES:
            fn = function_for_frame(frame)
            if not fn:  # fntrace's runner: the program's stack ends below it
                break
            lineno = line if not rows else (frame.f_lineno or frame.f_code.co_firstlineno)
            rows.append((fn.name, lineno - frame.f_code.co_firstlineno,
                         frame.f_code.co_filename, lineno))
            frame = frame.f_back
        self._rows = rows
        self._pending = None

    # -- control -------------------------------------------------------------
    def reset(self, value: int = 0) -> None:
        """stack_max_size written: the maximum becomes ``value``, the stack is forgotten."""
        with self._lock:
            self.max_size = value
            self._rows = []
            self._pending = None

    def stop(self) -> None:
        super().stop()
        with self._lock:
            self._materialize()

    def render(self) -> str:
        """stack_trace in the kernel's layout (frames instead of bytes)."""
        with self._lock:
            self._materialize()
            rows = list(self._rows)
            top = self.max_size
        out = [f"        Depth    Size   Location    ({len(rows)} entries)\n"
               "        -----    ----   --------\n"]
        for i, (name, offset, filename, lineno) in enumerate(rows):
            depth = top - i
            size = depth if i == len(rows) - 1 else 1
            out.append(f"{i:3d}) {depth:8d}   {size:5d}   {name}+{offset} ({filename}:{lineno})\n")
        return "".join(out)


# -- the instance files ------------------------------------------------------------------


def enable(inst: Instance, on: bool) -> None:
    """stack_tracer_enabled.  The deepest stack stays readable after it is disabled
    and is kept when it is enabled again, as in the kernel."""
    if on and not inst.stack_on:
        if inst.stack is None:
            inst.stack = StackTracer(inst)
        inst.stack.start()
        inst.stack_on = True
    elif not on and inst.stack_on and inst.stack is not None:
        inst.stack.stop()
        inst.stack_on = False


def _write_max_size(inst: Instance, text: str, append: bool) -> None:
    value = parse_uint(text, "stack_max_size")
    if inst.stack is not None:
        inst.stack.reset(value)


def register_files(table: FileTable) -> None:
    table.file("stack_tracer_enabled", lambda inst: f"{int(inst.stack_on)}\n",
               lambda inst, text, append: enable(inst, parse_bool(text, "stack_tracer_enabled")))
    table.file("stack_max_size",
               lambda inst: f"{inst.stack.max_size if inst.stack is not None else 0}\n",
               _write_max_size)
    table.file("stack_trace", lambda inst: inst.stack.render() if inst.stack is not None else "")
    table.on_close(lambda inst: enable(inst, False))
