"""asyncio tasks in the native Perfetto and speedscope exports (task_tracks.py):
a track (profile) per task with exactly the task's slices, creation arrows as
Perfetto flows.  Read back with Perfetto's official protos and speedscope's
schema, as tests/test_exports.py reads the exports without tasks."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from typing import Any

from test_coro_time import records
from test_exports import decode_perfetto, perfetto_pb2, validate

from fntrace.analysis.perfetto import write_perfetto
from fntrace.analysis.speedscope import write_speedscope
from fntrace.analysis.task_tracks import TASK_TID_BASE, TaskTracks
from fntrace.formats.tracefile import Record

PROCESSES = {1: "app (pid 1)"}
THREADS = {(1, 7): "MainThread"}


def script() -> list[Record]:
    """test_coro_time's script (tasks main, a, b on thread 7), with a and b made
    inside main's first segment, as in test_chrome_tasks."""
    moved = ('"name": "a"', '"name": "b"')
    recs = [r if r.text is None or not any(m in r.text for m in moved)
            else Record(r.kind, r.pid, r.tid, 160, r.func, r.parent, r.depth, r.event, r.args,
                        r.value, r.duration, r.text) for r in records()]
    recs.sort(key=lambda r: r.ts)
    return recs


def test_task_tracks_move_each_record_to_its_task() -> None:
    tracks = TaskTracks()
    out = list(tracks.records(script()))
    placed = [(r.tid, r.func, r.ts) for r in out if r.kind == "entry"]
    main, a, b = (TASK_TID_BASE + n for n in (1, 2, 3))
    assert placed == [(main, "m:main", 100), (main, "m:helper", 150), (a, "m:work", 1000),
                      (b, "m:work", 1200), (a, "m:work", 2000), (b, "m:work", 3000),
                      (main, "m:main", 5000)]
    assert tracks.notes == sum(1 for r in out if r.kind == "task") == 13
    assert [tuple(f) for f in tracks.flows] == [(1, 1, 7, 0, 0), (1, 2, main, 160, 1000),
                                               (1, 3, main, 160, 1200)]
    assert tracks.label(1, 2, THREADS) == "a-2 (MainThread-7)"
    assert (tracks.task_of(a), tracks.task_of(7)) == (2, None)


# -- Perfetto ---------------------------------------------------------------------

class TaskTrace:
    """The packets as trace_processor reads them: descriptors (the last one of a
    uuid wins), each sequence's track, events with their flows."""

    def __init__(self, data: bytes) -> None:
        pb = perfetto_pb2()
        self.descriptors: dict[int, Any] = {}
        self.described: dict[int, int] = defaultdict(int)
        self.events: list[tuple[int, int, str, str | None, list[int], list[int]]] = []
        seq_track: dict[int, int] = {}
        names: dict[int, dict[int, str]] = {}
        kinds = {pb.TrackEvent.TYPE_SLICE_BEGIN: "B", pb.TrackEvent.TYPE_SLICE_END: "E",
                 pb.TrackEvent.TYPE_INSTANT: "I"}
        for p in decode_perfetto(data):
            if p.HasField("track_descriptor"):
                d = p.track_descriptor
                self.descriptors[d.uuid] = d
                self.described[d.uuid] += 1
                continue
            seq = p.trusted_packet_sequence_id
            if p.sequence_flags & pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED:
                seq_track[seq] = p.trace_packet_defaults.track_event_defaults.track_uuid
                names[seq] = {}
            for n in p.interned_data.event_names:
                names[seq][n.iid] = n.name
            if p.HasField("track_event"):
                te = p.track_event
                name = names[seq][te.name_iid] if te.name_iid else (
                    te.name if te.HasField("name") else None)
                self.events.append((seq_track[seq], p.timestamp, kinds[te.type], name,
                                    list(te.flow_ids), list(te.terminating_flow_ids)))

    def track(self, name: str) -> int:
        (uuid,) = [u for u, d in self.descriptors.items()
                   if d.name == name or (d.HasField("thread") and
                                         f"{d.thread.thread_name}" == name)]
        return uuid

    def slices(self, track: int) -> list[tuple[str, str | None, int]]:
        stack: list[str | None] = []
        out = []
        for t, ts, kind, name, _, _ in self.events:
            if t != track or kind == "I":
                continue
            if kind == "B":
                stack.append(name)
                out.append(("B", name, ts))
            else:
                out.append(("E", stack.pop(), ts))
        assert stack == []
        return out


def perfetto(recs: list[Record]) -> tuple[TaskTrace, Any]:
    out = io.BytesIO()
    counts = write_perfetto(recs, out, PROCESSES, THREADS, {1: ["app"]})
    return TaskTrace(out.getvalue()), counts


