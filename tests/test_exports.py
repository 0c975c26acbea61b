"""speedscope, Perfetto and pstats exports: exact against the records they come from.

Each format is read back with its own reader: speedscope's file-format schema
(from the vendored npm package) with ``jsonschema``, Perfetto's official protos
(PyPI ``perfetto``), and the standard library's ``pstats``.  Constructed records
pin the exact events (nesting, generator runs, lost and unfinished frames,
exits without entries); real recordings check the counts against the file.
"""

from __future__ import annotations

import io
import json
import os
import pstats
import subprocess
import sys
import textwrap
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from helpers import needs_subprocess

from fntrace.analysis.perfetto import write_perfetto
from fntrace.analysis.pstats import func_key, pstats_dict, write_pstats
from fntrace.analysis.speedscope import SCHEMA_URL, write_speedscope
from fntrace.analysis.timeline import Begin, End, balanced
from fntrace.analysis.traceset import open_set
from fntrace.analysis.view import DIST
from fntrace.formats.tracefile import Record

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((DIST / "file-format-schema.json").read_text())



def validate(doc: dict[str, Any]) -> None:
    """Against speedscope's own schema (skipped where jsonschema is not installed)."""
    pytest.importorskip("jsonschema").validate(doc, SCHEMA)


def perfetto_pb2() -> Any:
    return pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2")


# -- constructing records ---------------------------------------------------------

def entry(func: str, ts: int, depth: int, event: str = "start", args: str | None = None,
          tid: int = 1, pid: int = 100) -> Record:
    return Record("entry", pid, tid, ts, func, None, depth, event, args, None, None, None)


def exit_(func: str, ts: int, depth: int, dur: int, event: str = "return",
          value: str | None = None, tid: int = 1, pid: int = 100) -> Record:
    return Record("exit", pid, tid, ts, func, None, depth, event, None, value, dur, None)


def marker(text: str, ts: int, tid: int = 1, pid: int = 100) -> Record:
    return Record("marker", pid, tid, ts, "", None, 0, "", None, None, None, text)


def call(func: str, parent: str | None, ts: int, tid: int = 1, pid: int = 100) -> Record:
    return Record("call", pid, tid, ts, func, parent, 0, "", None, None, None, None)


def nested() -> list[Record]:
    """a(b(), gen runs twice, c()) with arguments, values, a marker."""
    return [
        entry("m:a", 1000, 0, args="x=1"),
        entry("m:b", 1010, 1),
        exit_("m:b", 1020, 1, 10, value="2"),
        entry("m:gen", 1030, 1),
        exit_("m:gen", 1040, 1, 10, event="yield", value="'y'"),
        marker("half way", 1045),
        entry("m:gen", 1050, 1, event="resume"),
        exit_("m:gen", 1060, 1, 10, event="unwind", value="StopIteration()"),
        entry("m:c", 1070, 1),
        exit_("m:c", 1080, 1, 10),
        exit_("m:a", 1100, 0, 100, value="None"),
    ]


def speedscope_doc(records: list[Record], threads: dict[tuple[int, int], str] | None = None,
                   ) -> dict[str, Any]:
    out = io.StringIO()
    write_speedscope(records, out, {100: "prog (pid 100)"}, threads or {(100, 1): "Main"})
    doc = json.loads(out.getvalue())
    validate(doc)
    return doc


def events(doc: dict[str, Any], profile: int = 0) -> list[tuple[str, str, int]]:
    names = [f["name"] for f in doc["shared"]["frames"]]
    return [(e["type"], names[e["frame"]], e["at"]) for e in doc["profiles"][profile]["events"]]


# -- timeline: the balanced stream every timeline export writes -------------------

def pairs(records: list[Record]) -> list[tuple[str, str, int, str]]:
    out = []
    for item in balanced(records):
        if isinstance(item, Begin):
            out.append(("B", item.func, item.ts, item.event))
        elif isinstance(item, End):
            out.append(("E", item.func, item.ts, item.why or item.event))
    return out


