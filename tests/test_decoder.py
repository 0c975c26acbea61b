"""The C reading path against the pure-Python one it must equal exactly.

fntrace/csrc/decode.c (ChunkDecoder) decodes a chunk's events into Records and
fntrace/csrc/aggregate.c (ReportAggregator) makes report's numbers straight
from the encoded chunks.  The Python decoder (tracefile._decode) and
report.build over segments.walk are the reference: on random traces (threads,
nesting, generators' resumptions, unwinds, exits without entries, args and
return values, markers and task notes, lost events, timestamps that tie and
that go back), on chunks corrupted so that they still pass their checksum, on
numbers over 64 bits, on the version-1 fixtures and on real recordings made
by both writers (C and pure Python), the records and the reports are the same.
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest
from helpers import FakeThread, event_text, needs_subprocess, uvarint

import fntrace.core.accel
from fntrace.analysis import dump, report
from fntrace.analysis.replay import RecordedFunction
from fntrace.core.events import EVENT_NAMES, EVENT_SHIFT, RECORD_KINDS, TASK_PREFIX, TEXT_FLAG
from fntrace.formats import tracefile
from fntrace.formats.tracefile import TraceFile, TraceWriter, merged_records

built = fntrace.core.accel.built
needs_c = pytest.mark.skipif(built is None, reason="the C extension is not built")
DATA = Path(__file__).with_name("data")
ROOT = Path(__file__).resolve().parent.parent


def read(path: Path, c: bool, monkeypatch: pytest.MonkeyPatch) -> TraceFile:
    """The file opened on the C reading path or the pure one."""
    with monkeypatch.context() as m:
        m.setattr(fntrace.core.accel, "speedups", built if c else None)
        return tracefile.open_trace(str(path))


def both(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[TraceFile, TraceFile]:
    return read(path, True, monkeypatch), read(path, False, monkeypatch)


def same_file(c: TraceFile, p: TraceFile) -> None:
    """Everything a reader reads of the file is the same on both paths."""
    assert c.problems == p.problems
    assert c.events == p.events
    assert c.threads == p.threads
    assert c.lost == p.lost
    assert list(c.records()) == list(p.records())
    # The streamed merge of the chunks is one stable sort of all their records.
    flat = [rec for chunk in p.chunks() for rec in p.chunk_records(chunk)]
    assert list(p.records()) == sorted(flat, key=lambda rec: rec.ts)
    assert c.tally() == p.tally()  # info --scan's counts
    records = list(p.records())
    counts: dict[tuple[int, int], int] = {}
    for rec in records:
        counts[rec.pid, rec.tid] = counts.get((rec.pid, rec.tid), 0) + 1
    assert p.tally() == (counts, max((r.ts for r in records), default=None))


def same_report(c: TraceFile, p: TraceFile) -> None:
    """The C aggregator's report is report.build's, and its folded stacks are
    dump.folded_stacks', merged and per thread."""
    names = {key: info.name for key, info in p.threads.items()}
    for per_thread in (False, True):
        fast = report.build_from_chunks([c], per_thread)
        assert fast is not None
        slow = report.build(merged_records([p]), per_thread)
        assert fast.has_durations == slow.has_durations
        assert fast.tables == slow.tables
        folded = dump.folded_from_chunks([c], per_thread, names)
        assert folded is not None
        assert folded == dump.folded_stacks(merged_records([p]), per_thread, names)


# -- random traces -----------------------------------------------------------------------

NAMES = ["m:f", "m:g", "m:gen", "pkg.mod:Klass.method", "m:f", "u:\u00e9t\u00e9", "m:w\udc80"]


def functions() -> list[RecordedFunction]:
    """Functions, two of them with the same name at different places."""
    out = []
    for i, name in enumerate(NAMES):
        out.append(RecordedFunction(name, 0x20 if "gen" in name else 3,
                                    None if i == 3 else f"/src/file{i % 3}.py", 10 + i))
    return out


