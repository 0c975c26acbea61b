"""Probe events steered on a running process through the control files.

Reuses test_control's target: a subprocess looping over ``ctlwork.step(n)``
(which calls ``alpha(n)`` → ``gamma(n)``, and ``beta(n)`` for even ``n``).
An fprobe written to ``dynamic_events`` over the socket must report exactly
the target's arguments and return values, for consecutive calls.
"""

from __future__ import annotations

import re

from test_control import Target, rundir, target, wait_for  # noqa: F401 - fixtures reused

from fntrace.control import Client

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
