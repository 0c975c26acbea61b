"""OpenTelemetry instrumentation added to and removed from a running process.

The target is a subprocess with its own TracerProvider, whose exporter writes
each finished span as a JSON line to a file (SimpleSpanProcessor: a span is in
the file when the call that ended it returns).  Its loop makes a ``tick`` span
around ``ctlwork.step(n)``, which calls ``alpha(n)`` -> ``gamma(n)`` and, for
even n, ``beta(n)``.  That call pattern is the oracle for the spans fntrace adds
through ``fntrace ctl PID otel/spans``.  Waits are for the target's progress
counter (a hang guard only, never a measure of time).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import CTL_WORK, needs_unix_sockets

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the test extra)")

import fntrace
from fntrace.control import Client, ControlError

pytestmark = needs_unix_sockets
ROOT = str(Path(fntrace.__file__).resolve().parent.parent)


TARGET = '''\
import json, os, sys, time
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
import ctlwork
import fntrace.control


class FileExporter(SpanExporter):
    def __init__(self, path):
        self.out = open(path, "a", buffering=1)

    def export(self, spans):
        for s in spans:
            self.out.write(json.dumps({
                "name": s.name, "id": s.context.span_id, "trace": s.context.trace_id,
                "parent": s.parent.span_id if s.parent else None,
                "attrs": dict(s.attributes or {}), "status": s.status.status_code.name,
                "events": [[e.name, dict(e.attributes or {})] for e in s.events],
            }) + "\\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(FileExporter(sys.argv[2])))
trace.set_tracer_provider(provider)
tracer = trace.get_tracer("target")
fntrace.control.listen()
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
n = 0
while True:
    with tracer.start_as_current_span("tick"):
        ctlwork.step(n)
    n += 1
    os.pwrite(fd, b"%20d" % n, 0)
    time.sleep(0.001)
'''


class Target:
    def __init__(self, work: str) -> None:
        Path(work, "ctlwork.py").write_text(CTL_WORK)
        Path(work, "target.py").write_text(TARGET)
        self.progress_file = os.path.join(work, "progress")
        self.spans_file = os.path.join(work, "spans.jsonl")
        Path(self.progress_file).write_bytes(b"")
        Path(self.spans_file).write_bytes(b"")
        env = dict(os.environ, PYTHONPATH=f"{work}{os.pathsep}{ROOT}")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(work, "target.py"), self.progress_file,
             self.spans_file], env=env, cwd=work, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def progress(self) -> int:
        text = Path(self.progress_file).read_bytes().strip()
        return int(text) if text else 0

    def wait_progress(self, by: int) -> int:
        start = self.progress()
        deadline = time.monotonic() + 120  # hang guard only
        while self.progress() < start + by:
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "the target stopped advancing"
            time.sleep(0.01)
        return self.progress()

    def spans(self) -> list[dict[str, Any]]:
        lines = Path(self.spans_file).read_text().splitlines()
        return [json.loads(ln) for ln in lines if ln.endswith("}")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def target(monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    base = tempfile.mkdtemp(prefix="fnotel", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", base)
    t = Target(base)
    try:
        sock = os.path.join(base, "fntrace", f"{t.pid}.sock")
        deadline = time.monotonic() + 120
        while not os.path.exists(sock) or t.progress() == 0:
            assert t.proc.poll() is None, t.proc.communicate()
            assert time.monotonic() < deadline, "the target never served control"
            time.sleep(0.02)
        yield t
    finally:
        t.stop()
        shutil.rmtree(base, ignore_errors=True)


def ctl(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "fntrace", "ctl", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def trees(spans: list[dict[str, Any]]) -> dict[int, list[tuple[str, str | None, Any]]]:
    """Per trace: (name, parent name, attribute n) in end order."""
    by_id = {s["id"]: s for s in spans}
    out: dict[int, list[tuple[str, str | None, Any]]] = {}
    for s in spans:
        parent = by_id.get(s["parent"]) if s["parent"] is not None else None
        out.setdefault(s["trace"], []).append(
            (s["name"], parent["name"] if parent else None, s["attrs"].get("n")))
    return out


def expected(n: int) -> list[tuple[str, str | None, Any]]:
    calls = [("ctlwork.gamma", "ctlwork.alpha", n), ("ctlwork.alpha", "ctlwork.step", n)]
    if n % 2 == 0:
        calls.append(("ctlwork.beta", "ctlwork.step", n))
    return [*calls, ("ctlwork.step", "tick", n), ("tick", None, None)]


def test_add_list_remove_live(target: Target) -> None:
    done = ctl(str(target.pid), "otel/spans", "ctlwork:* n=n")
    assert done.returncode == 0, done.stderr
    listing = ctl(str(target.pid), "otel/spans")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.startswith("#1 ctlwork:* n=n\tspans=")
    target.wait_progress(20)
    with Client(target.pid) as c:
        assert c.ls("otel") == ["logpoints", "spans"]
        assert "otel" in c.ls()
        assert "ctlwork:alpha" in c.read("enabled_functions")
        c.write("otel/spans", "")  # a plain write of nothing removes them all
        assert c.read("otel/spans") == ""
        assert c.read("enabled_functions") == ""
    removed_at = target.wait_progress(1)
    target.wait_progress(20)
    spans = target.spans()
    by_trace = trees(spans)
    full = [t for t in by_trace.values() if len(t) > 1]
    # Every traced tick but the first and the last (the add and the removal may fall
    # inside a tick) is exactly the call tree, for consecutive n.
    inner = full[1:-1]
    assert len(inner) >= 17
    ns = [t[-2][2] for t in inner]
    assert ns == list(range(ns[0], ns[0] + len(ns)))
    for t, n in zip(inner, ns, strict=True):
        assert t == expected(n)
    # the spans stop with the removal: only bare ticks after it
    last_n = max(s["attrs"]["n"] for s in spans if "n" in s["attrs"])
    assert last_n < removed_at
    bare = [t for t in by_trace.values() if len(t) == 1]
    assert all(t == [("tick", None, None)] for t in bare)
    assert len(bare) >= 19


def test_logpoint_live_and_errors(target: Target) -> None:
    with Client(target.pid) as c:
        c.write("otel/logpoints", "f:app/beta ctlwork:beta n limit=1000/s", append=True)
        assert c.read("otel/logpoints").startswith(
            "#1 f:app/beta ctlwork:beta n=n limit=1000/s to=event\tsent=")
        with pytest.raises(ControlError, match="limit=N/s"):
            c.write("otel/logpoints", "f:app/x ctlwork:alpha limit=0/s", append=True)
        with pytest.raises(ControlError, match="unknown variable"):
            c.write("otel/spans", "ctlwork:alpha x=$nope", append=True)
        with pytest.raises(ControlError, match="no such file"):
            c.read("otel/nothing")
        # the failed writes changed nothing
        assert c.read("otel/spans") == ""
        assert len(c.read("otel/logpoints").splitlines()) == 1
    target.wait_progress(20)
    with Client(target.pid) as c:
        c.write("otel/logpoints", "-:app/beta", append=True)
    events = [(s["events"], s["name"]) for s in target.spans() if s["events"]]
    assert len(events) >= 8
    # one event on each tick whose step called beta, none anywhere else
    assert all(name == "tick" and len(ev) == 1 and ev[0][0] == "app/beta"
               for ev, name in events)
    seen = [ev[0][1]["n"] for ev, _ in events]
    assert seen == list(range(seen[0], seen[0] + 2 * len(seen), 2))
    assert seen[0] % 2 == 0
    assert events[0][0][0][1]["code.function.name"] == "ctlwork.beta"
    with Client(target.pid) as c:
        assert c.read("otel/logpoints") == ""
        assert c.read("enabled_functions") == ""
    bad = ctl(str(target.pid), "otel/spans", "ctlwork:alpha x=$nope")
    assert bad.returncode == 1
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "unknown variable" in bad.stderr
