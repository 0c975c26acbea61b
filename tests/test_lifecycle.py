"""A recording's life: forks from threads, children ended by SIGTERM or SIGKILL,
a file that cannot grow, thread names, and fntrace's threads kept out of the
program's sight.  Every run here has a generous hang timeout and no other timing
assertion."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fntrace.formats.tracefile import TraceWriter, child_paths, open_trace
from fntrace.recording.recorder import Recorder, header_for
from fntrace.tracing.instance import Instance

# Every test here runs processes (fork, signals, rlimits): none under WebAssembly.
resource = pytest.importorskip("resource", reason="needs processes and resource limits")

ROOT = str(Path(__file__).resolve().parent.parent)
HANG = 240  # seconds: only a hang gets anywhere near it


def _env(pure: bool = False) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("FNTRACE_PURE", None)
    if pure:
        env["FNTRACE_PURE"] = "1"
    return env


def _record(tmp: Path, script: str, *opts: str, args: tuple[str, ...] = (),
            pure: bool = False, **kw: object) -> subprocess.CompletedProcess[str]:
    prog = tmp / "prog.py"
    prog.write_text(textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, "-m", "fntrace", "record", "-o", str(tmp / "t.dat"), *opts, "--",
         str(prog), *args], capture_output=True, text=True, env=_env(pure), cwd=tmp,
        timeout=HANG, **kw)  # type: ignore[call-overload]


def _info(path: Path) -> str:
    return subprocess.run([sys.executable, "-m", "fntrace", "info", str(path)],
                          capture_output=True, text=True, env=_env(), timeout=HANG).stdout


# -- 1. fork() from threads ------------------------------------------------------------

FORK_FROM_THREADS = """
    import os, threading, time, warnings
    warnings.simplefilter("ignore")  # 3.12+: "multi-threaded, use of fork() may deadlock"
    bad = []
    def work(x):
        return x + 1
    def fork_and_wait(i):
        work(i)
        pid = os.fork()
        if pid == 0:
            work(i)
            os._exit(50)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60:
            got, status = os.waitpid(pid, os.WNOHANG)
            if got:
                if os.waitstatus_to_exitcode(status) != 50:
                    bad.append(("exit", status))
                return
            time.sleep(0.01)
        bad.append(("hung", pid))
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    for r in range(4):
        ts = [threading.Thread(target=fork_and_wait, args=(i,)) for i in range(12)]
        [t.start() for t in ts]; [t.join() for t in ts]
    print("done", bad)