def test_timeline_exits_without_entries_nest_by_time() -> None:
    # tracing_thresh: exits only, innermost first; the pairs come out nested.
    recs = [exit_("m:leaf", 50, 2, 10), exit_("m:mid", 70, 1, 40),
            exit_("m:leaf", 90, 2, 5), exit_("m:top", 100, 0, 100)]
    assert pairs(recs) == [
        ("B", "m:top", 0, ""), ("B", "m:mid", 30, ""), ("B", "m:leaf", 40, ""),
        ("E", "m:leaf", 50, "return"), ("E", "m:mid", 70, "return"),
        ("B", "m:leaf", 85, ""), ("E", "m:leaf", 90, "return"), ("E", "m:top", 100, "return")]


def test_timeline_lost_exit_and_unfinished() -> None:
    recs = [entry("m:a", 10, 0), entry("m:b", 20, 1),
            entry("m:c", 30, 1),            # b's exit was lost: c replaces it at depth 1
            exit_("m:c", 40, 1, 10), entry("m:d", 50, 1), marker("end", 60)]
    assert pairs(recs) == [
        ("B", "m:a", 10, "start"), ("B", "m:b", 20, "start"), ("E", "m:b", 30, "exit lost"),
        ("B", "m:c", 30, "start"), ("E", "m:c", 40, "return"), ("B", "m:d", 50, "start"),
        ("E", "m:d", 60, "unfinished"), ("E", "m:a", 60, "unfinished")]


def test_timeline_held_exit_inside_an_open_frame_is_written_before_it_ends() -> None:
    # main's entry is kept; a child's entry is lost (only its exit, with its
    # duration): the child is written inside main, before main's end.
    recs = [entry("m:main", 0, 0), exit_("m:child", 50, 1, 30), exit_("m:main", 100, 0, 100)]
    assert pairs(recs) == [("B", "m:main", 0, "start"), ("B", "m:child", 20, ""),
                           ("E", "m:child", 50, "return"), ("E", "m:main", 100, "return")]


# -- speedscope -----------------------------------------------------------------------

def test_speedscope_events_exact() -> None:
    doc = speedscope_doc(nested())
    assert doc["$schema"] == SCHEMA_URL
    prof = doc["profiles"][0]
    assert (prof["type"], prof["unit"], prof["name"]) == ("evented", "nanoseconds",
                                                         "Main-1 \u00b7 prog (pid 100)")
    assert events(doc) == [
        ("O", "m:a", 0), ("O", "m:b", 10), ("C", "m:b", 20),
        ("O", "m:gen", 30), ("C", "m:gen", 40), ("O", "m:gen", 50), ("C", "m:gen", 60),
        ("O", "m:c", 70), ("C", "m:c", 80), ("C", "m:a", 100)]
    assert (prof["startValue"], prof["endValue"]) == (0, 100)
    assert [f["name"] for f in doc["shared"]["frames"]] == ["m:a", "m:b", "m:gen", "m:c"]


def test_speedscope_profile_per_thread_and_process() -> None:
    recs = sorted([entry("m:a", 10, 0, tid=1), exit_("m:a", 20, 0, 10, tid=1),
                   entry("m:b", 12, 0, tid=2), exit_("m:b", 30, 0, 18, tid=2),
                   entry("m:c", 15, 0, pid=200, tid=7), exit_("m:c", 16, 0, 1, pid=200, tid=7)],
                  key=lambda r: r.ts)
    out = io.StringIO()
    write_speedscope(recs, out, {100: "p (pid 100)", 200: "q (pid 200)"},
                     {(100, 1): "Main", (100, 2): "worker", (200, 7): "Main"})
    doc = json.loads(out.getvalue())
    validate(doc)
    assert [p["name"] for p in doc["profiles"]] == [
        "Main-1 \u00b7 p (pid 100)", "worker-2 \u00b7 p (pid 100)", "Main-7 \u00b7 q (pid 200)"]
    assert events(doc, 1) == [("O", "m:b", 2), ("C", "m:b", 20)]
    assert events(doc, 2) == [("O", "m:c", 5), ("C", "m:c", 6)]


