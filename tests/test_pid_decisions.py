"""The pid filters (set_ftrace_pid, set_ftrace_notrace_pid) decided once per thread.

Why: a thread the filters refuse used to cost more per traced call than one
recorded with its arguments (bench/RESULTS_PYTEST.md): the pure path asked
the filters (a thread id system call and a Python call) at every event, and
the C graph recorder looked for the refused thread's missing stack at every
exit.  Each thread is now decided once, again only when the filters change
(Instance.pid_gen) or in a forked child, whose thread has an id of its own.
These tests hold both paths to exact event counts while the filters change
during the run, and count the questions themselves.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from helpers import needs_fork, needs_threads

from fntrace.core.oscaps import native_id
from fntrace.tracing.instance import Instance, trace

TRACERS = ["function", "function_graph"]


def pd_leaf(x: int) -> int:
    return x + 1


def pd_wrap(inst: Instance, text: str) -> int:
    inst.write("set_ftrace_pid", text)  # this call's entry was let in, its exit is written
    return pd_leaf(0)


def calls(n: int) -> None:
    for i in range(n):
        pd_leaf(i)


def counts(inst: Instance) -> dict[tuple[int, str, str], int]:
    """(thread id, event tag, function qualname) -> events."""
    out: Counter[tuple[int, str, str]] = Counter()
    for buf in inst.rb.live.buffers():
        for ev in buf.events:
            if ev[2] in ("E", "X", "F"):
                out[(buf.tid, ev[2], ev[3].qualname)] += 1
    return dict(out)


class Worker:
    """A thread that runs what it is given, one job at a time, in order."""

    def __init__(self) -> None:
        self.jobs: list[Callable[[], None] | None] = []
        self.cond = threading.Condition()
        self.done = 0
        self.tid = 0
        self.thread = threading.Thread(target=self._run)
        self.thread.start()
        self.run(lambda: None)  # its tid known

    def _run(self) -> None:
        self.tid = native_id()
        while True:
            with self.cond:
                self.cond.wait_for(lambda: bool(self.jobs))
                job = self.jobs.pop(0)
            if job is None:
                return
            job()
            with self.cond:
                self.done += 1
                self.cond.notify_all()

    def run(self, job: Callable[[], None]) -> None:
        """Run ``job`` in the thread and wait for it."""
        with self.cond:
            target = self.done + 1
            self.jobs.append(job)
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.done >= target)

    def stop(self) -> None:
        with self.cond:
            self.jobs.append(None)
            self.cond.notify_all()
        self.thread.join()


def tags(tracer: str) -> tuple[str, ...]:
    return ("F",) if tracer == "function" else ("E", "X")


@needs_threads
@pytest.mark.parametrize("tracer", TRACERS)
def test_filters_changed_during_the_run_exact_counts(hot_path: str, tracer: str) -> None:
    main = native_id()
    worker = Worker()
    try:
        with trace(tracer, filter="pd_*") as inst:
            calls(3)                                    # no filter: main 3
            worker.run(lambda: calls(2))                # worker 2
            inst.write("set_ftrace_pid", str(worker.tid))
            calls(4)                                    # main refused
            worker.run(lambda: calls(5))                # worker 5 more
            inst.write("set_ftrace_notrace_pid", str(worker.tid))
            calls(6)                                    # main not in the pids
            worker.run(lambda: calls(7))                # notrace wins
            inst.write("set_ftrace_notrace_pid", "")
            inst.write("set_ftrace_pid", str(main))
            calls(8)                                    # main 8 more
            worker.run(lambda: calls(9))                # worker refused
            inst.write("max_graph_depth", "0")          # another setting: nothing changes
            calls(1)                                    # main 1 more
            worker.run(lambda: calls(1))                # worker still refused
            inst.write("set_ftrace_pid", f"{main} {worker.tid}")
            calls(2)
            worker.run(lambda: calls(3))
            inst.write("set_ftrace_pid", "")            # gone inside the call: its
            pd_wrap(inst, str(worker.tid))              # exit only, pd_leaf refused
            inst.write("tracing_on", "0")
            got = counts(inst)
    finally:
        worker.stop()
    want: dict[tuple[int, str, str], int] = {}
    for tag in tags(tracer):
        want[(main, tag, "pd_leaf")] = 3 + 8 + 1 + 2
        want[(worker.tid, tag, "pd_leaf")] = 2 + 5 + 3
        if tracer == "function" or tag == "E":
            want[(main, tag, "pd_wrap")] = 1
    if tracer == "function_graph":  # its exit is seen: the entry was pushed
        want[(main, "X", "pd_wrap")] = 1
    assert got == want


def counting(inst: Instance) -> Counter[int]:
    """Count the questions to the instance's pid filters, by thread."""
    asked: Counter[int] = Counter()
    real = inst.pid_allowed

    def pid_allowed(tid: int) -> bool:
        asked[native_id()] += 1
        return real(tid)

    inst.pid_allowed = pid_allowed  # type: ignore[method-assign]
    return asked