def test_perfetto_track_per_task_under_its_process_with_creation_flows() -> None:
    dec, counts = perfetto(script())
    (proc,) = [u for u, d in dec.descriptors.items() if d.HasField("process")]
    thread = dec.track("MainThread-7")
    main, a, b = (dec.track(f"{n} (MainThread-7)") for n in ("main-1", "a-2", "b-3"))
    for task in (main, a, b):
        d = dec.descriptors[task]
        assert d.parent_uuid == proc and not d.HasField("thread") and dec.described[task] == 1
    assert dec.descriptors[thread].parent_uuid == proc
    assert (counts.processes, counts.threads, counts.tasks, counts.flows) == (1, 1, 3, 3)
    assert dec.slices(main) == [("B", "m:main", 100), ("B", "m:helper", 150),
                                ("E", "m:helper", 170), ("E", "m:main", 200),
                                ("B", "m:main", 5000), ("E", "m:main", 5300)]
    assert dec.slices(a) == [("B", "m:work", 1000), ("E", "m:work", 1100),
                             ("B", "m:work", 2000), ("E", "m:work", 2010)]
    assert dec.slices(b) == [("B", "m:work", 1200), ("E", "m:work", 1250),
                             ("B", "m:work", 3000), ("E", "m:work", 3100)]
    assert dec.slices(thread) == []  # nothing ran outside a task
    assert (counts.begins, counts.ends) == (7, 7)
    # The arrows: an instant on the creator's track carries the flow id, one at
    # the task's first run ends it; ids (pid << 32 | task).
    instants = [(t, ts, name, f, g) for t, ts, kind, name, f, g in dec.events if kind == "I"]
    assert instants == [
        (thread, 0, "create main-1 (MainThread-7)", [1 << 32 | 1], []),
        (main, 0, "first run", [], [1 << 32 | 1]),
        (main, 160, "create a-2 (MainThread-7)", [1 << 32 | 2], []),
        (a, 1000, "first run", [], [1 << 32 | 2]),
        (main, 160, "create b-3 (MainThread-7)", [1 << 32 | 3], []),
        (b, 1200, "first run", [], [1 << 32 | 3])]


def test_perfetto_task_named_after_its_first_step_is_described_again() -> None:
    # An eager task runs (and is noted as seen) before its name is noted.
    recs = [
        Record("task", 1, 7, 0, "", None, 0, "", None, None, None, "run 4"),
        Record("entry", 1, 7, 10, "m:work", None, 0, "start", None, None, None, None),
        Record("exit", 1, 7, 20, "m:work", None, 0, "return", None, None, 10, None),
        Record("task", 1, 7, 20, "", None, 0, "", None, None, None, "run 0"),
        Record("task", 1, 7, 20, "", None, 0, "", None, None, None,
               'new {"name": "eager", "task": 4}'),
    ]
    dec, counts = perfetto(recs)
    (task,) = [u for u, d in dec.descriptors.items() if d.name.endswith("(MainThread-7)")]
    assert dec.described[task] == 2
    assert dec.descriptors[task].name == "eager-4 (MainThread-7)"
    assert dec.slices(task) == [("B", "m:work", 10), ("E", "m:work", 20)]
    assert (counts.tasks, counts.flows, counts.threads) == (1, 0, 0)


def test_perfetto_without_task_notes_is_as_before() -> None:
    recs = [r for r in script() if r.kind != "task"]
    dec, counts = perfetto(recs)
    assert (counts.threads, counts.tasks, counts.flows) == (1, 0, 0)
    assert not [d for d in dec.descriptors.values() if d.name]


# -- speedscope -------------------------------------------------------------------

def test_speedscope_profile_per_task() -> None:
    out = io.StringIO()
    counts = write_speedscope(script(), out, PROCESSES, THREADS)
    doc = json.loads(out.getvalue())
    validate(doc)
    names = [f["name"] for f in doc["shared"]["frames"]]
    profiles = {p["name"]: [(e["type"], names[e["frame"]], e["at"]) for e in p["events"]]
                for p in doc["profiles"]}
    suffix = " \u00b7 app (pid 1)"
    assert list(profiles) == [f"main-1 (MainThread-7){suffix}", f"a-2 (MainThread-7){suffix}",
                              f"b-3 (MainThread-7){suffix}"]
    assert profiles[f"main-1 (MainThread-7){suffix}"] == [
        ("O", "m:main", 100), ("O", "m:helper", 150), ("C", "m:helper", 170),
        ("C", "m:main", 200), ("O", "m:main", 5000), ("C", "m:main", 5300)]
    assert profiles[f"a-2 (MainThread-7){suffix}"] == [
        ("O", "m:work", 1000), ("C", "m:work", 1100), ("O", "m:work", 2000),
        ("C", "m:work", 2010)]
    assert profiles[f"b-3 (MainThread-7){suffix}"] == [
        ("O", "m:work", 1200), ("C", "m:work", 1250), ("O", "m:work", 3000),
        ("C", "m:work", 3100)]
    assert (counts.profiles, counts.tasks, counts.opens, counts.closes) == (3, 3, 7, 7)


def test_speedscope_thread_keeps_what_ran_outside_tasks() -> None:
    recs = [
        *script(),
        Record("entry", 1, 7, 6000, "m:helper", None, 0, "start", None, None, None, None),
        Record("exit", 1, 7, 6100, "m:helper", None, 0, "return", None, None, 100, None)]
    out = io.StringIO()
    counts = write_speedscope(recs, out, PROCESSES, THREADS)
    doc = json.loads(out.getvalue())
    validate(doc)
    first = doc["profiles"][0]
    assert first["name"] == "MainThread-7 \u00b7 app (pid 1)"
    assert [(e["type"], e["at"]) for e in first["events"]] == [("O", 6000), ("C", 6100)]
    assert (counts.profiles, counts.tasks) == (4, 3)


def test_perfetto_wake_arrow_from_the_end_to_the_woken_task() -> None:
    from test_chrome_tasks import wake_script

    from fntrace.analysis.perfetto import WAKE_FLOW_BASE

    dec, counts = perfetto(wake_script())
    a, b = (dec.track(f"{n} (MainThread-7)") for n in ("a-1", "b-2"))
    assert (counts.tasks, counts.flows, counts.wakes) == (2, 2, 1)
    instants = [(t, ts, name, f, g) for t, ts, kind, name, f, g in dec.events
                if kind == "I" and (f or g) and (f or g)[0] >= WAKE_FLOW_BASE]
    assert instants == [(b, 60, "end, wakes a-1 (MainThread-7)", [WAKE_FLOW_BASE], []),
                        (a, 60, "woken", [], [WAKE_FLOW_BASE])]
    assert dec.slices(a)[-2:] == [("B", "m:a", 70), ("E", "m:a", 80)]
