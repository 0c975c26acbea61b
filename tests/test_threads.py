"""Tracing across threads and across fork().

On 3.11 threads that were already running when the first ops registered are
hooked through the C API (the C profile function's ``install_all``, or
``_hook_other_threads`` for the pure-Python one, backends/profile.py); new
threads through ``threading.setprofile``.  On 3.12+ sys.monitoring is
process-wide.  Either way every thread must be traced with exact counts.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest
from helpers import needs_fork, needs_threads

import fntrace
from fntrace import FtraceRegs, Function, Ops
from fntrace.core import engine

# Both hot paths (C recorders and pure Python), see conftest.py.
pytestmark = pytest.mark.usefixtures("hot_path")

MOD = __name__


def full(qualname: str) -> str:
    return f"{MOD}:{qualname}"


# -- traced functions --------------------------------------------------------------


def work(x: int) -> int:
    return x + 1


def leaf(x: int) -> int:
    return x * 2


def fails(x: int) -> int:
    raise KeyError(x)


def middle(x: int) -> int:
    try:
        fails(x)
    except KeyError:
        pass
    return leaf(x) + leaf(x + 1)


def rec(n: int) -> int:
    return 0 if n == 0 else 1 + rec(n - 1)


def outer(x: int) -> int:
    return middle(x) + rec(3)


def forked_f() -> int:
    return 1


def forked_g() -> int:
    return 2


# -- helpers ----------------------------------------------------------------------


class PerThread:
    """Callback recording (function qualname, event) per thread ident."""

    def __init__(self) -> None:
        self.events: dict[int, list[tuple[str, str]]] = defaultdict(list)
        self.lock = threading.Lock()

    def cb(self, ip: Function, parent: Function | None, ops: Ops, fregs: FtraceRegs) -> None:
        tid = threading.get_ident()
        with self.lock:
            lst = self.events[tid]
        lst.append((ip.qualname, fregs.event))


@pytest.fixture
def fast_switch() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


# -- threads ------------------------------------------------------------------------


@needs_threads
def test_threads_before_and_after_registration(fast_switch: None) -> None:
    n, k = 4, 200
    rec = PerThread()
    ops = Ops(rec.cb, ret=rec.cb, filter=full("work"))
    ready = threading.Barrier(n + 1)
    go = threading.Event()
    idents: dict[str, list[int]] = {"before": [], "after": []}

    def body(kind: str) -> None:
        idents[kind].append(threading.get_ident())
        if kind == "before":
            ready.wait(60.0)
        assert go.wait(60.0)
        for i in range(k):
            work(i)

    before = [threading.Thread(target=body, args=("before",)) for _ in range(n)]
    for thread in before:
        thread.start()
    ready.wait(60.0)  # these threads are running (blocked) before the ops exists
    fntrace.register(ops)
    after: list[threading.Thread] = []
    try:
        after = [threading.Thread(target=body, args=("after",)) for _ in range(n)]
        for thread in after:
            thread.start()
        go.set()
        for thread in before + after:
            thread.join()
    finally:
        go.set()
        fntrace.unregister(ops)
    assert len(idents["before"]) == n
    assert len(idents["after"]) == n
    everyone = set(idents["before"]) | set(idents["after"])
    assert len(everyone) == 2 * n  # all alive at once, so all distinct
    assert set(rec.events) == everyone  # and no other thread (the main one calls no work)
    for tid in everyone:
        assert rec.events[tid] == [("work", "start"), ("work", "return")] * k


def _check_nesting(events: list[tuple[str, str]]) -> None:
    stack: list[str] = []
    for name, event in events:
        if event == "start":
            stack.append(name)
        else:
            assert event in ("return", "unwind")
            assert stack, f"exit of {name} with nothing entered"
            assert stack.pop() == name
    assert stack == []


@needs_threads
def test_entry_exit_pairing_per_thread(fast_switch: None) -> None:
    n, k = 4, 100
    rec = PerThread()
    ops = Ops(rec.cb, ret=rec.cb,
              filter=[full(name) for name in ("outer", "middle", "fails", "leaf", "rec")])
    results: dict[int, int] = {}
    go = threading.Event()

    def body() -> None:
        assert go.wait(60.0)
        total = 0
        for i in range(k):
            total += outer(i)
        results[threading.get_ident()] = total

    fntrace.register(ops)
    threads = [threading.Thread(target=body) for _ in range(n)]
    try:
        for thread in threads:
            thread.start()
        go.set()
        for thread in threads:
            thread.join()
    finally:
        go.set()
        fntrace.unregister(ops)
    expected_total = sum(leaf(i) + leaf(i + 1) + 3 for i in range(k))
    assert len(results) == n
    assert set(results.values()) == {expected_total}
    one_call = [
        ("outer", "start"),
        ("middle", "start"),
        ("fails", "start"), ("fails", "unwind"),
        ("leaf", "start"), ("leaf", "return"),
        ("leaf", "start"), ("leaf", "return"),
        ("middle", "return"),
        ("rec", "start"), ("rec", "start"), ("rec", "start"), ("rec", "start"),
        ("rec", "return"), ("rec", "return"), ("rec", "return"), ("rec", "return"),
        ("outer", "return"),
    ]
    assert set(rec.events) == set(results)
    for tid in results:
        events = rec.events[tid]
        _check_nesting(events)
        assert events == one_call * k


# -- fork ----------------------------------------------------------------------------


def _child(write_fd: int, rec_f: list[str], ops: Ops) -> None:
    """Runs in the forked child; reports through the pipe, never returns."""
    code = 1
    try:
        inherited = len(rec_f)
        for _ in range(5):
            forked_f()
        seen_f = len(rec_f) - inherited
        fntrace.unregister(ops)
        forked_f()
        after_unregister = len(rec_f) - inherited - seen_f
        rec_g: list[str] = []
        ops2 = Ops(lambda ip, parent, op, fregs: rec_g.append(ip.qualname),
                   filter=full("forked_g"))
        fntrace.register(ops2)
        for _ in range(4):
            forked_f()
            forked_g()
        fntrace.unregister(ops2)
        forked_g()
        report = {"inherited": inherited, "seen_f": seen_f,
                  "after_unregister": after_unregister, "rec_g": rec_g,
                  "registered": len(engine.registered_ops()),
                  "backend": engine.backend() is not None}
        os.write(write_fd, json.dumps(report).encode())
        code = 0
    except BaseException as exc:  # report anything to the parent
        os.write(write_fd, json.dumps({"error": repr(exc)}).encode())
    finally:
        os.close(write_fd)
        os._exit(code)


def _wait_single_os_thread() -> None:
    """Joined threads may still be exiting at the OS level; fork only once they are gone
    (3.12+ warns about fork in a multi-threaded process, and rightly so)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("needs a single-threaded process; a pytest-xdist worker runs a thread "
                    "of its own (fork from threads: test_lifecycle.py)")
    assert threading.active_count() == 1
    if not os.path.isdir("/proc/self/task"):
        return
    deadline = time.monotonic() + 60.0
    while len(os.listdir("/proc/self/task")) > 1:
        assert time.monotonic() < deadline, "other OS threads are still running"
        time.sleep(0.001)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
@needs_fork
def test_fork_child_keeps_tracing() -> None:
    _wait_single_os_thread()  # fork with no other thread around
    rec_f: list[str] = []
    ops = Ops(lambda ip, parent, op, fregs: rec_f.append(ip.qualname), filter=full("forked_f"))
    fntrace.register(ops)
    try:
        for _ in range(3):
            forked_f()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read_fd)
            _child(write_fd, rec_f, ops)
        os.close(write_fd)
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        report = json.loads(b"".join(chunks))
        assert os.waitstatus_to_exitcode(status) == 0, report
        assert report == {"inherited": 3, "seen_f": 5, "after_unregister": 0,
                          "rec_g": ["forked_g"] * 4, "registered": 0, "backend": False}
        # The parent is unaffected: its ops is still there and still traces.
        assert engine.registered_ops() == [ops]
        assert rec_f == ["forked_f"] * 3
        forked_f()
        forked_f()
        assert rec_f == ["forked_f"] * 5
    finally:
        fntrace.unregister(ops)
    forked_f()
    assert rec_f == ["forked_f"] * 5
