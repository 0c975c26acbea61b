"""The footer's chunk index and ``replay`` opening a finished file by it (issue 14).

The oracle is the full read: the same file with the index taken out of its
footer, which every reader then reads chunk by chunk from the start.  A
replay by the index must print the very same text and say the very same
problems; the index itself must name each event chunk the full read finds,
with that chunk's own first and last timestamps and its count.  Laziness is
shown by a file whose last chunk is corrupt: its problem appears only when a
reader reaches it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import CHUNK, PREAMBLE, build, needs_fork, needs_subprocess, split

from fntrace.formats import footer
from fntrace.formats.tracefile import open_trace, read_finished

ROOT = str(Path(__file__).resolve().parent.parent)

PROGRAM = """
    import asyncio, os, sys, threading
    import fntrace

    def leaf(x):
        return x + 1

    def work(n):
        return [leaf(i) for i in range(n)]

    async def job(n):
        await asyncio.sleep(0)
        return work(n)

    async def main():
        async with asyncio.TaskGroup() as tg:
            for i in range(3):
                tg.create_task(job(20 + i), name=f"job-{i}")

    threads = [threading.Thread(target=work, args=(400 + i,), name=f"w{i}") for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fntrace.marker("half way")
    if "tasks" in sys.argv:
        asyncio.run(main())
    work(300)
    if "fork" in sys.argv:
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            work(200)
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
                          text=True, capture_output=True, timeout=180)


def _record(tmp: Path, *argv: str, extra: tuple[str, ...] = (), pure: bool = False) -> Path:
    (tmp / "prog.py").write_text(textwrap.dedent(PROGRAM))
    res = _run("record", "-t", "function_graph", "--args", "--buffer-size", "4", *extra,
               "-o", "t.dat", "--", "prog.py", *argv, cwd=tmp, pure=pure)
    assert res.returncode == 0 and res.stdout == "done\n", res.stderr
    return tmp / "t.dat"


def _without_index(path: Path, out: Path) -> None:
    """The same file, its footer without the index: what the full read reads."""
    head, chunks = split(path.read_bytes())
    kind, payload = chunks[-1]
    assert kind == b"Z"
    data = json.loads(payload)
    del data[footer.INDEX_KEY]
    out.write_bytes(build(head, [*chunks[:-1], (b"Z", json.dumps(data).encode())]))


def _event_chunk_offsets(path: Path) -> list[int]:
    """Offsets of the file's event chunks, found by walking the chunk headers."""
    data = path.read_bytes()
    _, _, hlen, _ = PREAMBLE.unpack_from(data)
    pos = PREAMBLE.size + hlen
    found = []
    while pos < len(data):
        _, kind, length, _ = CHUNK.unpack_from(data, pos)
        if kind == b"E":
            found.append(pos)
        pos += CHUNK.size + length
    return found


@needs_subprocess
@pytest.mark.parametrize("pure", [False, True], ids=["c-writer", "pure-writer"])
def test_the_index_names_every_event_chunk_with_its_times(tmp_path: Path, pure: bool) -> None:
    path = _record(tmp_path, pure=pure)
    fin = read_finished(str(path))
    assert fin is not None
    rows = footer.index_rows(fin.footer, fin.start)
    assert rows is not None and len(rows) > 5  # a 4 KiB buffer: many chunks
    full = open_trace(str(path))
    chunks = full.chunks()
    assert len(rows) == len(chunks)
    assert [r.offset for r in rows] == [
        at for at in _event_chunk_offsets(path) if at in {r.offset for r in rows}]
    assert set(r.offset for r in rows) <= set(_event_chunk_offsets(path))
    for row, chunk in zip(rows, chunks, strict=True):
        records = full.chunk_records(chunk)
        assert (row.first, row.last) == (min(r.ts for r in records), max(r.ts for r in records))
        assert row.count == len(records)
        assert row.notes is False
    assert sum(r.count for r in rows) == full.events == fin.footer["events"]


