"""The event chunks' LZ4 block compression (trace file flag 2, version 3).

fntrace/csrc/lzblock.c compresses and decompresses the LZ4 block format and
fntrace/formats/lzblock.py decompresses it in Python (readers without the C
extension).  The ``lz4`` package (a test dependency only) is the independent
oracle: our blocks are its blocks, its blocks are ours.  The two decompressors
agree on every corruption, a declared size is refused before anything is
allocated for it, and a recording read through LZ4 chunks has the very
records the same program recorded with zlib or no compression has.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import FakeThread, build, event_text, needs_subprocess, split, uvarint

import fntrace.core.accel
from fntrace.analysis.replay import RecordedFunction
from fntrace.formats import lzblock, tracefile
from fntrace.formats.tracefile import MAX_PAYLOAD, TraceWriter, open_trace

built = fntrace.core.accel.built
needs_lz = pytest.mark.skipif(built is None or not hasattr(built, "lz_compress"),
                              reason="the C extension is not built")
ROOT = Path(__file__).resolve().parent.parent

Decompress = Callable[[bytes, int], bytes]


def decompressors() -> list[Decompress]:
    """Python's, and C's where it is built."""
    found: list[Decompress] = [lzblock.decompress]
    if built is not None and hasattr(built, "lz_decompress"):
        found.append(built.lz_decompress)
    return found


def outcome(fn: Decompress, block: bytes, size: int) -> bytes | str:
    try:
        return fn(block, size)
    except ValueError as exc:
        return f"ValueError: {exc}"


def samples() -> list[bytes]:
    rng = random.Random(15)
    out = [b"", bytes(1000), b"ab" * 5000, os.urandom(3000), bytes(range(256)) * 300,
           b"fntrace " * 2 + os.urandom(9) + b"fntrace " * 40]
    out += [bytes(rng.randrange(4) for _ in range(n)) for n in range(1, 21)]
    # Short literal runs near both ends of the block (the compressor copies
    # them 16 bytes at a time where both buffers have room).
    out += [bytes(rng.randrange(3) for _ in range(n)) for n in range(21, 96)]
    out += [os.urandom(n) for n in range(1, 21)]
    out += [bytes(rng.choice(b"abcdefgh") for _ in range(rng.randrange(20_000)))
            for _ in range(20)]
    # Long literal runs and long matches: lengths past 15 + 255 * k.
    out += [os.urandom(300) + bytes(70_000) + os.urandom(600)]
    return out


# -- the format, with no compressor of ours (runs under Pyodide too) ----------------

def test_hand_made_blocks() -> None:
    """Literals, an overlapping match (a repeating pattern), a run of one byte, the
    length bytes of 15 + 255 + n: each decompressor reads them the same."""
    cases = [
        (b"\x00", b""),
        (b"\x30abc", b"abc"),
        # "ab", then 7 bytes from offset 2 (overlapping), then 5 literals.
        (b"\x23ab\x02\x00\x50hello", b"ab" * 4 + b"a" + b"hello"),
        # "z", then 4 + 15 + 255 + 10 bytes from offset 1, then "end!!".
        (b"\x1fz\x01\x00\xff\x0a\x50end!!", b"z" * 285 + b"end!!"),
        # 15 + 255 + 2 literals.
        (b"\xf0\xff\x02" + bytes(range(256)) + b"0123456789abcdef", bytes(range(256))
         + b"0123456789abcdef"),
    ]
    for block, want in cases:
        for fn in decompressors():
            assert fn(block, len(want)) == want, (fn, block[:8])


@pytest.mark.parametrize("block,size,why", [
    (b"", 0, "the block is cut short"),
    (b"\x30ab", 3, "the block is cut short"),
    (b"\x30abc", 2, "a literal run goes past the declared size"),
    (b"\x30abc", 4, "the block ends before the declared size"),
    (b"\x10a\x00\x00\x00", 9, "a match offset is 0"),
    (b"\x10a\x02\x00\x00", 9, "a match reaches before the start"),
    (b"\x10a\x01", 9, "the block is cut short"),
    (b"\x1fa\x01\x00\xff", 400, "the block is cut short"),
    (b"\x1fa\x01\x00\xff\xff\x00\x00", 400, "a match goes past the declared size"),
    (b"\xf0" + b"\xff" * 20, 300, "a literal run goes past the declared size"),
    (b"\x10a\x01\x00", 10, "the block is cut short"),  # a match, then no last literals
    (b"\x10a", 1 << 20, "a block of 2 bytes cannot hold 1048576"),
    (b"\x10a", -1, "a block of 2 bytes cannot hold -1"),
])
def test_hostile_blocks_are_one_line_errors(block: bytes, size: int, why: str) -> None:
    for fn in decompressors():
        with pytest.raises(ValueError) as err:
            fn(block, size)
        assert str(err.value) == why, fn


def test_a_declared_size_is_refused_before_it_is_allocated() -> None:
    """A chunk that declares the most a chunk may hold, in ten bytes: refused
    (no block of ten bytes makes it) without a byte allocated for it, by each
    decompressor and by the reader; one over the limit is refused by its size."""
    block = b"\x1f" + b"a\x01\x00" + b"\xff" * 6
    for fn in decompressors():
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match="cannot hold"):
                fn(block, MAX_PAYLOAD)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, (fn, peak)
    for size, why in ((MAX_PAYLOAD, "cannot hold"),
                      (MAX_PAYLOAD + 1, f"declares {MAX_PAYLOAD + 1} bytes decompressed")):
        payload = b"\x02" + uvarint(size) + block
        tracemalloc.start()
        try:
            with pytest.raises(tracefile.ChunkError, match=why):
                tracefile.Chunk([], [], [], 0, 0, payload).data  # noqa: B018 (read to check)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, peak


def _read_size(payload: bytes) -> tuple[int, int]:
    """An LZ4 chunk's declared size and where its block starts."""
    size = shift = 0
    at = 1
    while True:
        b = payload[at]
        at += 1
        size |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return size, at


