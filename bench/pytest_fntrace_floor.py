"""A pytest plugin for bench/run_pytest_plugin.py's ``floor`` configuration.

With ``--fntrace=FILTER`` the flight recorder patches the filter's functions and
switches tracing on for each test.  This plugin keeps it off (the recorder's
instance is wrapped so that its ``tracing_on`` stays False): every call of a
traced function still reaches the C recorder (the sys.monitoring event, the
site lookup, the recorder's own tracing test), and none is written.  That is
the floor of function_graph on a suite, under every recording option.

(A pid filter would not do: a thread the filter refuses keeps no graph stack
at all, so it costs less than any recording can.)
"""

from __future__ import annotations

from typing import Any

import pytest


class _NeverOn:
    """An instance whose tracing_on cannot be switched on."""

    def __init__(self, inst: Any) -> None:
        object.__setattr__(self, "inst", inst)
        inst.tracing_on = False

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "inst"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "tracing_on":
            setattr(object.__getattribute__(self, "inst"), name, value)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    recorder = config.pluginmanager.get_plugin("fntrace-flight-recorder")
    if recorder is None:
        raise pytest.UsageError("pytest_fntrace_floor needs --fntrace=FILTER")
    recorder.inst = _NeverOn(recorder.inst)
