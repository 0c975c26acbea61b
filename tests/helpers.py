"""Helpers shared by the test files (imported as ``helpers``; tests/ is on sys.path)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import sys
import threading
import zlib
from collections.abc import Iterator

import pytest

import fntrace
from fntrace import Ops
from fntrace.formats.tracefile import VERSION


@contextlib.contextmanager
def registered(*ops: Ops) -> Iterator[None]:
    """Register ``ops`` in order; unregister, in reverse, whatever got registered."""
    done: list[Ops] = []
    try:
        for op in ops:
            fntrace.register(op)
            done.append(op)
        yield
    finally:
        for op in reversed(done):
            if op.registered:
                fntrace.unregister(op)


# -- what this Python offers ----------------------------------------------------------
# WebAssembly builds (the Pyodide 3.14 leg) cannot start threads, fork, run
# subprocesses or open Unix sockets; the tests of features that need them are
# skipped there with these markers, everything else runs.
def _can_start_threads() -> bool:
    thread = threading.Thread(target=lambda: None)
    try:
        thread.start()
    except RuntimeError:
        return False
    thread.join()
    return True


HAVE_THREADS = _can_start_threads()
# CPython's own test support decides these by platform the same way.
HAVE_SUBPROCESS = sys.platform not in ("emscripten", "wasi")
HAVE_FORK = HAVE_SUBPROCESS and hasattr(os, "fork")
HAVE_UNIX_SOCKETS = HAVE_SUBPROCESS and hasattr(socket, "AF_UNIX")

needs_threads = pytest.mark.skipif(
    not HAVE_THREADS, reason="needs threads: this Python cannot start one")
needs_subprocess = pytest.mark.skipif(
    not HAVE_SUBPROCESS, reason=f"needs subprocesses, which {sys.platform} cannot run")
needs_fork = pytest.mark.skipif(not HAVE_FORK, reason=f"needs os.fork, which {sys.platform} lacks")
needs_unix_sockets = pytest.mark.skipif(
    not HAVE_UNIX_SOCKETS, reason=f"needs Unix domain sockets, which {sys.platform} lacks")


def _plain_gen() -> Iterator[int]:
    yield 1


def _close_runs_try_less_generator() -> bool:
    """Whether ``close()`` of a generator suspended outside any ``try`` runs its frame
    while PY_UNWIND is monitored (as fntrace's backend monitors it).

    3.11, 3.12 and 3.14 throw GeneratorExit into it (PY_THROW, PY_UNWIND); 3.13
    before CPython's fix of gh-140373 finished it silently.  A patch level, not a
    minor version, decides, so the interpreter is asked (raw sys.monitoring, no
    fntrace: an independent oracle).
    """
    if sys.version_info < (3, 12):
        return True
    mon = sys.monitoring
    tool = next(t for t in range(6) if mon.get_tool(t) is None)
    seen: list[bool] = []
    mon.use_tool_id(tool, "fntrace-tests-probe")
    try:
        mon.register_callback(tool, mon.events.PY_UNWIND,
                              lambda code, *rest: seen.append(code is _plain_gen.__code__))
        mon.set_events(tool, mon.events.PY_UNWIND)  # a global event only
        gen = _plain_gen()
        next(gen)
        gen.close()
    finally:
        mon.set_events(tool, 0)
        mon.register_callback(tool, mon.events.PY_UNWIND, None)
        mon.free_tool_id(tool)
    return any(seen)


CLOSE_RUNS_TRY_LESS_GENERATOR = _close_runs_try_less_generator()


def raised(exc: str) -> str:
    """How function_graph shows a call left by an exception: 3.11's profile hook does
    not see the exception (the text says so), sys.monitoring (3.12+) does."""
    from fntrace.tracing.tracers.function_graph import UNKNOWN_TYPE

    return f"raised {exc}" if sys.version_info >= (3, 12) else f"raised {UNKNOWN_TYPE}"


def default_sigint() -> None:
    """``preexec_fn`` for a child that must see SIGINT: back to its default action.

    A test run started where SIGINT is ignored (a shell's background job, nohup,
    some CI runners) passes SIG_IGN on to every child; Python then leaves SIGINT
    ignored, so neither KeyboardInterrupt nor fntrace's start-up guard would ever
    see a Ctrl-C the test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class FakeThread:
    """What the trace writer and the renderers read of a thread (a ThreadBuffer's
    fields), for tests that write events of made-up threads."""

    def __init__(self, tid: int, name: str, cpu: int, flags: str = "..") -> None:
        self.tid = tid
        self.name = name
        self.cpu = cpu
        self.thread_flags = flags
        self.overrun = 0
        self.dropped = 0


def event_text(buf: object, ev: tuple[object, ...]) -> str:
    """An event's text as the renderer of its kind makes it (default options)."""
    from fntrace.tracing import ftrace_text
    from fntrace.tracing.instance import OPTIONS

    return ftrace_text.render_one(buf, ev, ftrace_text.Context(OPTIONS, 1))  # type: ignore[arg-type]


#: The module ``ctlwork`` that live-control target processes import and call in a
#: loop (test_control, test_otel_live): step() calls alpha (which calls gamma)
#: every time and beta every other time, so filters select known call counts.
CTL_WORK = '''\
def step(n):
    alpha(n)
    if n % 2 == 0:
        beta(n)


def alpha(n):
    return gamma(n) + 1


def beta(n):
    return n * 2


def gamma(n):
    return n
'''


#: A trace file's preamble and chunk header (docs/tracefile.md).
PREAMBLE = struct.Struct("<8sHII")
CHUNK = struct.Struct("<4scII")


def split(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(header JSON, [(chunk type, payload)]) of a well-formed file."""
    _, _, hlen, _ = PREAMBLE.unpack_from(data)
    pos = PREAMBLE.size + hlen
    head = data[PREAMBLE.size:pos]
    chunks = []
    while pos < len(data):
        _, kind, length, _ = CHUNK.unpack_from(data, pos)
        pos += CHUNK.size
        chunks.append((kind, data[pos:pos + length]))
        pos += length
    return head, chunks


def build(head: bytes, chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A file of these parts, every checksum right."""
    out = PREAMBLE.pack(b"FNTRACE\x00", VERSION, len(head), zlib.crc32(head)) + head
    for kind, payload in chunks:
        out += CHUNK.pack(b"\xf7FNC", kind, len(payload), zlib.crc32(payload)) + payload
    return out


def record_program(cwd: os.PathLike[str], program: str, writer: str,
                   options: tuple[str, ...] = ("-t", "function_graph", "--args", "--retval"),
                   out: str = "t.dat") -> None:
    """Record ``program`` (written to prog.py in ``cwd``) with ``options`` (by default
    function_graph, arguments and return values) into ``out``, by the C writer or
    the pure one."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    (Path(cwd) / "prog.py").write_text(program)
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    if writer == "pure":
        env["FNTRACE_PURE"] = "1"
    subprocess.run([sys.executable, "-m", "fntrace", "record", *options, "-o", out, "--",
                    "prog.py"], cwd=cwd, env=env, check=True, capture_output=True)


def uvarint(n: int) -> bytes:
    """``n`` as the trace file's LEB128 number, written independently of the writer."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
