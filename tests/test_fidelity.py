"""Exceptions of fntrace's own code never change the traced program (issue 11 item 7).

* A repr that fails, SystemExit included, is a failed repr: the trace says
  ``<repr of T failed: SystemExit>`` and the program goes on.
* An ops callback that fails, SystemExit included, is counted on the ops.
* KeyboardInterrupt that lands while fntrace's code runs (the program's SIGINT
  handler ran inside a repr, or a repr raised it) reaches the program, once,
  with no repr frame in its traceback; on the C path at the program's next
  bytecode check, with no fntrace frame at all (docs/exceptions.md).

Also: reading arguments keeps no reference to them (CPython's test_contextlib
test_nokeepref found it).
"""

from __future__ import annotations

import _thread
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import traceback
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fntrace
from fntrace import Ops

pytestmark = pytest.mark.usefixtures("hot_path")

ROOT = Path(__file__).resolve().parent.parent
HERE = __name__


class ExitingRepr:
    def __repr__(self) -> str:
        raise SystemExit(3)


class InterruptingRepr:
    def __repr__(self) -> str:
        raise KeyboardInterrupt


class SignallingRepr:
    """A Ctrl-C that arrives while fntrace renders this argument."""

    def __repr__(self) -> str:
        _thread.interrupt_main()  # the handler runs at the next check: in here
        return "unreached"


def takes(x: Any) -> int:
    return 7


def caller(x: Any) -> list[str]:
    seen = ["before"]
    takes(x)
    for _ in range(3):  # a backward jump: a bytecode check of the program
        pass
    seen.append("after")
    return seen


@pytest.fixture
def graph_args() -> Iterator[fntrace.Instance]:
    # repr_call: these tests are about the program's own reprs, which fntrace
    # calls only when asked (options/repr-call).
    with fntrace.trace("function_graph", filter=f"*:mod:{HERE}", funcgraph_args=1,
                       funcgraph_retval=1, repr_call=1) as inst:
        yield inst


def test_repr_raising_system_exit_is_a_failed_repr(graph_args: fntrace.Instance) -> None:
    assert caller(ExitingRepr()) == ["before", "after"]
    text = graph_args.read("trace")
    assert "takes(x=<repr of ExitingRepr failed: SystemExit>); /* ret=7 */" in text


@pytest.mark.parametrize("where", ["entry", "exit"])
def test_callback_raising_system_exit_is_counted(where: str) -> None:
    def boom(*_: Any) -> None:
        raise SystemExit(3)

    ops = Ops(boom, filter=f"{HERE}:takes") if where == "entry" else \
        Ops(None, ret=boom, filter=f"{HERE}:takes")
    fntrace.register(ops)
    try:
        with pytest.warns(RuntimeWarning, match="SystemExit"):
            assert caller(1) == ["before", "after"]
        assert caller(2) == ["before", "after"]
    finally:
        fntrace.unregister(ops)
    assert ops.nerrors == 2
    assert type(ops.last_error) is SystemExit


def _program_frames(exc: BaseException) -> list[str]:
    return [f.name for f in traceback.extract_tb(exc.__traceback__)]


@pytest.mark.parametrize("cls", [InterruptingRepr, SignallingRepr])
def test_keyboard_interrupt_in_repr_reaches_the_program(graph_args: fntrace.Instance,
                                                         hot_path: str, cls: type) -> None:
    calls: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        calls.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            caller(cls())
        assert caller(1) == ["before", "after"]  # nothing left pending
    finally:
        signal.signal(signal.SIGINT, old)
    assert calls == ([signal.SIGINT] if cls is SignallingRepr else [])  # the handler ran once
    # Raised by the program's own next bytecode check: no repr, no fntrace frame.
    names = _program_frames(info.value)
    assert names[:2] == ["test_keyboard_interrupt_in_repr_reaches_the_program", "caller"]
    files = {f.filename for f in traceback.extract_tb(info.value.__traceback__)}
    assert files == {__file__}


def test_keyboard_interrupt_in_a_callback_reaches_the_program(hot_path: str) -> None:
    raised: list[int] = []

    def interrupt(*_: Any) -> None:
        if not raised:
            raised.append(1)
            raise KeyboardInterrupt

    seen: list[str] = []
    other = Ops(lambda ip, *_: seen.append(ip.name), filter=f"{HERE}:takes")
    ops = Ops(interrupt, filter=f"{HERE}:takes")
    fntrace.register(ops)
    fntrace.register(other)
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            caller(1)
        assert caller(2) == ["before", "after"]  # still traced (3.11 keeps its hook)
    finally:
        fntrace.unregister(other)
        fntrace.unregister(ops)
    assert seen == [f"{HERE}:takes"] * 2  # the other ops saw both calls
    assert ops.nerrors == 0  # not a failure: the program's interrupt
    files = {f.filename for f in traceback.extract_tb(info.value.__traceback__)}
    assert files == {__file__}


