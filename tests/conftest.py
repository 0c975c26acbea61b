"""One guard for every test: nothing registered leaks from one test into the next.

Before a test: ops left over (by a test that failed half way) are unregistered
and ftrace is enabled.  After it: leaked live patches and ops are removed, then
the test fails if there were any, or if ftrace was left disabled, an IPMODIFY
stub left in place, or the backend left holding its tool id or sites.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

import fntrace
import fntrace.core.accel
from fntrace.core import engine


class StillReprClock:
    """``time`` for fntrace.tracing.reprs in which no repr takes any time."""

    @staticmethod
    def perf_counter_ns() -> int:
        return 0


@pytest.fixture(autouse=True)
def _untimed_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    """SafeRepr shows a type whose repr once took over repr-max-us (wall time) as
    ``<T object>`` from then on.  On a loaded machine any repr can take that long,
    so every expected argument text would depend on load: here reprs take no time.
    The tests of the cutoff itself replace this clock with one they drive."""
    from fntrace.tracing import reprs

    monkeypatch.setattr(reprs, "time", StillReprClock)


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    for op in engine.registered_ops():
        fntrace.unregister(op)
    if not fntrace.ftrace_enabled():
        fntrace.set_ftrace_enabled(True)
    yield
    livepatch = sys.modules.get("fntrace.tracing.livepatch")
    leaked_patches = list(livepatch.patches()) if livepatch is not None else []
    for p in leaked_patches:
        livepatch.unpatch(p)  # type: ignore[union-attr]
    leaked = engine.registered_ops()
    for op in leaked:
        fntrace.unregister(op)
    enabled = fntrace.ftrace_enabled()
    if not enabled:
        fntrace.set_ftrace_enabled(True)
    ipmodify = sys.modules.get("fntrace.core.ipmodify")
    assert leaked_patches == []
    assert leaked == []
    assert enabled
    assert ipmodify is None or ipmodify._held == {}
    assert engine.backend() is None
    assert engine.sites == {}


# Modules marked ``pytestmark = pytest.mark.usefixtures("hot_path")`` run every
# test twice where the C extension is built: once through the C recorders and
# dispatcher (3.12+) or profile function (3.11), once through the pure-Python
# path, so both paths are held to the same exact expectations.
_PATHS = ["c", "pure"] if fntrace.core.accel.built is not None else ["pure"]


@pytest.fixture(params=_PATHS)
def hot_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pure":
        monkeypatch.setattr(fntrace.core.accel, "speedups", None)
    return str(request.param)


# Under WebAssembly (the Pyodide 3.14 leg) a test that reaches for what the
# platform lacks -- a subprocess, a thread -- is reported as skipped with the
# platform's own words, as the needs_* markers of tests/helpers.py do for the
# tests known in advance.  Only these two errors of the platform are taken: any
# other failure stays a failure.  On every other Python this hook does nothing.
_PLATFORM_LACKS = ("does not support processes", "can't start new thread")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    if sys.platform != "emscripten" or call.excinfo is None:
        return
    exc = call.excinfo.value
    if isinstance(exc, (OSError, RuntimeError)) and any(
            text in str(exc) for text in _PLATFORM_LACKS):
        report = outcome.get_result()
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0,
                           f"Skipped: {sys.platform} lacks it: {exc}")
