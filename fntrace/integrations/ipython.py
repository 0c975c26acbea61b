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

import ast
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from fntrace.analysis import failure_graph
from fntrace.tracing.instance import Instance, trace

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
        filters = ns.filter or [DEFAULT_FILTER]
        try:
            if ns.tracer == "function":
                inst = trace("function", filter=filters, notrace=ns.notrace,
                             func_args=int(ns.args))
            else:
                inst = trace("function_graph", filter=filters, notrace=ns.notrace,
                             funcgraph_args=int(ns.args), funcgraph_retval=int(ns.retval))
        except ValueError as exc:
            raise UsageError(f"%%fntrace: {exc}") from None
        try:
            inst.write("max_graph_depth", str(ns.max_depth))
            inst.write("function_profile_enabled", "1")
        except ValueError as exc:
            inst.close()
            raise UsageError(f"%%fntrace: {exc}") from None
        shell = self.shell
        assert shell is not None  # a magic runs in a shell
        error: BaseException | None = None
        try:
            _run(shell, cell)
        except BaseException as exc:
            error = exc
        finally:
            inst.close()  # stops tracing; the buffer and the profile stay readable
        type(self).last = inst
        text = inst.read("trace")
        if error is not None:
            lines = text.splitlines()
            failure_graph.mark_raise(lines, failure_graph.traceback_names(error.__traceback__))
            text = "".join(f"{ln}\n" for ln in lines)
        print(text, end="")
        if error is not None:
            # The cell fails as it would untraced (a Run All stops here); IPython shows
            # its traceback, without this magic's frame.
            __tracebackhide__ = True
            raise error

    @line_magic
    def fntrace_report(self, line: str) -> None:
        """Print the profile table of the last cell run under %%fntrace."""
        if line.strip():
            raise UsageError("%fntrace_report takes no arguments")
        inst = type(self).last
        if inst is None:
            raise UsageError("%fntrace_report: no cell has been traced yet (%%fntrace)")
        print(inst.read("trace_stat/function0"), end="")


def _run(shell: Any, cell: str) -> None:
    """Run the cell as IPython runs one: its magics expanded, then every statement,
    the value of a last expression shown (Out[n]); an exception propagates."""
    __tracebackhide__ = True
    source = shell.transform_cell(cell)
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    filename = shell.compile.cache(source)  # the source lines, for tracebacks
    ns = shell.user_ns
    exec(compile(tree, filename, "exec"), ns)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), filename, "eval"), ns)
        shell.displayhook(value)


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(FntraceMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext fntrace``: forget the last cell's trace (the magics stay defined,
    as IPython keeps every registered magic)."""
    FntraceMagics.last = None