def test_speedscope_spools_many_events_exactly() -> None:
    # More than one spool flush per thread (4096 events), two threads interleaved.
    recs = []
    for i in range(5000):
        for tid in (1, 2):
            recs.append(entry("m:f", 10 * i, 0, tid=tid))
            recs.append(exit_("m:f", 10 * i + 5, 0, 5, tid=tid))
    doc = speedscope_doc(recs, {(100, 1): "Main", (100, 2): "t"})
    for p in (0, 1):
        evs = events(doc, p)
        assert len(evs) == 10000
        assert evs[-2:] == [("O", "m:f", 49990), ("C", "m:f", 49995)]


def test_speedscope_function_tracer_calls_are_a_sampled_profile() -> None:
    recs = [call("m:a", None, 1), call("m:b", "m:a", 2), call("m:b", "m:a", 3),
            call("m:c", "m:b", 4)]
    doc = speedscope_doc(recs)
    prof = doc["profiles"][0]
    names = [f["name"] for f in doc["shared"]["frames"]]
    got = {tuple(names[i] for i in s): w for s, w in zip(prof["samples"], prof["weights"],
                                                         strict=True)}
    assert prof["type"] == "sampled"
    assert got == {("m:a",): 1, ("m:a", "m:b"): 2, ("m:b", "m:c"): 1}


def check_nesting(evs: list[tuple[str, str, int]]) -> None:
    """speedscope's own rule: a close names the frame on top; times never go back."""
    stack: list[str] = []
    last = -1
    for kind, name, at in evs:
        assert at >= last
        last = at
        if kind == "O":
            stack.append(name)
        else:
            assert stack and stack.pop() == name
    assert stack == []


# -- Perfetto ---------------------------------------------------------------------------

def decode_perfetto(data: bytes) -> list[Any]:
    pb = perfetto_pb2()
    outer = pb.Trace()
    outer.ParseFromString(data)
    packets = []
    for p in outer.packet:
        assert p.HasField("compressed_packets")
        inner = pb.Trace()
        inner.ParseFromString(zlib.decompress(p.compressed_packets))
        packets.extend(inner.packet)
    return packets


class Decoded:
    """Perfetto packets resolved as trace_processor would: interned names, tracks."""

    def __init__(self, packets: list[Any]) -> None:
        pb = perfetto_pb2()
        self.processes: dict[int, Any] = {}
        self.threads: dict[int, Any] = {}
        self.events: list[tuple[int, int, str, str | None, dict[str, Any]]] = []
        seq_track: dict[int, int] = {}
        names: dict[int, dict[int, str]] = {}
        keys: dict[int, dict[int, str]] = {}
        kinds = {pb.TrackEvent.TYPE_SLICE_BEGIN: "B", pb.TrackEvent.TYPE_SLICE_END: "E",
                 pb.TrackEvent.TYPE_INSTANT: "I"}
        for p in packets:
            if p.HasField("track_descriptor"):
                d = p.track_descriptor
                if d.HasField("process"):
                    self.processes[d.uuid] = d
                else:
                    assert d.HasField("thread") and d.parent_uuid in self.processes
                    self.threads[d.uuid] = d
                continue
            seq = p.trusted_packet_sequence_id
            if p.sequence_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED:
                seq_track[seq] = p.trace_packet_defaults.track_event_defaults.track_uuid
                names[seq], keys[seq] = {}, {}
            for n in p.interned_data.event_names:
                names[seq][n.iid] = n.name
            for n in p.interned_data.debug_annotation_names:
                keys[seq][n.iid] = n.name
            if p.HasField("track_event"):
                assert p.sequence_flags & pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
                te = p.track_event
                name = names[seq][te.name_iid] if te.name_iid else (
                    te.name if te.HasField("name") else None)
                notes = {keys[seq][a.name_iid]: (a.string_value if a.HasField("string_value")
                                                 else a.bool_value)
                         for a in te.debug_annotations}
                self.events.append((seq_track[seq], p.timestamp, kinds[te.type], name, notes))

    def slices(self, track: int) -> list[tuple[str, str | None, int, dict[str, Any]]]:
        """Begin/end per track in order, each end given its begin's name; balanced."""
        stack: list[str | None] = []
        out = []
        last = 0
        for t, ts, kind, name, notes in self.events:
            if t != track or kind == "I":
                continue
            assert ts >= last
            last = ts
            if kind == "B":
                stack.append(name)
                out.append(("B", name, ts, notes))
            else:
                assert stack, "an end without a begin"
                out.append(("E", stack.pop(), ts, notes))
        assert stack == [], "a slice never ended"
        return out


