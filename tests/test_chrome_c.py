"""dump --chrome's JSON written in C equals the Python writer's, byte for byte.

fntrace/csrc/render_chrome.c (ChromeJSON, through analysis/chrome_c.py) writes
the Trace Event Format events of a list of records at a time; dump.ChromeWriter
(segments.walk, a dict and json.dumps per event) is the reference.  On random
traces, time slices and thread selections, a threshold's time zero, followed
processes, real recordings by both writers, gzip output and records no file
holds (numbers over 64 bits, every character json escapes), ``fntrace dump
--chrome`` writes the same bytes on the C path as on the pure one, and the C
writer is what wrote them; a trace with task notes is chrome_tasks.py's.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from helpers import needs_subprocess, record_program
from test_decoder import PROGRAM
from test_render_c import write_trace

import fntrace.core.accel
from fntrace.analysis import chrome_c
from fntrace.analysis.dump import ChromeWriter, dump, write_chrome
from fntrace.analysis.window import Selection
from fntrace.formats.tracefile import Record, batched

built = fntrace.core.accel.built
needs_c = pytest.mark.skipif(built is None or not hasattr(built, "ChromeJSON"),
                             reason="the C extension is not built")
ROOT = Path(__file__).resolve().parent.parent


class Spy:
    """Counts the documents the C writer wrote."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs = 0
        real = chrome_c.write_chrome_c

        def write(*args: Any) -> int:
            self.runs += 1
            return real(*args)

        monkeypatch.setattr(chrome_c, "write_chrome_c", write)


def dump_both(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              c_expected: bool = True, name: str = "out.json",
              sel: Selection | None = None) -> bytes:
    """``fntrace dump --chrome`` of ``path`` on both paths: the same bytes and
    status; the C writer used as expected."""
    results = []
    for c in (True, False):
        out = tmp_path / f"{c}-{name}"
        spy = Spy(monkeypatch)
        with monkeypatch.context() as m:
            m.setattr(fntrace.core.accel, "speedups", built if c else None)
            status = dump(str(path), chrome=str(out), sel=sel)
        data = out.read_bytes()
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        results.append((data, status))
        assert spy.runs == (1 if c and c_expected else 0)
    assert results[0] == results[1]
    json.loads(results[0][0])  # a JSON document
    return results[0][0]


