"""The files that choose what is traced: function filters, pid filters, graph limits.

``set_ftrace_filter`` (function lines and trigger lines, see triggers.py),
``set_ftrace_notrace``, ``set_graph_function``, ``set_graph_notrace``,
``set_ftrace_pid``, ``set_ftrace_notrace_pid``, ``max_graph_depth``,
``tracing_thresh``, and the two read-only lists ``available_filter_functions``
and ``enabled_functions``.  A write without append replaces the file's
contents (O_TRUNC), with append adds to them; a malformed write changes
nothing.  After a change the instance's tracer, profiler and stack tracer swap
their ops' filters (Instance.filters_changed) and the C recorders are told
(Instance.settings_changed).
"""

from __future__ import annotations

from fntrace.core import engine
from fntrace.core.filter import Filter, parse
from fntrace.core.symbols import available_filter_functions
from fntrace.tracing import triggers
from fntrace.tracing.files import FileTable, Reader, Writer, parse_uint

TYPE_CHECKING = False
if TYPE_CHECKING:
    from fntrace.tracing.instance import Instance

__all__ = ["register_files"]

_FUNCTION_LINE = (None, "mod")  # set_ftrace_filter lines that select functions


def _filter_text(filt: Filter) -> str:
    return "".join(f"{ln.text}\n" for ln in filt.lines)


def _write_filter(inst: Instance, text: str, append: bool) -> None:
    """set_ftrace_filter: function lines and trigger lines, as in the kernel.

    A write without append resets the function list (O_TRUNC); triggers
    stay until removed with ``!func:cmd`` and a trigger written again for
    the same glob and command replaces the old one (its count restarts).
    """
    lines = parse(text)
    funcs_new = [ln for ln in lines if ln.command in _FUNCTION_LINE]
    Filter(funcs_new)  # validates before anything changes
    trig_add = [ln for ln in lines if ln.command not in _FUNCTION_LINE and not ln.negate]
    trig_rm = [ln for ln in lines if ln.command not in _FUNCTION_LINE and ln.negate]
    old_funcs = [ln for ln in inst.filter_lines if ln.command in _FUNCTION_LINE]
    trigs = [ln for ln in inst.filter_lines if ln.command not in _FUNCTION_LINE]
    funcs = old_funcs + funcs_new if append else funcs_new
    gone = {(ln.glob, ln.command) for ln in trig_rm + trig_add}
    trigs = [ln for ln in trigs if (ln.glob, ln.command) not in gone] + trig_add
    triggers.apply(inst, trigs)
    inst.filter_lines = funcs + trigs
    inst.filters_changed()


def _pattern_file(attr: str) -> tuple[Reader, Writer]:
    """Reader and writer of the pattern file kept in ``inst.<attr>`` (a Filter)."""
    def read(inst: Instance) -> str:
        return _filter_text(getattr(inst, attr))

    def write(inst: Instance, text: str, append: bool) -> None:
        new = Filter(parse(text))
        if append:
            new = getattr(inst, attr).extended(new.lines)
        setattr(inst, attr, new)
        inst.filters_changed()
        inst.settings_changed()

    return read, write


def _pids(text: str) -> set[int]:
    out: set[int] = set()
    for word in text.split():
        if not word.isdigit():
            raise ValueError(f"not a thread id: {word!r}")
        out.add(int(word))
    return out


def _pid_file(attr: str) -> tuple[Reader, Writer]:
    """Reader and writer of the thread id set ``inst.<attr>``."""
    def read(inst: Instance) -> str:
        return "".join(f"{p}\n" for p in sorted(getattr(inst, attr)))

    def write(inst: Instance, text: str, append: bool) -> None:
        new = _pids(text)
        if append:
            new |= getattr(inst, attr)
        setattr(inst, attr, new)
        inst.pids_changed()

    return read, write


def _int_file(attr: str) -> tuple[Reader, Writer]:
    """Reader and writer of the integer ``inst.<attr>`` (errors name the attribute)."""
    def read(inst: Instance) -> str:
        return f"{getattr(inst, attr)}\n"

    def write(inst: Instance, text: str, append: bool) -> None:
        setattr(inst, attr, parse_uint(text, attr))
        inst.settings_changed()

    return read, write


def register_files(table: FileTable) -> None:
    table.file("set_ftrace_filter",
               lambda inst: _filter_text(inst.filter) + triggers.text(inst), _write_filter)
    for name, attr in (("set_ftrace_notrace", "notrace"),
                       ("set_graph_function", "graph_function"),
                       ("set_graph_notrace", "graph_notrace")):
        table.file(name, *_pattern_file(attr))
    table.file("set_ftrace_pid", *_pid_file("pids"))
    table.file("set_ftrace_notrace_pid", *_pid_file("notrace_pids"))
    table.file("max_graph_depth", *_int_file("max_graph_depth"))
    table.file("tracing_thresh", *_int_file("tracing_thresh_us"))
    table.file("available_filter_functions",
               lambda inst: "".join(f"{n}\n" for n in available_filter_functions()))
    table.file("enabled_functions", lambda inst: engine.enabled_functions())