def perfetto_of(records: list[Record], processes: dict[int, str] | None = None,
                threads: dict[tuple[int, int], str] | None = None) -> Decoded:
    out = io.BytesIO()
    write_perfetto(records, out, processes or {100: "prog (pid 100)"},
                   threads or {(100, 1): "Main"}, {100: ["prog", "-x"]})
    return Decoded(decode_perfetto(out.getvalue()))


def test_perfetto_slices_annotations_and_instants_exact() -> None:
    dec = perfetto_of(nested())
    (puuid, proc), = dec.processes.items()
    assert (proc.process.pid, proc.process.process_name, list(proc.process.cmdline)) == (
        100, "prog (pid 100)", ["prog", "-x"])
    (tuuid, thr), = dec.threads.items()
    assert (thr.parent_uuid, thr.thread.pid, thr.thread.tid, thr.thread.thread_name) == (
        puuid, 100, 1, "Main-1")
    assert dec.slices(tuuid) == [
        ("B", "m:a", 1000, {"args": "x=1"}), ("B", "m:b", 1010, {}),
        ("E", "m:b", 1020, {"retval": "2"}),
        ("B", "m:gen", 1030, {}), ("E", "m:gen", 1040, {"exit": "yield", "yielded": "'y'"}),
        ("B", "m:gen", 1050, {"entry": "resume"}),
        ("E", "m:gen", 1060, {"exit": "unwind", "raised": "StopIteration()"}),
        ("B", "m:c", 1070, {}), ("E", "m:c", 1080, {}),
        ("E", "m:a", 1100, {"retval": "None"})]
    instants = [e for e in dec.events if e[2] == "I"]
    assert instants == [(tuuid, 1045, "I", "half way", {"marker": True})]


def test_perfetto_unfinished_and_lost_are_said() -> None:
    recs = [entry("m:a", 10, 0), entry("m:b", 20, 1), entry("m:c", 30, 1)]
    dec = perfetto_of(recs)
    (track,) = dec.threads
    assert dec.slices(track) == [
        ("B", "m:a", 10, {}), ("B", "m:b", 20, {}), ("E", "m:b", 30, {"exit lost": True}),
        ("B", "m:c", 30, {}), ("E", "m:c", 30, {"unfinished": True}),
        ("E", "m:a", 30, {"unfinished": True})]


def test_perfetto_batches_and_interning_across_many_events() -> None:
    # Several compressed batches (1 MiB each uncompressed); names interned once
    # per sequence, one sequence per thread.
    recs = []
    for i in range(40000):
        for tid in (1, 2):
            recs.append(entry(f"m:f{i % 50}", 10 * i, 0, args="a" * 20, tid=tid))
            recs.append(exit_(f"m:f{i % 50}", 10 * i + 5, 0, 5, tid=tid))
    out = io.BytesIO()
    write_perfetto(recs, out, {100: "p"}, {(100, 1): "Main", (100, 2): "t"})
    packets = decode_perfetto(out.getvalue())
    pb = perfetto_pb2()
    outer = pb.Trace()
    outer.ParseFromString(out.getvalue())
    assert len(outer.packet) > 1
    interned = Counter((p.trusted_packet_sequence_id, n.name) for p in packets
                       for n in p.interned_data.event_names)
    assert len(interned) == 100 and set(interned.values()) == {1}
    dec = Decoded(packets)
    for track in dec.threads:
        sl = dec.slices(track)
        assert len(sl) == 80000
        assert sl[-1][:3] == ("E", "m:f49", 399995)