# -- against the lz4 package ---------------------------------------------------------

@needs_lz
def test_our_blocks_are_lz4_blocks() -> None:
    oracle = pytest.importorskip("lz4.block")
    for data in samples():
        block = built.lz_compress(data)
        assert oracle.decompress(block, uncompressed_size=len(data)) == data
        for fn in decompressors():
            assert fn(block, len(data)) == data
    # Compressible data is compressed, incompressible is not made much larger.
    assert len(built.lz_compress(b"ab" * 5000)) < 100
    noise = os.urandom(10_000)
    assert len(built.lz_compress(noise)) <= len(noise) + len(noise) // 255 + 16


def test_lz4_blocks_are_ours() -> None:
    oracle = pytest.importorskip("lz4.block")
    for data in samples():
        for mode in ("default", "fast", "high_compression"):
            block = oracle.compress(data, mode=mode, store_size=False)
            for fn in decompressors():
                assert fn(block, len(data)) == data, (fn, mode, len(data))


@needs_lz
def test_the_decompressors_agree_on_corruptions() -> None:
    """Bytes flipped, inserted or deleted, and sizes off by one: C and Python give
    the same bytes or the same one-line error, and never read out of bounds
    (a fault would end the run)."""
    rng = random.Random(1515)
    blocks = [(built.lz_compress(d), len(d)) for d in samples() if d]
    errors = 0
    for _ in range(4000):
        good, size = rng.choice(blocks)
        block = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(block))
            op = rng.random()
            if op < 0.6:
                block[at] = rng.choice([rng.randrange(256), 0, 15, 0xF0, 0xFF, block[at] ^ 1])
            elif op < 0.8:
                del block[at]
            else:
                block.insert(at, rng.randrange(256))
        size += rng.choice([0, 0, 0, -1, 1])
        got = [outcome(fn, bytes(block), size) for fn in decompressors()]
        assert got[0] == got[1], (bytes(block), size)
        errors += isinstance(got[0], str)
    assert 0 < errors < 4000


# -- the trace file ---------------------------------------------------------------------

