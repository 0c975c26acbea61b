"""Trace files of format version 3, written before version 4 made the events
smaller (no thread index in a chunk of one thread, a call's, entry's or exit's
text stored only when it has one), still read exactly as the version-3 reader
read them: every record field, and what ``replay``, ``report`` and
``dump --folded`` print, on the C reading path and the pure one.

The fixtures (tests/data/v3_*) were recorded from ``v3_prog.py.txt`` by the
version-3 writer, and their expected records and outputs made by the
version-3 reader at the same commit (tests/data/README.md).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from helpers import FakeThread, event_text, split, uvarint

import fntrace.core.accel
from fntrace import cli
from fntrace.analysis.replay import RecordedFunction
from fntrace.core.events import TEXT_FLAG
from fntrace.formats import tracefile

DATA = Path(__file__).resolve().parent / "data"
NAMES = ["v3_graph", "v3_function", "v3_graph_plain"]
PATHS = ["c", "pure"] if fntrace.core.accel.built is not None else ["pure"]


def use(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    monkeypatch.setattr(fntrace.core.accel, "speedups",
                        fntrace.core.accel.built if path == "c" else None)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NAMES)
def test_version_3_file_reads_as_the_version_3_reader_read_it(
        name: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, path)
    tf = tracefile.open_trace(str(DATA / f"{name}.dat"))
    want = json.loads((DATA / f"{name}.json").read_text())
    assert tf.version == 3 and tracefile.VERSION == 4
    assert tf.header == want["header"] and tf.footer == want["footer"]
    assert tf.problems == want["problems"] == []
    assert [dataclasses.asdict(t) for t in tf.threads.values()] == want["threads"]
    recs = [dataclasses.asdict(r) for r in tf.records()]
    assert recs == want["records"]
    # what the fixtures hold: two threads, arguments and values, generators, an unwind
    kinds = {r["kind"] for r in recs}
    assert len({r["tid"] for r in recs}) == 2
    if name == "v3_function":
        assert kinds == {"call"} and any(r["args"] for r in recs)
    else:
        assert kinds == {"entry", "exit"}
        assert {r["event"] for r in recs} >= {"start", "resume", "yield", "unwind"}
        assert any(r["args"] for r in recs) == (name == "v3_graph")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("command", ["replay", "report", "folded"])
def test_version_3_file_prints_the_same(name: str, path: str, command: str,
                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    use(monkeypatch, path)
    dat = str(DATA / f"{name}.dat")
    if command == "folded":
        out = tmp_path / "folded.txt"
        assert cli.main(["dump", "--folded", str(out), dat]) in (0, None)
        got = out.read_text()
    else:
        assert cli.main([command, dat]) in (0, None)
        got = capsys.readouterr().out
    assert got == (DATA / f"{name}.{command}.txt").read_text()


def payload_of(events: list[tuple[FakeThread, tuple[object, ...]]], tmp_path: Path) -> bytes:
    """The one event chunk the Python writer makes of these events, uncompressed."""
    path = tmp_path / "t.dat"
    writer = tracefile.TraceWriter(str(path), {"pid": 1}, compress=False)
    writer.write_events(events, event_text)
    writer.finish(0)
    _, chunks = split(path.read_bytes())
    assert chunks[0][0] == tracefile.EVENTS and chunks[0][1][:1] == b"\x00"
    return chunks[0][1][1:]


def test_version_4_events_byte_by_byte(tmp_path: Path) -> None:
    """The version-4 layout, against bytes written out here by hand: the
    events' fields (their length first), then their times; one thread's chunk
    stores no thread index, a text only where there is one; two threads'
    chunk stores the index."""
    f = RecordedFunction("m:f", 3, "/a.py", 7)
    one, two = FakeThread(11, "main", 0), FakeThread(12, "w", 1)
    entry, exit_ = 1 | 1 << 3, 2 | 4 << 3                          # start, return
    got = payload_of([(one, (100, 0, "E", f, 0, None, "start")),
                      (one, (130, 0, "X", f, 0, 30, "return", "5"))], tmp_path)
    # strings in the order met: the thread's name and flags, the function's name and file
    want = (uvarint(5) + b"\x04main\x02..\x03m:f\x05/a.py\x015"
            + uvarint(1) + bytes([2, 3, 4, 7])               # m:f, flags 3, /a.py + 1, line 7
            + uvarint(1) + uvarint(11) + bytes([0, 0, 1, 0])  # tid 11, main, cpu 0, .., lost 0
            + uvarint(2) + uvarint(7)                         # 2 events, 7 bytes of fields
            + bytes([entry, 0, 0])                            # m:f, depth 0
            + bytes([exit_ | TEXT_FLAG, 0, 0, 4])             # m:f, depth 0, value "5"
            + uvarint(200) + uvarint(60) + bytes([30]))       # ts 100, +30 (zigzag), 30 ns
    assert got == want
    got = payload_of([(one, (100, 0, "E", f, 0, None, "start")),
                      (two, (105, 0, "E", f, 0, "x=1", "start"))], tmp_path)
    want = (uvarint(6) + b"\x04main\x02..\x03m:f\x05/a.py\x01w\x03x=1"
            + uvarint(1) + bytes([2, 3, 4, 7])
            + uvarint(2) + uvarint(11) + bytes([0, 0, 1, 0]) + uvarint(12) + bytes([4, 1, 1, 0])
            + uvarint(2) + uvarint(9)
            + bytes([entry, 0, 0, 0])                          # thread 0, m:f, depth 0
            + bytes([entry | TEXT_FLAG, 1, 0, 0, 5])           # thread 1, ..., args "x=1"
            + uvarint(200) + uvarint(210))                     # each thread's first ts
    assert got == want
