"""pytest flight recorder: each failing test's calls, with arguments and results.

A failing test shows where it failed, not what ran before.  With
``pytest --fntrace='*:mod:myapp.*'`` every test's setup, call and teardown run
under function_graph (arguments and return values on) into a bounded ring
buffer; when a test fails, its report gets a section "fntrace: calls" with the
last lines of that graph and the call the exception came out of marked; a
passing test's events are dropped.  ``--fntrace-record=DIR`` also writes a
trace file per failing test (every test with ``--fntrace-record-all``) for
``fntrace replay``/``report``.

The plugin is installed with fntrace (entry point ``pytest11``) and does
nothing unless ``--fntrace`` is given: then only it registers the object that
traces.  It is a client of fntrace's public API: one trace instance, driven
through its tracefs files.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["SECTION", "FlightRecorder"]

#: The report section's title (and the JUnit XML property's name).
SECTION = "fntrace: calls"
_PLUGIN_NAME = "fntrace-flight-recorder"


def _new_style_wrappers() -> bool:
    """Whether this pluggy takes ``wrapper=True`` (1.1 and later)."""
    try:
        pytest.hookimpl(wrapper=True)
    except TypeError:
        return False
    return True


#: pluggy's new-style hook wrappers are there (see FlightRecorder's makereport).
NEW_STYLE_WRAPPERS = _new_style_wrappers()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fntrace", "fntrace: the calls before each failure")
    group.addoption(
        "--fntrace", action="append", default=[], metavar="FILTER",
        help="trace each test with function_graph, functions chosen by FILTER "
             "(set_ftrace_filter grammar, e.g. '*:mod:myapp.*'; repeatable); a failing "
             "test's report shows its last calls")
    group.addoption("--fntrace-notrace", action="append", default=[], metavar="FILTER",
                    help="functions never traced (set_ftrace_notrace; repeatable)")
    group.addoption("--fntrace-lines", type=int, default=60, metavar="N",
                    help="lines of the graph shown for a failing test (default 60; 0: all)")
    group.addoption("--fntrace-depth", type=int, default=12, metavar="N",
                    help="max_graph_depth: calls nested deeper are not traced "
                         "(default 12; 0: no limit)")
    group.addoption("--fntrace-buffer-size", type=int, default=None, metavar="KB",
                    help="ring buffer per thread, KiB (buffer_size_kb); the oldest "
                         "events of a longer test are overwritten")
    group.addoption("--fntrace-no-args", action="store_true",
                    help="do not record arguments (funcgraph-args off)")
    group.addoption("--fntrace-no-retval", action="store_true",
                    help="do not record return values (funcgraph-retval off)")
    group.addoption("--fntrace-option", action="append", default=[], metavar="NAME=VALUE",
                    help="write VALUE to the instance's options/NAME (e.g. repr-max-len=200, "
                         "funcgraph-tail=1; repeatable)")
    group.addoption("--fntrace-record", metavar="DIR", default=None,
                    help="write a trace file per failing test into DIR, named after "
                         "the test id (open with fntrace replay/report)")
    group.addoption("--fntrace-record-all", action="store_true",
                    help="with --fntrace-record: a trace file for every test")


def pytest_configure(config: pytest.Config) -> None:
    filters: list[str] = config.getoption("fntrace")
    if not filters:
        if config.getoption("fntrace_record") or config.getoption("fntrace_record_all"):
            raise pytest.UsageError("--fntrace-record needs --fntrace=FILTER")
        return
    if config.getoption("fntrace_record_all") and not config.getoption("fntrace_record"):
        raise pytest.UsageError("--fntrace-record-all needs --fntrace-record=DIR")
    for name in ("fntrace_lines", "fntrace_depth"):
        if config.getoption(name) < 0:
            raise pytest.UsageError(f"--{name.replace('_', '-')} must not be negative")
    recorder = FlightRecorder(config)  # a bad filter or option is a usage error here
    if _xdist_controller(config):
        recorder.inst.close()  # the workers run the tests, each with its own recorder
        return
    config.pluginmanager.register(recorder, _PLUGIN_NAME)


def _xdist_controller(config: pytest.Config) -> bool:
    """True in pytest-xdist's controlling process (it runs no test itself)."""
    if hasattr(config, "workerinput"):
        return False
    dist = getattr(config.option, "dist", "no")
    numprocesses = getattr(config.option, "numprocesses", None)
    return bool(dist != "no" or numprocesses)


def _file_name(nodeid: str) -> str:
    """A test id as one file name: separators and odd characters become ``_``."""
    name = re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", nodeid).strip("._") or "test"
    return name[:180]


def _write(inst: Any, option: str, path: str, value: str) -> None:
    """A write to the instance; a refused value is the option's usage error."""
    try:
        inst.write(path, value)
    except (ValueError, FileNotFoundError) as exc:
        raise pytest.UsageError(f"{option}: {path}: {exc}") from None