def _replays(path: Path, *options: str) -> tuple[subprocess.CompletedProcess[str], ...]:
    plain = path.with_name("plain.dat")
    _without_index(path, plain)
    for child in path.parent.glob("t.dat.*"):  # the followed children's files too
        _without_index(child, plain.with_name(f"plain.dat.{child.suffix[1:]}"))
    by_index = _run("replay", *options, path.name, cwd=path.parent)
    full = _run("replay", *options, plain.name, cwd=path.parent)
    return by_index, full


@needs_subprocess
@pytest.mark.parametrize("pure", [False, True], ids=["c-writer", "pure-writer"])
@pytest.mark.parametrize("options", [(), ("--thread", "w1"), ("-F", "leaf")],
                         ids=["all", "thread", "filter"])
def test_replay_by_the_index_prints_what_the_full_read_prints(
        tmp_path: Path, pure: bool, options: tuple[str, ...]) -> None:
    path = _record(tmp_path, pure=pure)
    by_index, full = _replays(path, *options)
    assert full.returncode == 0 and full.stderr == ""
    assert by_index.stdout.replace("t.dat", "plain.dat") == full.stdout
    assert (by_index.returncode, by_index.stderr) == (0, "")
    assert full.stdout.count("leaf") > 100


@needs_subprocess
@needs_fork
def test_followed_children_merge_by_their_indexes(tmp_path: Path) -> None:
    path = _record(tmp_path, "fork", extra=("--follow",))
    assert list(tmp_path.glob("t.dat.*"))
    by_index, full = _replays(path)
    assert by_index.stdout.replace("t.dat", "plain.dat") == full.stdout
    assert (by_index.returncode, by_index.stderr) == (0, "")


@needs_subprocess
@pytest.mark.skipif(sys.version_info < (3, 11), reason="TaskGroup")
def test_task_notes_are_found_through_the_index(tmp_path: Path) -> None:
    path = _record(tmp_path, "tasks", extra=("--tasks",))
    fin = read_finished(str(path))
    assert fin is not None
    rows = footer.index_rows(fin.footer, fin.start) or []
    assert any(r.notes for r in rows) and not all(r.notes for r in rows)
    by_index, full = _replays(path, "--task", "job-1")
    assert full.returncode == 0 and "job-1" in full.stdout
    assert by_index.stdout.replace("t.dat", "plain.dat") == full.stdout


