"""Trace files whose checksums are right but whose content lies: every reading
command says what is wrong in one line, exits as documented, never shows a
traceback, and still reads every event that can be read (docs/tracefile.md)."""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PREAMBLE, FakeThread, build, event_text, split, uvarint

from fntrace import cli
from fntrace.analysis.replay import RecordedFunction
from fntrace.core import accel
from fntrace.core.events import TEXT_FLAG
from fntrace.formats import tracefile
from fntrace.formats.tracefile import (
    MAX_DEPTH,
    MAX_HEADER,
    Record,
    TraceFileError,
    TraceWriter,
    open_trace,
)

ROOT = str(Path(__file__).resolve().parent.parent)
ENV = {**os.environ, "PYTHONPATH": ROOT}
# info --scan checks every chunk; plain info trusts an intact footer's summary
# (test_fast_info_on_mutations).
COMMANDS = (["info", "--scan"], ["replay"], ["report"], ["dump", "--chrome", "-"],
            ["dump", "--folded", "-"])


# -- a known file, and the tools to rewrite it with correct checksums --------------

def _events(chunk: int) -> list[tuple[Any, tuple[Any, ...]]]:
    """One chunk's (thread, ring event) pairs: two threads, every kind, nesting two deep."""
    out: list[tuple[Any, tuple[Any, ...]]] = []
    ts = 1_000 + chunk * 1_000
    outer, inner, leaf = (RecordedFunction(n, 0) for n in ("m:outer", "m:inner", "m:leaf"))
    for tid, name in ((11, "MainThread"), (12, "worker-0")):
        t = FakeThread(tid, name, tid - 11, "M." if tid == 11 else "..")
        out.append((t, (ts, 0, "E", outer, 0, "x=1", "start")))
        out.append((t, (ts + 10, 0, "E", inner, 1, None, "start")))
        out.append((t, (ts + 20, 0, "X", inner, 1, 10, "return", "2")))
        out.append((t, (ts + 30, 0, "X", outer, 0, 30, "return", None)))
        out.append((t, (ts + 40, 0, "M", f"mark {chunk}")))
        out.append((t, (ts + 50, 0, "F", leaf, outer, "y=3", "start")))
        out.append((t, (ts + 60, 0, "~", "a probe line")))
    return out


HEADER = {"program": "prog.py", "argv": ["prog.py"], "python": "3.11.0",
          "implementation": "cpython", "pid": 4242, "ppid": 1, "start_realtime_ns": 10 ** 18,
          "start_ts": 1_000, "clock": "mono", "tracer": "function_graph", "hostname": "h",
          "options": {"args": True, "instance_options": {"funcgraph-retval": 1}}}
PER_CHUNK = len(_events(0))


def _good(path: Path, compress: str) -> bytes:
    writer = TraceWriter(str(path), HEADER, compress)
    for chunk in range(3):
        writer.write_events(_events(chunk), event_text)
    writer.finish(9_000, {"lost": {}})
    return path.read_bytes()


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return _good(tmp_path_factory.mktemp("hostile") / "good.dat", "zlib")


