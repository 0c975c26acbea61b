"""IPython / Jupyter magics: ``%%fntrace`` traces one cell, ``%fntrace_report`` profiles it.

``%load_ext fntrace`` imports the package and calls its
``load_ipython_extension``, which imports this module (so ``import fntrace``
never imports IPython).  ``%%fntrace`` runs the cell in one trace instance
(function_graph by default, the cell's own functions by default: a notebook's
code runs as ``__main__``) with the function profiler on beside the tracer,
then prints the trace under the cell's output; a cell that raised gets the
call its exception came out of marked, as in the pytest plugin.
``%fntrace_report`` prints the last traced cell's profile table
(trace_stat/function0).
"""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import failure_graph
from .instance import Instance, trace

__all__ = ["FntraceMagics", "load_ipython_extension", "unload_ipython_extension"]

#: What a cell traces when no -F is given: the functions the notebook defines.
DEFAULT_FILTER = "*:mod:__main__"


@magics_class
class FntraceMagics(Magics):
    """The magics; ``last`` is the instance of the last traced cell (closed, readable)."""

    last: Instance | None = None

    @magic_arguments()
    @argument("-F", "--filter", action="append", default=[], metavar="FILTER",
              help=f"functions to trace (set_ftrace_filter grammar; repeatable; "
                   f"default {DEFAULT_FILTER!r}: the notebook's own functions)")
    @argument("-N", "--notrace", action="append", default=[], metavar="FILTER",
              help="functions never traced (repeatable)")
    @argument("--args", action="store_true", help="record arguments")
    @argument("--retval", action="store_true", help="record return values (function_graph)")
    @argument("-t", "--tracer", default="function_graph",
              help="function_graph (default) or function")
    @argument("-d", "--max-depth", type=int, default=0,
              help="max_graph_depth (function_graph; default 0: no limit)")
    @cell_magic
    def fntrace(self, line: str, cell: str) -> None:
        """Run the cell traced, then print its trace."""
        ns = parse_argstring(self.fntrace, line)
        if ns.tracer not in ("function", "function_graph"):
            raise UsageError(f"-t {ns.tracer}: expected function or function_graph")
        if ns.retval and ns.tracer != "function_graph":
            raise UsageError("--retval needs -t function_graph")
        options = {"func_args": int(ns.args)} if ns.tracer == "function" else {
            "funcgraph_args": int(ns.args), "funcgraph_retval": int(ns.retval)}
        try:
            inst = trace(ns.tracer, filter=ns.filter or [DEFAULT_FILTER],
                         notrace=ns.notrace, **options)
        except ValueError as exc:
            raise UsageError(f"%%fntrace: {exc}") from None
        try:
            inst.write("max_graph_depth", str(ns.max_depth))
            inst.write("function_profile_enabled", "1")
        except ValueError as exc:
            inst.close()
            raise UsageError(f"%%fntrace: {exc}") from None
        try:
            result = self.shell.run_cell(cell)
        finally:
            inst.close()  # stops tracing; the buffer and the profile stay readable
        type(self).last = inst
        text = inst.read("trace")
        error = result.error_in_exec
        if error is not None:
            lines = text.splitlines()
            failure_graph.mark_raise(lines, failure_graph.traceback_names(error.__traceback__))
            text = "".join(f"{ln}\n" for ln in lines)
        print(text, end="")

    @line_magic
    def fntrace_report(self, line: str) -> None:
        """Print the profile table of the last cell run under %%fntrace."""
        if line.strip():
            raise UsageError("%fntrace_report takes no arguments")
        inst = type(self).last
        if inst is None:
            raise UsageError("%fntrace_report: no cell has been traced yet (%%fntrace)")
        print(inst.read("trace_stat/function0"), end="")


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(FntraceMagics)


def unload_ipython_extension(ipython: Any) -> None:
    FntraceMagics.last = None