@needs_subprocess
def test_a_chunk_is_read_only_when_the_replay_reaches_it(tmp_path: Path) -> None:
    path = _record(tmp_path)
    fin = read_finished(str(path))
    assert fin is not None
    last = (footer.index_rows(fin.footer, fin.start) or [])[-1]
    data = bytearray(path.read_bytes())
    data[last.offset + CHUNK.size + 5] ^= 0xFF  # its checksum no longer matches
    path.write_bytes(bytes(data))
    tf = open_trace(str(path), indexed=True)
    records = tf.records()
    first = [next(records) for _ in range(10)]
    assert len(first) == 10 and tf.problems == []  # the last chunk not read yet
    rest = sum(1 for _ in records)
    assert tf.problems == [f"corrupt chunk at offset {last.offset} (cut short or checksum "
                           f"mismatch); its {last.count} events are lost"]
    assert 10 + rest == tf.events - last.count
    # The command says it once, after the lines, and exits 0 as for any lost chunk.
    res = _run("replay", "t.dat", cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.count("leaf") > 100
    assert res.stderr == (f"fntrace replay: warning: t.dat: corrupt chunk at offset "
                          f"{last.offset} (cut short or checksum mismatch); its "
                          f"{last.count} events are lost\n")


@needs_subprocess
@pytest.mark.parametrize("bad", ["x", [1, 2, 3], [0, 0, 0, 1, 0], [0, 0, -1, 5, 0],
                                 [0, 0, 0, 5, 2], [10 ** 30, 0, 0, 5, 0]],
                         ids=["str", "short", "count", "span", "flag", "offset"])
def test_a_malformed_index_is_a_corrupt_footer(tmp_path: Path, bad: object) -> None:
    path = _record(tmp_path)
    plain = tmp_path / "plain.dat"
    _without_index(path, plain)
    head, chunks = split(path.read_bytes())
    data = json.loads(chunks[-1][1])
    data[footer.INDEX_KEY] = bad
    path.write_bytes(build(head, [*chunks[:-1], (b"Z", json.dumps(data).encode())]))
    res = _run("replay", "t.dat", cwd=tmp_path)
    full = _run("replay", "plain.dat", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "t.dat: corrupt footer: " in res.stderr
    assert "the file is read in full" in res.stderr
    assert res.stdout.replace("t.dat", "plain.dat") == full.stdout


@needs_subprocess
def test_a_file_changed_after_its_footer_is_read_in_full(tmp_path: Path) -> None:
    """Chunks moved (bytes inserted between two): the chunk headers no longer lie
    where the index says, so it is not used and the full read says what it finds."""
    path = _record(tmp_path)
    head, chunks = split(path.read_bytes())
    moved = build(head, chunks)
    at = len(build(head, chunks[:3]))
    path.write_bytes(moved[:at] + b"\x00" * 7 + moved[at:])
    res = _run("replay", "t.dat", cwd=tmp_path)
    assert res.returncode == 0
    assert res.stderr == (f"fntrace replay: warning: t.dat: corrupt chunk header at offset "
                          f"{at}\n")
    assert res.stdout.count("leaf") > 100


@needs_subprocess
def test_a_rewritten_header_keeps_the_index_true(tmp_path: Path) -> None:
    """Offsets count from the first chunk: a header of another length (a tool that
    rewrites it) moves every chunk, and the index still names them."""
    path = _record(tmp_path)
    head, chunks = split(path.read_bytes())
    longer = json.dumps({**json.loads(head), "note": "x" * 1000}).encode()
    path.write_bytes(build(longer, chunks))
    fin = read_finished(str(path))
    assert fin is not None and fin.start > 1000
    rows = footer.index_rows(fin.footer, fin.start) or []
    assert set(r.offset for r in rows) <= set(_event_chunk_offsets(path))
    tf = open_trace(str(path), indexed=True)
    assert sum(1 for _ in tf.records()) == tf.events and tf.problems == []


def test_no_index_when_it_cannot_be_whole() -> None:
    """A chunk of unknown times (a raw payload) or more chunks than MAX_INDEX_ROWS
    leave the file without an index, read in full; rows that do not count every
    event are not written."""
    index = footer.ChunkIndex()
    index.chunk_written(0, (5, 9), 3, False)
    index.chunk_written(40, (7, 12), 2, True)
    assert index.fields(5) == {"index": [0, 5, 4, 3, 0, 40, 2, 5, 2, 1]}
    assert index.fields(6) == {}
    assert footer.index_rows(index.fields(5), 100) == [
        footer.IndexRow(100, 5, 9, 3, False), footer.IndexRow(140, 7, 12, 2, True)]
    index.chunk_written(80, None, 1, False)
    assert index.fields(6) == {}
    big = footer.ChunkIndex()
    for i in range(footer.MAX_INDEX_ROWS + 1):
        big.chunk_written(i * 10, (i, i), 1, False)
    assert big.fields(footer.MAX_INDEX_ROWS + 1) == {}


@needs_subprocess
def test_from_skips_the_chunks_that_end_before_it(tmp_path: Path) -> None:
    """``replay --from T`` prints what the full read prints, and never reads a
    chunk the index says ends before T: a corrupt one there goes unnoticed."""
    path = _record(tmp_path)
    fin = read_finished(str(path))
    assert fin is not None
    rows = footer.index_rows(fin.footer, fin.start) or []
    start = fin.header["start_ts"]
    since_ns = rows[len(rows) // 2].first - start  # the middle chunk's first event
    since = f"{since_ns}ns"
    by_index, full = _replays(path, "--from", since)
    assert by_index.stdout.replace("t.dat", "plain.dat") == full.stdout
    assert (by_index.returncode, by_index.stderr) == (0, "")
    assert full.stdout.count("leaf") > 10
    data = bytearray(path.read_bytes())
    data[rows[1].offset + CHUNK.size + 5] ^= 0xFF  # ends well before the window
    path.write_bytes(bytes(data))
    res = _run("replay", "--from", since, "t.dat", cwd=tmp_path)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout == by_index.stdout
    res = _run("replay", "t.dat", cwd=tmp_path)  # the whole replay reaches it
    assert "corrupt chunk at offset" in res.stderr