# -- pstats ---------------------------------------------------------------------------

def test_pstats_counts_recursion_and_callers(tmp_path: Path) -> None:
    # main -> fact(3) -> fact(2) -> fact(1); main -> gen, which runs twice (one call).
    recs = [entry("m:main", 0, 0), entry("m:fact", 10, 1), entry("m:fact", 20, 2),
            entry("m:fact", 30, 3), exit_("m:fact", 40, 3, 10), exit_("m:fact", 50, 2, 30),
            exit_("m:fact", 60, 1, 50), entry("m:gen", 70, 1),
            exit_("m:gen", 75, 1, 5, event="yield"), entry("m:gen", 80, 1, event="resume"),
            exit_("m:gen", 90, 1, 10), exit_("m:main", 100, 0, 100)]
    st = pstats_dict(recs)
    fact, main, gen = func_key("m:fact"), func_key("m:main"), func_key("m:gen")
    # self: fact(1) 10, fact(2) 30 - 10, fact(3) 50 - 30; cumulative: the outer call only
    assert st[fact][:4] == (1, 3, pytest.approx(50e-9), pytest.approx(50e-9))
    assert st[fact][4] == {main: (1, 1, pytest.approx(20e-9), pytest.approx(50e-9)),
                           fact: (0, 2, pytest.approx(30e-9), 0.0)}
    assert st[gen][:4] == (1, 1, pytest.approx(15e-9), pytest.approx(15e-9))
    assert st[main][:4] == (1, 1, pytest.approx(35e-9), pytest.approx(100e-9))
    assert st[main][4] == {}
    with open(tmp_path / "x.prof", "wb") as f:
        assert write_pstats(recs, f) == 3
    stats = pstats.Stats(str(tmp_path / "x.prof"))
    assert stats.total_calls == 5 and stats.prim_calls == 3  # type: ignore[attr-defined]
    assert stats.total_tt == pytest.approx(100e-9)  # type: ignore[attr-defined]


# -- real recordings ------------------------------------------------------------------

PROGRAM = textwrap.dedent("""\
    import threading
    import fntrace

    def leaf(n):
        return n * 2

    def gen(k):
        for i in range(k):
            yield leaf(i)

    def work(n):
        total = 0
        for v in gen(n):
            total += v
        fntrace.marker(f"work {n} done")
        return total

    def fact(n):
        return 1 if n <= 1 else n * fact(n - 1)

    t = threading.Thread(target=work, args=(3,), name="worker")
    t.start()
    t.join()
    print(work(4), fact(5))
    """)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if sys.platform in ("emscripten", "wasi"):
        pytest.skip(f"needs subprocesses, which {sys.platform} cannot run")
    d = tmp_path_factory.mktemp("rec")
    (d / "prog.py").write_text(PROGRAM)
    dat = d / "prog.dat"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "fntrace", "record", "-F", "*:mod:__main__",
                    "--args", "--retval", "-o", str(dat), "--", str(d / "prog.py")],
                   check=True, env=env, cwd=d, capture_output=True, timeout=120)
    return dat


def file_records(dat: Path) -> list[Record]:
    return list(open_set([str(dat)], io.StringIO()).records())


