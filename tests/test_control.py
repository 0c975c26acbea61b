"""Live control: a running target process steered from this one.

The target is a subprocess that calls ``fntrace.control.listen()`` and loops
forever over ``ctlwork.step(n)``, which calls ``alpha(n)`` → ``gamma(n)``
and, for even ``n``, ``beta(n)``; it writes its loop counter to a progress
file after every iteration.  That call pattern is the oracle: with
``func-args`` on, the function tracer's lines must be exactly
``step(n) alpha(n) gamma(n) [beta(n)]`` for consecutive ``n``, with the
exact parents.  Hostile clients must leave the counter advancing and the
server answering.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import CTL_WORK, default_sigint, needs_unix_sockets

import fntrace
from fntrace.control import Client, ControlError, ProtocolError, listen
from fntrace.control import server as server_mod
from fntrace.control.protocol import MAX_REQUEST
from fntrace.control.runtime import ensure_dir, runtime_dir

# The control server and its clients talk over Unix sockets to other processes.
pytestmark = needs_unix_sockets

ROOT = str(Path(fntrace.__file__).resolve().parent.parent)





TARGET = '''\
import os, sys, time
import ctlwork
{listen}
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
n = 0
while True:
    ctlwork.step(n)
    n += 1
    os.pwrite(fd, b"%20d" % n, 0)
    time.sleep(0.001)
'''
LISTEN = "import fntrace.control; fntrace.control.listen(stream_queue_bytes=int(sys.argv[2]))"

LINE = re.compile(r"^ *(?P<task>\S.*?)-(?P<pid>\d+) +\[(?P<cpu>\d{3})\] (?P<flags>\S{5}) +"
                  r"(?P<ts>\d+\.\d{6}): (?P<func>[^ (]+)(?:\((?P<args>.*)\))?"
                  r"(?: <-(?P<parent>\S+))?$")


# -- fixtures -----------------------------------------------------------------------

@pytest.fixture
def rundir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private XDG_RUNTIME_DIR (short: AF_UNIX paths are limited to 108 bytes)."""
    base = tempfile.mkdtemp(prefix="fnctl", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", base)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Target:
    proc: subprocess.Popen[bytes]
    progress_file: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def progress(self) -> int:
        with open(self.progress_file, "rb") as f:
            text = f.read().strip()
        return int(text) if text else 0

    def advances(self, by: int = 20, within: float = 60.0) -> bool:
        """The loop counter moves on by ``by`` (``within`` is a hang guard only: it
        returns as soon as it has, however slow a loaded machine makes that)."""
        start = self.progress()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.progress() >= start + by and self.proc.poll() is None:
                return True
            time.sleep(0.01)
        return False


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT
    return e


def wait_for(pred: Callable[[], bool], within: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def start_target(workdir: str, argv_head: list[str] | None = None, listen_code: str = LISTEN,
                 queue_bytes: int = 1 << 20) -> Target:
    Path(workdir, "ctlwork.py").write_text(CTL_WORK)
    Path(workdir, "target.py").write_text(TARGET.format(listen=listen_code))
    progress = os.path.join(workdir, "progress")
    Path(progress).write_bytes(b"")
    e = env()
    e["PYTHONPATH"] = f"{workdir}{os.pathsep}{ROOT}"
    head = argv_head or [sys.executable]
    proc = subprocess.Popen([*head, os.path.join(workdir, "target.py"), progress,
                             str(queue_bytes)], env=e, cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    target = Target(proc, progress)
    sock = os.path.join(runtime_dir(), f"{proc.pid}.sock")
    try:
        wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, what="the socket")
        assert proc.poll() is None, proc.communicate()
        wait_for(lambda: target.progress() > 0, what="the target's loop")
    except BaseException:
        stop(target)
        raise
    return target


def stop(target: Target) -> None:
    if target.proc.poll() is None:
        target.proc.kill()
    target.proc.wait(10)
    assert target.proc.stdout is not None and target.proc.stderr is not None
    target.proc.stdout.close()
    target.proc.stderr.close()


@pytest.fixture
def target(rundir: str) -> Iterator[Target]:
    work = tempfile.mkdtemp(prefix="fnwork", dir="/tmp")
    t = start_target(work)
    try:
        yield t
    finally:
        stop(t)
        shutil.rmtree(work, ignore_errors=True)


def ctl(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fntrace", *args], env=env(),
                          capture_output=True, text=True, timeout=timeout)


# -- the oracle ---------------------------------------------------------------------

def records(lines: list[str]) -> list[tuple[str, str | None, str | None]]:
    out = []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        m = LINE.match(line.rstrip("\n"))
        assert m is not None, line
        out.append((m["func"], m["args"], m["parent"]))
    return out


def expected_from(n: int, count: int) -> list[tuple[str, str | None, str | None]]:
    out: list[tuple[str, str | None, str | None]] = []
    while len(out) < count:
        out += [("ctlwork:step", f"n={n}", "__main__:<module>"),
                ("ctlwork:alpha", f"n={n}", "ctlwork:step"),
                ("ctlwork:gamma", f"n={n}", "ctlwork:alpha")]
        if n % 2 == 0:
            out.append(("ctlwork:beta", f"n={n}", "ctlwork:step"))
        n += 1
    return out[:count]


def check_calls(lines: list[str], minimum: int = 12) -> int:
    """The lines, from the first step(n), are exactly the oracle's; returns n."""
    recs = records(lines)
    first = next(i for i, r in enumerate(recs) if r[0] == "ctlwork:step")
    recs = recs[first:]
    assert len(recs) >= minimum, recs
    n = int(str(recs[0][1]).removeprefix("n="))
    assert recs == expected_from(n, len(recs))
    return n


def take(lines: Iterator[str], count: int) -> list[str]:
    out: list[str] = []
    for line in lines:
        out.append(line)
        if len(out) >= count:
            break
    return out


def stats(client: Client) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.split() for ln in client.read("control/stats").splitlines())}