@needs_threads
@pytest.mark.parametrize("tracer", TRACERS)
def test_each_thread_asked_once_per_filter(hot_path: str, tracer: str) -> None:
    main = native_id()
    worker = Worker()
    try:
        with trace(tracer, filter="pd_*") as inst:
            asked = counting(inst)
            inst.write("set_ftrace_pid", str(worker.tid))
            calls(50)
            worker.run(lambda: calls(50))
            assert asked == {main: 1, worker.tid: 1}
            inst.write("max_graph_depth", "3")          # not the pid filter
            inst.write("options/funcgraph-retval", "1")
            calls(50)
            worker.run(lambda: calls(50))
            assert asked == {main: 1, worker.tid: 1}
            inst.write("set_ftrace_notrace_pid", str(main))  # the filter: decided again
            calls(50)
            worker.run(lambda: calls(50))
            assert asked == {main: 2, worker.tid: 2}
            inst.write("tracing_on", "0")
            got = counts(inst)
    finally:
        worker.stop()
    assert got == {(worker.tid, tag, "pd_leaf"): 150 for tag in tags(tracer)}


class CountingLocal(threading.local):
    """A threading.local that counts the failed lookups of its attributes."""

    misses: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        CountingLocal.misses[name] += 1
        raise AttributeError(name)


def test_refused_thread_looks_for_its_graph_stack_once(hot_path: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused thread's exits used to look for its missing stack each (an
    AttributeError made and dropped per call on both paths)."""
    CountingLocal.misses.clear()
    with monkeypatch.context() as m:
        m.setattr(threading, "local", CountingLocal)
        inst = trace("function_graph", filter="pd_*", funcgraph_args=1, funcgraph_retval=1)
    with inst:
        inst.write("set_ftrace_pid", str(native_id() + 1))
        calls(200)
        inst.write("tracing_on", "0")
        assert counts(inst) == {}
    assert CountingLocal.misses["stack"] == 1
    assert CountingLocal.misses["pid"] <= 1  # the pure path's decision, made once


def _child_events(inst: Instance, write_fd: int) -> None:  # pragma: no cover - the child
    code = 1
    try:
        inst.write("trace", "")
        calls(3)
        got = counts(inst)
        os.write(write_fd, json.dumps(sum(got.values())).encode())
        code = 0
    finally:
        os._exit(code)


def _single_os_thread() -> None:
    """fork with no other OS thread around (3.12+ warns of one, rightly)."""
    if os.environ.get("PYTEST_XDIST_WORKER") or threading.active_count() != 1:
        pytest.skip("needs a single-threaded process")
    if os.path.isdir("/proc/self/task"):
        deadline = time.monotonic() + 60.0
        while len(os.listdir("/proc/self/task")) > 1:  # joined threads still ending
            assert time.monotonic() < deadline, "other OS threads are still running"
            time.sleep(0.001)


@needs_fork
@pytest.mark.parametrize("tracer", TRACERS)
@pytest.mark.parametrize(("which", "child_events"), [("set_ftrace_pid", 0),
                                                     ("set_ftrace_notrace_pid", 3)])
def test_forked_child_is_decided_again(hot_path: str, tracer: str, which: str,
                                       child_events: int) -> None:
    """The child's thread has an id of its own: the parent's decision for the
    thread that forked is not the child's (set_ftrace_pid names the parent: the
    child is not traced; set_ftrace_notrace_pid names it: the child is)."""
    _single_os_thread()
    per_call = len(tags(tracer))
    with trace(tracer, filter="pd_*") as inst:
        inst.write(which, str(native_id()))
        calls(2)  # the parent's decision made (and kept) before the fork
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(read_fd)
            _child_events(inst, write_fd)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            report = f.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert json.loads(report) == child_events * per_call
        calls(1)  # the parent keeps its own decision
        inst.write("tracing_on", "0")
        parent = sum(counts(inst).values())
    assert parent == (3 if which == "set_ftrace_pid" else 0) * per_call