_EXIT_PROGRAM = textwrap.dedent("""
    import sys
    class R:
        def __repr__(self):
            raise SystemExit(3)
    def f(x):
        return 1
    print(f(R()), "done")
""")


def _record(tmp: Path, program: str, *opts: str, pure: bool) -> subprocess.CompletedProcess[str]:
    script = tmp / "prog.py"
    script.write_text(program)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("FNTRACE_PURE", None)
    if pure:
        env["FNTRACE_PURE"] = "1"
    return subprocess.run([sys.executable, "-m", "fntrace", "record", *opts, "-o",
                           str(tmp / "t.dat"), "--", str(script)], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_record_with_a_repr_raising_system_exit(tmp_path: Path, hot_path: str,
                                                tracer: str) -> None:
    proc = _record(tmp_path, _EXIT_PROGRAM, "-t", tracer, "--args", "--repr-call", "--retval"
                   if tracer == "function_graph" else "--args", pure=hot_path == "pure")
    assert (proc.returncode, proc.stdout) == (0, "1 done\n"), proc.stderr
    replay = subprocess.run([sys.executable, "-m", "fntrace", "replay", str(tmp_path / "t.dat")],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                            text=True, timeout=60)
    assert "x=<repr of R failed: SystemExit>" in replay.stdout


def test_arguments_keep_no_reference() -> None:
    class A:
        pass

    def peek(ip: Any, parent: Any, ops: Any, fregs: Any) -> None:
        seen.append(sorted(fregs.arguments))

    seen: list[list[str]] = []

    def holds(a: A, b: A) -> tuple[bool, bool]:
        ra, rb = weakref.ref(a), weakref.ref(b)
        del a, b
        gc.collect()
        return ra() is None, rb() is None

    ops = Ops(peek, filter=f"{HERE}:*holds")
    fntrace.register(ops)
    try:
        result = holds(A(), A())  # (not in an assert: pytest would keep the A's)
    finally:
        fntrace.unregister(ops)
    assert result == (True, True)
    assert seen == [["a", "b"]]


class SlowClock:
    """``time`` for fntrace.tracing.reprs: only a Slow repr takes time (20 ms, over
    repr-max-us=1000), every other repr none, whatever the machine's load."""

    now = 0

    @staticmethod
    def perf_counter_ns() -> int:
        return SlowClock.now


class Slow:
    def __repr__(self) -> str:
        SlowClock.now += 20_000_000
        return "Slow!"


def slow_takes(x: Any) -> None:
    return None


def test_slow_repr_cutoff_is_said_once(hot_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from fntrace.tracing import reprs

    monkeypatch.setattr(reprs, "time", SlowClock)
    with fntrace.trace("function_graph", filter=f"{HERE}:slow_takes", funcgraph_args=1,
                       repr_call=1) as inst:
        for _ in range(3):
            slow_takes(Slow())
        slow_takes(1)
    body = [ln.split("|", 1)[1].strip() for ln in inst.read("trace").splitlines()
            if not ln.startswith("#")]
    # The marker is written while the call that was slow is being recorded: just before it.
    assert body[0].startswith("/* fntrace: repr of Slow took ")
    assert body[1] == f"{HERE}:slow_takes(x=Slow!);"
    assert body[0].endswith("(repr-max-us is 1000): Slow values show as <Slow object> "
                            "from here on */")
    assert body[2:] == [f"{HERE}:slow_takes(x=<Slow object>);"] * 2 + [f"{HERE}:slow_takes(x=1);"]


_SLOW_PROGRAM = textwrap.dedent("""
    import time
    class Distribution:
        def __repr__(self):
            time.sleep(0.02)
            return "D"
    def f(x):
        return 1
    for _ in range(3):
        f(Distribution())
    def g():
        raise KeyError
    try:
        g()
    except KeyError:
        pass
""")


def test_recorded_slow_repr_marker_and_unknown_raise(tmp_path: Path, hot_path: str) -> None:
    proc = _record(tmp_path, _SLOW_PROGRAM, "-F", "f", "-F", "g", "--args", "--repr-call",
                   pure=hot_path == "pure")
    assert proc.returncode == 0, proc.stderr
    replay = subprocess.run([sys.executable, "-m", "fntrace", "replay", str(tmp_path / "t.dat")],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                            text=True, timeout=60)
    body = [ln.split("|", 1)[1].strip() for ln in replay.stdout.splitlines()
            if "|" in ln and not ln.startswith("#")]
    assert body[0].startswith("/* fntrace: repr of Distribution took ")
    assert body[1] == "__main__:f(x=D);"
    assert body[2:4] == ["__main__:f(x=<Distribution object>);"] * 2
    raised = "KeyError" if sys.version_info >= (3, 12) else "(type unknown on 3.11)"
    assert body[4:] == [f"__main__:g(); /* raised {raised} */"]


_RECURSION_PROGRAM = textwrap.dedent("""
    def down(n):
        return down(n + 1)
    def after(i):
        return i
    try:
        down(0)
    except RecursionError:
        print("recursion error")
    for i in range(3):
        after(i)
    print("done")
""")


def test_tracing_after_a_recursion_error(tmp_path: Path, hot_path: str) -> None:
    """Issue 11 item 8: the C path and 3.12+ go on tracing; 3.11's pure hook says it stopped."""
    proc = _record(tmp_path, _RECURSION_PROGRAM, "-t", "function", "-F", "after", "-F", "down",
                   pure=hot_path == "pure")
    assert (proc.returncode, proc.stdout) == (0, "recursion error\ndone\n")
    replay = subprocess.run([sys.executable, "-m", "fntrace", "replay", str(tmp_path / "t.dat")],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                            text=True, timeout=60)
    after = [ln for ln in replay.stdout.splitlines() if "__main__:after" in ln]
    if hot_path == "pure" and sys.version_info < (3, 12):
        assert after == []
        assert proc.stderr.count("stopped being traced before the end") == 1
    else:
        assert len(after) == 3
        assert "stopped being traced" not in proc.stderr


def test_a_foreign_thread_gets_no_dummy_thread(hot_path: str) -> None:
    """Tracing a thread threading does not know must not register one for it.

    (current_thread() would: threading.enumerate() would list it, later default
    thread names would shift; CPython's test_foreign_thread failed on 3.13.)
    """
    lock = _thread.allocate_lock()
    lock.acquire()
    seen: list[list[str]] = []

    def foreign() -> None:
        takes(1)
        seen.append([type(t).__name__ for t in threading.enumerate()])
        lock.release()

    with fntrace.trace("function", filter=f"{HERE}:takes") as inst:
        before = threading.Thread().name
        _thread.start_new_thread(foreign, ())
        with lock:  # the foreign thread released it: it has run
            pass
        after = threading.Thread().name
    assert int(after.split("-")[1]) == int(before.split("-")[1]) + 1
    assert seen and "_DummyThread" not in seen[0]
    # (3.11 hooks threads through threading.setprofile: a _thread one is not traced.)
    traced = 0 if sys.version_info < (3, 12) else 1
    assert len([ln for ln in inst.read("trace").splitlines() if f"{HERE}:takes" in ln]) == traced


def test_a_failed_callback_keeps_no_frame_alive(hot_path: str) -> None:
    class Big:
        pass

    def fail(*_: Any) -> None:
        raise ValueError("callback bug")

    def run() -> weakref.ref[Big]:
        obj = Big()
        takes(1)
        return weakref.ref(obj)

    ops = Ops(fail, filter=f"{HERE}:takes")
    fntrace.register(ops)
    try:
        with pytest.warns(RuntimeWarning, match="callback bug"):
            ref = run()
    finally:
        fntrace.unregister(ops)
    gc.collect()
    assert ref() is None  # the error's traceback held run()'s frame, and obj with it
    assert type(ops.last_error) is ValueError and ops.last_error.__traceback__ is None


def deep(n: int) -> int:
    return deep(n + 1)


def test_recursion_error_shows_no_fntrace_frame(hot_path: str) -> None:
    with fntrace.trace("function_graph", filter=f"{HERE}:deep", funcgraph_args=1):
        with pytest.raises(RecursionError) as info:
            deep(0)
    files = {f.filename for f in traceback.extract_tb(info.value.__traceback__)}
    assert files == {__file__}


def test_short_lived_threads_keep_their_names(hot_path: str) -> None:
    """A thread's first traced calls come before it registers (3.12+): its buffer
    is still named after it, not Dummy-N (issue 11 item 8), and no thread the
    program sees is made for it."""
    def work() -> None:
        takes(1)

    # threading's own functions too: the thread's first traced call is then its bootstrap
    with fntrace.trace("function", filter=[f"{HERE}:takes", "*:mod:threading"]) as inst:
        threads = [threading.Thread(target=work, name=f"worker-{i}") for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    names = sorted(buf.name for buf in inst.rb.live.buffers() if buf.name != "MainThread")
    assert names == ["worker-0", "worker-1", "worker-2"]
