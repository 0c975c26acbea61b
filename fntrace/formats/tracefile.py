"""The fntrace trace file (``fntrace.dat``): writer and reader (docs/tracefile.md).

A file is a fixed preamble (magic, version, a JSON header with its CRC) then
self-delimiting chunks.  Each chunk is ``SYNC type length crc32 payload``, so
a reader detects a corrupt chunk (CRC), skips it and resynchronises on the
next ``SYNC``; a chunk cut short by a crash is dropped with a note.  Event
chunks are self-contained (their own string, function and thread tables, and
per-thread timestamp deltas restarting at zero), so losing one chunk loses
only its events.  The writer appends one chunk per batch it consumes from a
ring buffer and flushes, so a process that dies leaves everything written up
to its last batch; a footer chunk marks a clean end.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["SUPPORTED_VERSIONS", "VERSION", "Record", "ThreadInfo", "TraceFile",
           "TraceFileError", "TraceWriter", "merged_records", "open_trace", "open_traces"]

VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAGIC = b"FNTRACE\x00"
SYNC = b"\xf7FNC"
_PREAMBLE = struct.Struct("<8sHII")   # magic, version, header length, header crc32
_CHUNK = struct.Struct("<4scII")      # sync, type, payload length, payload crc32
EVENTS = b"E"       # an event chunk, payload zlib-compressed
FOOTER = b"Z"       # the clean end: JSON {end_ts, events, lost}
MAX_CHUNK = 1 << 28

# Record kinds as stored (3 low bits of an event's first byte).
KINDS = ("call", "entry", "exit", "marker", "text")
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
# fntrace.Event values (the next 3 bits).
EVENTS_NAMES = ("", "start", "resume", "throw", "return", "yield", "unwind")
_EVENT_CODE = {e: i for i, e in enumerate(EVENTS_NAMES)}
#: The codes, for the C encoder (fntrace/_speedups.c encode_buffers).
KIND_CODES = _KIND_CODE
EVENT_CODES = _EVENT_CODE


class TraceFileError(Exception):
    """The file cannot be read as a trace at all (one line, for the user)."""


@dataclass(frozen=True)
class Record:
    """One event of a trace file, in the terms of the reader API."""

    kind: str
    pid: int
    tid: int
    ts: int
    func: str
    parent: str | None
    depth: int
    event: str
    args: str | None
    value: str | None
    duration: int | None
    text: str | None
    #: co_flags of the function's code (generator/coroutine marks in the FLAGS column).
    code_flags: int = 0


@dataclass(frozen=True)
class ThreadInfo:
    pid: int
    tid: int
    name: str
    cpu: int
    #: The FLAGS column's first two characters ("M." main thread, ".d" daemon).
    flags: str = ".."


# -- varints --------------------------------------------------------------------------
def _uvarint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _zigzag(n: int) -> int:
    return n * 2 if n >= 0 else -n * 2 - 1


def _unzigzag(n: int) -> int:
    return n >> 1 if not n & 1 else -((n + 1) >> 1)


# -- writing --------------------------------------------------------------------------
@dataclass
class _ChunkTables:
    strings: dict[str, int] = field(default_factory=dict)
    funcs: dict[tuple[str, int], int] = field(default_factory=dict)
    threads: dict[int, int] = field(default_factory=dict)
    thread_rows: list[tuple[int, str, int, str, int]] = field(default_factory=list)

    def sid(self, text: str) -> int:
        sid = self.strings.get(text)
        if sid is None:
            sid = self.strings[text] = len(self.strings)
        return sid

    def opt(self, text: str | None) -> int:
        return 0 if text is None else self.sid(text) + 1

    def fid(self, name: str, flags: int) -> int:
        key = (name, flags)
        fid = self.funcs.get(key)
        if fid is None:
            self.sid(name)
            fid = self.funcs[key] = len(self.funcs)
        return fid

    def thread(self, tid: int, name: str, cpu: int, flags: str, lost: int) -> int:
        idx = self.threads.get(tid)
        if idx is None:
            self.sid(name)
            self.sid(flags)
            idx = self.threads[tid] = len(self.thread_rows)
            self.thread_rows.append((tid, name, cpu, flags, lost))
        return idx


#: One event to write: (tid, thread name, cpu, thread flags, lost so far, kind, ts, ...)
#: where the rest is per kind, as TraceWriter.write_events documents.
WEvent = tuple[Any, ...]


class TraceWriter:
    """Appends chunks to a trace file; each ``write_events`` is one flushed chunk."""

    def __init__(self, path: str, header: dict[str, Any], compress: bool = True) -> None:
        self.path = path
        self.compress = compress
        self.events = 0
        self.bytes = 0
        self.closed = False
        # Unbuffered: a forked child that keeps this object (its parent's file) must
        # never flush a buffer or take the buffer's lock another thread held at fork.
        self.f: IO[bytes] = open(path, "wb", buffering=0)  # lives as long as the writer
        head = json.dumps({"version": VERSION, **header}, sort_keys=True).encode()
        self._write(_PREAMBLE.pack(MAGIC, VERSION, len(head), zlib.crc32(head)) + head)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # a raw write may take only part (a full disk: the next one fails)
            n = self.f.write(view) or 0
            self.bytes += n
            view = view[n:]

    def _chunk(self, kind: bytes, payload: bytes) -> None:
        self._write(_CHUNK.pack(SYNC, kind, len(payload), zlib.crc32(payload)) + payload)

    def write_events(self, events: Iterable[WEvent]) -> int:
        """Encode and write one chunk; returns the number of events in it.

        Each event is ``(tid, tname, cpu, tflags, lost, kind, ts, event, *rest)``
        with rest, per kind: call ``(func, flags, parent or None, args)``; entry
        ``(func, flags, depth, args)``; exit ``(func, flags, depth, duration,
        value)``; marker and text ``(text,)``.
        """
        tables = _ChunkTables()
        body = bytearray()
        last_ts: dict[int, int] = {}
        n = 0
        for ev in events:
            tid, tname, cpu, tflags, lost, kind, ts, event = ev[:8]
            rest = ev[8:]
            t = tables.thread(tid, tname, cpu, tflags, lost)
            code = _KIND_CODE[kind]
            body.append(code | (_EVENT_CODE.get(event, 0) << 3))
            _uvarint(body, t)
            _uvarint(body, _zigzag(ts - last_ts.get(t, 0)))
            last_ts[t] = ts
            if code == 0:    # call
                _uvarint(body, tables.fid(rest[0], rest[1]))
                _uvarint(body, 0 if rest[2] is None else tables.fid(rest[2], 0) + 1)
                _uvarint(body, tables.opt(rest[3]))
            elif code == 1:  # entry
                _uvarint(body, tables.fid(rest[0], rest[1]))
                _uvarint(body, rest[2])
                _uvarint(body, tables.opt(rest[3]))
            elif code == 2:  # exit
                _uvarint(body, tables.fid(rest[0], rest[1]))
                _uvarint(body, rest[2])
                _uvarint(body, max(rest[3], 0))
                _uvarint(body, tables.opt(rest[4]))
            else:
                _uvarint(body, tables.sid(rest[0]))
            n += 1
        return self.write_table_chunk(tables, body, n)

    def write_lost(self, threads: Iterable[tuple[int, str, int, str, int]]) -> None:
        """A chunk with thread rows only (lost counters changed, no events)."""
        tables = _ChunkTables()
        for row in threads:
            tables.thread(*row)
        self.write_table_chunk(tables, bytearray(), 0)

    def write_table_chunk(self, tables: _ChunkTables, body: bytearray, n: int) -> int:
        if n == 0 and not tables.thread_rows:
            return 0
        out = bytearray()
        _uvarint(out, len(tables.strings))
        for text in tables.strings:
            raw = text.encode("utf-8", "surrogatepass")
            _uvarint(out, len(raw))
            out += raw
        _uvarint(out, len(tables.funcs))
        for name, flags in tables.funcs:
            _uvarint(out, tables.strings[name])
            _uvarint(out, flags)
        _uvarint(out, len(tables.thread_rows))
        for tid, tname, cpu, tflags, lost in tables.thread_rows:
            _uvarint(out, tid)
            _uvarint(out, tables.strings[tname])
            _uvarint(out, cpu)
            _uvarint(out, tables.strings[tflags])
            _uvarint(out, lost)
        _uvarint(out, n)
        out += body
        return self.write_payload(bytes(out), n)

    def write_payload(self, payload: bytes, n: int) -> int:
        """Write one event chunk from its encoded payload (tables, count, events)."""
        flag = b"\x01" if self.compress else b"\x00"
        if self.compress:
            payload = zlib.compress(payload, 1)
        self._chunk(EVENTS, flag + payload)
        self.events += n
        return n

    def finish(self, end_ts: int, extra: dict[str, Any] | None = None) -> None:
        """The footer: the file ends cleanly here."""
        if self.closed:
            return
        data = {"end_ts": end_ts, "events": self.events, **(extra or {})}
        self._chunk(FOOTER, json.dumps(data, sort_keys=True).encode())
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.f.close()


# -- reading --------------------------------------------------------------------------
@dataclass
class _Chunk:
    strings: list[str]
    funcs: list[tuple[str, int]]
    threads: list[tuple[int, str, int, str, int]]
    count: int
    data: bytes
    pos: int


def _parse_tables(payload: bytes) -> _Chunk:
    if payload[:1] == b"\x01":
        data = zlib.decompress(payload[1:])
    else:
        data = payload[1:]
    pos = 0
    n, pos = _read_uvarint(data, pos)
    strings = []
    for _ in range(n):
        size, pos = _read_uvarint(data, pos)
        strings.append(data[pos:pos + size].decode("utf-8", "surrogatepass"))
        pos += size
    n, pos = _read_uvarint(data, pos)
    funcs = []
    for _ in range(n):
        sid, pos = _read_uvarint(data, pos)
        flags, pos = _read_uvarint(data, pos)
        funcs.append((strings[sid], flags))
    n, pos = _read_uvarint(data, pos)
    threads = []
    for _ in range(n):
        tid, pos = _read_uvarint(data, pos)
        sid, pos = _read_uvarint(data, pos)
        cpu, pos = _read_uvarint(data, pos)
        fsid, pos = _read_uvarint(data, pos)
        lost, pos = _read_uvarint(data, pos)
        threads.append((tid, strings[sid], cpu, strings[fsid], lost))
    count, pos = _read_uvarint(data, pos)
    return _Chunk(strings, funcs, threads, count, data, pos)


def _decode(chunk: _Chunk, pid: int) -> Iterator[Record]:
    data, pos, strings, funcs, threads = (chunk.data, chunk.pos, chunk.strings, chunk.funcs,
                                          chunk.threads)
    last_ts = [0] * len(threads)
    rd = _read_uvarint
    for _ in range(chunk.count):
        head = data[pos]
        pos += 1
        code, event = head & 7, EVENTS_NAMES[head >> 3]
        t, pos = rd(data, pos)
        delta, pos = rd(data, pos)
        ts = last_ts[t] + _unzigzag(delta)
        last_ts[t] = ts
        tid = threads[t][0]
        if code == 0:
            f, pos = rd(data, pos)
            p, pos = rd(data, pos)
            a, pos = rd(data, pos)
            name, flags = funcs[f]
            yield Record("call", pid, tid, ts, name, funcs[p - 1][0] if p else None, 0, event,
                         strings[a - 1] if a else None, None, None, None, flags)
        elif code == 1:
            f, pos = rd(data, pos)
            depth, pos = rd(data, pos)
            a, pos = rd(data, pos)
            name, flags = funcs[f]
            yield Record("entry", pid, tid, ts, name, None, depth, event,
                         strings[a - 1] if a else None, None, None, None, flags)
        elif code == 2:
            f, pos = rd(data, pos)
            depth, pos = rd(data, pos)
            dur, pos = rd(data, pos)
            v, pos = rd(data, pos)
            name, flags = funcs[f]
            yield Record("exit", pid, tid, ts, name, None, depth, event, None,
                         strings[v - 1] if v else None, dur, None, flags)
        else:
            s, pos = rd(data, pos)
            yield Record(KINDS[code], pid, tid, ts, "", None, 0, "", None, None, None,
                         strings[s])


class TraceFile:
    """A trace file opened for reading: header, threads, lost counts, records."""

    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        self.problems: list[str] = []
        self.threads: dict[tuple[int, int], ThreadInfo] = {}
        self.lost: dict[tuple[int, int], int] = {}
        self.end_ts: int | None = None
        self.events = 0
        self.footer: dict[str, Any] | None = None
        self._chunks: list[_Chunk] = []
        if len(data) < _PREAMBLE.size or data[:8] != MAGIC:
            raise TraceFileError(f"{path}: not an fntrace trace file")
        _, version, hlen, hcrc = _PREAMBLE.unpack_from(data)
        if version not in SUPPORTED_VERSIONS:
            raise TraceFileError(f"{path}: trace file version {version} is not supported; "
                                 f"supported: {', '.join(map(str, SUPPORTED_VERSIONS))}")
        head = data[_PREAMBLE.size:_PREAMBLE.size + hlen]
        if len(head) < hlen or zlib.crc32(head) != hcrc:
            raise TraceFileError(f"{path}: trace file header is truncated or corrupt")
        self.header: dict[str, Any] = json.loads(head)
        self.pid = int(self.header.get("pid", 0))
        self._scan(data, _PREAMBLE.size + hlen)

    @property
    def truncated(self) -> bool:
        return bool(self.problems)

    def _scan(self, data: bytes, pos: int) -> None:
        size = len(data)
        index = 0
        while pos < size:
            if size - pos < _CHUNK.size:
                self.problems.append(f"truncated: {size - pos} bytes at offset {pos} "
                                     f"are not a whole chunk; ignored")
                return
            sync, kind, length, crc = _CHUNK.unpack_from(data, pos)
            start = pos + _CHUNK.size
            if sync != SYNC or length > MAX_CHUNK:
                pos = self._resync(data, pos, f"corrupt chunk header at offset {pos}")
                continue
            if start + length > size:
                self.problems.append(f"truncated: the last chunk (offset {pos}) is cut short "
                                     f"({size - start} of {length} bytes); its events are lost")
                return
            payload = data[start:start + length]
            if zlib.crc32(payload) != crc:
                pos = self._resync(data, pos, f"corrupt chunk at offset {pos} (checksum "
                                              f"mismatch); its events are skipped")
                continue
            try:
                self._take(kind, payload)
            except (ValueError, IndexError, zlib.error, KeyError) as exc:
                self.problems.append(f"unreadable chunk at offset {pos}: {exc}; skipped")
            pos = start + length
            index += 1
        if self.footer is None:
            self.problems.append("truncated: no end-of-trace footer (the program died before "
                                 "fntrace could finish the file)")

    def _resync(self, data: bytes, pos: int, why: str) -> int:
        nxt = data.find(SYNC, pos + 1)
        self.problems.append(why)
        return len(data) if nxt < 0 else nxt

    def _take(self, kind: bytes, payload: bytes) -> None:
        if kind == FOOTER:
            self.footer = json.loads(payload)
            self.end_ts = int(self.footer["end_ts"])
            return
        if kind != EVENTS:
            self.problems.append(f"unknown chunk type {kind!r}; skipped")
            return
        chunk = _parse_tables(payload)
        for tid, name, cpu, flags, lost in chunk.threads:
            key = (self.pid, tid)
            self.threads[key] = ThreadInfo(self.pid, tid, name, cpu, flags)
            self.lost[key] = max(self.lost.get(key, 0), lost)
        if chunk.count:
            self.events += chunk.count
            self._chunks.append(chunk)

    def records(self) -> Iterator[Record]:
        """Every record, in time order (stable: equal timestamps keep file order)."""
        out: list[Record] = []
        for chunk in self._chunks:
            try:
                out.extend(_decode(chunk, self.pid))
            except (IndexError, ValueError) as exc:  # a CRC-valid chunk that still lies
                self.problems.append(f"undecodable events in a chunk: {exc}")
        out.sort(key=lambda r: r.ts)
        return iter(out)

    @property
    def start_ts(self) -> int:
        return int(self.header.get("start_ts", 0))


def open_trace(path: str) -> TraceFile:
    """Open one file; TraceFileError when it is no trace at all."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise TraceFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise TraceFileError(f"{path}: {exc.strerror or exc}") from None
    return TraceFile(path, data)


def child_paths(path: str) -> list[str]:
    """Files recorded by followed children: ``PATH.<pid>`` next to ``path``."""
    folder = os.path.dirname(path) or "."
    base = os.path.basename(path)
    pattern = re.compile(re.escape(base) + r"\.(\d+)$")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = sorted((int(m.group(1)), name) for name in names if (m := pattern.match(name)))
    return [os.path.join(folder, name) for _, name in found]


def open_traces(path: str) -> list[TraceFile]:
    """``path`` and the files of the children recorded with ``--follow``."""
    return [open_trace(path)] + [open_trace(p) for p in child_paths(path)]


def merged_records(files: list[TraceFile]) -> Iterator[Record]:
    """Every record of several files in time order (their clock is shared)."""
    return heapq.merge(*(f.records() for f in files), key=lambda r: r.ts)