def test_the_writer_chooses_lz4_with_the_c_extension(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    header = {"pid": 1, "tracer": "function_graph", "start_ts": 0}
    want = "lz4" if built is not None and hasattr(built, "lz_compress") else "zlib"
    assert TraceWriter(str(tmp_path / "a.dat"), header).compression == want
    assert TraceWriter(str(tmp_path / "b.dat"), header, False).compression == "none"
    assert TraceWriter(str(tmp_path / "c.dat"), header, "zlib").compression == "zlib"
    monkeypatch.setattr(fntrace.core.accel, "speedups", None)
    assert TraceWriter(str(tmp_path / "d.dat"), header).compression == "zlib"
    with pytest.raises(ValueError, match="lz4 compression needs fntrace's C extension"):
        TraceWriter(str(tmp_path / "e.dat"), header, "lz4")
    assert not (tmp_path / "e.dat").exists()
    with pytest.raises(ValueError, match="unknown compression 'gzip'"):
        TraceWriter(str(tmp_path / "f.dat"), header, "gzip")


def _three_chunks(path: Path, compress: str) -> None:
    writer = TraceWriter(str(path), {"pid": 3, "tracer": "function_graph", "start_ts": 0},
                         compress)
    fns = [RecordedFunction(f"m:f{i}", 0) for i in range(40)]
    for chunk in range(3):
        t = FakeThread(7, "MainThread", 0, "M.")
        events = []
        for i, f in enumerate(fns):
            ts = chunk * 10_000 + i * 100
            events += [(t, (ts, 0, "E", f, 0, f"x={i}", "start")),
                       (t, (ts + 50, 0, "X", f, 0, 50, "return", str(i * chunk)))]
        writer.write_events(events, event_text)
    writer.finish(40_000)


@needs_lz
def test_a_corrupt_lz4_chunk_is_one_line_and_the_rest_is_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The middle chunk's declared size made one more than its block holds (its
    checksum made right): info --scan and replay say so in one line and read
    the two others, by the C decompressor and by the Python one."""
    from fntrace import cli

    path = tmp_path / "t.dat"
    _three_chunks(path, "lz4")
    head, chunks = split(path.read_bytes())
    assert [p[:1] for k, p in chunks if k == b"E"] == [b"\x02"] * 3
    kind, payload = chunks[1]
    size, at = _read_size(payload)
    lying = b"\x02" + uvarint(size + 1) + payload[at:]
    path.write_bytes(build(head, [chunks[0], (kind, lying), *chunks[2:]]))
    offset = len(build(head, chunks[:1]))
    for speedups in (built, None):
        monkeypatch.setattr(fntrace.core.accel, "speedups", speedups)
        for argv in (["info", "--scan"], ["replay"]):
            code = cli.main([*argv, str(path)])
            out, err = capsys.readouterr()
            assert code == 0
            assert err == (f"fntrace {argv[0]}: warning: {path}: unreadable chunk at offset "
                           f"{offset}: its LZ4 data is corrupt (the block ends before the "
                           f"declared size); skipped\n"), (speedups, argv)
            if argv == ["replay"]:
                assert out.count("m:f3(x=3)") == 2  # chunks 0 and 2
        tf = open_trace(str(path))
        assert tf.events == 2 * 80 and len(tf.problems) == 1


@needs_subprocess
@needs_lz
def test_lz4_zlib_and_none_recordings_hold_the_same_records(tmp_path: Path) -> None:
    """The same deterministic program recorded with each compression: every record
    the same but for the clock (timestamps, durations) and the process; the real
    chunks round-trip through our compressor and both decompressors, and the lz4
    package reads our blocks of them."""
    program = textwrap.dedent("""
        import threading

        def leaf(x, tag="t"):
            return x * 2

        def mid(x):
            return leaf(x) + leaf(x + 1, tag="u" * (x % 7))

        def work(n):
            total = 0
            for i in range(n):  # no generator: its argument's text is an address
                total += mid(i)
            return total

        t = threading.Thread(target=work, args=(300,), name="w1")
        t.start()
        t.join()
        print(work(2000))
    """)
    (tmp_path / "prog.py").write_text(program)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    files = {}
    for compress in ("lz4", "zlib", "none"):
        out = tmp_path / f"{compress}.dat"
        # The program's own functions only: threading's arguments' texts are addresses.
        subprocess.run([sys.executable, "-m", "fntrace", "record", "--args", "--retval",
                        "-F", "__main__:*", "--compress", compress, "-o", str(out), "--",
                        "prog.py"],
                       cwd=tmp_path, env=env, check=True, capture_output=True)
        files[compress] = out
    flags = {name: {p[:1] for k, p in split(f.read_bytes())[1] if k == b"E"}
             for name, f in files.items()}
    assert flags == {"lz4": {b"\x02"}, "zlib": {b"\x01"}, "none": {b"\x00"}}

    def records(path: Path) -> list[tuple[object, ...]]:
        tf = open_trace(str(path))
        assert tf.problems == [] and tf.version == tracefile.VERSION
        names = {key[1]: info.name for key, info in tf.threads.items()}
        return sorted((names[r.tid], r.kind, r.func, r.parent, r.depth, r.event, r.args,
                       r.value, r.text, r.code_flags, r.src_file, r.src_line)
                      for r in tf.records())

    want = records(files["none"])
    assert len(want) > 4 * 2300
    assert records(files["lz4"]) == want
    assert records(files["zlib"]) == want
    # The real chunks, every way round.
    oracle = pytest.importorskip("lz4.block")
    payloads = [p[1:] for k, p in split(files["none"].read_bytes())[1] if k == b"E"]
    assert payloads
    for data in payloads:
        block = built.lz_compress(data)
        assert oracle.decompress(block, uncompressed_size=len(data)) == data
        for fn in decompressors():
            assert fn(block, len(data)) == data
            assert fn(oracle.compress(data, store_size=False), len(data)) == data
        assert len(block) < len(data)


@needs_subprocess
def test_record_compress_option_without_the_c_extension(tmp_path: Path) -> None:
    """--compress lz4 where the C extension is off: one line, a non-zero exit, no
    file; the default there is zlib."""
    (tmp_path / "prog.py").write_text("print('ok')\n")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "FNTRACE_PURE": "1"}
    res = subprocess.run([sys.executable, "-m", "fntrace", "record", "--compress", "lz4",
                          "-o", "x.dat", "--", "prog.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert res.returncode != 0 and res.stdout == ""
    assert res.stderr == ("fntrace record: lz4 compression needs fntrace's C extension (C hot "
                          "path: off (FNTRACE_PURE is set)); use zlib or none\n")
    assert not (tmp_path / "x.dat").exists()
    res = subprocess.run([sys.executable, "-m", "fntrace", "record", "-o", "y.dat", "--",
                          "prog.py"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout == "ok\n"
    flags = {p[:1] for k, p in split((tmp_path / "y.dat").read_bytes())[1] if k == b"E"}
    assert flags == {b"\x01"}