def random_events(rng: random.Random, fns: list[RecordedFunction], threads: list[FakeThread],
                  n: int, clock: dict[int, int]) -> list[tuple[FakeThread, tuple[Any, ...]]]:
    """n ring events: per thread a random walk of entries and exits (some exits
    without their entry, some entries never exited, generators suspended and
    resumed), function-tracer calls, markers and task notes; timestamps mostly
    rising per thread, with ties and a few steps back."""
    stacks: dict[int, list[tuple[RecordedFunction, int]]] = {t.tid: [] for t in threads}
    out: list[tuple[FakeThread, tuple[Any, ...]]] = []
    for _ in range(n):
        th = rng.choice(threads)
        step = rng.choice([0, 0, 1, 3, 50, 1000]) if rng.random() > 0.02 else -rng.randint(1, 90)
        ts = clock[th.tid] = max(clock[th.tid] + step, 0)
        stack = stacks[th.tid]
        r = rng.random()
        args = rng.choice([None, None, "x=1", "a='\u00e9', b=[1, 2]"])
        if r < 0.4 and len(stack) < 12:
            fn = rng.choice(fns)
            event = rng.choice(["start", "start", "start", "resume", "throw", ""])
            stack.append((fn, ts))
            out.append((th, (ts, 0, "E", fn, len(stack) - 1, args, event)))
        elif r < 0.8 and stack:
            fn, began = stack.pop()
            if rng.random() < 0.05:
                fn = rng.choice(fns)  # an exit whose entry is another function's
            event = rng.choice(["return", "return", "yield", "unwind"])
            value = rng.choice([None, "1", "'text'", "KeyError('k')"])
            dur = max(ts - began, 0) if rng.random() > 0.05 else rng.randint(0, 10**6)
            out.append((th, (ts, 0, "X", fn, len(stack), dur, event, value)))
        elif r < 0.85:
            # an exit at some depth with no entry in the file (lost, or before the start)
            out.append((th, (ts, 0, "X", rng.choice(fns), rng.randint(0, 15),
                             rng.randint(0, 5000), rng.choice(["return", "yield"]), None)))
        elif r < 0.9:
            out.append((th, (ts, 0, "F", rng.choice(fns),
                             rng.choice([None, *fns]), args, rng.choice(["", "resume"]))))
        elif r < 0.95:
            out.append((th, (ts, 0, "M", rng.choice(["hello", "", "\u00e9 marker"]))))
        elif r < 0.98:
            out.append((th, (ts, 0, "T", f"{rng.randint(1, 4)} run")))
        else:
            out.append((th, (ts, 0, "~", f"a text line {rng.randint(0, 9)}")))
    return out


def write_random(path: Path, seed: int, compress: bool = True) -> None:
    """A random trace of a few chunks, written by the Python writer (the C writer
    makes the same bytes of the same events: tests/test_speedups.py)."""
    rng = random.Random(seed)
    fns = functions()
    threads = [FakeThread(tid, f"t{tid}", i, "M." if i == 0 else "..")
               for i, tid in enumerate(rng.sample(range(1, 1 << 20), rng.randint(1, 4)))]
    writer = TraceWriter(str(path), {"pid": 40 + seed, "tracer": "function_graph",
                                     "start_ts": 0}, compress=compress)
    clock = {t.tid: rng.randint(0, 100) for t in threads}
    for _ in range(rng.randint(1, 5)):
        for t in threads:
            t.dropped += rng.choice([0, 0, 3])
        writer.write_events(random_events(rng, fns, threads, rng.randint(1, 400), clock),
                            event_text)
    writer.finish(max(clock.values()) + 1)