@needs_subprocess
def test_real_speedscope_matches_the_records(recording: Path) -> None:
    traces = open_set([str(recording)], io.StringIO())
    recs = list(traces.records())
    out = io.StringIO()
    counts = write_speedscope(recs, out, traces.process_names(), traces.thread_names())
    doc = json.loads(out.getvalue())
    validate(doc)
    by_thread: dict[int, list[Record]] = {}
    for r in recs:
        by_thread.setdefault(r.tid, []).append(r)
    assert counts.profiles == len(doc["profiles"]) == len(by_thread) == 2
    names = [f["name"] for f in doc["shared"]["frames"]]
    t0 = recs[0].ts
    for prof in doc["profiles"]:
        tid = int(prof["name"].split(" ")[0].rsplit("-", 1)[1])
        want = [("O" if r.kind == "entry" else "C", r.func, r.ts - t0)
                for r in by_thread[tid] if r.kind in ("entry", "exit")]
        got = [(e["type"], names[e["frame"]], e["at"]) for e in prof["events"]]
        assert got == want
        check_nesting(got)
    assert {p["name"].split(" ")[0] for p in doc["profiles"]} == {
        f"{traces.thread_names()[(r.pid, r.tid)]}-{r.tid}" for r in recs}
    assert counts.opens == sum(r.kind == "entry" for r in recs)


@needs_subprocess
def test_real_perfetto_matches_the_records(recording: Path) -> None:
    traces = open_set([str(recording)], io.StringIO())
    recs = list(traces.records())
    out = io.BytesIO()
    counts = write_perfetto(recs, out, traces.process_names(), traces.thread_names())
    assert len(out.getvalue()) <= 3 * recording.stat().st_size
    dec = Decoded(decode_perfetto(out.getvalue()))
    (proc,) = dec.processes.values()
    assert proc.process.pid == recs[0].pid
    tids = {d.thread.tid: uuid for uuid, d in dec.threads.items()}
    assert set(tids) == {r.tid for r in recs}
    for tid, uuid in tids.items():
        mine = [r for r in recs if r.tid == tid and r.kind in ("entry", "exit")]
        want = [("B" if r.kind == "entry" else "E", r.func, r.ts) for r in mine]
        got = dec.slices(uuid)
        assert [g[:3] for g in got] == want
        for r, g in zip(mine, got, strict=True):
            if r.kind == "entry":
                assert g[3].get("args") == r.args
            else:
                key = {"return": "retval", "yield": "yielded", "unwind": "raised"}[r.event]
                assert g[3].get(key) == r.value
        marks = [(e[1], e[3]) for e in dec.events if e[0] == uuid and e[2] == "I"]
        assert marks == [(r.ts, r.text) for r in recs if r.tid == tid and r.kind == "marker"]
    assert counts.begins == counts.ends == sum(r.kind == "entry" for r in recs)
    assert counts.instants == sum(r.kind == "marker" for r in recs) == 2


@needs_subprocess
def test_real_pstats_loads_with_exact_calls(recording: Path, tmp_path: Path) -> None:
    recs = file_records(recording)
    prof = tmp_path / "prog.prof"
    with open(prof, "wb") as f:
        write_pstats(recs, f)
    stats = pstats.Stats(str(prof))
    starts = Counter(r.func for r in recs if r.kind == "entry" and r.event == "start")
    got = {key[2]: row[1] for key, row in stats.stats.items()}  # type: ignore[attr-defined]
    assert got == dict(starts)
    assert got["__main__:fact"] == 5 and got["__main__:leaf"] == 7
    # keyed by their source locations (tests/test_srcline.py checks the values)
    where = {r.func: (r.src_file, r.src_line) for r in recs if r.src_file is not None}
    fact = stats.stats[func_key("__main__:fact", where["__main__:fact"])]  # type: ignore[attr-defined]
    assert fact[0] == 1  # one primitive call, four recursive
    assert set(fact[4]) == {func_key("__main__:<module>", where["__main__:<module>"]),
                            func_key("__main__:fact", where["__main__:fact"])}


