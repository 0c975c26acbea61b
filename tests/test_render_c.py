"""replay's function_graph text written in C equals the Python renderer's, byte for byte.

fntrace/csrc/render_graph.c (GraphRenderer, through analysis/graph_render.py)
renders function_graph's text a list of records at a time; GraphText
(fntrace/tracing/graph_text.py) is the reference.  On random traces (threads,
nesting, leaves, exits without entries, generators, unwinds, calls, markers
and texts, timestamps that tie and go back), for every combination of the
funcgraph options and the read-time selections, on followed processes' files,
on real recordings by both writers and on truncated files, ``fntrace replay``
prints the same on the C path as on the pure one, and the C renderer is what
printed it; a trace with asyncio task notes, or the task column, is rendered
by GraphText.
"""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import FakeThread, event_text, needs_subprocess, record_program
from test_decoder import PROGRAM, functions, random_events

import fntrace.core.accel
from fntrace.analysis import graph_render
from fntrace.analysis.replay import (
    Functions,
    RecordedThread,
    ReplayOptions,
    event_of,
    replay,
)
from fntrace.formats.tracefile import Record, TraceWriter, batched
from fntrace.tracing import ftrace_text
from fntrace.tracing.instance import OPTIONS

built = fntrace.core.accel.built
needs_c = pytest.mark.skipif(built is None or not hasattr(built, "GraphRenderer"),
                             reason="the C extension is not built")
ROOT = Path(__file__).resolve().parent.parent
FUNCGRAPH = ("funcgraph-abstime", "funcgraph-proc", "funcgraph-duration", "funcgraph-overhead",
             "funcgraph-tail")


def write_trace(path: Path, seed: int, options: dict[str, int] | None = None,
                notes: bool = False, pid: int | None = None, start: int = 0,
                thresh: int = 0) -> list[int]:
    """A random function_graph trace (test_decoder's events, without the task
    notes unless ``notes``) recorded with ``options`` (and a tracing_thresh of
    ``thresh`` us); its threads' tids."""
    rng = random.Random(seed)
    fns = functions()
    threads = [FakeThread(tid, f"thread-name-{tid}", i, "M." if i == 0 else "..")
               for i, tid in enumerate(rng.sample(range(1, 1 << 20), rng.randint(1, 4)))]
    header: dict[str, Any] = {"pid": 40 + seed if pid is None else pid,
                              "tracer": "function_graph", "start_ts": start,
                              "options": {"instance_options": options or {}}}
    if thresh:
        header["options"]["thresh"] = thresh
    writer = TraceWriter(str(path), header)
    clock = {t.tid: start + rng.randint(0, 100) for t in threads}
    for _ in range(rng.randint(1, 5)):
        events = random_events(rng, fns, threads, rng.randint(1, 400), clock)
        if not notes:
            events = [(t, ev) for t, ev in events if ev[2] != "T"]
        writer.write_events(events, event_text)
    writer.finish(max(clock.values()) + 1)
    return [t.tid for t in threads]