def raw(pid: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(os.path.join(runtime_dir(), f"{pid}.sock"))
    return sock


def recv_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a reset after the data counts as closed)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


# -- steering a running process -------------------------------------------------------

def test_filters_and_tracers_from_the_client(target: Target) -> None:
    with Client(target.pid) as c:
        assert c.read("current_tracer") == "nop\n"
        assert c.hello()["pid"] == target.pid
        c.write("set_ftrace_filter", "ctlwork:*")
        c.write("options/func-args", "1")
        c.write("current_tracer", "function")
        assert c.read("current_tracer") == "function\n"
        assert c.read("set_ftrace_filter") == "ctlwork:*\n"
        pipe = c.pipe(timeout=10)
        try:
            check_calls(take(pipe, 60), minimum=40)
        finally:
            pipe.close()

        # Narrow the filter: beta alone, for every even n, consecutively.
        c.write("set_ftrace_filter", "ctlwork:beta")
        c.write("trace", "")
        wait_for(lambda: len(records(c.read("trace").splitlines())) >= 10, what="beta events")
        recs = records(c.read("trace").splitlines())
        assert {(f, p) for f, _, p in recs} == {("ctlwork:beta", "ctlwork:step")}
        ns = [int(str(a).removeprefix("n=")) for _, a, _ in recs]
        assert ns == list(range(ns[0], ns[0] + 2 * len(ns), 2)) and ns[0] % 2 == 0

        # Another tracer: the graph nests gamma in alpha in step, beta every other step.
        c.write("set_ftrace_filter", "ctlwork:*")
        c.write("current_tracer", "function_graph")
        c.write("trace", "")
        wait_for(lambda: c.read("trace").count("ctlwork:step() {") >= 8, what="graph events")
        body = [ln.split("|", 1)[1].strip() for ln in c.read("trace").splitlines()
                if not ln.startswith("#") and "|" in ln]
        body = body[body.index("ctlwork:step() {"):]
        groups: list[list[str]] = []
        for token in body:
            if token == "ctlwork:step() {":
                groups.append([])
            groups[-1].append(token)
        short = ["ctlwork:step() {", "ctlwork:alpha() {", "ctlwork:gamma();", "}", "}"]
        long = [*short[:4], "ctlwork:beta();", "}"]
        complete = groups[:-1]  # the last may still be running
        assert len(complete) >= 6
        assert all(g in (short, long) for g in complete), complete
        kinds = [g == long for g in complete]
        assert all(a != b for a, b in itertools.pairwise(kinds)), kinds

        c.write("current_tracer", "nop")
    assert target.advances()