@needs_c
@pytest.mark.parametrize("seed", range(12))
def test_random_traces(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.dat"
    tids = write_trace(path, 8000 + seed, {}, start=seed * 7)
    data = dump_both(path, tmp_path, monkeypatch)
    assert b'"ph": "X"' in data
    for sel in (Selection(start=150), Selection(end=700), Selection(threads=(str(tids[0]),)),
                Selection(start=40, end=3000, threads=(str(tids[-1]),))):
        dump_both(path, tmp_path, monkeypatch, sel=sel)


@needs_c
@pytest.mark.parametrize("seed", range(3))
def test_threshold_time_zero(tmp_path: Path, seed: int,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    """tracing_thresh: the recording's start is time zero (a t0 given to the writer),
    not the first record: the same events with and without it are written apart."""
    path = tmp_path / "t.dat"
    write_trace(path, 8100 + seed, {}, start=1000, thresh=5)
    plain = tmp_path / "p.dat"
    write_trace(plain, 8100 + seed, {}, start=1000)
    assert dump_both(path, tmp_path, monkeypatch) != dump_both(plain, tmp_path, monkeypatch)


@needs_c
@pytest.mark.parametrize("seed", range(3))
def test_followed_processes_and_gzip(tmp_path: Path, seed: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.dat"
    write_trace(path, 8200 + seed, {}, pid=5)
    write_trace(tmp_path / "t.dat.77", 8300 + seed, {}, pid=77, start=9)
    data = dump_both(path, tmp_path, monkeypatch)
    assert b'"pid": 77' in data
    dump_both(path, tmp_path, monkeypatch, name="out.json.gz")
    dump_both(path, tmp_path, monkeypatch, sel=Selection(start=10, end=4000))


@needs_c
@pytest.mark.parametrize("seed", range(3))
def test_task_notes_are_written_by_python(tmp_path: Path, seed: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.dat"
    write_trace(path, 8400 + seed, {}, notes=True)
    dump_both(path, tmp_path, monkeypatch, c_expected=False)


@needs_c
@needs_subprocess
@pytest.mark.parametrize("writer", ["c", "pure"])
def test_recordings(tmp_path: Path, writer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    record_program(tmp_path, PROGRAM, writer)
    data = dump_both(tmp_path / "t.dat", tmp_path, monkeypatch)
    assert b'"name": "done"' in data and b'"file": ' in data
    record_program(tmp_path, PROGRAM, writer, ("-t", "function", "--args"), "f.dat")
    data = dump_both(tmp_path / "f.dat", tmp_path, monkeypatch)
    assert b'"cat": "call"' in data


# -- records no file holds --------------------------------------------------------------

STRINGS = ["x", "", "caf\u00e9", 'q"b\\s', "a\nb\rc\td\be\ff", "\x00\x01\x1f\x7f\x80",
           "s\udc80t", "\U0001f600", "\u2028"]
NUMBERS = [0, 1, 999, 1000, 1001, 123456789, 8796093022207999, 8796093022208000,
           8796093022208001, 2**53 + 1, 2**62, 2**63 + 7, 2**70 + 3]


def odd_records(rng: random.Random, keys: list[tuple[int, int]], n: int) -> list[Record]:
    depth: dict[tuple[int, int], int] = dict.fromkeys(keys, 0)
    out = []
    ts = rng.choice([0, -5000, *NUMBERS])
    for _ in range(n):
        key = rng.choice(keys)
        ts += rng.choice([0, 1, 999, 1001, 10**6, *NUMBERS[:8]])
        name = rng.choice(["m:f", "m:g", *STRINGS])
        src = rng.choice([None, None, "/f.py", "g\udc80.py"])
        line = rng.choice([0, 3, 2**70])
        r = rng.random()
        if r < 0.35:
            d = depth[key]
            depth[key] += 1
            out.append(Record("entry", key[0], key[1], ts, name, None, d,
                              rng.choice(["start", "resume", ""]), rng.choice([None, *STRINGS]),
                              None, None, None, 0, src, line))
        elif r < 0.75:
            d = depth[key] = max(depth[key] - 1, 0) if rng.random() > 0.1 else rng.randint(0, 9)
            dur = rng.choice([None, 0, 5, 10**12, *NUMBERS])
            out.append(Record("exit", key[0], key[1], ts, name, None, d,
                              rng.choice(["return", "yield", "unwind"]), None,
                              rng.choice([None, *STRINGS]), dur, None, 0, src, line))
        elif r < 0.83:
            out.append(Record(rng.choice(["marker", "text", "task", "other"]), key[0], key[1],
                              ts, "", None, 0, "", None, None, None,
                              rng.choice([None, *STRINGS])))
        else:
            out.append(Record("call", key[0], key[1], ts, name, rng.choice([None, "m:g"]), 0,
                              "", rng.choice([None, *STRINGS]), None, None, None, 0, src, line))
    return out


def c_json(records: list[Record], processes: dict[int, str],
           threads: dict[tuple[int, int], str], t0: int | None, size: int) -> str:
    out = io.StringIO()
    n = chrome_c.write_chrome_c(ChromeWriter(processes, threads, t0), batched(records, size),
                                out)
    assert out.getvalue().count("\n") == n + 2  # the head, an event a line, the end
    return out.getvalue()


@needs_c
@pytest.mark.parametrize("seed", range(16))
def test_odd_records(seed: int) -> None:
    rng = random.Random(seed)
    keys = [(10 + i % 3, 100 + i) for i in range(rng.randint(1, 6))]
    processes = {10: "main (pid 10)"}
    threads = {k: f"t{i}" for i, k in enumerate(keys) if i % 2 == 0}  # the others unnamed
    records = odd_records(rng, keys, 300)
    for t0 in (None, 0, 12345, 2**64):
        want = io.StringIO()
        write_chrome(records, want, processes, threads, t0)
        for size in (1, 5, 4096):
            assert c_json(records, processes, threads, t0, size) == want.getvalue()


@needs_c
def test_times_in_us_are_floats_as_python_writes_them() -> None:
    """json.dumps' repr of ns / 1000 where C writes it without a float."""
    rng = random.Random(1)
    values = [0, 1, 10, 100, 999, 1000, 1001, 1500, 8796093022207999, 8796093022208000]
    values += [rng.randrange(0, 8796093022208000) for _ in range(3000)]
    values += [rng.randrange(0, 10**7) for _ in range(3000)]
    records = [Record("marker", 1, 2, v, "", None, 0, "", None, None, None, "m")
               for v in sorted(values)]
    got = c_json(records, {}, {}, 0, 4096)
    want = io.StringIO()
    write_chrome(records, want, {}, {}, 0)
    assert got == want.getvalue()


@needs_c
def test_a_record_of_another_type_is_an_error() -> None:
    with pytest.raises(TypeError):
        c_json(["not a record"], {}, {}, None, 10)  # type: ignore[list-item]
