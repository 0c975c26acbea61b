"""%load_ext fntrace, %%fntrace and %fntrace_report in IPython's real InteractiveShell."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import raised

import fntrace

pytest.importorskip("IPython")

from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

DEFS = '''
def double(x):
    return add(x, x)

def add(a, b):
    return a + b

def fail(n):
    return double(n) / (n - n)
'''



_DURATION = re.compile(r"^( *\d+\)) [ +!#*@$]? *[\d.]+ (?:us|ms|s) +\|")


def graph(text: str) -> list[str]:
    """function_graph lines, the header dropped and durations masked."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = _DURATION.match(line)
        out.append(f"{m.group(1)} DURATION |{line[m.end():]}" if m else line)
    return out


def new_shell() -> Any:
    """A shell whose history stays in memory: no sqlite file, no history-saving
    thread left running in the test process (a fork test counts the threads)."""
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    return InteractiveShell.instance(config=config)


@pytest.fixture
def shell() -> Iterator[Any]:
    sh = new_shell()
    sh.run_line_magic("load_ext", "fntrace")
    sh.run_cell(DEFS)
    yield sh
    sh.run_line_magic("unload_ext", "fntrace")
    InteractiveShell.clear_instance()


def test_no_thread_is_left_running(shell: Any) -> None:
    import threading

    shell.run_cell("%%fntrace\ndouble(1)\n")
    assert [t for t in threading.enumerate() if "History" in type(t).__name__] == []


def test_load_ext_registers_the_magics(shell: Any) -> None:
    magics = shell.magics_manager.magics
    assert "fntrace" in magics["cell"]
    assert "fntrace_report" in magics["line"]


def test_importing_fntrace_does_not_import_ipython() -> None:
    out = subprocess.run([sys.executable, "-c",
                          "import sys, fntrace; print('IPython' in sys.modules, "
                          "callable(fntrace.load_ipython_extension))"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "False True\n"


@pytest.mark.usefixtures("hot_path")
def test_cell_trace_with_arguments_and_return_values(shell: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.run_cell("%%fntrace --args --retval\nx = double(3)\n")
    assert result.success
    assert graph(capsys.readouterr().out) == [
        " 0)               |  __main__:<module>() {",
        " 0)               |    __main__:double(x=3) {",
        " 0) DURATION |      __main__:add(a=3, b=3); /* ret=6 */",
        " 0) DURATION |    } /* __main__:double ret=6 */",
        " 0) DURATION |  } /* __main__:<module> ret=None */",
    ]
    assert shell.user_ns["x"] == 6
    assert fntrace.instances() == []  # the cell's instance is closed


def test_filter_and_the_raise_marked(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = shell.run_cell("%%fntrace -F double -F fail\nfail(2)\n")
    # The cell fails as it would untraced; IPython shows the traceback after the trace.
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    out = capsys.readouterr().out
    assert "ZeroDivisionError" in out[out.index("<-- raised here"):]
    assert graph(out[:out.index("\x1b") if "\x1b" in out else out.index("-----")]) == [
        " 0)               |  __main__:fail() {",
        " 0) DURATION |    __main__:double();",
        f" 0) DURATION |  }} /* __main__:fail {raised('ZeroDivisionError')} */  <-- raised here",
    ]


def test_function_tracer(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_cell("%%fntrace -t function -F add --args\nadd(1, 2)\nadd(3, 4)\n")
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Out\[\d*\]: 7", out[0])  # the last expression's value, as untraced
    calls = [re.sub(r"^.*: ", "", ln) for ln in out[1:] if not ln.startswith("#")]
    assert calls == ["__main__:add(a=1, b=2) <-__main__:<module>",
                     "__main__:add(a=3, b=4) <-__main__:<module>"]


def test_report_profiles_the_last_traced_cell(shell: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_cell("%%fntrace -F add\nadd(1, 1)\n")
    shell.run_cell("%%fntrace -F double -F add\nfor i in range(5): double(i)\n")
    capsys.readouterr()
    shell.run_line_magic("fntrace_report", "")
    rows = capsys.readouterr().out.splitlines()
    hits = {row.split()[0]: int(row.split()[1]) for row in rows[2:]}
    assert hits == {"__main__:double": 5, "__main__:add": 5}


def test_usage_errors(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    InteractiveShell.clear_instance()
    fresh = new_shell()
    fresh.run_line_magic("load_ext", "fntrace")
    from fntrace.integrations.ipython import FntraceMagics

    FntraceMagics.last = None
    for cell, message in [
        ("%fntrace_report", "no cell has been traced yet"),
        ("%%fntrace -t nope\n1", "-t nope: expected function or function_graph"),
        ("%%fntrace -t function --retval\n1", "--retval needs -t function_graph"),
        ("%%fntrace -F 'x:[bad'\n1", "%%fntrace: "),
    ]:
        result = fresh.run_cell(cell)
        assert type(result.error_in_exec).__name__ == "UsageError", cell
        assert message in str(result.error_in_exec)
    assert fntrace.instances() == []