"""


@pytest.mark.parametrize("follow", [False, True], ids=["nofollow", "follow"])
@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
def test_fork_from_threads_never_hangs(tmp_path: Path, follow: bool, pure: bool) -> None:
    """Issue 11.1: 48 forks from 12 threads at a time, each child exits 50 at once."""
    opts = ("-t", "function", "-F", "work") + (("--follow",) if follow else ())
    res = _record(tmp_path, FORK_FROM_THREADS, *opts, pure=pure)
    assert (res.returncode, res.stdout, res.stderr) == (0, "done []\n", "")
    files = [open_trace(p) for p in [str(tmp_path / "t.dat"), *child_paths(
        str(tmp_path / "t.dat"))]]
    assert [tf.problems for tf in files] == [[]] * len(files)
    assert len(files) == (49 if follow else 1)
    assert files[0].events == 48  # the parent's 48 work() calls
    if follow:
        assert sorted(tf.events for tf in files[1:]) == [1] * 48


def _held_at_fork(lock: Any, in_child: Callable[[], object]) -> int:
    """Fork while another thread holds ``lock``; the exit status of a child that runs
    ``in_child`` (fntrace code taking that lock) and then exits 7."""
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            release.wait()

    t = threading.Thread(target=holder)
    t.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        try:
            signal.alarm(60)  # a hang ends as SIGALRM, not as a hung test run
            in_child()
            os._exit(7)
        except BaseException:
            os._exit(3)
    release.set()
    t.join()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_child_renews_locks_held_at_fork(tmp_path: Path) -> None:
    """Deterministic: the recorder's, the buffers' and the instance's locks are held by
    another thread at fork time; the child still finishes, writes and exits."""
    inst = Instance("lifecycle-test")
    rec = Recorder(inst, str(tmp_path / "r.dat"), header_for(inst, ["x"], {}))
    try:
        inst.write("current_tracer", "function")
        cases: list[tuple[Any, Callable[[], object]]] = [
            (rec.lock, rec.finish),
            (inst.rb.live.lock, inst.rb.live.new_buffer),
            (inst.lock, lambda: inst.write("set_ftrace_notrace_pid", "1"))]
        assert [_held_at_fork(lock, action) for lock, action in cases] == [7, 7, 7]
    finally:
        inst.close()
        rec.writer.close()


# -- 2. multiprocessing workers ended by Pool.terminate() (SIGTERM) ----------------------

POOL = """
    import concurrent.futures as cf
    import multiprocessing as mp
    import sys

    def work(x):
        return x * x

    if __name__ == "__main__":
        kind, method = sys.argv[1], sys.argv[2]
        ctx = mp.get_context(method)
        if kind == "with":      # leaving the block calls Pool.terminate(): SIGTERM
            with ctx.Pool(3) as p:
                r = p.map(work, range(30), chunksize=1)
        elif kind == "close":
            p = ctx.Pool(3)
            r = p.map(work, range(30), chunksize=1)
            p.close()
            p.join()
        else:
            with cf.ProcessPoolExecutor(3, mp_context=ctx) as ex:
                r = list(ex.map(work, range(30)))
        print(sum(r))
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("kind", ["with", "close", "executor"])
def test_pool_workers_recorded_whole(tmp_path: Path, kind: str, method: str) -> None:
    """Issue 11.2: every call of every worker, every file with its footer."""
    res = _record(tmp_path, POOL, "--follow", "-F", "work", args=(kind, method))
    assert (res.returncode, res.stdout) == (0, "8555\n"), res.stderr
    assert "Traceback" not in res.stderr
    paths = [str(tmp_path / "t.dat"), *child_paths(str(tmp_path / "t.dat"))]
    files = [open_trace(p) for p in paths]
    assert {tf.path: tf.problems for tf in files} == {p: [] for p in paths}
    recs = [r for tf in files for r in tf.records()]
    assert sum(1 for r in recs if r.kind == "entry") == 30
    assert sum(1 for r in recs if r.kind == "exit") == 30
    assert len(recs) == 60
    assert "status:      complete" in _info(tmp_path / "t.dat")


def test_sigterm_during_finish_is_deferred(tmp_path: Path) -> None:
    """A SIGTERM whose handler runs inside finish (the worker was already exiting)
    acts only once the footer is written."""
    acted: list[tuple[int, bool]] = []
    inst = Instance("lifecycle-term")
    path = tmp_path / "d.dat"

    class Interrupted(TraceWriter):
        def finish(self, end_ts: int, extra: dict[str, object] | None = None) -> None:
            signal.raise_signal(signal.SIGTERM)  # lands here, before the footer
            super().finish(end_ts, extra)

    old = signal.getsignal(signal.SIGTERM)
    try:
        inst.write("current_tracer", "function")
        header = header_for(inst, ["x"], {})
        rec = Recorder(inst, str(path), header, writer=Interrupted(str(path), header))
        rec.start()
        signal.signal(signal.SIGTERM, lambda s, f: rec.interrupt(
            s, lambda n: acted.append((n, open_trace(str(path)).footer is not None))))
        rec.finish()
    finally:
        signal.signal(signal.SIGTERM, old)
        inst.close()
    assert acted == [(signal.SIGTERM, True)]
    assert open_trace(str(path)).problems == []


def test_sigterm_as_finish_starts_is_deferred_or_finishes(tmp_path: Path) -> None:
    """A second SIGTERM whose handler runs the instant the file is marked finished
    (the first handler already finishing it) must not take the file for finished
    and die before its footer is written: it is deferred like one inside finish."""
    acted: list[tuple[int, bool]] = []
    inst = Instance("lifecycle-term2")
    path = tmp_path / "e.dat"

    class Nested(Recorder):
        @property
        def finished(self) -> bool:
            return self.__dict__.get("_done", False)  # type: ignore[no-any-return]

        @finished.setter
        def finished(self, value: bool) -> None:
            self.__dict__["_done"] = value
            if value:
                signal.raise_signal(signal.SIGTERM)  # its handler runs right after this

    old = signal.getsignal(signal.SIGTERM)
    try:
        inst.write("current_tracer", "function")
        rec = Nested(inst, str(path), header_for(inst, ["x"], {}))
        rec.start()
        signal.signal(signal.SIGTERM, lambda s, f: rec.interrupt(
            s, lambda n: acted.append((n, open_trace(str(path)).footer is not None))))
        rec.finish()
    finally:
        signal.signal(signal.SIGTERM, old)
        inst.close()
    assert acted == [(signal.SIGTERM, True)]
    assert open_trace(str(path)).problems == []


