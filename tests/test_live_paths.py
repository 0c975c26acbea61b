"""Probes and error injection steered on a running process through the control files.

Reuses test_control's target: a subprocess looping over ``ctlwork.step(n)``
(which calls ``alpha(n)`` → ``gamma(n)``, and ``beta(n)`` for even ``n``).
An fprobe written to ``dynamic_events`` over the socket must report exactly
the target's arguments and return values, for consecutive calls.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import needs_unix_sockets
from test_control import (  # noqa: F401 - fixtures reused
    LISTEN,
    Target,
    rundir,
    start_target,
    stop,
    target,
    wait_for,
)

from fntrace.control import Client

# The control server and its clients talk over Unix sockets to other processes.
pytestmark = needs_unix_sockets

PROBE = re.compile(r": (?P<event>\w+): \((?P<func>[\w.:]+)\) (?P<fields>.*)$")


def probe_lines(text: str, event: str) -> list[dict[str, str]]:
    out = []
    for line in text.splitlines():
        m = PROBE.search(line)
        if m is not None and m["event"] == event:
            out.append(dict(f.split("=", 1) for f in m["fields"].split()))
    return out


def test_entry_and_return_probes_on_a_live_process(target: Target) -> None:  # noqa: F811
    with Client(target.pid) as c:
        c.write("dynamic_events", "f:ctl/gam ctlwork:gamma n")
        c.write("dynamic_events", "f:ctl/alp_ret ctlwork:alpha%return n ret=$retval",
                append=True)
        assert c.read("dynamic_events").splitlines() == [
            "f:ctl/gam ctlwork:gamma n=n",
            "f:ctl/alp_ret ctlwork:alpha%return n=n ret=$retval"]
        assert "gam" in c.ls("events/ctl")
        c.write("events/ctl/gam/enable", "1")
        c.write("events/ctl/alp_ret/enable", "1")
        wait_for(lambda: len(probe_lines(c.read("trace"), "alp_ret")) >= 10,
                 what="probe events")
        text = c.read("trace")
        gam = [int(f["n"]) for f in probe_lines(text, "gam")]
        assert gam == list(range(gam[0], gam[0] + len(gam)))
        rets = probe_lines(text, "alp_ret")
        assert all(int(f["ret"]) == int(f["n"]) + 1 for f in rets), rets

        # A filter on the fetched field, set live: no n is negative, so nothing shows.
        c.write("events/ctl/alp_ret/enable", "0")
        c.write("events/ctl/gam/filter", "n < 0")
        assert target.advances(by=5)  # a call already past the old filter lands before this
        c.write("trace", "")
        assert target.advances(by=20)
        assert probe_lines(c.read("trace"), "gam") == []
        c.write("events/ctl/gam/enable", "0")
        c.write("dynamic_events", "-:ctl/gam", append=True)
        assert c.read("dynamic_events").splitlines() == [
            "f:ctl/alp_ret ctlwork:alpha%return n=n ret=$retval"]
    assert target.advances()


def test_error_injection_on_a_live_process(target: Target) -> None:  # noqa: F811
    with Client(target.pid) as c:
        c.write("fail_function/inject", "ctlwork:beta")
        assert c.read("fail_function/inject").split() == ["ctlwork:beta"]
        c.write("fail_function/ctlwork:beta/retval", "99")
        c.write("fail_function/times", "5")
        c.write("fail_function/probability", "100")
        wait_for(lambda: c.read("trace").count("fail_function:") >= 5, what="injections")
        assert target.advances(by=20)
        lines = [ln for ln in c.read("trace").splitlines() if "fail_function:" in ln]
        # times=5: exactly five injections, each into beta, each returning 99.
        assert len(lines) == 5
        assert all(ln.endswith("fail_function: ctlwork:beta returned 99") for ln in lines)
        c.write("fail_function/inject", "!ctlwork:beta")
        assert c.read("fail_function/inject").split() == []
    assert target.advances()


def test_livepatch_switched_on_a_live_process(rundir: str, tmp_path: Path) -> None:  # noqa: F811
    # The target patches gamma itself (code cannot travel over the socket); the
    # control files then switch the patch off and on while it runs.
    code = (LISTEN + "; import fntrace.tracing.livepatch, ctlwork; "
            "fntrace.tracing.livepatch.patch(ctlwork.gamma, lambda n: -n, name='neg')")
    t = start_target(str(tmp_path), listen_code=code)
    try:
        with Client(t.pid) as c:
            assert c.read("livepatch/neg/enabled") == "1\n"
            c.write("dynamic_events", "f:lp/alp ctlwork:alpha%return n ret=$retval")
            c.write("events/lp/alp/enable", "1")
            wait_for(lambda: len(probe_lines(c.read("trace"), "alp")) >= 5, what="events")
            assert all(int(f["ret"]) == 1 - int(f["n"]) for f in
                       probe_lines(c.read("trace"), "alp"))
            c.write("livepatch/neg/enabled", "0")
            assert t.advances(by=5)
            c.write("trace", "")
            wait_for(lambda: len(probe_lines(c.read("trace"), "alp")) >= 5, what="events")
            assert all(int(f["ret"]) == int(f["n"]) + 1 for f in
                       probe_lines(c.read("trace"), "alp"))
            c.write("events/lp/alp/enable", "0")
        assert t.advances()
    finally:
        stop(t)
