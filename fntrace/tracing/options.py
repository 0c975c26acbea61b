"""Trace options: ``options/<name>`` and ``trace_options``.

Each instance has its own copy of OPTIONS (``inst.options``), which the tracers
read on their hot paths as a plain dict.  Booleans are 0/1 files; the two repr
limits take positive integers.  ``repr-call`` 1 lets the tracers call the
program's own ``__repr__`` (off by default: that call can change the program,
see fntrace/tracing/value_text.py).  ``trace_options`` reads every boolean option as
``name`` or ``noname`` and takes one such word per write.
"""

from __future__ import annotations

from collections.abc import Iterable

from fntrace.tracing.files import FileTable, parse_bool, parse_uint
from fntrace.tracing.reprs import SafeRepr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from fntrace.tracing.instance import Instance

__all__ = ["INT_OPTIONS", "OPTIONS", "register_files", "set_option"]

#: options/<name>: default values.
OPTIONS: dict[str, int] = {
    "overwrite": 1,
    "print-parent": 1,
    "func-args": 0,
    "func_stack_trace": 0,
    "funcgraph-args": 0,
    "funcgraph-retval": 0,
    "funcgraph-tail": 0,
    "funcgraph-proc": 0,
    "funcgraph-task": 0,
    "funcgraph-abstime": 0,
    "funcgraph-duration": 1,
    "funcgraph-overhead": 1,
    "markers": 1,
    "graph-time": 1,
    "tasks": 0,  # asyncio task notes (tracing/tasks.py): opt-in, see README for the cost
    "repr-call": 0,
    "repr-max-len": 64,
    "repr-max-us": 1000,
}
INT_OPTIONS = frozenset({"repr-max-len", "repr-max-us"})


def set_option(inst: Instance, name: str, text: str) -> None:
    """Write ``options/<name>`` (a known option): validate, store, tell who reads it."""
    if name in INT_OPTIONS:
        value = parse_uint(text, f"options/{name}")
        if value == 0:
            raise ValueError(f"options/{name} must be positive")
    else:
        value = int(parse_bool(text, f"options/{name}"))
    with inst.lock:
        inst.options[name] = value
        if name == "overwrite":
            inst.rb.set_overwrite(bool(value))
        elif name.startswith("repr-"):
            opts = inst.options
            inst.safe_repr = SafeRepr(opts["repr-max-len"], opts["repr-max-us"], inst.note,
                                      call=bool(opts["repr-call"]))
        inst.settings_changed()
        if name == "tasks" and inst.tracer is not None:
            inst.tracer.tasks_changed()


class OptionFiles:
    """``options/``: one file per option."""

    def names(self, inst: Instance) -> Iterable[str]:
        return inst.options

    def read(self, inst: Instance, path: str) -> str | None:
        value = inst.options.get(path)
        return None if value is None else f"{value}\n"

    def write(self, inst: Instance, path: str, text: str, append: bool) -> bool:
        if path not in inst.options:
            return False
        set_option(inst, path, text)
        return True


def _read_trace_options(inst: Instance) -> str:
    return "".join(f"{name}\n" if value else f"no{name}\n"
                   for name, value in inst.options.items() if name not in INT_OPTIONS)


def _write_trace_options(inst: Instance, text: str, append: bool) -> None:
    word = text.strip()
    if word in inst.options and word not in INT_OPTIONS:
        set_option(inst, word, "1")
    elif word.startswith("no") and word[2:] in inst.options and word[2:] not in INT_OPTIONS:
        set_option(inst, word[2:], "0")
    else:
        raise ValueError(f"trace_options: unknown option {word!r}")


def register_files(table: FileTable) -> None:
    table.directory("options", OptionFiles())
    table.file("trace_options", _read_trace_options, _write_trace_options)