SIGKILLED = """
    import os, signal, sys, time
    from fntrace.formats.tracefile import open_trace
    def work(x):
        return x + 1
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for i in range(25):
            work(i)
        os.write(w, b"x")
        while True:
            time.sleep(1)
    os.read(r, 1)
    path = sys.argv[1] + f".{pid}"
    deadline = time.monotonic() + 120  # only a recorder that never flushes gets here
    while open_trace(path).events < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print(pid)
"""


def test_sigkill_loses_only_the_last_flush_interval(tmp_path: Path) -> None:
    """Issue 11.2: SIGKILL can't be caught; the periodic flush has the child's calls
    on disk anyway, and info says the file was cut and what that costs."""
    res = _record(tmp_path, SIGKILLED, "--follow", "-F", "work",
                  args=(str(tmp_path / "t.dat"),))
    assert res.returncode == 0, res.stderr
    child = tmp_path / f"t.dat.{res.stdout.strip()}"
    tf = open_trace(str(child))
    assert tf.events == 50
    assert tf.footer is None
    text = _info(tmp_path / "t.dat")
    assert "status:      truncated or corrupt" in text
    assert f"{child}: cut at byte {child.stat().st_size}, 50 events kept; the last " \
           "event read is at +" in text
    assert "loses at most its last 0.1 s" in text


# -- 3. thread names, a file that cannot grow -----------------------------------------

THREADS = """
    import threading, _thread
    def work(x):
        return x + 1
    def body(i):
        work(i)
    ts = [threading.Thread(target=body, args=(i,), name=f"worker-{i}") for i in range(5)]
    for t in ts:
        t.start()
        t.join()   # short-lived: gone long before the recorder's next write
    lone = threading.Thread(target=body, args=(9,))
    lone.start(); lone.join()
    print(lone.name, threading.active_count(), [t.name for t in threading.enumerate()])
"""


@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
def test_short_lived_threads_keep_names_and_fntrace_is_invisible(
        tmp_path: Path, pure: bool) -> None:
    """Issue 11.8 and 12.5: names as the program gave them, no Dummy-N, and the
    program's thread count, list and Thread-N numbering as untraced."""
    prog = tmp_path / "plain.py"
    prog.write_text(textwrap.dedent(THREADS))
    plain = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True,
                           timeout=HANG).stdout
    assert plain == "Thread-1 (body) 1 ['MainThread']\n"
    res = _record(tmp_path, THREADS, "-F", "work", pure=pure)
    assert (res.returncode, res.stdout, res.stderr) == (0, plain, "")
    tf = open_trace(str(tmp_path / "t.dat"))
    assert sorted(t.name for t in tf.threads.values()) == [
        "Thread-1 (body)", "worker-0", "worker-1", "worker-2", "worker-3", "worker-4"]
    text = _info(tmp_path / "t.dat")
    for i in range(5):
        assert f"  worker-{i}-" in text
    assert "Dummy" not in text


FILLER = """
    import os
    def work(blob):
        return len(blob)
    for i in range(4000):
        work(os.urandom(48).hex())  # incompressible arguments
    print("program done")
"""


def _small_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG


def test_file_that_cannot_grow_said_once(tmp_path: Path) -> None:
    """Issue 11.8: a write that fails (here EFBIG past RLIMIT_FSIZE, as ENOSPC would)
    is reported once, the program runs on untouched, and info says where it was cut."""
    # 8 KiB buffers: a full one is written at once, so the file grows by chunks
    # of at most that, whatever the writer thread's timing.
    res = _record(tmp_path, FILLER, "-t", "function", "-F", "work", "--args",
                  "--buffer-size", "8", preexec_fn=_small_files)
    assert (res.returncode, res.stdout) == (0, "program done\n")
    path = tmp_path / "t.dat"
    assert path.stat().st_size == 65536
    assert res.stderr == (f"fntrace record: {path}: File too large; the file is cut at byte "
                          f"65536; recording stopped, the program goes on untraced\n")
    tf = open_trace(str(path))
    assert 0 < tf.events < 4000
    text = _info(path)
    assert f"{path}: cut at byte 65536, {tf.events} events kept" in text


# -- 4. fntrace's writer is no thread of the program's ---------------------------------