@needs_subprocess
def test_dump_command_writes_the_three_formats(recording: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = [tmp_path / "p.json", tmp_path / "p.pftrace", tmp_path / "p.prof"]
    proc = subprocess.run(
        [sys.executable, "-m", "fntrace", "dump", str(recording), "--speedscope", str(outs[0]),
         "--perfetto", str(outs[1]), "--pstats", str(outs[2])],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    traces = open_set([str(recording)], io.StringIO())
    want = io.StringIO()
    write_speedscope(traces.records(), want, traces.process_names(), traces.thread_names(),
                     name=str(recording))
    assert outs[0].read_text() == want.getvalue()
    wantp = io.BytesIO()
    write_perfetto(traces.records(), wantp, traces.process_names(), traces.thread_names(),
                   {traces.files[0].pid: traces.argv(traces.files[0].pid)})
    assert outs[1].read_bytes() == wantp.getvalue()
    assert pstats.Stats(str(outs[2])).total_calls == sum(  # type: ignore[attr-defined]
        r.kind == "entry" and r.event == "start" for r in traces.records())
    bad = subprocess.run([sys.executable, "-m", "fntrace", "dump", str(recording),
                          "--perfetto", str(tmp_path / "no" / "such" / "dir")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("fntrace dump: ")
    assert len(bad.stderr.strip().splitlines()) == 1


# -- damaged streams: whatever is lost, the output nests ------------------------------

def random_trace(seed: int, calls: int = 300) -> list[Record]:
    """A random call tree on two threads, entries and exits with exact durations."""
    import random

    rng = random.Random(seed)
    out: list[Record] = []
    for tid in (1, 2):
        ts = tid
        stack: list[tuple[str, int]] = []
        made = 0
        while made < calls or stack:
            if made < calls and (not stack or rng.random() < 0.55) and len(stack) < 12:
                func = f"m:f{rng.randrange(8)}"
                out.append(entry(func, ts, len(stack), tid=tid))
                stack.append((func, ts))
                made += 1
            else:
                func, start = stack.pop()
                out.append(exit_(func, ts, len(stack), ts - start, tid=tid))
            ts += rng.randrange(1, 4) * 2
    return sorted(out, key=lambda r: r.ts)


@pytest.mark.parametrize("seed", range(6))
def test_damaged_streams_still_nest(seed: int) -> None:
    import random

    recs = random_trace(seed)
    rng = random.Random(seed + 100)
    # Lose a fifth of the records (entries and exits alike), as lost events would;
    # with seed 0 lose every entry, as tracing_thresh does.
    damaged = ([r for r in recs if r.kind == "exit"] if seed == 0
               else [r for r in recs if rng.random() > 0.2])
    per_thread: dict[int, list[tuple[str, str, int]]] = {}
    for item in balanced(damaged):
        assert isinstance(item, Begin | End)
        per_thread.setdefault(item.tid, []).append(
            ("O" if isinstance(item, Begin) else "C", item.func, item.ts))
    for evs in per_thread.values():
        check_nesting(evs)
    exits = Counter(r.tid for r in damaged if r.kind == "exit")
    for tid, evs in per_thread.items():
        assert sum(k == "C" for k, _, _ in evs) >= exits[tid]  # no recorded exit dropped
    doc = speedscope_doc(damaged, {(100, 1): "Main", (100, 2): "t"})
    for p in range(len(doc["profiles"])):
        check_nesting(events(doc, p))
    dec = perfetto_of(damaged, threads={(100, 1): "Main", (100, 2): "t"})
    for track in dec.threads:
        dec.slices(track)  # balanced, in order


def test_undamaged_stream_is_the_records_in_order() -> None:
    recs = random_trace(7)
    got = [("B" if isinstance(i, Begin) else "E", i.tid, i.func, i.ts) for i in balanced(recs)]
    assert got == [("B" if r.kind == "entry" else "E", r.tid, r.func, r.ts) for r in recs]
