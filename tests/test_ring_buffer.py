"""The ring buffer through the instance's files: bounds, counters, readers, snapshot.

Markers are used as events of a known size (64 bytes plus the text), so
every counter can be predicted exactly: with a 1 KiB buffer and 100-byte
events, ten fit.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from helpers import needs_threads

from fntrace.core.oscaps import native_id
from fntrace.tracing.instance import Instance
from fntrace.tracing.ring_buffer import EVENT_OVERHEAD

# Both hot paths (C recorders and pure Python), see conftest.py.
pytestmark = pytest.mark.usefixtures("hot_path")

MOD = __name__

LINE = re.compile(r"^ *(?P<task>\S.*?)-(?P<pid>\d+) +\[(?P<cpu>\d{3})\] (?P<flags>\S{5}) +"
                  r"(?P<ts>\d+\.\d{6}): (?P<msg>.*)$")
MARK = "tracing_mark_write: "


def events(text: str) -> list[re.Match[str]]:
    out = []
    for line in text.splitlines():
        if line and not line.startswith(("#", " => ")):
            m = LINE.match(line)
            assert m is not None, line
            out.append(m)
    return out


def marks(text: str) -> list[str]:
    """The marker texts of a trace text, in order."""
    return [m["msg"][len(MARK):] for m in events(text) if m["msg"].startswith(MARK)]


def header_counts(text: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith("# entries-in-buffer")]
    return line


def stats(inst: Instance, tid: int | None = None) -> dict[str, str]:
    tid = native_id() if tid is None else tid
    text = inst.read(f"per_thread/{tid}/stats")
    return dict(line.split(": ", 1) for line in text.splitlines())


def text_of(i: int) -> str:
    """A marker text of 36 characters: a 100-byte event."""
    return f"m{i:035d}"


def work(n: int) -> int:
    return n


@pytest.fixture
def inst() -> Iterator[Instance]:
    with Instance() as i:
        yield i


def fill(inst: Instance, n: int) -> None:
    for i in range(n):
        inst.write("trace_marker", text_of(i))


# -- overwrite --------------------------------------------------------------------


def test_overwrite_drops_oldest(inst: Instance) -> None:
    inst.write("buffer_size_kb", "1")
    fill(inst, 50)
    trace = inst.read("trace")
    assert marks(trace) == [text_of(i) for i in range(40, 50)]
    assert header_counts(trace) == "# entries-in-buffer/entries-written: 10/50   #P:1"
    st = stats(inst)
    assert (st["entries"], st["overrun"], st["bytes"], st["dropped events"],
            st["read events"], st["commit overrun"]) == ("10", "40", "1000", "0", "0", "0")
    assert int(st["entries"]) + int(st["overrun"]) == 50
    assert set(st) == {"entries", "overrun", "commit overrun", "bytes", "oldest event ts",
                       "now ts", "dropped events", "read events"}
    oldest = events(trace)[0]["ts"]
    assert st["oldest event ts"] == oldest
    assert float(st["now ts"]) >= float(oldest)


def test_no_overwrite_drops_newest(inst: Instance) -> None:
    inst.write("buffer_size_kb", "1")
    inst.write("options/overwrite", "0")
    fill(inst, 50)
    trace = inst.read("trace")
    assert marks(trace) == [text_of(i) for i in range(10)]
    assert header_counts(trace) == "# entries-in-buffer/entries-written: 10/10   #P:1"
    st = stats(inst)
    assert (st["entries"], st["overrun"], st["bytes"], st["dropped events"]) == (
        "10", "0", "1000", "40")


def test_overwrite_via_trace_options(inst: Instance) -> None:
    inst.write("buffer_size_kb", "1")
    inst.write("trace_options", "nooverwrite")
    assert inst.read("options/overwrite") == "0\n"
    fill(inst, 12)
    inst.write("trace_options", "overwrite")
    fill(inst, 3)
    st = stats(inst)
    # 10 kept, 2 dropped; then 3 more each push the oldest out.
    assert (st["entries"], st["dropped events"], st["overrun"]) == ("10", "2", "3")
    assert marks(inst.read("trace")) == [text_of(i) for i in range(3, 10)] + [
        text_of(i) for i in range(3)]


def test_function_events_overrun_exactly(inst: Instance) -> None:
    inst.write("buffer_size_kb", "1")
    inst.write("set_ftrace_filter", f"{MOD}:work")
    inst.write("current_tracer", "function")
    for i in range(100):
        work(i)
    st = stats(inst)
    fits = 1024 // EVENT_OVERHEAD
    assert (int(st["entries"]), int(st["overrun"])) == (fits, 100 - fits)
    assert header_counts(inst.read("trace")).startswith(
        f"# entries-in-buffer/entries-written: {fits}/100 ")


def test_memory_stays_bounded(inst: Instance) -> None:
    inst.write("buffer_size_kb", "4")
    inst.write("options/func-args", "1")
    inst.write("set_ftrace_filter", f"{MOD}:work")
    inst.write("current_tracer", "function")
    work(0)
    buf = inst.rb.buffer()
    words = ["", "x" * 10, "y" * 60, "z" * 200]
    peak = 0
    for i in range(100_000):
        work(words[i % 4])  # type: ignore[arg-type]
        peak = max(peak, buf.bytes)
    assert peak <= 4 * 1024
    assert peak > 4 * 1024 - 400  # the buffer did fill
    assert sum(ev[1] for ev in buf.events) == buf.bytes
    assert buf.written == 100_001
    assert buf.entries + buf.overrun == 100_001
    assert len(buf.events) < 4 * 1024 // EVENT_OVERHEAD


# -- consuming reads -----------------------------------------------------------------


def test_trace_pipe_consumes(inst: Instance) -> None:
    fill(inst, 5)
    first = inst.read("trace_pipe")
    assert marks(first) == [text_of(i) for i in range(5)]
    assert not first.startswith("#")  # no header on the pipe
    assert inst.read("trace_pipe") == ""
    assert stats(inst)["read events"] == "5"
    assert stats(inst)["entries"] == "0"
    assert header_counts(inst.read("trace")) == (
        "# entries-in-buffer/entries-written: 0/5   #P:1")
    inst.write("trace_marker", "after")
    assert marks(inst.read("trace_pipe")) == ["after"]


@needs_threads
def test_pipe_iterator_yields_lines_of_another_thread(inst: Instance) -> None:
    def writer() -> None:
        for i in range(3):
            time.sleep(0.02)
            inst.write("trace_marker", f"from-writer {i}")

    t = threading.Thread(target=writer, name="pipe-writer")
    t.start()
    lines = []
    try:
        # Read until the third line: the iterator blocks as long as it takes (its
        # idle timeout is only a guard), so a writer delayed by load loses nothing.
        for line in inst.pipe(timeout=60, poll=0.01):
            lines.append(line)
            if len(lines) == 3:
                break
    finally:
        t.join()
    got = events("".join(lines))
    assert [m["msg"] for m in got] == [f"{MARK}from-writer {i}" for i in range(3)]
    assert {m["task"] for m in got} == {"pipe-writer"}
    assert inst.read("trace_pipe") == ""


@pytest.mark.parametrize("overwrite", ["1", "0"])
@needs_threads
def test_reader_and_writer_account_for_every_event(inst: Instance, overwrite: str) -> None:
    n = 20_000
    inst.write("buffer_size_kb", "8")
    inst.write("options/overwrite", overwrite)
    inst.write("set_ftrace_filter", f"{MOD}:work")
    inst.write("current_tracer", "function")
    done = threading.Event()
    seen = 0
    tids: list[int] = []

    def consumer() -> None:
        nonlocal seen
        while not done.is_set():
            seen += len(events(inst.read("trace_pipe")))
        seen += len(events(inst.read("trace_pipe")))

    def writer() -> None:
        tids.append(native_id())
        for i in range(n):
            work(i)

    c = threading.Thread(target=consumer)
    w = threading.Thread(target=writer)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave reader and writer finely
    try:
        c.start()
        w.start()
        w.join()
        done.set()
        c.join()
    finally:
        sys.setswitchinterval(interval)
    st = stats(inst, tids[0])
    assert seen == int(st["read events"])
    assert seen + int(st["overrun"]) + int(st["dropped events"]) == n
    assert st["entries"] == "0"
    if overwrite == "1":
        assert st["dropped events"] == "0"
    else:
        assert st["overrun"] == "0"


@needs_threads
def test_a_held_reader_lock_does_not_block_a_writer(inst: Instance) -> None:
    """While a consuming reader is inside its lock, writers keep writing."""
    ready, go = threading.Event(), threading.Event()

    def writer() -> None:
        inst.write("trace_marker", "first")  # creating the buffer takes the lock, once
        ready.set()
        go.wait(5)
        for i in range(1000):
            inst.write("trace_marker", str(i))

    t = threading.Thread(target=writer, name="lock-writer")
    t.start()
    assert ready.wait(5)
    with inst.rb.live.lock:
        go.set()
        t.join(5)
        assert not t.is_alive()
    assert marks(inst.read("trace")) == ["first", *map(str, range(1000))]


# -- snapshot, clock, clear ----------------------------------------------------------------


def test_snapshot_swaps_clears_and_frees(inst: Instance) -> None:
    assert inst.read("snapshot").startswith("# Snapshot is not allocated")
    fill(inst, 3)
    inst.write("snapshot", "1")
    assert marks(inst.read("snapshot")) == [text_of(i) for i in range(3)]
    assert marks(inst.read("trace")) == []
    assert header_counts(inst.read("trace")) == (
        "# entries-in-buffer/entries-written: 0/0   #P:0")
    inst.write("trace_marker", "live")
    assert marks(inst.read("trace")) == ["live"]
    assert marks(inst.read("snapshot")) == [text_of(i) for i in range(3)]
    inst.write("snapshot", "2")
    snap = inst.read("snapshot")
    assert marks(snap) == []
    assert header_counts(snap) == "# entries-in-buffer/entries-written: 0/0   #P:0"
    assert marks(inst.read("trace")) == ["live"]
    inst.write("snapshot", "0")
    assert inst.read("snapshot").startswith("# Snapshot is not allocated")
    assert marks(inst.read("trace")) == ["live"]


def test_snapshot_counts_in_total_size(inst: Instance) -> None:
    inst.write("buffer_size_kb", "7")
    inst.write("trace_marker", "x")
    assert inst.read("buffer_total_size_kb") == "7\n"
    inst.write("snapshot", "1")
    inst.write("trace_marker", "y")
    assert inst.read("buffer_total_size_kb") == "14\n"


def test_trace_clock_switch(inst: Instance) -> None:
    inst.write("trace_marker", "old")
    inst.write("trace_clock", "counter")
    assert inst.read("trace_clock") == "local global mono mono_raw boot realtime [counter]\n"
    assert marks(inst.read("trace")) == []  # two clocks do not mix: the buffer was cleared
    fill(inst, 3)
    ts = [ev[0] for _, ev in inst.rb.live.merged()]
    assert len(ts) == 3
    assert ts == sorted(set(ts)) and all(isinstance(t, int) and t < 1 << 62 for t in ts)
    inst.write("trace_clock", "realtime")
    assert inst.read("trace_clock").split() == [
        "local", "global", "mono", "mono_raw", "boot", "[realtime]", "counter"]
    before = time.time()
    inst.write("trace_marker", "now")
    after = time.time()
    (ev,) = events(inst.read("trace"))
    assert before - 1e-6 <= float(ev["ts"]) <= after + 1e-6
    inst.write("trace_clock", "local")
    assert inst.read("trace_clock").startswith("[local] ")


def test_writing_trace_clears(inst: Instance) -> None:
    fill(inst, 4)
    inst.write("trace", "")
    assert marks(inst.read("trace")) == []
    assert stats(inst)["entries"] == "0"
    assert stats(inst)["bytes"] == "0"
    inst.write("trace_marker", "again")
    assert marks(inst.read("trace")) == ["again"]
    assert inst.read("trace_pipe").count("\n") == 1


def test_resize_applies_to_existing_buffers(inst: Instance) -> None:
    fill(inst, 30)  # fits the default size
    assert stats(inst)["entries"] == "30"
    inst.write("buffer_size_kb", "2")
    assert inst.read("buffer_size_kb") == "2\n"
    fill(inst, 1)
    st = stats(inst)
    # The next write trims to the new bound: 20 events of 100 bytes fit in 2048.
    assert (st["entries"], st["overrun"]) == ("20", "11")