JOIN_ALL = """
    import threading
    def work(x):
        return x + 1
    go = threading.Event()
    def late():
        go.wait()
        for i in range(5):
            work(i)
    threading.Thread(target=late, name="late").start()
    for i in range(3):
        work(i)
    # A program that joins every thread but its own: the writer must not be one
    # (it would never end).
    helper = threading.Thread(target=go.set, name="setter")
    helper.start()
    for t in threading.enumerate():
        if t is not threading.current_thread():
            t.join()
    print(threading.active_count())
"""

LINGER = """
    import threading, time
    def work(x):
        return x + 1
    go = threading.Event()
    def late():
        go.wait()
        for i in range(5):
            work(i)
    threading.Thread(target=late, name="late").start()
    for i in range(3):
        work(i)
    go.set()   # main ends now; `late` may still run: the interpreter joins it first
"""


@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
def test_program_joins_all_threads_and_exit_waits_for_its_threads(
        tmp_path: Path, pure: bool) -> None:
    """Issue 12.5: joining every thread in threading.enumerate() ends as untraced;
    a non-daemon thread still running after main returns is recorded whole (the
    file is finished after the interpreter joined it)."""
    res = _record(tmp_path, JOIN_ALL, "-t", "function", "-F", "work", pure=pure)
    assert (res.returncode, res.stdout, res.stderr) == (0, "1\n", "")
    assert open_trace(str(tmp_path / "t.dat")).events == 8
    res = _record(tmp_path, LINGER, "-t", "function", "-F", "work", pure=pure)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")
    tf = open_trace(str(tmp_path / "t.dat"))
    assert (tf.events, tf.problems) == (8, [])
    assert sorted(t.name for t in tf.threads.values()) == ["MainThread", "late"]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pool_terminate_pure_path(tmp_path: Path, method: str) -> None:
    """Issue 11.2 on the pure path: ``with Pool`` (terminate) loses nothing."""
    res = _record(tmp_path, POOL, "--follow", "-F", "work", args=("with", method),
                  pure=True)
    assert (res.returncode, res.stdout) == (0, "8555\n"), res.stderr
    files = [open_trace(p) for p in [str(tmp_path / "t.dat"),
                                     *child_paths(str(tmp_path / "t.dat"))]]
    assert [tf.problems for tf in files] == [[]] * len(files)
    assert sum(tf.events for tf in files) == 60


FORK_WARNING = """
    import os, re, sys, threading, warnings
    def work(x):
        return x + 1
    stop = threading.Event()
    if sys.argv[1] == "thread":  # a thread of the program's own: 3.12+ warn, as untraced
        threading.Thread(target=stop.wait).start()
    for round in range(2):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            work(round)
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        print([re.sub(r"pid=\\d+", "pid=N", str(w.message)) for w in got])
    stop.set()
"""


@pytest.mark.parametrize("follow", [False, True], ids=["nofollow", "follow"])
@pytest.mark.parametrize("threads", ["alone", "thread"])
def test_fork_warning_as_untraced(tmp_path: Path, threads: str, follow: bool) -> None:
    """3.12+ warn at fork when the process has several OS threads: the recorder's
    writer must not make a single-threaded program get it, nor hide it otherwise."""
    prog = tmp_path / "plain.py"
    prog.write_text(textwrap.dedent(FORK_WARNING))
    plain = subprocess.run([sys.executable, str(prog), threads], capture_output=True,
                           text=True, timeout=HANG)
    warns = sys.version_info >= (3, 12) and threads == "thread"
    expected = ("['This process (pid=N) is multi-threaded, use of fork() may lead to "
                "deadlocks in the child.']\n" if warns else "[]\n") * 2
    assert (plain.returncode, plain.stdout) == (0, expected)
    opts = ("-t", "function", "-F", "work") + (("--follow",) if follow else ())
    res = _record(tmp_path, FORK_WARNING, *opts, args=(threads,))
    assert (res.returncode, res.stdout, res.stderr) == (0, expected, "")
    assert open_trace(str(tmp_path / "t.dat")).events == 2


TERM_MISSED = """
    import os, signal, sys, threading, time
    def work(x):
        return x + 1
    work(1)
    if sys.argv[1] == "cleared":
        # As multiprocessing's forkserver does in each worker it forks: no wakeup fd.
        os.write(1, b"%d\\n" % signal.set_wakeup_fd(-1))
    r, w = os.pipe()
    def term():
        main = threading.main_thread().native_id
        while open(f"/proc/self/task/{main}/stat").read().rsplit(")", 1)[1].split()[0] != "S":
            time.sleep(0.01)
        time.sleep(0.2)
        # To this thread: its C-level handler notes the signal, but the main thread,
        # blocked in read(), is never interrupted to run the Python handler.
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    threading.Thread(target=term, daemon=True).start()
    os.read(r, 1)   # blocks for good: only the SIGTERM ends this program
"""


