"""fntrace record / info / replay end to end, and the trace file format."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from helpers import FakeThread, default_sigint, event_text, needs_subprocess

from fntrace.analysis.replay import RecordedFunction, lines
from fntrace.formats.tracefile import TraceWriter, open_trace
from fntrace.recording.recorder import InstanceText
from fntrace.tracing.instance import Instance

ROOT = str(Path(__file__).resolve().parent.parent)
ENV = {**os.environ, "PYTHONPATH": ROOT}




def read_lines(proc: subprocess.Popen[bytes], n: int) -> None:
    """Read exactly ``n`` lines of the child's unbuffered stdout, not a byte more, so
    that ``communicate()`` afterwards returns every line printed after them."""
    assert proc.stdout is not None
    for _ in range(n):
        assert proc.stdout.readline().endswith(b"\n")


def script(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(body))
    return path


def fntrace(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fntrace", *args], env=ENV, text=True,
                          capture_output=True, timeout=60, **kw)  # type: ignore[call-overload]


def entries(path: Path, func: str, kind: str = "entry") -> list:
    return [r for r in open_trace(str(path)).records() if r.func == func and r.kind == kind]


RAISES = """
    import sys
    calls = 0
    def leaf(x):
        global calls
        calls += 1
        return x + 1
    def work(n):
        return [leaf(i) for i in range(n)]
    work(7)
    work(5)
    print("calls", calls, sys.argv[1:])
    raise ValueError("boom")
