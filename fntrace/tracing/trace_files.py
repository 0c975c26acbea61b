"""The ring buffer's files: ``tracing_on``, ``trace``, ``trace_pipe``, ``trace_marker``,
``snapshot``, ``buffer_size_kb``, ``buffer_total_size_kb``, ``trace_clock`` and
``per_thread/<tid>/stats`` (the kernel's per_cpu/cpuN/stats: one "CPU" per thread).

``trace`` renders without consuming, ``trace_pipe`` consumes what it shows;
writing ``trace`` clears the live buffers.  ``snapshot``: 1 swaps the live
buffers into the snapshot, another number clears the snapshot, 0 frees it.
"""

from __future__ import annotations

from collections.abc import Iterable

from fntrace.core.events import TASK_PREFIX
from fntrace.tracing import ftrace_text
from fntrace.tracing.files import FileTable, parse_bool, parse_uint
from fntrace.tracing.ring_buffer import CLOCKS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from fntrace.tracing.instance import Instance

__all__ = ["register_files", "write_marker"]


def write_marker(inst: Instance, text: str) -> None:
    """A trace_marker line (ValueError while options/markers is 0)."""
    if not inst.options["markers"]:
        raise ValueError("trace_marker: writes are disabled (options/markers is 0)")
    if text.startswith(TASK_PREFIX[0]):
        raise ValueError("trace_marker: a line may not start with the control character "
                         "\\x1f (fntrace's asyncio task notes are stored so)")
    inst.note(text.rstrip("\n"))


def _write_tracing_on(inst: Instance, text: str, append: bool) -> None:
    inst.tracing_on = parse_bool(text, "tracing_on")


def _read_trace(inst: Instance) -> str:
    return ftrace_text.render_trace(inst, inst.rb.live)


def _clear(inst: Instance, text: str, append: bool) -> None:
    inst.rb.live.clear()
    if inst.tracer is not None:
        inst.tracer.reset()


def _read_pipe_now(inst: Instance) -> str:
    return "".join(ftrace_text.render_events(inst, inst.rb.live.consume()))


def _read_snapshot(inst: Instance) -> str:
    snap = inst.rb.snapshot
    if snap is None:
        return "# Snapshot is not allocated: echo 1 > snapshot to take one\n"
    return ftrace_text.render_trace(inst, snap)


def _write_snapshot(inst: Instance, text: str, append: bool) -> None:
    value = text.strip()
    if value == "0":
        inst.rb.free_snapshot()
    elif value == "1":
        inst.rb.take_snapshot()
    elif value.isdigit():
        inst.rb.clear_snapshot()
    else:
        raise ValueError(f"snapshot: expected a number, got {text!r}")


def _read_clock(inst: Instance) -> str:
    current = inst.rb.clock_name
    return " ".join(f"[{c}]" if c == current else c for c in CLOCKS) + "\n"


class PerThreadFiles:
    """``per_thread/<tid>/stats`` for every thread that has written to the live buffers."""

    def names(self, inst: Instance) -> Iterable[str]:
        return [f"{b.tid}/stats" for b in inst.rb.live.buffers()]

    def read(self, inst: Instance, path: str) -> str | None:
        tid, _, leaf = path.partition("/")
        if leaf == "stats":
            for buf in inst.rb.live.buffers():
                if str(buf.tid) == tid:
                    return buf.stats()
        return None

    def write(self, inst: Instance, path: str, text: str, append: bool) -> bool:
        return False


def register_files(table: FileTable) -> None:
    table.file("tracing_on", lambda inst: f"{int(inst.tracing)}\n", _write_tracing_on)
    table.file("trace", _read_trace, _clear)
    table.file("trace_pipe", _read_pipe_now)
    table.file("trace_marker", write=lambda inst, text, append: write_marker(inst, text))
    table.file("snapshot", _read_snapshot, _write_snapshot)
    table.file("buffer_size_kb", lambda inst: f"{inst.rb.size_kb}\n",
               lambda inst, text, append: inst.rb.resize(parse_uint(text, "buffer_size_kb")))
    table.file("buffer_total_size_kb", lambda inst: f"{inst.rb.total_kb()}\n")
    table.file("trace_clock", _read_clock,
               lambda inst, text, append: inst.rb.set_clock(text.strip()))
    table.directory("per_thread", PerThreadFiles())