@pytest.mark.parametrize("wakeup", ["untouched", "cleared"])
def test_sigterm_the_main_thread_missed_still_ends_the_program(
        tmp_path: Path, wakeup: str) -> None:
    """Untraced, SIGTERM kills whichever thread it lands on; traced, its Python handler
    must still run when the main thread is blocked in C and was not interrupted (the
    writer hears of it through the signal wakeup fd and interrupts the main thread),
    also after the program cleared the wakeup fd (a forkserver worker does): an empty
    slot is fntrace's again."""
    prog = tmp_path / "plain.py"
    prog.write_text(textwrap.dedent(TERM_MISSED))
    plain = subprocess.run([sys.executable, str(prog), wakeup], capture_output=True,
                           text=True, timeout=HANG)
    assert (plain.returncode, plain.stdout) == (
        -signal.SIGTERM, "-1\n" if wakeup == "cleared" else "")
    res = _record(tmp_path, TERM_MISSED, "-t", "function", "-F", "work", args=(wakeup,))
    assert (res.returncode, res.stdout, res.stderr) == (-signal.SIGTERM, plain.stdout, "")
    tf = open_trace(str(tmp_path / "t.dat"))
    assert (tf.events, tf.problems) == (1, [])


WAKEUP_FD_VIEW = """
    import os, signal, sys, threading
    names = {-1: "none"}
    def pipe(name, blocking=False):
        r, w = os.pipe()
        os.set_blocking(w, blocking)
        names[w] = name
        return r, w
    (ra, a), (rb, b), (_, blocking) = pipe("a"), pipe("b"), pipe("blocking", True)
    seen = []
    def call(*args, **kw):
        try:
            seen.append(names.get(signal.set_wakeup_fd(*args, **kw), "fntrace's?"))
        except Exception as exc:
            seen.append(f"{type(exc).__name__}: {exc}".replace(str(blocking), "N"))
    call(-1); call(a); call(b, warn_on_full_buffer=False); call(-1); call(-1); call(a)
    call(blocking); call(10_000); call("x"); call(a, bogus=1); call(); call(True)
    call(b)
    call(a)
    # The program's fd hears the program's signals, traced too.
    signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.raise_signal(signal.SIGUSR1)
    seen.append(list(os.read(ra, 64)))
    pid = os.fork()  # before any thread: 3.12+ would warn of one still ending
    if pid == 0:  # a forked child sees its parent's setting, and can change it
        call(-1); call(b); call(-1)
        os.write(1, f"child {seen[-3:]}\\n".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    th = threading.Thread(target=call, args=(-1,))  # ValueError, nothing changed
    th.start(); th.join()
    call(-1); call(-1)
    print(seen)
"""


@pytest.mark.parametrize("follow", [False, True], ids=["nofollow", "follow"])
def test_set_wakeup_fd_as_untraced(tmp_path: Path, follow: bool) -> None:
    """The program's set_wakeup_fd calls return and raise what they do untraced (never
    fntrace's pipe), in the main thread, another thread, and a forked child; the
    program's fd gets its signals."""
    prog = tmp_path / "plain.py"
    prog.write_text(textwrap.dedent(WAKEUP_FD_VIEW))
    plain = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True,
                           timeout=HANG)
    assert (plain.returncode, plain.stderr) == (0, "")
    child, parent = plain.stdout.splitlines()
    assert child == "child ['a', 'none', 'b']"
    got = eval(parent)  # the oracle's own sequence, pinned: what fntrace must reproduce
    assert [x for x in got if x in ("none", "a", "b", [10])] == [
        "none", "none", "a", "b", "none", "none", "a", "b", [10], "a", "none"]
    assert "ValueError: set_wakeup_fd only works in main thread" in got[-3]
    assert len(got) == 18 and sum(str(x).startswith(("ValueError", "TypeError", "OSError"))
                                  for x in got) == 7
    opts = ("-t", "function", "-F", "call") + (("--follow",) if follow else ())
    res = _record(tmp_path, WAKEUP_FD_VIEW, *opts)
    assert (res.returncode, res.stdout, res.stderr) == (0, plain.stdout, "")