def test_cli_reads_writes_and_streams(target: Target) -> None:
    pid = str(target.pid)
    assert ctl("ctl", pid, "set_ftrace_filter", "ctlwork:gamma").returncode == 0
    r = ctl("ctl", pid, "set_ftrace_filter", "ctlwork:beta", "--append")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert ctl("ctl", pid, "set_ftrace_filter").stdout == "ctlwork:gamma\nctlwork:beta\n"
    assert ctl("ctl", pid, "set_ftrace_filter", "ctlwork:gamma").returncode == 0
    assert ctl("ctl", pid, "current_tracer", "function").returncode == 0
    assert ctl("ctl", pid, "current_tracer").stdout == "function\n"
    assert "current_tracer\n" in ctl("ctl", pid, "ls").stdout
    assert ctl("ctl", pid, "ls", "options").stdout.split("\n")[:2] == ["func-args",
                                                                      "func_stack_trace"]

    proc = subprocess.Popen([sys.executable, "-m", "fntrace", "ctl", pid, "trace_pipe"],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(
            proc.stdout.readline() for _ in range(20)), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(40)
        assert len(lines) == 20, lines
        assert set(records(lines)) == {("ctlwork:gamma", None, "ctlwork:alpha")}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(40) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()

    bad = ctl("ctl", pid, "tracing_on", "7")
    assert (bad.returncode, bad.stdout) == (1, "")
    assert bad.stderr == "fntrace ctl: tracing_on: expected 0 or 1, got '7'\n"
    bad = ctl("ctl", pid, "set_ftrace_filter", "x:mod:")
    assert (bad.returncode, bad.stderr) == (
        1, "fntrace ctl: malformed filter pattern 'x:mod:': empty module glob\n")
    assert ctl("ctl", pid, "set_ftrace_filter").stdout == "ctlwork:gamma\n"  # unchanged
    bad = ctl("ctl", pid, "no_such_file")
    assert (bad.returncode, bad.stderr) == (1, "fntrace ctl: top: no such file: no_such_file\n")
    assert ctl("ctl", pid, "mkdir", "instances/x").returncode == 0
    assert ctl("ctl", pid, "ls", "instances").stdout == "x\n"
    bad = ctl("ctl", pid, "mkdir", "instances/x")
    assert (bad.returncode, bad.stderr) == (1, "fntrace ctl: instance x exists\n")
    assert ctl("ctl", pid, "rmdir", "instances/x").returncode == 0
    assert ctl("ctl", pid, "ls", "instances").stdout == ""
    assert target.advances()


def test_instances_mkdir_rmdir(target: Target) -> None:
    with Client(target.pid) as c:
        assert c.ls("instances") == []
        assert {"instances", "control", "trace", "current_tracer"} <= set(c.ls())
        c.mkdir("instances/g")
        assert c.ls("instances") == ["g"]
        assert "trace_pipe" in c.ls("instances/g")
        c.write("instances/g/set_ftrace_filter", "ctlwork:gamma")
        c.write("instances/g/current_tracer", "function")
        c.write("set_ftrace_filter", "ctlwork:beta")
        c.write("current_tracer", "function")
        wait_for(lambda: c.read("instances/g/trace").count("ctlwork:gamma") >= 6
                 and c.read("trace").count("ctlwork:beta") >= 3, what="both instances")
        assert {r[0] for r in records(c.read("instances/g/trace").splitlines())} == {
            "ctlwork:gamma"}
        assert {r[0] for r in records(c.read("trace").splitlines())} == {"ctlwork:beta"}
        assert c.read("current_tracer") == "function\n"

        with pytest.raises(ControlError) as err:
            c.mkdir("instances/g")
        assert err.value.errno == "EEXIST"
        for bad, code in (("instances/../x", "EINVAL"), ("instances/-x", "EINVAL"),
                          ("foo", "EACCES"), ("instances/a/b", "EACCES")):
            with pytest.raises(ControlError) as err:
                c.mkdir(bad)
            assert err.value.errno == code, bad
        # rmdir is refused while a trace_pipe reads the instance, as tracefs says EBUSY.
        pipe = c.pipe("instances/g/trace_pipe", timeout=10)
        assert records(take(pipe, 3))[0][0] == "ctlwork:gamma"
        with pytest.raises(ControlError) as err:
            c.rmdir("instances/g")
        assert err.value.errno == "EBUSY"
        pipe.close()

        def removed() -> bool:
            try:
                c.rmdir("instances/g")
            except ControlError as exc:
                assert exc.errno == "EBUSY"
                return False
            return True

        wait_for(removed, what="rmdir after the stream closed")
        assert c.ls("instances") == []
        with pytest.raises(ControlError) as err:
            c.read("instances/g/trace")
        assert (err.value.errno, str(err.value)) == ("ENOENT", "no such instance: g")
        with pytest.raises(ControlError) as err:
            c.rmdir("instances/g")
        assert err.value.errno == "ENOENT"
    assert target.advances()


# -- hostile clients ---------------------------------------------------------------------

def test_garbage_and_oversized_requests(target: Target) -> None:
    answers = []
    for payload in (b"\xff\x00\x13garbage\n", b"[1, 2, 3]\n", b'{"v": 1, "op": "chmod"}\n',
                    b'{"v": 1, "op": "write", "path": "tracing_on", "value": 1}\n'):
        with raw(target.pid) as s:
            s.sendall(payload + b'{"v": 1, "op": "read", "path": "tracing_on"}\n')
            data = recv_all(s)
        # One error line, then the connection closed: the valid request after it is unread.
        assert data.count(b"\n") == 1, data
        answers.append(json.loads(data))
    assert [(a["v"], a["ok"], a["errno"]) for a in answers] == [(1, False, "EPROTO")] * 4
    assert [a["error"] for a in answers] == [
        "malformed request: not a JSON line", "malformed request: not a JSON object",
        "unknown op 'chmod': expected one of hello, read, write, ls, mkdir, rmdir, pipe",
        "malformed request: write needs a string value"]

    with raw(target.pid) as s:
        try:
            s.sendall(b"a" * (MAX_REQUEST + 4096))
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = recv_all(s)
    answer = json.loads(data)
    assert (answer["errno"], answer["error"]) == ("EMSGSIZE",
                                                  f"request longer than {MAX_REQUEST} bytes")
    with Client(target.pid) as c:
        assert c.read("tracing_on") == "1\n"
        assert stats(c)["protocol_errors"] == 5
    assert target.advances()


def test_protocol_version_refused_both_ways(target: Target, rundir: str) -> None:
    with raw(target.pid) as s:
        s.sendall(b'{"v": 2, "op": "read", "path": "trace"}\n')
        answer = json.loads(recv_all(s))
    assert answer == {"v": 1, "ok": False, "errno": "EPROTO",
                      "error": "protocol version 2 not supported: "
                               "this fntrace server speaks version 1"}

    # A server of another version, as the client sees it.
    path = os.path.join(rundir, "v2.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(10)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b'{"v": 2, "ok": true, "value": "x"}\n')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with Client(path=path) as c, pytest.raises(ProtocolError) as err:
            c.read("trace")
        assert str(err.value) == ("the fntrace server speaks protocol version 2, this client "
                                  "speaks version 1: use matching versions")
    finally:
        thread.join(10)
        srv.close()
    assert target.advances()


def test_disconnect_mid_stream(target: Target) -> None:
    with Client(target.pid) as c:
        c.write("set_ftrace_filter", "ctlwork:*")
        c.write("options/func-args", "1")
        c.write("current_tracer", "function")
        for _ in range(3):
            pipe = c.pipe(timeout=10)
            assert len(take(pipe, 5)) == 5
            pipe.close()  # abrupt: unread lines are still on their way
        with raw(target.pid) as s:  # asks for a stream and vanishes without reading
            s.sendall(b'{"v": 1, "op": "pipe", "path": "trace_pipe"}\n')
        wait_for(lambda: stats(c)["streams"] == 0, what="the streams to be closed")
        assert stats(c)["errors"] == 0
        assert target.advances()
        pipe = c.pipe(timeout=10)
        try:
            check_calls(take(pipe, 40), minimum=20)  # the next reader gets a clean stream
        finally:
            pipe.close()


def test_stalled_reader_never_blocks_the_target(rundir: str) -> None:
    work = tempfile.mkdtemp(prefix="fnwork", dir="/tmp")
    target = start_target(work, queue_bytes=16384)
    stalled = None
    try:
        with Client(target.pid) as c:
            c.write("set_ftrace_filter", "ctlwork:*")
            c.write("options/func-args", "1")
            c.write("options/func_stack_trace", "1")  # big events: fills buffers fast
            c.write("current_tracer", "function")
            stalled = raw(target.pid)
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(b'{"v": 1, "op": "pipe", "path": "trace_pipe"}\n')
            before = target.progress()

            def dropping() -> bool:
                # Answered at all while the stalled reader is stalled: a server blocked
                # on it would leave this request unanswered (the client times out).
                return stats(c)["lines_dropped"] > 0

            wait_for(dropping, within=60, what="lines to be dropped")
            assert target.advances(by=100)
            assert target.progress() > before + 100
            assert c.read("current_tracer") == "function\n"

            # The stalled reader wakes up: its stream says how much it lost.
            stalled.settimeout(10)
            got = b""
            deadline = time.monotonic() + 10
            while b"lines dropped (trace_pipe reader too slow)" not in got:
                assert time.monotonic() < deadline, got[-300:]
                got += stalled.recv(65536)
            notice = re.search(rb"# fntrace: (\d+) lines dropped", got)
            assert notice is not None and int(notice[1]) > 0
            assert stats(c)["errors"] == 0
    finally:
        if stalled is not None:
            stalled.close()
        stop(target)
        shutil.rmtree(work, ignore_errors=True)


# -- who may connect -----------------------------------------------------------------------

def test_peer_of_another_uid_is_refused_in_process(rundir: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulated: as one user we cannot make a peer of another uid without root, so the
    # SO_PEERCRED answer is replaced; the real check runs in the root-only test below.
    server = listen()
    try:
        with monkeypatch.context() as m:
            m.setattr(server_mod, "peer_credentials", lambda sock: (1, 4242, 4242))
            with Client(os.getpid()) as c, pytest.raises(ControlError) as err:
                c.read("tracing_on")
        assert err.value.errno == "EACCES"
        assert str(err.value) == f"permission denied: peer uid 4242 is not {os.geteuid()}"
        with Client(os.getpid()) as c:
            assert stats(c)["refused_peers"] == 1
            assert c.read("tracing_on") == "1\n"
    finally:
        server.close()
    assert not os.path.exists(server.path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to become another uid")
def test_peer_of_another_uid_is_refused_for_real(target: Target, rundir: str) -> None:
    path = os.path.join(runtime_dir(), f"{target.pid}.sock")

    def as_nobody() -> str:
        """Connect as uid 65534 in a forked child; the child reports what happened."""
        r, w = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child
            try:
                os.close(r)
                os.setgid(65534)
                os.setuid(65534)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(5)
                try:
                    s.connect(path)
                    msg = "answer " + s.recv(4096).decode()  # refused before any request
                except OSError as exc:
                    msg = f"oserror {type(exc).__name__}"
                os.write(w, msg.encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            out = f.read().decode()
        os.waitpid(child, 0)
        return out

    os.chmod(rundir, 0o755)  # only our 0700 directory stands in the way
    assert as_nobody() == "oserror PermissionError"
    # Take the first gate away: SO_PEERCRED alone must still refuse.
    os.chmod(runtime_dir(), 0o755)
    os.chmod(path, 0o666)
    answer = as_nobody()
    assert answer.startswith("answer "), answer
    assert json.loads(answer[7:]) == {"v": 1, "ok": False, "errno": "EACCES",
                                      "error": "permission denied: peer uid 65534 is not 0"}
    with Client(target.pid) as c:
        assert stats(c)["refused_peers"] == 1
    assert target.advances()


def test_runtime_dir_and_socket_modes(rundir: str) -> None:
    server = listen()
    try:
        assert listen() is server
        assert stat.S_IMODE(os.stat(runtime_dir()).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
        assert server.path == os.path.join(rundir, "fntrace", f"{os.getpid()}.sock")
    finally:
        server.close()
    assert not os.path.exists(server.path)
    os.chmod(runtime_dir(), 0o777)
    with pytest.raises(PermissionError, match="lets other users in"):
        ensure_dir()
    os.chmod(runtime_dir(), 0o700)
    assert ensure_dir() == runtime_dir()


def test_socket_removed_at_exit(rundir: str) -> None:
    code = "import fntrace.control, os; print(fntrace.control.listen().path)"
    r = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(os.path.join(rundir, "fntrace", ""))
    assert not os.path.exists(r.stdout.strip())


# -- processes: listing, bad pids, attach, run --live ---------------------------------------

def test_list_and_bad_pids(target: Target) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    stale = os.path.join(runtime_dir(), f"{dead.pid}.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()  # a socket file nobody listens on, as a killed process leaves it
    r = ctl("ctl", "--list")
    assert r.returncode == 0, r.stderr
    rows = {int(ln.split()[0]): ln.split(None, 1)[1] for ln in r.stdout.splitlines()}
    assert rows[dead.pid] == "stale (removed)"
    assert rows[target.pid] == f"live  python {sys.version.split()[0]}  " + " ".join(
        map(str, target.proc.args[1:]))  # type: ignore[index]
    assert not os.path.exists(stale)

    r = ctl("ctl", str(dead.pid), "trace")
    assert (r.returncode, r.stderr) == (1, f"fntrace ctl: no such process: {dead.pid}\n")
    r = ctl("ctl", str(os.getpid()), "trace")  # alive, never called listen()
    assert r.returncode == 1
    assert r.stderr.startswith(f"fntrace ctl: process {os.getpid()} is not controllable")
    assert r.stderr.count("\n") == 1
    r = ctl("ctl", "12ab", "trace")
    assert (r.returncode, r.stderr) == (1, "fntrace ctl: not a process id: '12ab'\n")


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="attach works on 3.14+")
def test_attach_needs_314(target: Target) -> None:
    r = ctl("attach", str(target.pid))
    assert r.returncode == 1
    assert r.stderr == (f"fntrace attach: needs Python 3.14+ (sys.remote_exec), this is "
                        f"{sys.version.split()[0]}: start the target under fntrace "
                        "(`fntrace run --live ...`) or have it call "
                        "fntrace.control.listen()\n")


def test_run_live(rundir: str) -> None:
    work = tempfile.mkdtemp(prefix="fnwork", dir="/tmp")
    target = start_target(work, argv_head=[sys.executable, "-m", "fntrace", "run", "--live",
                                           "--"], listen_code="")
    try:
        with Client(target.pid) as c:
            assert c.hello()["argv"][0].endswith("target.py")
            c.write("set_ftrace_filter", "ctlwork:*")
            c.write("options/func-args", "1")
            c.write("current_tracer", "function")
            # ctl steers the instance run prints (issue 12): its trace_pipe is the
            # run's, and a second reader would steal its events.
            with pytest.raises(ControlError) as err:
                next(c.pipe(timeout=10))
            assert err.value.errno == "EBUSY"
        assert target.advances()
        assert target.proc.stdout is not None
        lines = [target.proc.stdout.readline().decode() for _ in range(30)]
        target.proc.kill()
        check_calls(lines, minimum=20)
    finally:
        stop(target)
        shutil.rmtree(work, ignore_errors=True)


# -- hostile requests (issue 11: nesting, loose versions, grammar bombs) ---------------

def _one_answer(pid: int, payload: bytes) -> dict[str, object]:
    """Send ``payload`` then a valid request; the server answers once and closes."""
    with raw(pid) as s:
        try:
            s.sendall(payload + b'{"v": 1, "op": "read", "path": "tracing_on"}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = recv_all(s)
    assert data.count(b"\n") == 1, data[:200]
    answer: dict[str, object] = json.loads(data)
    return answer


def test_nested_json_and_loose_versions_are_eproto(target: Target) -> None:
    cases = {
        b"[" * 100_000 + b"\n": "malformed request: JSON nested too deeply",
        b"{" + b'"a":{' * 50_000 + b"\n": "malformed request: JSON nested too deeply",
        b'{"v": 1, "op": "read", "path": ["tracing_on"]}\n':
            "malformed request: 'path' holds a nested list; fields are strings, numbers, "
            "booleans or null",
        b'{"v": 1, "op": "read", "path": "tracing_on", "x": {"y": 1}}\n':
            "malformed request: 'x' holds a nested dict; fields are strings, numbers, "
            "booleans or null",
        b'{"v": true, "op": "read", "path": "tracing_on"}\n':
            "protocol version True not supported: this fntrace server speaks version 1",
        b'{"v": 1.0, "op": "read", "path": "tracing_on"}\n':
            "protocol version 1.0 not supported: this fntrace server speaks version 1",
    }
    for payload, error in cases.items():
        answer = _one_answer(target.pid, payload)
        assert answer == {"v": 1, "ok": False, "errno": "EPROTO", "error": error}, payload[:40]
    with Client(target.pid) as c:
        assert c.read("tracing_on") == "1\n"
        assert stats(c)["protocol_errors"] == len(cases)
    assert target.advances()


def test_grammar_bombs_are_einval_and_change_nothing(target: Target) -> None:
    """Inputs that used to escape as RecursionError/MemoryError/TypeError (EIO)."""
    with Client(target.pid) as c:
        c.write("dynamic_events", "f:ok/ev ctlwork:beta n")
        c.write("fail_function/inject", "ctlwork:beta")
        before = {p: c.read(p) for p in ("dynamic_events", "events/ok/ev/filter",
                                         "fail_function/ctlwork:beta/retval")}
        bombs = [
            ("dynamic_events", "f:x/y ctlwork:beta " + "len(" * 3000 + "n" + ")" * 3000,
             "dynamic_events: "),
            ("dynamic_events", "f:x/y ctlwork:beta " + "len(" * 40 + "n" + ")" * 40,
             "len() nested deeper than 32 (column 147)"),
            ("events/ok/ev/filter", "(" * 3000 + "n==1" + ")" * 3000, "filter: "),
            ("events/ok/ev/filter", "(" * 40 + "n==1" + ")" * 40,
             "'(' and '!' nested deeper than 32 (column 32)"),
            ("events/ok/ev/filter", "!" * 5000 + "n==1", "filter: "),
            ("events/ok/ev/filter", "!" * 33 + "n==1", "nested deeper than 32 (column 32)"),
            ("fail_function/ctlwork:beta/retval", "-" * 100_000 + "1", "retval: "),
            ("fail_function/ctlwork:beta/retval", "UnicodeDecodeError(1)",
             "cannot be built: TypeError"),
            ("fail_function/ctlwork:beta/retval", "ExceptionGroup('a', 1)",
             "cannot be built: TypeError"),
            ("fail_function/ctlwork:beta/retval", "BaseExceptionGroup()",
             "cannot be built: TypeError"),
        ]
        for path, value, message in bombs:
            with pytest.raises(ControlError) as info:
                c.write(path, value)
            assert info.value.errno == "EINVAL", (path, value[:30], str(info.value)[:200])
            assert message in str(info.value), str(info.value)[:300]
        assert {p: c.read(p) for p in before} == before
    assert target.advances()
