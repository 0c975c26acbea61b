"""A pytest plugin for bench/run_pytest_plugin.py's ``floor`` configuration.

With ``--fntrace=FILTER`` the flight recorder patches the filter's functions and
switches tracing on per test; this plugin then restricts the instance to pid 1
(``set_ftrace_pid``), a process no test thread is: every call of a traced
function still reaches the recorder (sys.monitoring event, site lookup, the
per-thread pid decision), and none is written.  What that costs is the floor
of function_graph on a suite, whatever the recording options.
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    recorder = config.pluginmanager.get_plugin("fntrace-flight-recorder")
    if recorder is None:
        raise pytest.UsageError("pytest_fntrace_floor needs --fntrace=FILTER")
    recorder.inst.write("set_ftrace_pid", "1")
