"""``replay --thread`` reads only the chunks of the threads it shows.

The footer's ``index_threads`` (fntrace/formats/footer.py) lists each indexed
chunk's threads; ``replay --thread T`` skips the chunks that hold no event of
T.  What it prints is exactly what the full read prints (the same file read
as if it had no such key: a file written before it existed), the skipped
chunks are not decoded, the key's size is bounded, and a malformed one is a
one-line warning after which the file is read in full.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from helpers import FakeThread, event_text, needs_subprocess
from test_decoder import PROGRAM, functions, random_events

from fntrace.analysis.replay import ReplayOptions, replay
from fntrace.formats import footer, tracefile
from fntrace.formats.tracefile import TraceWriter, read_finished

ROOT = Path(__file__).resolve().parent.parent


def write_threads(path: Path, seed: int, nthreads: int = 4) -> list[int]:
    """A trace whose chunks each hold one or two threads' events; the tids."""
    rng = random.Random(seed)
    fns = functions()
    threads = [FakeThread(100 + i, f"worker-{i}", i) for i in range(nthreads)]
    writer = TraceWriter(str(path), {"pid": 9, "tracer": "function_graph", "start_ts": 0})
    clock = {t.tid: rng.randint(0, 100) for t in threads}
    for k in range(12):
        group = rng.sample(threads, 1 if k % 3 else 2)
        events = [(t, ev) for t, ev in random_events(rng, fns, group, rng.randint(5, 200), clock)
                  if ev[2] != "T"]
        writer.write_events(events, event_text)
    writer.finish(max(clock.values()) + 1)
    return [t.tid for t in threads]


class Reads:
    """Counts the chunks decoded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        real = tracefile.TraceFile.chunk_records

        def chunk_records(tf: Any, chunk: Any) -> Any:
            self.n += 1
            return real(tf, chunk)

        monkeypatch.setattr(tracefile.TraceFile, "chunk_records", chunk_records)


def text_of(path: Path, tmp_path: Path, **kw: Any) -> str:
    out = tmp_path / "out.txt"
    assert replay(ReplayOptions(str(path), output=str(out), **kw)) == 0
    return out.read_text()


@pytest.mark.parametrize("seed", range(6))
def test_replay_by_the_index_prints_what_the_full_read_prints(
        tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.dat"
    tids = write_threads(path, seed)
    fin = read_finished(str(path))
    assert fin is not None
    chunks = len(fin.footer["index"]) // 5
    assert len(footer.index_rows(fin.footer, fin.start) or []) == chunks
    for tid in tids:
        for kw in ({}, {"since": 300}, {"depth": 2, "srcline": True}):
            with monkeypatch.context() as m:
                reads = Reads(m)
                by_index = text_of(path, tmp_path, thread=(str(tid),), **kw)
            with monkeypatch.context() as m:
                m.setattr(footer, "INDEX_THREADS_KEY", "not-in-this-file")
                full = Reads(m)
                assert text_of(path, tmp_path, thread=(str(tid),), **kw) == by_index
            holding = sum(1 for r in footer.index_rows(fin.footer, fin.start) or []
                          if r.tids is not None and tid in r.tids)
            assert holding < chunks  # the trace has chunks of other threads only
            assert reads.n < full.n
            if not kw:  # count() and the replay: each reads exactly the thread's chunks
                assert (reads.n, full.n) == (2 * holding, 2 * chunks)
    assert text_of(path, tmp_path) != ""  # every thread: every chunk


def test_a_chunk_of_many_threads_is_any_thread() -> None:
    index = footer.ChunkIndex()
    many = list(range(footer.MAX_CHUNK_THREADS + 1))
    index.chunk_written(0, (1, 2), 5, False, [3])
    index.chunk_written(10, (2, 3), 5, False, many)
    index.chunk_written(20, (3, 4), 5, False, None)
    index.chunk_written(30, (4, 5), 5, False, [3, 1])
    fields = index.fields(20, [1, 3, *many[4:]])
    assert fields[footer.INDEX_THREADS_KEY] == [1, 1, -1, -1, 2, 0, 1]
    fields["threads"] = [{"tid": t} for t in [1, 3, *many[4:]]]
    rows = footer.index_rows(fields, 0)
    assert rows is not None
    assert [r.tids for r in rows] == [frozenset({3}), None, None, frozenset({1, 3})]


def test_the_key_is_bounded() -> None:
    index = footer.ChunkIndex()
    tids = list(range(footer.MAX_CHUNK_THREADS))
    n = footer.MAX_INDEX_THREADS // (footer.MAX_CHUNK_THREADS + 1) + 1
    for i in range(n):
        index.chunk_written(i * 10, (i, i), 1, False, tids)
    fields = index.fields(n, tids)
    assert footer.INDEX_KEY in fields and footer.INDEX_THREADS_KEY not in fields


def rewrite_footer(path: Path, change: Any) -> None:
    """The file with its footer's JSON changed by ``change`` (its chunk's CRC right)."""
    data = path.read_bytes()
    fin = read_finished(str(path))
    assert fin is not None
    body = dict(fin.footer)
    change(body)
    raw = json.dumps(body, sort_keys=True).encode()
    head = struct.pack("<4scII", tracefile.SYNC, tracefile.FOOTER, len(raw), zlib.crc32(raw))
    path.write_bytes(data[:fin.footer_at] + head + raw)


@pytest.mark.parametrize("bad", [[5, 0], [1, 99], "x", [1], [0]])
def test_a_malformed_key_is_said_and_the_file_read_in_full(
        tmp_path: Path, bad: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.dat"
    tids = write_threads(path, 99)
    want = text_of(path, tmp_path, thread=(str(tids[0]),))
    capsys.readouterr()

    def change(body: dict[str, Any]) -> None:
        body[footer.INDEX_THREADS_KEY] = bad

    fin = read_finished(str(path))
    assert fin is not None
    body = dict(fin.footer)
    change(body)
    with pytest.raises(ValueError, match="index_threads"):
        footer.check(body)
    rewrite_footer(path, change)
    assert read_finished(str(path)) is None  # not a cleanly finished file's footer
    out = tmp_path / "out.txt"
    status = replay(ReplayOptions(str(path), output=str(out), thread=(str(tids[0]),)))
    assert out.read_text() == want
    err = capsys.readouterr().err
    assert "index_threads" in err and len(err.strip().splitlines()) == 1
    assert status == 1  # a corrupt footer, as for a malformed index


@needs_subprocess
@pytest.mark.parametrize("writer", ["c", "pure"])
def test_recordings_by_both_writers(tmp_path: Path, writer: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The C encoder (drain.c encode_buffers) and the Python writer index the same
    threads: each thread's replay by the index is the full read's."""
    (tmp_path / "prog.py").write_text(PROGRAM)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    if writer == "pure":
        env["FNTRACE_PURE"] = "1"
    subprocess.run([sys.executable, "-m", "fntrace", "record", "-t", "function_graph",
                    "-o", "t.dat", "--", "prog.py"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    path = tmp_path / "t.dat"
    fin = read_finished(str(path))
    assert fin is not None and footer.INDEX_THREADS_KEY in fin.footer
    for row in fin.footer["threads"]:
        by_index = text_of(path, tmp_path, thread=(str(row["tid"]),))
        with monkeypatch.context() as m:
            m.setattr(footer, "INDEX_THREADS_KEY", "not-in-this-file")
            assert text_of(path, tmp_path, thread=(str(row["tid"]),)) == by_index
        assert by_index.count("\n") > 100