class FlightRecorder:
    """One trace instance for the session, cleared at each test's start."""

    def __init__(self, config: pytest.Config) -> None:
        from fntrace.tracing.instance import trace

        self.config = config
        self.filters: list[str] = config.getoption("fntrace")
        self.notrace: list[str] = config.getoption("fntrace_notrace")
        self.lines: int = config.getoption("fntrace_lines")
        record = config.getoption("fntrace_record")
        self.record_dir = (Path(config.invocation_params.dir, record)
                           if record is not None else None)
        self.record_all: bool = config.getoption("fntrace_record_all")
        self.written: list[Path] = []
        args = not config.getoption("fntrace_no_args")
        retval = not config.getoption("fntrace_no_retval")
        try:
            inst = trace("function_graph", filter=self.filters, notrace=self.notrace,
                         funcgraph_args=int(args), funcgraph_retval=int(retval))
        except ValueError as exc:
            raise pytest.UsageError(f"--fntrace: {exc}") from None
        size = config.getoption("fntrace_buffer_size")
        try:
            inst.tracing_on = False  # on only while a test runs
            inst.write("max_graph_depth", str(config.getoption("fntrace_depth")))
            if size is not None:
                _write(inst, "--fntrace-buffer-size", "buffer_size_kb", str(size))
            for setting in config.getoption("fntrace_option"):
                name, eq, value = setting.partition("=")
                if not eq:
                    raise pytest.UsageError(f"--fntrace-option {setting!r}: expected NAME=VALUE")
                _write(inst, "--fntrace-option", f"options/{name.strip()}", value)
        except BaseException:
            inst.close()
            raise
        self.inst = inst
        self.options = {"tracer": "function_graph", "filter": self.filters,
                        "notrace": self.notrace, "args": args, "retval": retval,
                        "max_depth": config.getoption("fntrace_depth"),
                        "buffer_size": size}
        if self.record_dir is not None:
            self.record_dir.mkdir(parents=True, exist_ok=True)

    # -- per test -------------------------------------------------------------
    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item,
                                nextitem: pytest.Item | None) -> Generator[None, Any, None]:
        inst = self.inst
        inst.write("trace", "")  # what ran between tests (collection, other hooks) is not kept
        item.stash[_FAILED] = False
        recorder = self._start_file(item) if self.record_all else None
        header = self._header(item) if self.record_dir is not None and not recorder else None
        inst.tracing_on = True
        try:
            yield
        finally:
            inst.tracing_on = False
            if recorder is not None:
                self._finish_file(recorder)
            elif header is not None and item.stash[_FAILED]:
                self._finish_file(self._open_file(item, header))
            inst.write("trace", "")

    # pytest_runtest_makereport runs for each phase of each test and for each subtest
    # (three times per test at least): as a new-style wrapper (pluggy >= 1.1, every
    # pytest 8) it costs half an old one (~0.8 against ~1.5 us per call).
    def _makereport_new(self, item: pytest.Item,
                        call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        if report.failed:
            self._failed(item, call, report)
        return report

    def _makereport_old(self, item: pytest.Item,
                        call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
        outcome = yield
        report = outcome.get_result()
        if report.failed:
            self._failed(item, call, report)

    if NEW_STYLE_WRAPPERS:
        pytest_runtest_makereport = pytest.hookimpl(wrapper=True)(_makereport_new)
    else:  # pytest 7 with pluggy 1.0
        pytest_runtest_makereport = pytest.hookimpl(hookwrapper=True)(_makereport_old)

    def _failed(self, item: pytest.Item, call: pytest.CallInfo[None],
                report: pytest.TestReport) -> None:
        item.stash[_FAILED] = True
        tb = call.excinfo.tb if call.excinfo is not None else None
        self._add_section(item, report, tb)

    def _add_section(self, item: pytest.Item, report: pytest.TestReport,
                     tb: types.TracebackType | None) -> None:
        from fntrace.analysis import failure_graph

        inst = self.inst
        was_on = inst.tracing_on
        inst.tracing_on = False  # reading the trace is not the test's
        try:
            text = failure_graph.section(inst.read("trace"), tb, self.lines)
        finally:
            inst.tracing_on = was_on
        report.sections.append((SECTION, text))
        # JUnit XML takes properties from the teardown report, built from the item's.
        report.user_properties.append((SECTION, text))
        if report.when != "teardown":
            item.user_properties.append((SECTION, text))

    # -- trace files --------------------------------------------------------------
    def _header(self, item: pytest.Item) -> dict[str, Any]:
        from fntrace.recording.recorder import header_for

        opts = dict(self.options, instance_options=dict(self.inst.options))
        return header_for(self.inst, ["pytest", item.nodeid], opts)

    def _start_file(self, item: pytest.Item) -> Any:
        recorder = self._open_file(item, self._header(item))
        # No loss: a thread whose buffer fills drains it into the file.
        self.inst.rb.set_on_full(recorder.poll)
        return recorder

    def _open_file(self, item: pytest.Item, header: dict[str, Any]) -> Any:
        from fntrace.recording.recorder import Recorder

        assert self.record_dir is not None
        base = _file_name(item.nodeid)
        path = self.record_dir / f"{base}.dat"
        n = 1
        while path.exists() or path in self.written:  # a name reused (sanitised alike)
            n += 1
            path = self.record_dir / f"{base}-{n}.dat"
        self.written.append(path)
        return Recorder(self.inst, os.fspath(path), header)

    def _finish_file(self, recorder: Any) -> None:
        self.inst.rb.set_on_full(None)
        recorder.poll()
        recorder.writer.finish(self.inst.rb.clock(), {"lost": dict(recorder.lost_seen)})

    # -- session ------------------------------------------------------------------
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from fntrace.core.hints import check

        try:
            messages = check(self.filters)
        except Exception:  # advice never changes the run's outcome
            return
        for msg in messages:
            terminalreporter.write_line(f"fntrace: {msg}", yellow=True)
        if self.written:
            terminalreporter.write_line(
                f"fntrace: {len(self.written)} trace file(s) in {self.record_dir}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.inst.close()


_FAILED = pytest.StashKey[bool]()