class Spy:
    """Counts the runs the C renderer rendered."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs = 0
        real = graph_render.render

        def render(renderer: Any, batches: Any) -> Any:
            self.runs += 1
            return real(renderer, batches)

        monkeypatch.setattr(graph_render, "render", render)


def replay_both(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                c_expected: bool | None = True, **kw: Any) -> str:
    """``fntrace replay`` of ``path`` on the C path and on the pure one: the same
    text and exit status (or the same error); the C renderer used as expected
    (``c_expected`` None: either way)."""
    results = []
    for c in (True, False):
        out = tmp_path / f"out-{c}.txt"
        spy = Spy(monkeypatch)
        with monkeypatch.context() as m:
            m.setattr(fntrace.core.accel, "speedups", built if c else None)
            try:
                status: Any = replay(ReplayOptions(str(path), output=str(out), **kw))
            except SystemExit as exc:
                status = str(exc)
        text = out.read_bytes().decode("utf-8", "surrogateescape") if out.exists() else ""
        results.append((text, status))
        if c_expected is not None:
            assert spy.runs == (1 if c and c_expected and isinstance(status, int) else 0)
    assert results[0] == results[1]
    return results[0][0]


COMBOS = [dict(zip(FUNCGRAPH, bits, strict=True))
          for bits in itertools.product((0, 1), repeat=len(FUNCGRAPH))]


@needs_c
@pytest.mark.parametrize("seed", range(6))
def test_every_funcgraph_option_combination(tmp_path: Path, seed: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    for k, options in enumerate(COMBOS):
        path = tmp_path / f"r{k}.dat"
        write_trace(path, 100 * seed + k, options)
        text = replay_both(path, tmp_path, monkeypatch, srcline=(seed + k) % 2 == 1)
        assert text.count("\n") > 8
        timed = [line for line in text.splitlines() if re.match(r" *\d+\.\d{6} \|  ", line)]
        assert bool(timed) == bool(options["funcgraph-abstime"])


def selections(tids: list[int], names: dict[int, str]) -> list[dict[str, Any]]:
    return [{"thread": (str(tids[0]),)},
            {"thread": (names[tids[-1]],)},
            {"filter": ("m:f",)},
            {"filter": ("m:*",), "notrace": ("m:g",)},
            {"depth": 2},
            {"depth": 0},
            {"since": 200},
            {"until": 900},
            {"since": 100, "until": 5000, "depth": 3, "thread": (str(tids[0]),)},
            {"filter": ("pkg.mod:*",), "srcline": True}]


@needs_c
@pytest.mark.parametrize("seed", range(8))
def test_read_time_selections(tmp_path: Path, seed: int,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.dat"
    options = COMBOS[(seed * 7) % len(COMBOS)]
    tids = write_trace(path, 1000 + seed, options)
    names = {tid: f"thread-name-{tid}" for tid in tids}
    for kw in selections(tids, names):
        replay_both(path, tmp_path, monkeypatch, **kw)


@needs_c
@pytest.mark.parametrize("seed", range(4))
def test_followed_processes(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Several processes' files (--follow): one merge, each line labelled with its
    pid, pids of different widths."""
    path = tmp_path / "t.dat"
    options = COMBOS[(seed * 11) % len(COMBOS)]
    tids = write_trace(path, 2000 + seed, options, pid=7)
    write_trace(tmp_path / "t.dat.123456", 3000 + seed, options, pid=123456, start=5)
    write_trace(tmp_path / "t.dat.99", 4000 + seed, options, pid=99, start=20)
    text = replay_both(path, tmp_path, monkeypatch)
    assert "123456 " in text and "     7 " in text
    replay_both(path, tmp_path, monkeypatch, thread=(str(tids[0]),), since=50)
    replay_both(path, tmp_path, monkeypatch, depth=1, srcline=True)