@pytest.fixture(scope="module")
def good_lz4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The same file as the C writer compresses it (LZ4 blocks)."""
    if getattr(accel.speedups, "lz_compress", None) is None:
        pytest.skip("the LZ4 compressor is the C extension's")
    return _good(tmp_path_factory.mktemp("hostile") / "good.dat", "lz4")


def lz_literals(data: bytes) -> bytes:
    """``data`` as an LZ4 block of literals only (the format's simplest valid block),
    made here so that no compressor is needed (Pyodide has none)."""
    n = len(data)
    if n < 15:
        return bytes([n << 4]) + data
    more, out = n - 15, bytearray([0xF0])
    while more >= 255:
        out.append(255)
        more -= 255
    return bytes(out) + bytes([more]) + data


def lz4_chunk(payload: bytes, size: int | None = None) -> bytes:
    """An LZ4 event chunk (flag 2) of an uncompressed one, declaring ``size``."""
    body = payload[1:]
    return b"\x02" + uvarint(len(body) if size is None else size) + lz_literals(body)


def raw_chunk(strings: list[bytes], funcs: list[tuple[int, int, int, int]],
              threads: list[tuple[int, int, int, int, int]], count: int, body: bytes) -> bytes:
    """An uncompressed event chunk payload, field by field (so any field can lie)."""
    out = b"\x00" + uvarint(len(strings))
    for s in strings:
        out += uvarint(len(s)) + s
    out += uvarint(len(funcs)) + b"".join(b"".join(map(uvarint, row)) for row in funcs)
    out += uvarint(len(threads)) + b"".join(b"".join(map(uvarint, row)) for row in threads)
    return out + uvarint(count) + body


STRINGS = [b"m:f", b"T", b"..", b"arg", b"ret"]
FUNCS = [(0, 0, 0, 0)]   # name-sid, co_flags, file-sid+1, line (format version 2)
THREADS = [(7, 1, 0, 2, 0)]
TWO_THREADS = [*THREADS, (8, 1, 0, 2, 0)]


def entry(depth: int = 0, thread: int | None = None, func: int = 0,
          args: int | None = 3) -> tuple[bytes, bytes]:
    """An entry as format version 4 stores it, (its fields, its times): its
    thread's index only in a chunk of several threads (``thread`` given), its
    arguments' string index only when it has them (TEXT_FLAG); its timestamp
    delta with the chunk's times."""
    head = 1 | 1 << 3 | (0 if args is None else TEXT_FLAG)
    return bytes([head]) + (b"" if thread is None else uvarint(thread)) + uvarint(func) + \
        uvarint(depth) + (b"" if args is None else uvarint(args)), uvarint(20)


def area(*events: tuple[bytes, bytes]) -> bytes:
    """The events after a chunk's count: their fields' length, their fields,
    their times."""
    fields = b"".join(f for f, _ in events)
    return uvarint(len(fields)) + fields + b"".join(t for _, t in events)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """A command in this process: (exit status, stdout, stderr); any exception but
    SystemExit fails the test, as a traceback would be printed."""
    try:
        code: int | str | None = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    if isinstance(code, str):
        err += code + "\n"
        code = 1
    return int(code or 0), out, err


def event_lines(cmd: str, out: str) -> int:
    """How many of the known events a command's output shows."""
    if cmd == "replay":
        return out.count("m:inner") + out.count("mark ")
    if cmd == "report":
        return sum(int(line.split()[2]) for line in out.splitlines() if "m:inner" in line)
    if cmd == "--chrome":
        return out.count('"m:inner"')
    return sum(int(line.rsplit(" ", 1)[1]) > 0 for line in out.splitlines() if "m:inner" in line)


# -- header and footer ---------------------------------------------------------------

BAD_JSON = [b"null", b"[]", b'"x"', b'{"start_ts": "a"}', b"1e400", b"\xff\xfe", b"",
            b"[" * 100_000, b'{"pid": true}', b'{"pid": -1}', b'{"start_realtime_ns": 1e30}',
            b'{"argv": [1]}', b'{"options": {"instance_options": {"x": "y"}}}',
            b'{"options": []}', b'{"pid": 1' + b"0" * 5000 + b"}", b"{" + b" " * MAX_HEADER + b"}"]


def _bad_header(good: bytes, bad: bytes) -> bytes:
    return build(bad, split(good)[1])


def _bad_footer(good: bytes, bad: bytes) -> bytes:
    head, chunks = split(good)
    assert chunks[-1][0] == b"Z"
    return build(head, [*chunks[:-1], (b"Z", bad)])


@pytest.mark.parametrize("bad", BAD_JSON, ids=lambda b: repr(b[:20]))
@pytest.mark.parametrize("where", ["header", "footer"])
def test_corrupt_header_or_footer_every_command(
        good: bytes, bad: bytes, where: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.dat"
    path.write_bytes((_bad_header if where == "header" else _bad_footer)(good, bad))
    tf = open_trace(str(path))
    assert len(tf.corrupt) == 1 and tf.corrupt[0].startswith(f"corrupt {where}")
    assert tf.problems == tf.corrupt
    # Every event is still read (the header's pid is lost: records say pid 0).
    assert tf.events == 3 * PER_CHUNK == sum(1 for _ in tf.records())
    # The oracle: the same file with an empty header (every default), or no footer.
    head, chunks = split(good)
    same = build(b"{}", chunks) if where == "header" else build(head, chunks[:-1])
    (tmp_path / "same.dat").write_bytes(same)
    for argv in COMMANDS:
        want = run_cli([*argv, str(tmp_path / "same.dat")], capsys)
        assert want[0] == 0 and want[2].count("\n") == (where == "footer"), want
        code, out, err = run_cli([*argv, str(path)], capsys)
        assert code == 1, (argv, err)
        assert err.count("\n") == 1 and f"corrupt {where}" in err, (argv, err)
        if argv[0] == "info":
            assert "\nevents:      42\n" in out and "\nevents:      42\n" in want[1]
        else:
            assert out == want[1] and event_lines(argv[-1 if len(argv) == 1 else 1], out) > 0


def test_corrupt_header_subprocess_one_line(good: bytes, tmp_path: Path) -> None:
    """The user's view: one line on stderr, exit 1, no traceback, the events shown."""
    path = tmp_path / "t.dat"
    for i, bad in enumerate([b"null", b'{"start_ts": "a"}', b"\xff\xfe"]):
        path.write_bytes(_bad_header(good, bad) if i != 1 else _bad_footer(good, bad))
        argv = COMMANDS[i % len(COMMANDS)] if i else ["replay"]
        res = subprocess.run([sys.executable, "-m", "fntrace", *argv, str(path)], env=ENV,
                             text=True, capture_output=True, timeout=60)
        assert res.returncode == 1 and res.stderr.count("\n") == 1, res.stderr
        assert "corrupt " in res.stderr and "Traceback" not in res.stderr
        assert res.stdout


def test_corrupt_header_messages(good: bytes, tmp_path: Path) -> None:
    path = tmp_path / "t.dat"
    cases = {b"null": "a JSON NoneType (None), not an object",
             b"1e400": "a JSON float (inf), not an object",
             b"\xff\xfe": "not UTF-8",
             b"[" * 100_000: "nested too deeply",
             b'{"start_ts": "a", "pid": null}': "field pid, start_ts of the wrong type"}
    for bad, why in cases.items():
        path.write_bytes(_bad_header(good, bad))
        assert why in open_trace(str(path)).corrupt[0], bad[:20]
    path.write_bytes(_bad_footer(good, b"{}"))
    assert "no end_ts" in open_trace(str(path)).corrupt[0]


def test_well_formed_file_is_clean(good: bytes, tmp_path: Path) -> None:
    path = tmp_path / "t.dat"
    path.write_bytes(good)
    tf = open_trace(str(path))
    assert tf.problems == [] and tf.corrupt == [] and tf.end_ts == 9_000
    assert tf.pid == 4242 and tf.start_ts == 1_000 and tf.events == 3 * PER_CHUNK
    recs = list(tf.records())
    assert [r.ts for r in recs] == sorted(r.ts for r in recs)
    assert kinds(recs) == {"entry": 12, "exit": 12, "marker": 6, "call": 6, "text": 6}


def kinds(recs: list[Record]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in recs:
        out[r.kind] = out.get(r.kind, 0) + 1
    return out


# -- event chunks that lie -------------------------------------------------------------

def _chunk_cases() -> Iterator[tuple[str, bytes, int, str]]:
    """(name, payload, events still readable from it, what the problem says)."""
    ok = raw_chunk(STRINGS, FUNCS, THREADS, 2, area(entry(), entry(depth=1)))
    yield "well formed", ok, 2, ""
    yield "compression flag", b"\x03" + ok[1:], 0, "unknown compression flag"
    yield "lz4", lz4_chunk(ok), 2, ""
    yield "lz4 size cut", b"\x02\xff", 0, "its decompressed size is cut short"
    yield "lz4 size too small", lz4_chunk(ok, len(ok) - 2), 0, \
        "LZ4 data is corrupt (a literal run goes past the declared size)"
    yield "lz4 size too large", lz4_chunk(ok, len(ok)), 0, \
        "LZ4 data is corrupt (the block ends before the declared size)"
    yield "lz4 size over the limit", b"\x02" + uvarint(tracefile.MAX_PAYLOAD + 1) + b"\x00", 0, \
        f"it declares {tracefile.MAX_PAYLOAD + 1} bytes decompressed, more than"
    yield "lz4 cut", lz4_chunk(ok)[:-3], 0, "LZ4 data is corrupt (the block is cut short)"
    # One literal "x", then a 5-byte match at offset 0, or 9 (before the start).
    yield "lz4 offset 0", b"\x02\x06" + b"\x11x\x00\x00", 0, "(a match offset is 0)"
    yield "lz4 offset before start", b"\x02\x06" + b"\x11x\x09\x00", 0, \
        "(a match reaches before the start)"
    yield "bad zlib", b"\x01garbage", 0, "unreadable chunk"
    yield "cut zlib", b"\x01" + zlib.compress(ok[1:])[:-4], 0, "cut short"
    yield "huge string count", b"\x00" + uvarint(1 << 60), 0, "cannot fit"
    yield "huge event count", raw_chunk(STRINGS, FUNCS, THREADS, 1 << 40, area(entry())), 0, \
        "cannot fit"
    yield "string past end", b"\x00\x01" + uvarint(1000) + b"abc", 0, "runs past"
    yield "function string id", raw_chunk(STRINGS, [(99, 0, 0, 0)], THREADS, 0, b""), 0, \
        "names string 99"
    yield "function file id", raw_chunk(STRINGS, [(0, 0, 99, 3)], THREADS, 0, b""), 0, \
        "a function's file names string 98"
    yield "function line", raw_chunk(STRINGS, [(0, 0, 1, 1 << 40)], THREADS, 0, b""), 0, \
        f"line {1 << 40} is over"
    yield "located", raw_chunk(STRINGS, [(0, 0, 4, 12)], THREADS, 1, area(entry())), 1, ""
    yield "thread string id", raw_chunk(STRINGS, FUNCS, [(7, 1, 0, 99, 0)], 0, b""), 0, \
        "names string 99"
    yield "11-byte varint", b"\x00" + b"\xff" * 10 + b"\x01", 0, "longer than 10 bytes"
    yield "tables cut", b"\x00\x01\x01a\x00\x01\xff\xff\x01\x00\x00", 0, \
        "tables run past its end"
    yield "kind 7", raw_chunk(STRINGS, FUNCS, THREADS, 2, area(entry(), (b"\x07\x00", b"\x00"))), \
        1, "unknown kind/event byte 0x07"
    yield "event 31", raw_chunk(STRINGS, FUNCS, THREADS, 2,
                                area(entry(), (b"\xf9" + entry()[0][1:], entry()[1]))), \
        1, "unknown kind/event byte 0xf9"
    yield "thread index", raw_chunk(STRINGS, FUNCS, TWO_THREADS, 2,
                                    area(entry(thread=0), entry(thread=5))), 1, \
        "index out of range"
    yield "no thread row", raw_chunk(STRINGS, FUNCS, [], 1, area(entry())), 0, \
        "index out of range"
    yield "text flag on a marker", raw_chunk(STRINGS, FUNCS, THREADS, 2,
                                             area(entry(), (b"\x43\x00", b"\x00"))), 1, \
        "unknown kind/event byte 0x43"
    yield "no fields' length", raw_chunk(STRINGS, FUNCS, THREADS, 1, b""), 0, \
        "cannot fit"
    yield "fields past the end", raw_chunk(STRINGS, FUNCS, THREADS, 1, uvarint(1000) + b"\x09"), \
        0, "its events' fields (1000 bytes) run past its end"
    yield "times cut", raw_chunk(STRINGS, FUNCS, THREADS, 2, area(entry(), (entry()[0], b""))), \
        1, "ends inside it"
    yield "function index", raw_chunk(STRINGS, FUNCS, THREADS, 2,
                                      area(entry(), entry(func=3))), 1, "index out of range"
    yield "string index", raw_chunk(STRINGS, FUNCS, THREADS, 2,
                                    area(entry(), entry(args=77))), 1, "index out of range"
    yield "marker string", raw_chunk(STRINGS, FUNCS, THREADS, 1, area((b"\x03\x63", b"\x00"))), 0, \
        "index out of range"
    yield "depth", raw_chunk(STRINGS, FUNCS, THREADS, 2,
                             area(entry(), entry(depth=1 << 62))), 1, f"over {MAX_DEPTH}"
    yield "cut event", raw_chunk(STRINGS, FUNCS, THREADS, 3,
                                 area(entry(), entry(), (b"\x09", b""))), 2, "ends inside it"
    yield "trailing bytes", raw_chunk(STRINGS, FUNCS, THREADS, 1,
                                      area(entry(), (b"\x00\x00", b""))), 1, \
        "2 bytes after its 1 events' fields"
    yield "trailing times", raw_chunk(STRINGS, FUNCS, THREADS, 1, area(entry(), (b"", b"\x00"))), \
        1, "1 bytes after its 1 events' times"
    yield "bad utf-8", raw_chunk([b"m:\xff\xfe", *STRINGS[1:]], FUNCS, THREADS, 1,
                                 area(entry())), 1, ""
    yield "lone surrogate", raw_chunk([b"m:\xed\xa0\x80", *STRINGS[1:]], FUNCS, THREADS, 1,
                                      area(entry())), 1, ""


CHUNK_CASES = list(_chunk_cases())


@pytest.mark.parametrize("name,payload,kept,why", CHUNK_CASES, ids=[c[0] for c in CHUNK_CASES])
def test_lying_event_chunk(good: bytes, name: str, payload: bytes, kept: int, why: str,
                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head, chunks = split(good)
    path = tmp_path / "t.dat"
    # The lying chunk sits between good ones: theirs are all read.
    path.write_bytes(build(head, [chunks[0], (b"E", payload), *chunks[1:]]))
    tf = open_trace(str(path))
    assert tf.events == 3 * PER_CHUNK + kept
    assert tf.corrupt == []
    if why:
        assert len(tf.problems) == 1 and why in tf.problems[0], tf.problems
    else:
        assert tf.problems == []
    funcs = {r.func for r in tf.records() if r.tid == 7}
    assert len(funcs) == (1 if kept else 0)
    for f in funcs:  # read with escapes, printable whatever the output's encoding
        f.encode("utf-8")
    for argv in COMMANDS:
        code, _out, err = run_cli([*argv, str(path)], capsys)
        assert code == 0, (argv, err)
        assert err.count("\n") == (1 if why else 0), (argv, err)


def test_decompression_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                             good: bytes) -> None:
    """A small chunk that inflates past MAX_PAYLOAD is refused, not inflated."""
    monkeypatch.setattr(tracefile, "MAX_PAYLOAD", 1 << 16)
    head, chunks = split(good)
    bomb = b"\x01" + zlib.compress(b"\x00" * (1 << 20), 9)
    path = tmp_path / "t.dat"
    path.write_bytes(build(head, [*chunks[:-1], (b"E", bomb), chunks[-1]]))
    tf = open_trace(str(path))
    assert tf.events == 3 * PER_CHUNK
    assert len(tf.problems) == 1 and "more than 65536 bytes" in tf.problems[0]


def test_unknown_chunk_type_and_cut_preamble(good: bytes, tmp_path: Path) -> None:
    head, chunks = split(good)
    path = tmp_path / "t.dat"
    path.write_bytes(build(head, [(b"Q", b"{}"), *chunks]))
    tf = open_trace(str(path))
    assert tf.events == 3 * PER_CHUNK and len(tf.problems) == 1
    assert "unknown chunk type b'Q'" in tf.problems[0]
    path.write_bytes(good[:PREAMBLE.size + 3])
    with pytest.raises(TraceFileError, match="header is truncated or corrupt"):
        open_trace(str(path))


# -- random mutations ---------------------------------------------------------------

def _mutate(rng: random.Random, data: bytes) -> bytes:
    """Flip, insert or delete a few bytes of one part, then fix every checksum
    (and recompress), so only the reader's own checks can catch it.  A zlib
    chunk has its content changed; an LZ4 chunk (the C writer's) its block's
    own bytes, which the block's checks must catch."""
    head, chunks = split(data)
    parts: list[bytes] = [head] + [
        zlib.decompress(p[1:]) if k == b"E" and p[:1] == b"\x01" else p for k, p in chunks]
    i = rng.randrange(len(parts))
    part = bytearray(parts[i])
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        at = rng.randrange(len(part) + 1)
        if op < 0.6 and part:
            at = min(at, len(part) - 1)
            part[at] = rng.choice([rng.randrange(256), 0, 0x7F, 0x80, 0xFF, part[at] ^ 1])
        elif op < 0.8:
            part[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
        else:
            del part[at:at + rng.randint(1, 3)]
    parts[i] = bytes(part)
    new_chunks = []
    for (k, p), body in zip(chunks, parts[1:], strict=False):
        if k == b"E" and p[:1] == b"\x01":
            body = b"\x01" + zlib.compress(body)
        new_chunks.append((k, body))
    return build(parts[0], new_chunks)


@pytest.mark.parametrize("compress,seed,runs", [("zlib", 20261206, 300), ("lz4", 20261208, 200)])
def test_random_mutations_never_escape(compress: str, seed: int, runs: int, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str],
                                       request: pytest.FixtureRequest) -> None:
    """Content mutations (zlib's chunks), and LZ4 blocks' own bytes mutated."""
    good = request.getfixturevalue("good" if compress == "zlib" else "good_lz4")
    rng = random.Random(seed)
    path = tmp_path / "t.dat"
    outcomes: dict[str, int] = {}
    for n in range(runs):
        path.write_bytes(_mutate(rng, good))
        try:
            tf = open_trace(str(path))
        except TraceFileError:
            outcomes["refused"] = outcomes.get("refused", 0) + 1
            continue
        kind = "corrupt" if tf.corrupt else "problems" if tf.problems else "clean"
        outcomes[kind] = outcomes.get(kind, 0) + 1
        assert all("\n" not in p for p in tf.problems)
        for argv in (COMMANDS[n % len(COMMANDS)], ["replay"]):
            code, _out, err = run_cli([*argv, str(path)], capsys)
            assert code == (1 if tf.corrupt else 0), (n, argv, err)
            assert err.count("\n") == len(tf.problems), (n, argv, err)
    # The mutations reached every outcome, so each branch was exercised.
    assert set(outcomes) >= {"corrupt", "problems", "clean"}, outcomes


def test_fast_info_on_mutations(good: bytes, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """Plain info reads the footer when the file ends with an intact one, else the
    whole file: never a traceback, and what it says of a file is either the
    footer's summary (what the writer counted) or the full read's."""
    rng = random.Random(20261207)
    path = tmp_path / "t.dat"
    path.write_bytes(good)
    _, want, _ = run_cli(["info", str(path)], capsys)
    good_head, good_chunks = split(good)
    fast = 0
    for _ in range(200):
        data = _mutate(rng, good)
        path.write_bytes(data)
        code, out, err = run_cli(["info", str(path)], capsys)
        try:
            tf = open_trace(str(path))
        except TraceFileError:
            assert code == 1 and err.count("\n") == 1 and not out
            continue
        scan = run_cli(["info", "--scan", str(path)], capsys)
        if tracefile.read_finished(str(path)) is not None:
            fast += 1
            assert (code, err) == (0, "") and tf.corrupt == []
            head, chunks = split(data)
            if head == good_head and chunks[-1] == good_chunks[-1]:
                # an event chunk changed: the footer still says the file (its size aside)
                assert out.split("\n")[1:] == want.split("\n")[1:]
        else:
            assert (code, out, err) == scan
        assert code == (1 if tf.corrupt else 0)
    assert fast > 0


def test_header_tracers_are_the_tracers() -> None:
    from fntrace.tracing import tracers

    assert list(tracefile.TRACERS) == tracers.available()


# -- grammars: every hostile input is a ValueError with a column ------------------------

def _grammar_cases() -> Iterator[tuple[str, Any, str, str]]:
    from fntrace.tracing.inject import parse_inject_spec, parse_retval
    from fntrace.tracing.probes.condition import parse_condition
    from fntrace.tracing.probes.parser import parse_spec

    spec = "json:dumps:"
    yield "raise UnicodeDecodeError", parse_inject_spec, spec + "raise=UnicodeDecodeError(1)", \
        "'UnicodeDecodeError(1)' cannot be built: TypeError"
    yield "raise ExceptionGroup", parse_inject_spec, spec + "raise=ExceptionGroup('a', 1)", \
        "cannot be built: TypeError"
    yield "raise BaseExceptionGroup", parse_inject_spec, spec + "raise=BaseExceptionGroup()", \
        "cannot be built: TypeError"
    yield "raise unhashable", parse_inject_spec, spec + "raise=OSError({[1]: 2})", \
        "exception arguments must be literals"
    # (3.14 words the TypeError differently: "cannot use 'list' as a dict key (...)")
    yield "retval unhashable", parse_inject_spec, spec + "retval={[1]: 2}", \
        "column 18: not a Python literal ("
    yield "retval 100k signs", parse_inject_spec, spec + "retval=" + "-" * 100_000 + "1", \
        "column 4096: longer than 4096 characters"
    yield "retval 33 signs", parse_inject_spec, spec + "retval=" + "-" * 33 + "1", \
        "column 50: more than 32 signs in a row"
    yield "retval deep list", parse_inject_spec, spec + "retval=" + "[" * 33 + "]" * 33, \
        "column 50: brackets nested deeper than 32"
    yield "retval syntax", parse_inject_spec, spec + "retval=1 2", \
        "column 20: not a Python literal"
    yield "times digits", parse_inject_spec, spec + "times=" + "9" * 5000, \
        "column 4096: longer than 4096"
    yield "times 30 digits", parse_inject_spec, spec + "times=" + "9" * 30, \
        "times: expected an integer"
    yield "retval file", parse_retval, "-" * 100_000 + "1", "longer than 4096 characters"
    yield "retval file group", parse_retval, "BaseExceptionGroup()", "cannot be built"
    probe = "f:g/e json:dumps "
    yield "len nesting", parse_spec, probe + "len(" * 3000 + "x" + ")" * 3000, \
        "len() nested deeper than 32 (column 145)"
    yield "len 33", parse_spec, probe + "len(" * 33 + "x" + ")" * 33, \
        "len() nested deeper than 32 (column 145)"
    yield "steps", parse_spec, probe + "x" + ".a" * 65, \
        "more than 64 attribute and item accesses (column 146)"
    yield "key digits", parse_spec, probe + "x[" + "9" * 5000 + "]", \
        "an integer key of more than 20 digits (column 19)"
    yield "argN digits", parse_spec, probe + "$arg" + "9" * 5000, "unknown variable $arg999"
    yield "long line", parse_spec, probe + "x " * 10_000, "(at most 16384)"
    yield "paren 3000", parse_condition, "(" * 3000 + "a==1" + ")" * 3000, \
        "a filter of 6004 characters (at most 4096)"
    yield "paren 33", parse_condition, "(" * 33 + "a==1" + ")" * 33, \
        "'(' and '!' nested deeper than 32 (column 32)"
    yield "bang 5000", parse_condition, "!" * 5000 + "a==1", "(at most 4096)"
    yield "bang 33", parse_condition, "!" * 33 + "a==1", "nested deeper than 32 (column 32)"
    yield "terms", parse_condition, "a==1 || " * 300 + "a==1", \
        "more than 256 comparisons (column 2048)"
    yield "number", parse_condition, "a==" + "9" * 100, "more than 40 characters (column 3)"


GRAMMAR_CASES = list(_grammar_cases())


@pytest.mark.parametrize("name,parse,text,message", GRAMMAR_CASES,
                         ids=[c[0] for c in GRAMMAR_CASES])
def test_grammar_refuses_with_value_error(name: str, parse: Any, text: str,
                                          message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse(text)
    assert message in str(info.value), str(info.value)[:300]
    assert len(str(info.value)) < 1000   # the message never echoes a whole bomb


def test_grammar_limits_accept_what_they_promise() -> None:
    from fntrace.tracing.inject import parse_inject_spec
    from fntrace.tracing.probes.condition import parse_condition
    from fntrace.tracing.probes.parser import parse_spec

    deep = "[" * 32 + "]" * 32
    assert parse_inject_spec(f"json:dumps:retval={deep}")["retval"] == eval(deep)
    with pytest.raises(ValueError, match="not a Python literal"):  # under the limit: parsed
        parse_inject_spec("json:dumps:retval=" + "-" * 32 + "1")
    spec = parse_spec("f:g/e json:dumps " + "len(" * 32 + "x" + ")" * 32)
    assert isinstance(spec, type(spec)) and len(spec.args[0].steps) == 32
    cond = parse_condition("(" * 16 + "!" * 16 + "a==1" + ")" * 16)
    assert cond.matches({"a": 1}) and not cond.matches({"a": 2})
    # 256 alternatives test an event without recursing 256 deep.
    many = parse_condition(" || ".join(f"a=={i}" for i in range(256)))
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100)
    try:
        assert many.matches({"a": 255}) and not many.matches({"a": 256})
    finally:
        sys.setrecursionlimit(limit)


HOSTILE_WRITES = ["(" * 3000, "!" * 5000 + "a", "[" * 20_000, "-" * 20_000 + "1", "9" * 5000,
                  "-" + "9" * 30, "99999999999999999999", str(1 << 41), "\x00", "\ud800", "²",
                  "a" * 5000, "{" * 3000, "[" * 3000 + "]" * 3000, "1e400", "nan", "-1", "0x10",
                  " ", "\n\n\n", "1 2", "a:b:c:d:e:f", "*:mod:" + "[" * 3000,
                  "x:traceon:" + "9" * 5000, "json.*:snapshot:99999999999999999999999",
                  "UnicodeDecodeError(1)", "BaseExceptionGroup()"]


def test_every_tracefs_file_refuses_hostile_writes() -> None:
    """Every file of an instance, every hostile text: written, or a ValueError/OSError;
    the instance still works after each (no accepted value that breaks it later: a
    huge buffer_size_kb once made every new thread's first event raise OverflowError)."""
    import threading

    from fntrace.tracing.instance import Instance

    inst = Instance("hostile")

    def mark(text: str) -> None:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                inst.write("trace_marker", text)
            except BaseException as exc:
                errors.append(exc)
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        assert errors == [], (text, errors)

    try:
        inst.write("dynamic_events", "f:ok/ev json:dumps obj")
        inst.write("fail_function/inject", "json:dumps")

        def walk(path: str) -> list[str]:
            out: list[str] = []
            for name in inst.listdir(path):
                full = f"{path}/{name}" if path else name
                try:
                    out += walk(full)
                except (OSError, ValueError):
                    out.append(full)
            return out

        files = [f for f in walk("") if not f.endswith("trace_pipe")]
        assert len(files) > 40
        for path in files:
            for text in HOSTILE_WRITES:
                if path == "fail_function/inject" and text not in HOSTILE_WRITES[:3]:
                    # Each write scans every loaded function (slow), and a glob that
                    # matches fntrace's own helpers is a real request, not a bad one.
                    continue
                for append in (False, True):
                    try:
                        inst.write(path, text, append=append)
                    except (ValueError, OSError):
                        pass
                    if "size" in path or "option" in path:
                        mark(f"after {path}")
            mark(f"after {path}")
        inst.write("options/markers", "1")
        inst.write("tracing_on", "1")
        mark("still works")
        assert "still works" in inst.read("trace")
    finally:
        inst.close()


@pytest.mark.parametrize("spec", [
    "json:dumps:raise=UnicodeDecodeError(1)", "json:dumps:raise=ExceptionGroup('a', 1)",
    "json:dumps:raise=BaseExceptionGroup()", "json:dumps:retval=" + "-" * 100_000 + "1"],
    ids=["UnicodeDecodeError", "ExceptionGroup", "BaseExceptionGroup", "signs"])
def test_record_inject_spec_is_one_line(spec: str, tmp_path: Path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text("print('ran')\n")
    res = subprocess.run([sys.executable, "-m", "fntrace", "record", "-o",
                          str(tmp_path / "t.dat"), "--inject", spec, "--", str(prog)],
                         env=ENV, text=True, capture_output=True, timeout=60)
    assert res.returncode == 1 and res.stdout == "", res
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("fntrace record: inject spec ") and len(res.stderr) < 600


def test_json_nesting_is_measured_before_parsing() -> None:
    # Pyodide's machine stack ends before json.loads reaches the recursion limit: a
    # header of '[' * 20 (crafted with a valid CRC) killed the whole process there.
    from fntrace.formats.nesting import MAX_DEPTH, too_deep

    assert not too_deep("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert too_deep("[" * (MAX_DEPTH + 1))
    assert too_deep('{"a": ' * (MAX_DEPTH + 1))
    # Brackets inside strings, escaped quotes included, are text, not nesting.
    assert not too_deep('{"k": "' + "[" * 100 + '\\"' + "{" * 100 + '"}')
    assert not too_deep('["]' + "]" * 50 + '"]')


@pytest.mark.parametrize("where", ["header", "footer"])
def test_view_says_a_corrupt_header_or_footer_in_its_status(good: bytes, where: str,
                                                          tmp_path: Path) -> None:
    """``fntrace view`` serves what it could read, one warning line, and then exits 1 as
    replay and dump do (0 for the same events without the damage)."""
    from fntrace.analysis.view import view

    bad = b'{"pid": true}'
    damaged = (_bad_header if where == "header" else _bad_footer)(good, bad)
    head, chunks = split(good)
    same = build(b"{}", chunks) if where == "header" else build(head, chunks[:-1])
    codes = []
    for name, data in (("bad.dat", damaged), ("same.dat", same)):
        (tmp_path / name).write_bytes(data)
        out = io.StringIO()
        codes.append(view([str(tmp_path / name)], port=0, open_browser=False, out=out,
                          started=lambda server, url: threading.Thread(
                              target=server.shutdown, daemon=True).start()))
        assert "serving speedscope" in out.getvalue()
    assert codes == [1, 0]


def test_a_footer_missing_a_thread_of_the_chunks(good: bytes, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A footer (correct CRC) whose thread list names another tid than the
    chunks hold: replay, which opens the file by its footer, says so in one
    line and exits 1; the commands that read the chunks' own thread rows
    show every event."""
    import json

    head, chunks = split(good)
    footer = json.loads(chunks[-1][1])
    assert [row["tid"] for row in footer["threads"]] == [11, 12]
    footer["threads"][1]["tid"] = 13
    path = tmp_path / "lying-footer.dat"
    path.write_bytes(build(head, [*chunks[:-1],
                                  (b"Z", json.dumps(footer, sort_keys=True).encode())]))
    code, out, err = run_cli(["replay", str(path)], capsys)
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "fntrace replay: corrupt footer: thread 12 of pid 4242 has events but is not in the "
        "footer's thread list; `fntrace info --scan` reads the file in full")
    (tmp_path / "good.dat").write_bytes(good)
    code, want, err = run_cli(["report", str(tmp_path / "good.dat")], capsys)
    code, out, err = run_cli(["report", str(path)], capsys)
    assert (code, event_lines("report", out)) == (0, event_lines("report", want))