"""


@needs_subprocess
def test_raises_exit_code_traceback_and_counts(tmp_path: Path) -> None:
    prog = script(tmp_path, "raises.py", RAISES)
    out = tmp_path / "t.dat"
    plain = subprocess.run([sys.executable, str(prog), "x", "y"], text=True,
                           capture_output=True)
    traced = fntrace("record", "-o", str(out), "--", str(prog), "x", "y")
    assert traced.returncode == plain.returncode == 1
    assert traced.stdout == plain.stdout == "calls 12 ['x', 'y']\n"
    assert traced.stderr == plain.stderr
    tf = open_trace(str(out))
    assert tf.problems == [] and not tf.truncated
    assert len(entries(out, "__main__:leaf")) == 12   # the program's own count
    assert len(entries(out, "__main__:work")) == 2
    exits = entries(out, "__main__:<module>", "exit")
    # 3.11 does not tell which exception unwinds a frame (fntrace.core.regs).
    value = None if sys.version_info < (3, 12) else "ValueError"
    assert [(e.event, e.value) for e in exits] == [("unwind", value)]


@needs_subprocess
def test_threads_per_thread_records(tmp_path: Path) -> None:
    prog = script(tmp_path, "threads.py", """
        import sys, threading
        def leaf():
            pass
        def worker(n):
            for _ in range(n):
                leaf()
            # One write per line: print() writes the newline separately, and lines of
            # threads printing at once could interleave.
            t = threading.current_thread()
            sys.stdout.write(f"{t.name} {t.native_id} {n}\\n")
            sys.stdout.flush()
        ts = [threading.Thread(target=worker, args=(n,), name=f"w{n}") for n in (3, 5, 8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    """)
    out = tmp_path / "t.dat"
    res = fntrace("record", "-t", "function", "-o", str(out), "--", str(prog))
    assert res.returncode == 0, res.stderr
    expected = {int(tid): (name, int(n)) for name, tid, n in
                (line.split() for line in res.stdout.splitlines())}
    tf = open_trace(str(out))
    per_tid = Counter(r.tid for r in tf.records() if r.func == "__main__:leaf")
    assert dict(per_tid) == {tid: n for tid, (_, n) in expected.items()}
    names = {info.tid: info.name for info in tf.threads.values()}
    if sys.version_info < (3, 12):  # 3.12+: a thread's buffer can be named before its
        for tid, (name, _) in expected.items():  # thread is registered (Dummy-N)
            assert names[tid] == name
    calls = [r for r in tf.records() if r.func == "__main__:leaf"]
    assert {r.parent for r in calls} == {"__main__:worker"}
    assert all(r.kind == "call" and r.event == "start" for r in calls)


TICKER = """
    import os, sys, time
    def tick(i):
        print(i, flush=True)
    i = 0
    while True:
        tick(i)
        i += 1
        if "exit" in sys.argv and i == 50:
            os._exit(3)
        time.sleep(0.005)
"""


@needs_subprocess
def test_sigint_leaves_readable_file(tmp_path: Path) -> None:
    prog = script(tmp_path, "ticker.py", TICKER)
    out = tmp_path / "t.dat"
    proc = subprocess.Popen([sys.executable, "-m", "fntrace", "record", "--args",
                             "-F", "*:mod:__main__", "-o", str(out), "--", str(prog)],
                            env=ENV, bufsize=0, preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    read_lines(proc, 20)
    proc.send_signal(signal.SIGINT)
    outb, errb = proc.communicate(timeout=90)
    rest, err = outb.decode(), errb.decode()
    assert proc.returncode == -signal.SIGINT
    assert err.startswith("Traceback") and err.rstrip().endswith("KeyboardInterrupt")
    assert "fntrace" not in err
    printed = 20 + len(rest.splitlines())
    tf = open_trace(str(out))
    assert tf.problems == []
    ticks = [r.args for r in tf.records() if r.func == "__main__:tick" and r.kind == "entry"]
    assert ticks == [f"i={i}" for i in range(printed)]


@needs_subprocess
def test_sigterm_leaves_readable_file(tmp_path: Path) -> None:
    prog = script(tmp_path, "ticker.py", TICKER)
    out = tmp_path / "t.dat"
    proc = subprocess.Popen([sys.executable, "-m", "fntrace", "record", "-t", "function",
                             "-o", str(out), "--", str(prog)], env=ENV, bufsize=0,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    read_lines(proc, 10)
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=90)[0].decode()
    assert proc.returncode == -signal.SIGTERM
    tf = open_trace(str(out))
    assert tf.problems == []
    ticks = [r for r in tf.records() if r.func == "__main__:tick"]
    assert len(ticks) in (10 + len(rest.splitlines()), 11 + len(rest.splitlines()))


@needs_subprocess
def test_os_exit_flushes(tmp_path: Path) -> None:
    prog = script(tmp_path, "ticker.py", TICKER)
    out = tmp_path / "t.dat"
    res = fntrace("record", "-o", str(out), "--", str(prog), "exit")
    assert res.returncode == 3
    assert res.stdout.splitlines() == [str(i) for i in range(50)]
    tf = open_trace(str(out))
    assert tf.problems == [] and tf.end_ts is not None
    assert len(entries(out, "__main__:tick")) == 50
    assert len(entries(out, "__main__:tick", "exit")) == 50


@needs_subprocess
def test_stdin_and_module(tmp_path: Path) -> None:
    script(tmp_path, "upper.py", """
        import sys
        def handle(line):
            return line.upper()
        for line in sys.stdin:
            sys.stdout.write(handle(line))
        sys.exit(4)
    """)
    out = tmp_path / "t.dat"
    res = fntrace("record", "-F", "upper:*", "-F", "__main__:*", "-o", str(out), "-m", "upper",
                  input="ab\ncd\nef\n", cwd=str(tmp_path))
    assert res.returncode == 4
    assert res.stdout == "AB\nCD\nEF\n"
    assert len(entries(out, "__main__:handle")) == 3
    assert {r.func for r in open_trace(str(out)).records()} == {"__main__:handle",
                                                               "__main__:<module>"}


@needs_subprocess
def test_no_event_lost_with_a_tiny_buffer(tmp_path: Path) -> None:
    # 57,313 calls through 4 KiB per-thread buffers: the recording thread drains
    # its full buffer into the file itself instead of dropping (no-loss mode).
    prog = script(tmp_path, "fib.py", """
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        print(fib(22))
    """)
    out = tmp_path / "t.dat"
    res = fntrace("record", "-F", "fib", "--buffer-size", "4", "-o", str(out), "--", str(prog))
    assert res.returncode == 0 and res.stdout == "17711\n", res.stderr
    tf = open_trace(str(out))
    recs = [r for r in tf.records() if r.func == "__main__:fib"]
    assert sum(1 for r in recs if r.kind == "entry") == 57313
    assert sum(1 for r in recs if r.kind == "exit") == 57313
    assert sum(tf.lost.values()) == 0 and not tf.truncated


def _recorded(tmp_path: Path, tracer: str = "function_graph") -> Path:
    prog = script(tmp_path, "raises.py", RAISES)
    out = tmp_path / "t.dat"
    fntrace("record", "-t", tracer, "--retval", "-o", str(out), "--", str(prog))
    return out


@needs_subprocess
def test_truncated_file_replays_with_warning(tmp_path: Path) -> None:
    out = _recorded(tmp_path)
    full = fntrace("replay", str(out))
    assert full.returncode == 0 and full.stderr == ""
    data = out.read_bytes()
    out.write_bytes(data[:-40])
    cut = fntrace("replay", str(out))
    assert cut.returncode == 0
    assert "warning" in cut.stderr and "truncated" in cut.stderr
    # The footer was lost, every event chunk is intact: the same trace.
    assert cut.stdout == full.stdout
    info = fntrace("info", str(out))
    assert "status:      truncated or corrupt" in info.stdout


MAIN = FakeThread(7, "MainThread", 0, "M.")
LEAF = RecordedFunction("__main__:leaf", 0)
MODULE = RecordedFunction("__main__:<module>", 0)


@needs_subprocess
def test_corrupt_chunk_is_reported_and_skipped(tmp_path: Path) -> None:
    # Three chunks of ten calls, written directly: how a recording splits into chunks
    # depends on when its writer thread wakes (load), and this test needs three.
    out = tmp_path / "t.dat"
    writer = TraceWriter(str(out), {"pid": 1, "tracer": "function", "start_ts": 0})
    for chunk in range(3):
        writer.write_events([(MAIN, (chunk * 100 + i, 0, "F", LEAF, MODULE, None, "start"))
                             for i in range(10)], event_text)
    writer.finish(1000)
    good = open_trace(str(out))
    assert good.problems == [] and len(good._chunks) == 3 and good.events == 30
    data = bytearray(out.read_bytes())
    second = data.find(b"\xf7FNC", data.find(b"\xf7FNC") + 1)
    data[second + 20] ^= 0xFF
    out.write_bytes(bytes(data))
    bad = open_trace(str(out))
    assert any("corrupt chunk" in p for p in bad.problems)
    assert bad.events == 20
    res = fntrace("replay", str(out))
    assert res.returncode == 0 and "corrupt chunk" in res.stderr
    assert res.stdout.count("__main__:leaf") == sum(
        1 for r in bad.records() if r.func == "__main__:leaf") == 20


@needs_subprocess
def test_refuses_unknown_version_and_non_traces(tmp_path: Path) -> None:
    out = _recorded(tmp_path)
    data = bytearray(out.read_bytes())
    data[8:10] = (7).to_bytes(2, "little")
    out.write_bytes(bytes(data))
    res = fntrace("replay", str(out))
    assert res.returncode != 0
    assert res.stderr == f"fntrace replay: {out}: trace file version 7 is not supported; " \
                         "supported: 1, 2, 3, 4\n"
    other = tmp_path / "x.txt"
    other.write_text("hello")
    res = fntrace("info", str(other))
    assert res.returncode != 0 and res.stderr == f"fntrace info: {other}: not an fntrace " \
                                                 "trace file\n"
    res = fntrace("replay", str(tmp_path / "nope.dat"))
    assert res.returncode != 0 and res.stderr.endswith("nope.dat: no such file\n")


@needs_subprocess
def test_info_fields(tmp_path: Path) -> None:
    out = _recorded(tmp_path)
    res = fntrace("info", str(out))
    assert res.returncode == 0
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", res.stdout, re.M))
    tf = open_trace(str(out))
    assert fields["program"].endswith("raises.py")
    assert fields["python"].startswith(sys.version.split()[0])
    assert fields["tracer"] == "function_graph (clock mono)"
    assert fields["processes"] == "1"
    assert fields["threads"] == "1"
    assert fields["events"] == str(sum(1 for _ in tf.records())) == str(tf.events)
    assert fields["lost"] == "0"
    assert fields["status"] == "complete"
    assert re.fullmatch(r"\d+\.\d{6} s", fields["duration"])
    assert tf.header["pid"] == tf.header["pid"] and f"pid {tf.header['pid']}" in res.stdout


def _leafy() -> None:
    def leaf(x: int) -> int:
        return x * 2

    def gen() -> object:
        yield leaf(1)
        yield leaf(2)

    def outer() -> int:
        try:
            {}["k"]
        except KeyError:
            pass
        return sum(gen()) + leaf(3)

    outer()


@pytest.mark.parametrize("tracer,opts", [
    ("function", {"func-args": 1}),
    ("function_graph", {"funcgraph-retval": 1, "funcgraph-args": 1}),
    ("function_graph", {"funcgraph-proc": 1, "funcgraph-abstime": 1, "funcgraph-tail": 1}),
])
def test_replay_matches_live_trace(tmp_path: Path, tracer: str, opts: dict[str, int]) -> None:
    inst = Instance()
    try:
        for name, value in opts.items():
            inst.write(f"options/{name}", str(value))
        inst.write("set_ftrace_filter", f"{__name__}:*")
        inst.write("current_tracer", tracer)
        _leafy()
        inst.write("trace_marker", "hello")
        inst.write("current_tracer", "nop")
        inst.write("current_tracer", tracer)  # rendering needs the tracer; nothing runs now
        inst.write("tracing_on", "0")
        live = inst.read("trace")
        path = tmp_path / "t.dat"
        writer = TraceWriter(str(path), {"pid": os.getpid(), "tracer": tracer,
                                         "options": {"instance_options": dict(inst.options)}})
        writer.write_events(inst.rb.live.merged(), InstanceText(inst).one)
        writer.finish(0)
    finally:
        inst.close()
    tf = open_trace(str(path))
    text = "".join(lines([tf], tf.records(), tf.events))
    assert text == live
    assert "leaf" in live and "hello" in live


@needs_subprocess
def test_replay_cli_matches_structure_and_filters(tmp_path: Path) -> None:
    out = _recorded(tmp_path)
    res = fntrace("replay", str(out))
    body = [ln for ln in res.stdout.splitlines() if not ln.startswith("#")]
    funcs = [ln.split("|", 1)[1].strip() for ln in body]
    assert funcs[:3] == ["__main__:<module>() {", "__main__:work() {",
                         "__main__:work.<locals>.<listcomp>() {"] or funcs[:2] == [
        "__main__:<module>() {", "__main__:work() {"]
    assert sum(1 for f in funcs if f.startswith("__main__:leaf();")) == 12
    only = fntrace("replay", "-F", "__main__:leaf", str(out))
    lines = [ln for ln in only.stdout.splitlines() if not ln.startswith("#")]
    assert len(lines) == 12 and all("__main__:leaf()" in ln for ln in lines)
    shallow = fntrace("replay", "--depth", "1", str(out))
    lines = [ln for ln in shallow.stdout.splitlines() if not ln.startswith("#")]
    assert [ln.split("|", 1)[1].strip() for ln in lines] == [
        "__main__:<module>(); /* raised (type unknown on 3.11) */" if sys.version_info < (3, 12)
        else "__main__:<module>(); /* raised ValueError */"]
    none = fntrace("replay", "--since", "1000", str(out))
    assert [ln for ln in none.stdout.splitlines() if not ln.startswith("#")] == []


@needs_subprocess
def test_run_prints_the_same_trace_live(tmp_path: Path) -> None:
    # `run` is record with a text sink: its function_graph output (function column)
    # equals what `replay` shows for a recording of the same program.
    prog = script(tmp_path, "calls.py", """
        def g(x):
            return x + 1
        def f(n):
            return sum(g(i) for i in range(n))
        print(f(2))
    """)
    opts = ["-t", "function_graph", "-F", "*:mod:__main__", "--args", "--retval"]
    live = fntrace("run", *opts, "-o", str(tmp_path / "live.txt"), "--", str(prog))
    assert (live.returncode, live.stdout) == (0, "3\n"), live.stderr
    out = tmp_path / "t.dat"
    assert fntrace("record", *opts, "-o", str(out), "--", str(prog)).returncode == 0
    replayed = fntrace("replay", str(out)).stdout

    def body(text: str) -> list[str]:
        return [re.sub(r" at 0x[0-9a-f]+", "", ln.split("|", 1)[1].rstrip())
                for ln in text.splitlines() if "|" in ln and not ln.startswith("#")]

    shown = body((tmp_path / "live.txt").read_text())
    assert shown == body(replayed)
    assert "        __main__:g(x=0); /* ret=1 */" in shown  # inside the genexpr
    assert shown[-1] == "  } /* __main__:<module> ret=None */"
