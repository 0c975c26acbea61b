"""Perfetto output two ways, timed: fntrace's hand-written encoder and the official builder.

The official ``perfetto`` package (PyPI) offers ``StreamingTraceProtoBuilder``:
protobuf message objects filled field by field and serialized per packet.  This
writes the same packets (descriptors, per-thread sequences with defaults,
interned names, debug annotations) both ways from one recording and prints
CPU µs per event and bytes per event, so the choice in
``fntrace/analysis/perfetto.py`` rests on a figure.  The official way here
writes no compression (the builder has none); the hand-written packets' size
before compression is printed too.

    python3 bench/perfetto_encoders.py TRACE.dat
"""

from __future__ import annotations

import io
import resource
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fntrace.analysis import perfetto as fp
from fntrace.analysis.timeline import Begin, End, balanced
from fntrace.analysis.traceset import open_set


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def official(records: list, processes: dict, threads: dict, out: io.BytesIO) -> None:  # type: ignore[type-arg]
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
    from perfetto.trace_builder.proto_builder import StreamingTraceProtoBuilder

    b = StreamingTraceProtoBuilder(out)
    seqs: dict = {}  # type: ignore[type-arg]
    puuid: dict = {}  # type: ignore[type-arg]
    uuid = [1]
    for item in balanced(records):
        key = (item.pid, item.tid)
        st = seqs.get(key)
        if st is None:
            if item.pid not in puuid:
                p = b.create_packet()
                p.track_descriptor.uuid = puuid[item.pid] = uuid[0]
                uuid[0] += 1
                p.track_descriptor.process.pid = item.pid
                p.track_descriptor.process.process_name = processes.get(item.pid, "")
                b.write_packet(p)
            p = b.create_packet()
            tu = uuid[0]
            uuid[0] += 1
            p.track_descriptor.uuid = tu
            p.track_descriptor.parent_uuid = puuid[item.pid]
            p.track_descriptor.thread.pid = item.pid
            p.track_descriptor.thread.tid = item.tid
            p.track_descriptor.thread.thread_name = threads.get(key, "thread")
            b.write_packet(p)
            st = seqs[key] = (len(seqs) + 1, {}, {})
            p = b.create_packet()
            p.trusted_packet_sequence_id = st[0]
            p.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            p.trace_packet_defaults.track_event_defaults.track_uuid = tu
            b.write_packet(p)
        seq, names, keys = st
        if not isinstance(item, Begin | End):
            continue
        p = b.create_packet()
        p.timestamp = item.ts
        p.trusted_packet_sequence_id = seq
        p.sequence_flags = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        te = p.track_event
        notes = []
        if isinstance(item, Begin):
            te.type = pb.TrackEvent.TYPE_SLICE_BEGIN
            iid = names.get(item.func)
            if iid is None:
                iid = names[item.func] = len(names) + 1
                n = p.interned_data.event_names.add()
                n.iid, n.name = iid, item.func
            te.name_iid = iid
            if item.args is not None:
                notes.append(("args", item.args))
        else:
            te.type = pb.TrackEvent.TYPE_SLICE_END
            if item.value is not None:
                notes.append(("retval", item.value))
        for k, v in notes:
            kid = keys.get(k)
            if kid is None:
                kid = keys[k] = len(keys) + 1
                n = p.interned_data.debug_annotation_names.add()
                n.iid, n.name = kid, k
            a = te.debug_annotations.add()
            a.name_iid, a.string_value = kid, v
        b.write_packet(p)


def main() -> int:
    traces = open_set([sys.argv[1]], io.StringIO())
    records = list(traces.records())
    procs, threads = traces.process_names(), traces.thread_names()
    n = len(records)
    rows = []
    for label, fn in (
            ("hand-written, compressed (fntrace)",
             lambda out: fp.write_perfetto(records, out, procs, threads)),
            ("official StreamingTraceProtoBuilder, uncompressed",
             lambda out: official(records, procs, threads, out))):
        out = io.BytesIO()
        c0 = cpu()
        fn(out)
        rows.append((label, cpu() - c0, len(out.getvalue())))
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

    outer = pb.Trace()
    with_compression = io.BytesIO()
    fp.write_perfetto(records, with_compression, procs, threads)
    outer.ParseFromString(with_compression.getvalue())
    inflated = sum(len(zlib.decompress(p.compressed_packets)) for p in outer.packet)
    print(f"{n:,} events, Python {sys.version.split()[0]}\n")
    print("| encoder | CPU s | CPU µs/event | bytes/event |")
    print("|---|---|---|---|")
    for label, spent_s, size in rows:
        print(f"| {label} | {spent_s:.1f} | {spent_s * 1e6 / n:.2f} | {size / n:.2f} |")
    print(f"\nhand-written packets before compression: {inflated / n:.2f} bytes/event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
