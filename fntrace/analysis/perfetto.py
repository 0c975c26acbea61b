"""A recording as Perfetto's native trace: protobuf TracePackets, written streaming.

Perfetto (ui.perfetto.dev, trace_processor) calls JSON traces legacy and loads
them best-effort; large ones do not load at all.  Its own format is a
``Trace`` message: a stream of length-delimited ``TracePacket`` fields.  This
module encodes the few messages it needs by hand (the protobuf wire format is
small: varints and length-delimited fields), so fntrace needs no protobuf
library; the tests decode the output with Perfetto's official protos.

What is written (field numbers are those of perfetto/trace/*.proto):

* a ``TrackDescriptor`` per process (pid, program name, argv) and one per
  thread (pid, tid, ``name-tid``, the process track as parent);
* one packet sequence per thread (``trusted_packet_sequence_id``), whose first
  packet clears its incremental state and sets ``TracePacketDefaults`` so every
  event lands on the thread's track without naming it;
* a ``TrackEvent`` per begin and end (``TYPE_SLICE_BEGIN``/``TYPE_SLICE_END``)
  from ``timeline.balanced`` (so every slice is balanced, a generator's runs are
  separate slices), the function's name interned (``InternedData.event_names``,
  an iid per name per sequence), and on a begin (and a call instant) the
  function's source file and first line where the trace file keeps them, as
  an interned ``SourceLocation`` (``InternedData.source_locations``, the
  event's ``source_location_iid``; the location's function_name is the
  function's name);
* debug annotations (names interned): ``args`` on a begin, ``retval``,
  ``yielded`` or ``raised`` on an end, ``entry`` when a run began by resume or
  throw, ``exit`` when it ended by yield or unwind, or why it has no recorded
  exit (``exit lost``, ``unfinished``);
* markers and text as ``TYPE_INSTANT`` events named by their text; the function
  tracer's calls (no durations) as instants named by the function, with a
  ``parent`` annotation;
* with asyncio task notes (task_tracks.py): a track per task, named
  ``name-N (thread-tid)`` with its process track as parent (Perfetto nests
  such tracks under the process), its own packet sequence, the task's slices
  on it; a creation arrow per task as a flow (``TrackEvent.flow_ids`` on an
  instant ``create`` on the creator's track, ``terminating_flow_ids`` on an
  instant ``first run`` on the task's), and a wake arrow per task whose end
  woke another's step (``wake`` notes: an instant ``end`` on the ending task's
  track, one ``woken`` on the woken task's).  A task named after its first step
  (eager tasks) gets its descriptor again, with its final name, at the end.

Packets are batched into ``TracePacket.compressed_packets`` (zlib, as Perfetto's
own recorder writes them): a trace's events repeat a few byte patterns, so the
output stays near the size of the fntrace file it came from.  Memory holds one
batch and the interning tables (one entry per function name per thread).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from fntrace.analysis.locations import Location, Locations
from fntrace.analysis.segments import RecordLike
from fntrace.analysis.task_tracks import TaskTracks
from fntrace.analysis.timeline import Begin, End, balanced

__all__ = ["BATCH_BYTES", "Counts", "write_perfetto"]

#: Uncompressed bytes of packets per compressed_packets batch.
BATCH_BYTES = 1 << 20

# TracePacket fields, as (field number << 3 | wire type) tag bytes.
_T_PACKET = b"\x0a"          # Trace.packet = 1, length-delimited
_P_TIMESTAMP = b"\x40"       # 8 varint
_P_SEQ_ID = b"\x50"          # trusted_packet_sequence_id = 10 varint
_P_TRACK_EVENT = b"\x5a"     # 11 length-delimited
_P_INTERNED = b"\x62"        # interned_data = 12
_P_SEQ_FLAGS = b"\x68"       # sequence_flags = 13
_P_COMPRESSED = b"\x92\x03"  # compressed_packets = 50
_P_DEFAULTS = b"\xda\x03"    # trace_packet_defaults = 59
_P_DESCRIPTOR = b"\xe2\x03"  # track_descriptor = 60
_E_FLOW = b"\xf9\x02"        # TrackEvent.flow_ids = 47, fixed64
_E_FLOW_END = b"\x81\x03"    # TrackEvent.terminating_flow_ids = 48, fixed64
#: The wake arrows' flow ids: this | the arrow's index (creation arrows: pid << 32 | task).
WAKE_FLOW_BASE = 1 << 63
SEQ_INCREMENTAL_STATE_CLEARED = 1
SEQ_NEEDS_INCREMENTAL_STATE = 2
TYPE_SLICE_BEGIN, TYPE_SLICE_END, TYPE_INSTANT = 1, 2, 3


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [_varint(i) for i in range(1 << 14)]


def _v(n: int) -> bytes:
    return _SMALL[n] if n < 16384 else _varint(n)


def _ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag + _v(len(payload)) + payload


def _str(tag: bytes, text: str) -> bytes:
    return _ld(tag, text.encode("utf-8", "backslashreplace"))


@dataclass
class Counts:
    """What was written: tracks, slices begun and ended, instants, packets."""

    processes: int = 0
    threads: int = 0
    begins: int = 0
    ends: int = 0
    instants: int = 0
    packets: int = 0
    tasks: int = 0  # task tracks
    flows: int = 0  # creation arrows
    wakes: int = 0  # wake arrows


@dataclass
class _Sequence:
    seq_id: int
    uuid: int
    names: dict[str, int] = field(default_factory=dict)     # event name -> iid
    #: (function name, file, line) -> source location iid
    places: dict[tuple[str, str, int], int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)      # annotation name -> iid


class _Writer:
    def __init__(self, out: IO[bytes], processes: dict[int, str],
                 threads: dict[tuple[int, int], str], argv: dict[int, list[str]],
                 tracks: TaskTracks) -> None:
        self.out = out
        self.tracks = tracks
        self.task_names: dict[tuple[int, int], str] = {}  # (pid, task tid) -> name written
        self.processes = processes
        self.threads = threads
        self.argv = argv
        self.batch = bytearray()
        self.counts = Counts()
        self.process_uuid: dict[int, int] = {}
        self.sequences: dict[tuple[int, int], _Sequence] = {}
        self.next_uuid = 1

    # -- packets ---------------------------------------------------------------
    def packet(self, body: bytes) -> None:
        self.batch += _T_PACKET + _v(len(body)) + body
        self.counts.packets += 1
        if len(self.batch) >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            body = _ld(_P_COMPRESSED, zlib.compress(bytes(self.batch), 6))
            self.out.write(_T_PACKET + _v(len(body)) + body)
            self.batch.clear()

    # -- tracks ----------------------------------------------------------------
    def process(self, pid: int) -> int:
        uuid = self.process_uuid.get(pid)
        if uuid is None:
            uuid = self.process_uuid[pid] = self.next_uuid
            self.next_uuid += 1
            desc = b"\x08" + _v(pid)  # ProcessDescriptor.pid = 1
            for arg in self.argv.get(pid, []):
                desc += _str(b"\x12", arg)  # cmdline = 2
            desc += _str(b"\x32", self.processes.get(pid, f"pid {pid}"))  # process_name = 6
            # TrackDescriptor: uuid = 1, process = 3
            self.packet(_ld(_P_DESCRIPTOR, b"\x08" + _v(uuid) + _ld(b"\x1a", desc)))
            self.counts.processes += 1
        return uuid

    def sequence(self, pid: int, tid: int) -> _Sequence:
        seq = self.sequences.get((pid, tid))
        if seq is not None:
            return seq
        parent = self.process(pid)
        uuid = self.next_uuid
        self.next_uuid += 1
        seq = self.sequences[(pid, tid)] = _Sequence(len(self.sequences) + 1, uuid)
        task = self.tracks.task_of(tid)
        if task is not None:
            self.task_descriptor(pid, tid, task, uuid, parent)
            self.counts.tasks += 1
        else:
            name = f"{self.threads.get((pid, tid), 'thread')}-{tid}"
            thread = b"\x08" + _v(pid) + b"\x10" + _v(tid) + _str(b"\x2a", name)
            # TrackDescriptor: uuid = 1, parent_uuid = 5, thread = 4
            self.packet(_ld(_P_DESCRIPTOR, b"\x08" + _v(uuid) + b"\x28" + _v(parent)
                            + _ld(b"\x22", thread)))
        # TracePacketDefaults.track_event_defaults (11) .track_uuid (11)
        defaults = _ld(b"\x5a", b"\x58" + _v(uuid))
        self.packet(_P_SEQ_ID + _v(seq.seq_id) + _P_SEQ_FLAGS
                    + _v(SEQ_INCREMENTAL_STATE_CLEARED) + _ld(_P_DEFAULTS, defaults))
        if task is None:
            self.counts.threads += 1
        return seq

    def task_descriptor(self, pid: int, tid: int, task: int, uuid: int, parent: int) -> None:
        """A task's track: named, under its process (TrackDescriptor: uuid = 1,
        name = 2, parent_uuid = 5)."""
        name = self.tracks.label(pid, task, self.threads)
        self.task_names[(pid, tid)] = name
        self.packet(_ld(_P_DESCRIPTOR, b"\x08" + _v(uuid) + _str(b"\x12", name)
                        + b"\x28" + _v(parent)))

    def finish_tasks(self) -> None:
        """Names that changed since a track was described, the creation and the wake arrows."""
        for (pid, tid), written in list(self.task_names.items()):
            task = self.tracks.task_of(tid)
            if task is not None and self.tracks.label(pid, task, self.threads) != written:
                self.task_descriptor(pid, tid, task, self.sequences[(pid, tid)].uuid,
                                     self.process(pid))
        for flow in self.tracks.flows:
            fid = (flow.pid << 32) | flow.task
            label = self.tracks.label(flow.pid, flow.task, self.threads)
            self.event(self.sequence(flow.pid, flow.source), flow.created, TYPE_INSTANT, None,
                       f"create {label}", [], extra=_E_FLOW + fid.to_bytes(8, "little"))
            self.event(self.sequence(flow.pid, self.tracks.tid(flow.task)), flow.ran,
                       TYPE_INSTANT, None, "first run", [],
                       extra=_E_FLOW_END + fid.to_bytes(8, "little"))
            self.counts.flows += 1
        for k, wake in enumerate(self.tracks.wakes):
            fid = WAKE_FLOW_BASE | k  # apart from the creation arrows' pid << 32 | task
            label = self.tracks.label(wake.pid, wake.task, self.threads)
            self.event(self.sequence(wake.pid, self.tracks.tid(wake.by)), wake.ended,
                       TYPE_INSTANT, None, f"end, wakes {label}", [],
                       extra=_E_FLOW + fid.to_bytes(8, "little"))
            self.event(self.sequence(wake.pid, self.tracks.tid(wake.task)), wake.woke,
                       TYPE_INSTANT, None, "woken", [],
                       extra=_E_FLOW_END + fid.to_bytes(8, "little"))
            self.counts.wakes += 1

    # -- events ----------------------------------------------------------------
    def event(self, seq: _Sequence, ts: int, kind: int, name: str | None,
              inline_name: str | None, notes: list[tuple[str, str | bool]],
              where: Location | None = None, extra: bytes = b"") -> None:
        interned = bytearray()
        body = bytearray(b"\x48" + _SMALL[kind])  # TrackEvent.type = 9
        if name is not None:
            iid = seq.names.get(name)
            if iid is None:
                iid = seq.names[name] = len(seq.names) + 1
                # InternedData.event_names = 2: EventName {iid = 1, name = 2}
                interned += _ld(b"\x12", b"\x08" + _v(iid) + _str(b"\x12", name))
            body += b"\x50" + _v(iid)  # name_iid = 10
            if where is not None:
                place = (name, *where)
                lid = seq.places.get(place)
                if lid is None:
                    lid = seq.places[place] = len(seq.places) + 1
                    # InternedData.source_locations = 4: SourceLocation {iid = 1,
                    # file_name = 2, function_name = 3, line_number = 4}
                    loc = b"\x08" + _v(lid) + _str(b"\x12", where[0]) + _str(b"\x1a", name)
                    if where[1]:
                        loc += b"\x20" + _v(where[1])
                    interned += _ld(b"\x22", loc)
                body += b"\x90\x02" + _v(lid)  # source_location_iid = 34
        elif inline_name is not None:
            body += _str(b"\xba\x01", inline_name)  # name = 23
        for key, value in notes:
            kid = seq.keys.get(key)
            if kid is None:
                kid = seq.keys[key] = len(seq.keys) + 1
                # InternedData.debug_annotation_names = 3: {iid = 1, name = 2}
                interned += _ld(b"\x1a", b"\x08" + _v(kid) + _str(b"\x12", key))
            if value is True:
                note = b"\x08" + _v(kid) + b"\x10\x01"  # name_iid = 1, bool_value = 2
            else:
                note = b"\x08" + _v(kid) + _str(b"\x32", str(value))  # string_value = 6
            body += _ld(b"\x22", note)  # debug_annotations = 4
        body += extra
        pkt = bytearray(_P_TIMESTAMP + _v(ts) + _P_SEQ_ID + _v(seq.seq_id)
                        + _P_SEQ_FLAGS + _SMALL[SEQ_NEEDS_INCREMENTAL_STATE])
        if interned:
            pkt += _ld(_P_INTERNED, bytes(interned))
        pkt += _ld(_P_TRACK_EVENT, bytes(body))
        self.packet(bytes(pkt))


def write_perfetto(records: Iterable[RecordLike], out: IO[bytes], processes: dict[int, str],
                   threads: dict[tuple[int, int], str],
                   argv: dict[int, list[str]] | None = None) -> Counts:
    """Write the Perfetto trace of ``records`` (in time order) to the binary ``out``."""
    tracks = TaskTracks()
    w = _Writer(out, processes, threads, argv or {}, tracks)
    for pid in sorted(processes):
        w.process(pid)
    counts = w.counts
    locations = Locations()
    for item in balanced(locations.watch(tracks.records(records))):
        if not isinstance(item, (Begin, End)) and item.kind == "task":
            continue  # read by tracks; not drawn
        seq = w.sequence(item.pid, item.tid)
        if isinstance(item, Begin):
            notes: list[tuple[str, str | bool]] = []
            if item.event not in ("start", ""):
                notes.append(("entry", item.event))
            if item.args is not None:
                notes.append(("args", item.args))
            w.event(seq, item.ts, TYPE_SLICE_BEGIN, item.func, None, notes,
                    locations.get(item.func))
            counts.begins += 1
        elif isinstance(item, End):
            notes = []
            if item.why:
                notes.append((item.why, True))
            elif item.event not in ("return", ""):
                notes.append(("exit", item.event))
            if item.value is not None:
                key = ("raised" if item.event == "unwind" else
                       "yielded" if item.event == "yield" else "retval")
                notes.append((key, item.value))
            w.event(seq, item.ts, TYPE_SLICE_END, None, None, notes)
            counts.ends += 1
        elif item.kind == "call":
            notes = []
            if item.parent is not None:
                notes.append(("parent", item.parent))
            if item.args is not None:
                notes.append(("args", item.args))
            w.event(seq, item.ts, TYPE_INSTANT, item.func, None, notes,
                    locations.get(item.func))
            counts.instants += 1
        elif item.kind in ("marker", "text"):
            w.event(seq, item.ts, TYPE_INSTANT, None, item.text or "", [(item.kind, True)])
            counts.instants += 1
    w.finish_tasks()
    w.flush()
    return counts