@needs_c
@pytest.mark.parametrize("seed", range(40))
def test_random_traces_read_the_same(tmp_path: Path, seed: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.dat"
    write_random(path, seed)
    c, p = both(path, monkeypatch)
    assert c.problems == []
    # The C path kept every chunk encoded (it read them all), the pure one decoded them.
    assert all(isinstance(ch, tracefile.Chunk) for ch in c.chunks())
    assert all(isinstance(ch, list) for ch in p.chunks())
    # Kept as stored (compressed: LZ4, the C writer's), decompressed when read.
    assert all(ch.inflated is None and ch.stored[:1] == tracefile.COMPRESSIONS["lz4"]
               for ch in c.chunks() if isinstance(ch, tracefile.Chunk))
    same_file(c, p)
    for cc, pc in zip(c.chunks(), p.chunks(), strict=True):
        assert c.chunk_records(cc) == pc  # record by record, in file order
    same_report(c, p)


@needs_c
@pytest.mark.parametrize("seed", range(6))
def test_several_files_read_the_same(tmp_path: Path, seed: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A process and its followed children: the aggregator walks their chunks in
    merged_records' order (time, then file order on a tie)."""
    paths = [tmp_path / f"r{i}.dat" for i in range(3)]
    for i, path in enumerate(paths):
        write_random(path, 500 + 3 * seed + i)
    cs = [read(path, True, monkeypatch) for path in paths]
    ps = [read(path, False, monkeypatch) for path in paths]
    assert list(merged_records(cs)) == list(merged_records(ps))
    names = {key: info.name for tf in ps for key, info in tf.threads.items()}
    for per_thread in (False, True):
        fast = report.build_from_chunks(cs, per_thread)
        slow = report.build(merged_records(ps), per_thread)
        assert fast is not None and fast.tables == slow.tables
        assert dump.folded_from_chunks(cs, per_thread, names) == dump.folded_stacks(
            merged_records(ps), per_thread, names)


def chunk_spans(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each chunk's payload."""
    head = struct.unpack_from("<8sHII", data)
    pos = struct.calcsize("<8sHII") + head[2]
    out = []
    while pos < len(data):
        _, _, length, _ = struct.unpack_from("<4scII", data, pos)
        out.append((pos, length))
        pos += 13 + length
    return out


@needs_c
@pytest.mark.parametrize("seed", range(30))
def test_corrupt_chunks_are_read_the_same(tmp_path: Path, seed: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes of an uncompressed event chunk changed and its checksum made right
    again: whatever the Python decoder says of it (a bad index, a number cut
    short, a depth over its limit, bytes left over) or keeps of it, the C path
    says and keeps, and report falls back to the Python path on it."""
    path = tmp_path / "r.dat"
    write_random(path, 1000 + seed, compress=False)
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    spans = chunk_spans(bytes(data))[:-1]  # not the footer
    at, length = rng.choice(spans)
    start = at + 13
    for _ in range(rng.randint(1, 3)):
        i = start + rng.randrange(1, length)
        data[i] = rng.choice([0x00, 0x7F, 0x80, 0xFF, data[i] ^ (1 << rng.randrange(8))])
    struct.pack_into("<I", data, at + 9, zlib.crc32(bytes(data[start:start + length])))
    path.write_bytes(bytes(data))
    c, p = both(path, monkeypatch)
    same_file(c, p)
    if any(isinstance(ch, list) for ch in c.chunks()):
        assert report.build_from_chunks([c]) is None
        assert dump.folded_from_chunks([c]) is None
    else:
        same_report(c, p)


def raw_chunk(events: bytes, count: int, funcs: int = 1) -> bytes:
    """An uncompressed version-2 event chunk: strings 'm:f', 'T', '..', 'v';
    ``funcs`` functions named m:f; thread 7; then the events."""
    strings = [b"m:f", b"T", b"..", b"v"]
    out = bytearray([len(strings)])
    for s in strings:
        out += bytes([len(s)]) + s
    out += bytes([funcs]) + bytes([0, 0, 0, 0]) * funcs
    out += bytes([1, 7, 1, 0, 2, 0])
    varint = bytearray()
    n = count
    while n >= 0x80:
        varint.append((n & 0x7F) | 0x80)
        n >>= 7
    varint.append(n)
    return b"\x00" + bytes(out) + bytes(varint) + events


def write_raw(path: Path, payloads: list[bytes], version: int = tracefile.VERSION) -> None:
    """A file of these event chunks' payloads, saying it is of format ``version``
    (how its events are laid out: ``event``)."""
    writer = TraceWriter(str(path), {"pid": 9, "tracer": "function_graph", "version": version},
                         compress=False)
    for payload in payloads:
        writer._chunk(tracefile.EVENTS, payload)
    writer.finish(0)
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, 8, version)  # the preamble's version
    path.write_bytes(bytes(data))


EXIT = 2 | (EVENT_NAMES.index("return") << EVENT_SHIFT)
ENTRY = 1 | (EVENT_NAMES.index("start") << EVENT_SHIFT)


def event(version: int, head: int, delta: bytes, func: bytes, depth: bytes,
          dur: bytes = b"", text: int | None = None) -> tuple[bytes, bytes]:
    """An entry or exit (``dur``) of raw_chunk's one thread as ``version`` lays
    it out: (its fields, its times).  Before version 4 all in one: its thread
    index (0) after its head, its duration after its depth, its text's string
    index + 1 (0: none) last.  From version 4 no thread index (a chunk of one
    thread), the text's index only when it has one (TEXT_FLAG in its head),
    and its timestamp delta and duration apart, with the chunk's times."""
    if version < 4:
        return bytes([head]) + uvarint(0) + delta + func + depth + dur + uvarint(
            0 if text is None else text + 1), b""
    tail = b"" if text is None else uvarint(text)
    return bytes([head | (0 if text is None else TEXT_FLAG)]) + func + depth + tail, delta + dur


def events_area(version: int, *events: tuple[bytes, bytes]) -> bytes:
    """A chunk's events after their count: before version 4 one after another;
    from version 4 the length of their fields, their fields, their times."""
    fields = b"".join(f for f, _ in events)
    times = b"".join(t for _, t in events)
    return fields + times if version < 4 else uvarint(len(fields)) + fields + times


@needs_c
@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("fields", [
    # a duration over 2**63: Python reads it, C leaves the chunk to Python
    (EXIT, uvarint(10), uvarint(0), uvarint(0), uvarint(1 << 64)),
    # a timestamp delta over 2**64 (a 10-byte number)
    (EXIT, uvarint(1 << 66), uvarint(0), uvarint(0), uvarint(5)),
    # a non-canonical number (0 in two bytes) is still 0
    (ENTRY, b"\x80\x00", uvarint(0), uvarint(0)),
])
def test_numbers_c_cannot_hold(tmp_path: Path, fields: tuple[Any, ...], version: int,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.dat"
    write_raw(path, [raw_chunk(events_area(version, event(version, *fields)), 1)], version)
    c, p = both(path, monkeypatch)
    assert c.version == version
    same_file(c, p)
    assert c.events == 1


@needs_c
@pytest.mark.parametrize("version", [3, 4])
def test_texts_read_in_either_layout(tmp_path: Path, version: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry with arguments, an exit with a value and one without: the same
    records from the version-3 layout and the version-4 one, on both paths."""
    # timestamps 10, 15, 20 (zigzag deltas 20, 10, 10)
    events = events_area(
        version, event(version, ENTRY, uvarint(20), uvarint(0), uvarint(0), text=3),
        event(version, EXIT, uvarint(10), uvarint(0), uvarint(0), uvarint(5), text=1),
        event(version, EXIT, uvarint(10), uvarint(0), uvarint(0), uvarint(20)))
    path = tmp_path / "t.dat"
    write_raw(path, [raw_chunk(events, 3)], version)
    c, p = both(path, monkeypatch)
    same_file(c, p)
    assert [(r.kind, r.ts, r.args, r.value, r.duration) for r in p.records()] == [
        ("entry", 10, "v", None, None), ("exit", 15, None, "T", 5),
        ("exit", 20, None, None, 20)]


@needs_c
def test_a_sum_over_64_bits_is_left_to_python(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Each duration fits in 63 bits, their total does not: report's Python path,
    whose integers have no limit, makes the report."""
    half = (1 << 62) + 5
    one = event(tracefile.VERSION, EXIT, uvarint(10), uvarint(0), uvarint(0), uvarint(half))
    path = tmp_path / "sum.dat"
    write_raw(path, [raw_chunk(events_area(tracefile.VERSION, one, one), 2)])
    c, p = both(path, monkeypatch)
    same_file(c, p)
    assert report.build_from_chunks([c]) is None
    assert dump.folded_from_chunks([c]) is None
    slow = report.build(merged_records([p]))
    assert slow.tables[None]["m:f"].total == 2 * half
    rep, _ = report.read_report(str(path), False, "report")
    assert rep.tables == slow.tables


def test_the_c_codes_are_the_schema() -> None:
    """decode.h's FNT_K_*, FNT_EV_* and FNT_EVENT_SHIFT against fntrace/core/events.py."""
    text = (ROOT / "fntrace" / "csrc" / "decode.h").read_text()
    want = {"FNT_K_CALL": RECORD_KINDS.index("call"), "FNT_K_ENTRY": RECORD_KINDS.index("entry"),
            "FNT_K_EXIT": RECORD_KINDS.index("exit"),
            "FNT_K_MARKER": RECORD_KINDS.index("marker"),
            "FNT_K_TEXT": RECORD_KINDS.index("text"), "FNT_N_KINDS": len(RECORD_KINDS),
            "FNT_N_EVENTS": len(EVENT_NAMES), "FNT_EVENT_SHIFT": EVENT_SHIFT,
            "FNT_EV_START": EVENT_NAMES.index("start"),
            "FNT_EV_RETURN": EVENT_NAMES.index("return"),
            "FNT_EV_UNWIND": EVENT_NAMES.index("unwind")}
    for name, value in want.items():
        assert f"#define {name} {value}\n" in text, name
    assert TASK_PREFIX  # the task notes' prefix is handed to the decoder, not copied


# -- files made by fntrace -------------------------------------------------------------

@needs_c
@pytest.mark.parametrize("name", ["v1_function.dat", "v1_graph.dat", "v3_function.dat",
                                  "v3_graph.dat", "v3_graph_plain.dat"])
def test_older_versions_read_the_same(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    c, p = both(DATA / name, monkeypatch)
    assert c.version == p.version == int(name[1])
    assert c.events > 0
    same_file(c, p)
    same_report(c, p)


PROGRAM = textwrap.dedent("""
    import threading
    import fntrace

    def gen(n):
        for i in range(n):
            yield i

    def leaf(x):
        if x % 5 == 0:
            try:
                raise KeyError(x)
            except KeyError:
                pass
        return x * 2

    def mid(x):
        return sum(gen(3)) + leaf(x)

    def work(n):
        for i in range(n):
            mid(i)
        fntrace.marker("done")

    threads = [threading.Thread(target=work, args=(200,)) for _ in range(2)]
    for t in threads:
        t.start()
    work(200)
    for t in threads:
        t.join()
""")


@needs_c
@needs_subprocess
@pytest.mark.parametrize("writer", ["c", "pure"])
@pytest.mark.parametrize("tracer", ["function_graph", "function"])
def test_recordings_read_the_same(tmp_path: Path, writer: str, tracer: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prog.py").write_text(PROGRAM)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    if writer == "pure":
        env["FNTRACE_PURE"] = "1"
    subprocess.run([sys.executable, "-m", "fntrace", "record", "-t", tracer, "--args",
                    "--retval", "-o", "t.dat", "--", "prog.py"], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    c, p = both(tmp_path / "t.dat", monkeypatch)
    assert c.problems == [] and c.events > 1000
    same_file(c, p)
    same_report(c, p)
