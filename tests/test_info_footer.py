"""``fntrace info`` from the footer's summary (constant time) against the full read.

The oracle is ``info --scan``: every chunk decoded and counted.  The footer's
summary must give the very same text on real recordings (threads, lost events,
``--follow`` children, C and pure writers), and a file whose footer is missing,
without the summary, malformed or cut off is read whole instead.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from helpers import FakeThread, event_text, needs_fork, needs_subprocess

from fntrace.analysis.reading import ChunkProgress
from fntrace.analysis.replay import RecordedFunction
from fntrace.formats import footer
from fntrace.formats.tracefile import TraceWriter, child_paths, open_trace, read_finished

ROOT = str(Path(__file__).resolve().parent.parent)
PREAMBLE = struct.Struct("<8sHII")
CHUNK = struct.Struct("<4scII")

PROGRAM = """
    import os, sys, threading
    import fntrace

    def leaf(x):
        return x + 1

    def work(n):
        return [leaf(i) for i in range(n)]

    # An event larger than a 4 KiB buffer: dropped, counted as lost.
    fntrace.marker("big " + "x" * 20000)
    threads = [threading.Thread(target=work, args=(300 + i,), name=f"w{i}") for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    work(50)
    if "fork" in sys.argv:
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            work(70)
            os._exit(0)
        os.waitpid(pid, 0)
    print("done")
"""


def _run(*args: str, cwd: Path, pure: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("FNTRACE_PURE", None)
    if pure:
        env["FNTRACE_PURE"] = "1"
    return subprocess.run([sys.executable, "-m", "fntrace", *args], cwd=cwd, env=env,
                          text=True, capture_output=True, timeout=120)


def _record(tmp: Path, *extra: str, pure: bool = False, fork: bool = False) -> Path:
    (tmp / "prog.py").write_text(textwrap.dedent(PROGRAM))
    res = _run("record", "-t", "function_graph", "--args", "--buffer-size", "4", *extra,
               "-o", "t.dat", "--", "prog.py", *(["fork"] if fork else []), cwd=tmp, pure=pure)
    assert res.returncode == 0 and res.stdout == "done\n", res.stderr
    return tmp / "t.dat"


def _info(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _run("info", *extra, str(path), cwd=path.parent)


@needs_subprocess
@pytest.mark.parametrize("pure", [False, True], ids=["c-writer", "pure-writer"])
def test_footer_info_is_the_scan_info(tmp_path: Path, pure: bool) -> None:
    path = _record(tmp_path, pure=pure)
    fin = read_finished(str(path))
    assert fin is not None  # the footer is what info reads
    fast, scan = _info(path), _info(path, "--scan")
    assert (fast.returncode, fast.stderr) == (0, "") and fast.stdout == scan.stdout, scan.stdout
    # The independent oracle: the records themselves.
    tf = open_trace(str(path))
    per_thread: dict[int, int] = {}
    for rec in tf.records():
        per_thread[rec.tid] = per_thread.get(rec.tid, 0) + 1
    assert {r.tid: r.events for r in fin.threads} == per_thread
    assert {r.name for r in fin.threads} == {"MainThread", "w0", "w1", "w2"}
    assert sum(r.lost for r in fin.threads) == 1 == sum(tf.lost.values())
    assert "\nlost:        1\n" in fast.stdout and "\nstatus:      complete\n" in fast.stdout


@needs_subprocess
@needs_fork
def test_footer_info_with_followed_fork(tmp_path: Path) -> None:
    path = _record(tmp_path, "--follow", fork=True)
    children = child_paths(str(path))
    assert len(children) == 1
    assert all(read_finished(p) is not None for p in [str(path), *children])
    fast, scan = _info(path), _info(path, "--scan")
    assert fast.returncode == 0 and fast.stdout == scan.stdout
    assert "\nprocesses:   2\n" in fast.stdout
    # The child's copy of the parent's writer wrote nothing into the parent's file (it
    # used to, when a buffer filled in threading's at-fork hooks: events twice).
    recs = [(r.tid, r.ts, r.kind) for r in open_trace(str(path)).records()]
    assert len(recs) == len(set(recs))


def _split(data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    _, _, hlen, _ = PREAMBLE.unpack_from(data)
    pos = PREAMBLE.size + hlen
    chunks = []
    while pos < len(data):
        _, kind, length, _ = CHUNK.unpack_from(data, pos)
        chunks.append((kind, data[pos + CHUNK.size:pos + CHUNK.size + length]))
        pos += CHUNK.size + length
    return data[:pos - sum(CHUNK.size + len(p) for _, p in chunks)], chunks


def _with_footer(data: bytes, value: object) -> bytes:
    """The file with its footer replaced by ``value``'s JSON (checksum right)."""
    pre, chunks = _split(data)
    assert chunks[-1][0] == b"Z"
    payload = json.dumps(value).encode()
    out = pre + b"".join(CHUNK.pack(b"\xf7FNC", k, len(p), zlib.crc32(p)) + p
                         for k, p in chunks[:-1])
    return out + CHUNK.pack(b"\xf7FNC", b"Z", len(payload), zlib.crc32(payload)) + payload


def _written(path: Path) -> dict[str, object]:
    """A small file written directly: two threads, 3 chunks; its footer."""
    writer = TraceWriter(str(path), {"pid": 5, "tracer": "function_graph", "start_ts": 100})
    f = RecordedFunction("m:f", 0)
    a, b = FakeThread(1, "MainThread", 0, "M."), FakeThread(2, "w\udc80", 1)
    for i in range(3):
        writer.write_events([(a, (200 + i, 0, "E", f, 0, None, "start")),
                             (b, (201 + i, 0, "X", f, 0, 5, "return", None)),
                             (a, (202 + i, 0, "M", "m"))], event_text)
    b.dropped = 4
    writer.write_lost([(2, "w\udc80", 1, "..", 4)])
    writer.finish(999, {"lost": {}})
    return json.loads(_split(path.read_bytes())[1][-1][1])


def test_footer_summary_as_written(tmp_path: Path) -> None:
    path = tmp_path / "t.dat"
    foot = _written(path)
    assert foot["threads"] == [
        {"tid": 1, "name": "MainThread", "cpu": 0, "flags": "M.", "events": 6, "lost": 0},
        {"tid": 2, "name": "w\\xed\\xb2\\x80", "cpu": 1, "flags": "..", "events": 3, "lost": 4}]
    tf = open_trace(str(path))
    assert {t.name for t in tf.threads.values()} == {"MainThread", "w\\xed\\xb2\\x80"}


@pytest.mark.parametrize("case", ["no threads", "old footer"])
def test_footer_without_summary_is_scanned(tmp_path: Path, case: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from fntrace.analysis.info import info

    path = tmp_path / "t.dat"
    foot = _written(path)
    info(str(path))
    want = capsys.readouterr()
    foot.pop("threads")
    if case == "old footer":
        foot = {"end_ts": 999, "events": 9, "lost": {}}
    path.write_bytes(_with_footer(path.read_bytes(), foot))
    assert read_finished(str(path)) is None
    assert info(str(path)) == 0
    got = capsys.readouterr()
    assert got.err == want.err == ""
    assert got.out.split("\n")[1:] == want.out.split("\n")[1:]  # the file's size aside


BAD = {
    "threads not a list": {"threads": {}},
    "row not an object": {"threads": [1]},
    "row missing a field": {"threads": [{"tid": 1}]},
    "negative events": {"threads": [{"tid": 1, "name": "a", "cpu": 0, "flags": "..",
                                     "events": -1, "lost": 0}]},
    "bool as int": {"threads": [{"tid": True, "name": "a", "cpu": 0, "flags": "..",
                                 "events": 9, "lost": 0}]},
    "name not a string": {"threads": [{"tid": 1, "name": 3, "cpu": 0, "flags": "..",
                                       "events": 9, "lost": 0}]},
    "sum is not events": {"threads": [{"tid": 1, "name": "a", "cpu": 0, "flags": "..",
                                       "events": 8, "lost": 0}]},
    "a thread twice": {"threads": [{"tid": 1, "name": "a", "cpu": 0, "flags": "..",
                                    "events": 4, "lost": 0}] * 2},
}


@pytest.mark.parametrize("bad", list(BAD), ids=list(BAD))
def test_malformed_summary_is_a_corrupt_footer(tmp_path: Path, bad: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from fntrace import cli

    path = tmp_path / "t.dat"
    good = _written(path)
    path.write_bytes(_with_footer(path.read_bytes(), {**good, "events": 9, **BAD[bad]}))
    assert read_finished(str(path)) is None
    with pytest.raises(ValueError):
        footer.check({"events": 9, **BAD[bad]})
    code = cli.main(["info", str(path)])
    out, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1 and "corrupt footer" in err, err
    assert "\nevents:      9\n" in out  # every event still counted, by the full read


def test_truncated_file_is_scanned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fntrace.analysis.info import info

    path = tmp_path / "t.dat"
    _written(path)
    data = path.read_bytes()
    for cut in (1, 10, len(_split(data)[1][-1][1]) + CHUNK.size):
        path.write_bytes(data[:-cut])
        assert read_finished(str(path)) is None
        assert info(str(path)) == 0
        out, err = capsys.readouterr()
        assert "status:      truncated or corrupt" in out and "truncated" in err
        assert "\nevents:      9\n" in out
    path.write_bytes(data + b"\x00")  # anything after the footer: not the end of a file
    assert read_finished(str(path)) is None


def test_scan_progress_on_a_terminal_only() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown = Tty()
    progress = ChunkProgress("fntrace info: reading t.dat", shown)
    for offset in (10, 10, 50, 100):
        progress.on_chunk(offset, 100)
    progress.done()
    text = shown.getvalue()
    assert text.count("%") == 3 and "\rfntrace info: reading t.dat: 50%" in text
    assert text.endswith(" " * len("\rfntrace info: reading t.dat: 100%") + "\r")
    quiet = io.StringIO()
    progress = ChunkProgress("x", quiet)
    progress.on_chunk(1, 2)
    progress.done()
    assert quiet.getvalue() == ""


class _Buf:
    def __init__(self, tid: int) -> None:
        self.tid, self.name, self.cpu, self.thread_flags = tid, f"t{tid}", tid, ".."
        self.read = self.overrun = self.dropped = 0


def test_tally_of_a_c_chunk_and_a_late_loss(tmp_path: Path) -> None:
    """The C encoder's chunk is tallied from the read counters; a thread that lost
    events while it was encoded gets a row with its count as it is after, so the
    file's largest row (what readers keep) is what the footer says."""
    writer = TraceWriter(str(tmp_path / "t.dat"), {})
    a, b, c = _Buf(1), _Buf(2), _Buf(3)
    before = [(0, 0), (0, 0), (0, 0)]
    a.read, b.read = 5, 2  # what encode_buffers consumed
    b.dropped = 3          # b lost 3 events while the chunk was encoded
    writer._tally_taken([a, b, c], before)
    assert writer.tally.rows == {1: ["t1", 1, "..", 5, 0], 2: ["t2", 2, "..", 2, 3]}
    writer.close()
    tf = open_trace(str(tmp_path / "t.dat"))  # the late row: a chunk of thread rows only
    assert tf.lost == {(0, 2): 3} and tf.events == 0