@needs_c
@pytest.mark.parametrize("seed", range(3))
def test_task_notes_are_rendered_by_python(tmp_path: Path, seed: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Task notes (GraphText tracks the running task) and the task column are
    GraphText's: the C renderer is not used, for the whole run."""
    path = tmp_path / "r.dat"
    write_trace(path, 5000 + seed, COMBOS[seed], notes=True)
    replay_both(path, tmp_path, monkeypatch, c_expected=False)
    plain = tmp_path / "p.dat"
    write_trace(plain, 6000 + seed, COMBOS[seed])
    replay_both(plain, tmp_path, monkeypatch, c_expected=False, task_column=True)


@needs_c
@pytest.mark.parametrize("seed", range(4))
def test_truncated_files(tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file cut short anywhere: the same text, warnings aside, and status."""
    path = tmp_path / "r.dat"
    write_trace(path, 7000 + seed, COMBOS[seed * 5])
    data = path.read_bytes()
    rng = random.Random(seed)
    for cut in sorted(rng.sample(range(1, len(data)), 6)):
        short = tmp_path / f"cut{cut}.dat"
        short.write_bytes(data[:cut])
        replay_both(short, tmp_path, monkeypatch, c_expected=None)


# -- records no file holds: what C cannot format, strings of every kind ------------------

def python_text(threads: dict[tuple[int, int], RecordedThread], options: dict[str, int],
                records: list[Record], labels: list[str] | None) -> str:
    """What replay.lines writes with GraphText (the oracle)."""
    ctx = ftrace_text.Context(options, len(threads))
    funcs = Functions()
    pairs = ((threads[r.pid, r.tid], event_of(r, funcs)) for r in records)
    if labels is None:
        return "".join(ftrace_text.lines("function_graph", pairs, ctx))
    by_thread = dict(zip(threads.values(), labels, strict=True))
    return "".join(by_thread[t] + line
                   for t, text in ftrace_text.thread_lines("function_graph", pairs, ctx)
                   for line in text.splitlines(keepends=True))


def c_text(threads: dict[tuple[int, int], RecordedThread], options: dict[str, int],
           records: list[Record], labels: list[str] | None, size: int) -> str:
    ctx = ftrace_text.Context(options, len(threads))
    funcs = Functions()
    renderer = graph_render.graph_renderer(threads, options, ctx, labels,
                                           lambda rec: event_of(rec, funcs))
    assert renderer is not None
    return "".join(graph_render.render(renderer, batched(records, size)))


STRINGS = ["x", "", "caf\u00e9", "a\nb", "a\r\nb", "a\rb", "v\x0bw\x0cx\x1cy\x1dz\x1e",
           "n\x85l", "l\u2028p\u2029q", "s\udc80t", "\U0001f600", "tail\n"]


def odd_records(rng: random.Random, keys: list[tuple[int, int]], n: int) -> list[Record]:
    """Records with what the files rarely hold: numbers over 64 bits and below
    zero, every line end str.splitlines knows, lone surrogates."""
    names = ["m:f", "m:g", "m:\u00e9", "m:s\udc80"]
    depth: dict[tuple[int, int], int] = dict.fromkeys(keys, 0)
    out = []
    ts = rng.choice([0, 10**9 - 1, 2**63 - 5, 2**64 + 3, -(10**9) - 7])
    for _ in range(n):
        key = rng.choice(keys)
        ts += rng.choice([0, 1, 999, 10**6, 10**10])
        name = rng.choice(names)
        flags = rng.choice([0, 0x20])
        src = rng.choice([None, "", "/f.py", "g\udc80.py"])
        line = rng.choice([0, 3, 2**70])
        r = rng.random()
        if r < 0.35:
            d = depth[key]
            depth[key] += 1
            out.append(Record("entry", key[0], key[1], ts, name, None, d,
                              rng.choice(["start", "resume"]), rng.choice([None, *STRINGS]),
                              None, None, None, flags, src, line))
        elif r < 0.75:
            d = depth[key] = max(depth[key] - 1, 0) if rng.random() > 0.1 else rng.randint(0, 9)
            dur = rng.choice([None, 0, 5, 1234567, 10**12, 2**63 + 1, 2**65, 9_999_999_999])
            out.append(Record("exit", key[0], key[1], ts, name, None, d,
                              rng.choice(["return", "yield", "unwind"]),
                              None, rng.choice([None, *STRINGS]), dur, None, flags, src, line))
        elif r < 0.85:
            out.append(Record("marker", key[0], key[1], ts, "", None, 0, "", None, None, None,
                              rng.choice(STRINGS)))
        elif r < 0.92:
            out.append(Record("text", key[0], key[1], ts, "", None, 0, "", None, None, None,
                              rng.choice(STRINGS)))
        else:
            out.append(Record("call", key[0], key[1], ts, name, rng.choice([None, "m:g"]), 0,
                              "", rng.choice([None, "a=1"]), None, None, None, flags, src,
                              line))
    return out


@needs_c
@pytest.mark.parametrize("seed", range(12))
def test_odd_records(seed: int) -> None:
    rng = random.Random(seed)
    keys = [(10 + i % 2 * 90000, 100 + i) for i in range(rng.randint(1, 12))]
    threads = {k: RecordedThread(k[0], k[1], f"n{i}" * rng.randint(1, 9), i,
                                 rng.choice(["..", "M."])) for i, k in enumerate(keys)}
    records = odd_records(rng, keys, 300)
    for options in rng.sample(COMBOS, 6):
        full = {**OPTIONS, **options, "srcline": rng.randint(0, 1)}
        labels = None
        if seed % 2:
            width = max(len(str(k[0])) for k in keys)
            labels = [f"{k[0]:>{width}} " for k in keys]
        want = python_text(threads, full, records, labels)
        for size in (1, 7, 4096):
            assert c_text(threads, full, records, labels, size) == want


@needs_c
def test_an_unknown_thread_is_an_error() -> None:
    """A record of a thread not in the table: KeyError, as the Python path's lookup."""
    threads = {(1, 2): RecordedThread(1, 2, "t", 0, "..")}
    rec = Record("marker", 1, 3, 0, "", None, 0, "", None, None, None, "m")
    with pytest.raises(KeyError):
        c_text(threads, dict(OPTIONS), [rec], None, 10)
    with pytest.raises(TypeError):
        c_text(threads, dict(OPTIONS), ["not a record"], None, 10)  # type: ignore[list-item]


@needs_c
@needs_subprocess
@pytest.mark.parametrize("writer", ["c", "pure"])
def test_recordings(tmp_path: Path, writer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real recordings by both writers (threads, generators, exceptions, markers)."""
    record_program(tmp_path, PROGRAM, writer)
    path = tmp_path / "t.dat"
    text = replay_both(path, tmp_path, monkeypatch)
    assert "/* done */" in text and "__main__:gen(n=3)" in text
    replay_both(path, tmp_path, monkeypatch, srcline=True, filter=("__main__:*",))
    replay_both(path, tmp_path, monkeypatch, depth=2, since=1000)
