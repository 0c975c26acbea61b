"""The fntrace trace file's writer (docs/tracefile.md; the reader is tracefile.py).

Why a module of its own: a recording imports only this, the writer, before the
traced program starts, so the reader's record types, merging and checks
(formats/tracefile.py, which re-exports these names) cost a recording's
start-up nothing.  The file's layout constants live here, with the code that
makes the bytes; the reader takes them from here.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable, Iterable

from fntrace.core import accel as _accel
from fntrace.core.events import (
    BY_TAG,
    CALL,
    ENTRY,
    EVENT_CODES,
    EVENT_NAMES,
    EVENT_SHIFT,
    EXIT,
    MARKER,
    RECORD_CODES,
    RECORD_KINDS,
    TASK,
    TASK_PREFIX,
    TEXT,
    TEXT_FLAG,
)
from fntrace.formats import tally as summary

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Protocol
else:
    Protocol = object  # structural types are the type checker's: at run time, plain classes

__all__ = [
    "CHUNK_HEADER",
    "COMPRESSIONS",
    "EVENTS",
    "EVENTS_NAMES",
    "FLUSH_INTERVAL",
    "FOOTER",
    "KINDS",
    "KIND_CODES",
    "MAGIC",
    "MAX_CHUNK",
    "MAX_LINE",
    "PREAMBLE",
    "SYNC",
    "VERSION",
    "Render",
    "Thread",
    "TraceWriter",
    "compressor",
    "location",
    "stored_text",
]

#: Version 2 added each function's source file and first line to the chunks'
#: function tables; version 1 files are read with no locations.  Version 3
#: added event chunks compressed as LZ4 blocks (flag 2): a reader that knows
#: only versions 1-2 refuses the file with its version message instead of
#: calling every chunk unreadable.  Version 4 made the events smaller: no
#: thread index in a chunk of one thread, and a call's, entry's or exit's
#: text stored only when it has one (TEXT_FLAG says so).
VERSION = 4
MAGIC = b"FNTRACE\x00"
SYNC = b"\xf7FNC"
_PREAMBLE = struct.Struct("<8sHII")   # magic, version, header length, header crc32
_CHUNK = struct.Struct("<4scII")      # sync, type, payload length, payload crc32
EVENTS = b"E"       # an event chunk: a compression flag, then the payload (COMPRESSIONS)
FOOTER = b"Z"       # the clean end: JSON {end_ts, events, lost}
MAX_CHUNK = 1 << 28
#: An event chunk's compressions by name, and the flag byte each starts with:
#: an LZ4 block (the flag, the decompressed size as a LEB128 number, the block;
#: compressed by the C extension: fntrace/csrc/lzblock.c), zlib level 1, none.
COMPRESSIONS = {"lz4": b"\x02", "zlib": b"\x01", "none": b"\x00"}
#: Seconds between two chunks a recording writes (fntrace/recording/recorder.py):
#: what a SIGKILL (which nothing can catch) loses at most, besides the chunk
#: being written.
FLUSH_INTERVAL = 0.1

# Record kinds as stored (3 low bits of an event's first byte) and the entry/exit
# events (the next 3 bits): fntrace/core/events.py declares both.
KINDS = RECORD_KINDS
EVENTS_NAMES = EVENT_NAMES
_EVENT_CODE = EVENT_CODES
#: The codes, for the C encoder (fntrace/csrc/drain.c encode_buffers).
KIND_CODES = RECORD_CODES
_CALL, _ENTRY, _EXIT, _MARKER = CALL.code, ENTRY.code, EXIT.code, MARKER.code
#: The preamble and chunk header layouts, for the reader.
PREAMBLE = _PREAMBLE
CHUNK_HEADER = _CHUNK


# -- varints --------------------------------------------------------------------------
def _uvarint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int) -> int:
    return n * 2 if n >= 0 else -n * 2 - 1


# -- writing --------------------------------------------------------------------------
#: A source line number over this is not a line (it is stored as 0, unknown).
MAX_LINE = (1 << 31) - 1


def location(fn: Any) -> tuple[str | None, int]:
    """(source file, first line) of a traced function as the file stores it:
    a Function's ``filename`` and ``lineno`` (its code's co_filename and
    co_firstlineno); (None, 0) for anything without them.  The C encoder
    (fntrace/csrc/drain.c fn_location) reads the same attributes the same way."""
    file = getattr(fn, "filename", None)
    line = getattr(fn, "lineno", 0)
    return (file if isinstance(file, str) else None,
            line if isinstance(line, int) and 0 < line <= MAX_LINE else 0)


#: A function table's key: (name, co_flags, source file, first line).
FuncKey = tuple[str, int, str | None, int]

#: How many functions' keys a writer keeps between chunks at most (then it
#: forgets them all and reads them again as they come): each keeps its
#: Function (not its code) alive, ~300 bytes with the key.
KEY_CACHE_LIMIT = 8192


class _ChunkTables:
    """One chunk's string, function and thread tables, filled as its events are encoded."""

    __slots__ = ("funcs", "strings", "thread_rows", "threads")

    def __init__(self) -> None:
        self.strings: dict[str, int] = {}
        self.funcs: dict[FuncKey, int] = {}
        self.threads: dict[int, int] = {}
        self.thread_rows: list[tuple[int, str, int, str, int]] = []

    def sid(self, text: str) -> int:
        sid = self.strings.get(text)
        if sid is None:
            sid = self.strings[text] = len(self.strings)
        return sid

    def fid(self, name: str, flags: int, file: str | None = None, line: int = 0) -> int:
        key = (name, flags, file, line)
        fid = self.funcs.get(key)
        if fid is None:
            self.sid(name)
            if file is not None:
                self.sid(file)
            fid = self.funcs[key] = len(self.funcs)
        return fid

    def fn_fid(self, fn: Any, flags: int) -> int:
        """The fid of a traced function (a Function, as a ring event holds it)."""
        return self.fid(fn.name, flags, *location(fn))

    def thread(self, tid: int, name: str, cpu: int, flags: str, lost: int) -> int:
        idx = self.threads.get(tid)
        if idx is None:
            self.sid(name)
            self.sid(flags)
            idx = self.threads[tid] = len(self.thread_rows)
            self.thread_rows.append((tid, name, cpu, flags, lost))
        return idx


class Thread(Protocol):
    """What the writer reads of the thread an event came from (a ring's ThreadBuffer)."""

    tid: int
    name: str
    cpu: int
    thread_flags: str
    overrun: int
    dropped: int


#: The text a kind stored as a line is recorded as: its renderer's, given the
#: thread and the ring event.
if TYPE_CHECKING:
    TextOf = Callable[[Any, tuple[Any, ...]], str]


class Render(Protocol):
    """How the events' text is made (the tracing layer's renderers, by kind)."""

    def one(self, buf: Any, ev: tuple[Any, ...]) -> str:
        """One event's text."""

    def lines(self, pairs: list[tuple[Any, tuple[Any, ...]]]) -> Iterable[str]:
        """A batch's lines, as trace_pipe shows them."""

_C = CALL.at
_E = ENTRY.at
_X = EXIT.at
_M = MARKER.at
_NC, _NE, _NX = len(CALL.fields), len(ENTRY.fields), len(EXIT.fields)
#: A task note's prefix as stored: a chunk whose bytes lack it holds no note.
_NOTE_BYTES = TASK_PREFIX.encode()


def stored_text(buf: Any, ev: tuple[Any, ...], text_of: TextOf) -> tuple[int, str]:
    """(record code, text) of a ring event the file stores as a line: a marker's
    text, or what the renderer of its kind makes of it (one line per line)."""
    kind = BY_TAG.get(ev[2])
    if kind is MARKER:
        return _MARKER, str(ev[_M.text])
    if kind is TASK:
        return _MARKER, TASK_PREFIX + str(ev[TASK.at.info])
    text = text_of(buf, ev) if kind is not None else f"<event {ev[2]}>\n"
    return TEXT.code, text.rstrip("\n")


def compressor(choice: bool | str | None) -> tuple[str, Callable[[bytes], bytes] | None]:
    """The event chunks' compression a writer asked for ``choice`` uses: its name
    (COMPRESSIONS) and, for lz4, the C compressor.

    ``True`` or None: the cheapest there is, LZ4 where the C extension is on
    (about a fifth of zlib's instructions for a fifth more bytes), else zlib;
    ``False``: none; or a name.  ValueError for lz4 without the C extension
    (Python would compress it far slower than zlib does) or an unknown name.
    """
    lz = getattr(_accel.speedups, "lz_compress", None)
    if choice is True or choice is None:
        return ("lz4", lz) if lz is not None else ("zlib", None)
    if choice is False or choice == "none":
        return "none", None
    if choice == "zlib":
        return "zlib", None
    if choice == "lz4":
        if lz is None:
            raise ValueError(f"lz4 compression needs fntrace's C extension "
                             f"({_accel.status()}); use zlib or none")
        return "lz4", lz
    raise ValueError(f"unknown compression {choice!r}; known: {', '.join(COMPRESSIONS)}")


class TraceWriter:
    """Appends chunks to a trace file; each ``write_events`` is one flushed chunk.

    ``compress``: the event chunks' compression (:func:`compressor`)."""

    def __init__(self, path: str, header: dict[str, Any],
                 compress: bool | str | None = True) -> None:
        self.path = path
        self.compress = compress
        #: The compression each event chunk gets (a key of COMPRESSIONS).
        self.compression, self._lz = compressor(compress)
        self.events = 0
        self.bytes = 0
        self.closed = False
        #: Per thread, what is written: the footer's summary (fntrace/formats/footer.py).
        self.tally = summary.Tally()
        #: Per event chunk, where and when: the footer's index.
        self.index = summary.ChunkIndex()
        #: The C encoder's Function -> function-table key, kept across chunks:
        #: each chunk's table names its functions again, and reading a key
        #: runs the Function's properties (KEY_CACHE_LIMIT bounds it).
        self.function_keys: dict[Any, FuncKey] = {}
        # Unbuffered: a forked child that keeps this object (its parent's file) must
        # never flush a buffer or take the buffer's lock another thread held at fork.
        self.f: IO[bytes] = open(path, "wb", buffering=0)  # lives as long as the writer
        self.pid = os.getpid()
        head = json.dumps({"version": VERSION, **header}, sort_keys=True).encode()
        self._write(_PREAMBLE.pack(MAGIC, VERSION, len(head), zlib.crc32(head)) + head)
        self._first_chunk = self.bytes  # the index's offsets count from here

    def _write(self, data: bytes) -> None:
        if os.getpid() != self.pid:
            # A forked child's copy of this writer (its recording restarts on a file
            # of its own, or stops): whatever it would append, the parent's events
            # copied at fork and the child's first calls (threading's at-fork
            # hooks), is not the parent's file's to hold.
            self.let_go()
            return
        view = memoryview(data)
        while view:  # a raw write may take only part (a full disk: the next one fails)
            n = self.f.write(view) or 0
            self.bytes += n
            view = view[n:]

    def _chunk(self, kind: bytes, *parts: bytes) -> None:
        """One chunk whose payload is ``parts`` end to end, written without
        joining them: an event chunk's payload is most of the file, and copying
        it again per chunk would cost the writer as much as encoding it."""
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        self._write(_CHUNK.pack(SYNC, kind, sum(map(len, parts)), crc))
        for part in parts:
            self._write(part)

    def write_events(self, pairs: Iterable[tuple[Thread, tuple[Any, ...]]],
                     text_of: TextOf) -> int:
        """Encode (thread, ring event) pairs as one chunk and write it; returns the
        number of events in it.

        The ring events are read by the schema's field names; calls, entries,
        exits and markers are stored field by field, every other kind as the
        line ``text_of`` renders (fntrace/csrc/drain.c encode_buffers makes the
        same bytes from the same events).
        """
        tables = _ChunkTables()
        body = bytearray()   # the events' fields
        times = bytearray()  # and their times, stored after them
        last_ts: dict[int, int] = {}
        per_thread: dict[int, int] = {}
        n = 0
        earliest = latest = 0
        pairs = list(pairs)
        # a chunk of one thread's events stores no thread index in them
        indexed = len({buf.tid for buf, _ in pairs}) > 1
        for buf, ev in pairs:
            t = tables.thread(buf.tid, buf.name, buf.cpu, buf.thread_flags,
                              buf.overrun + buf.dropped)
            per_thread[t] = per_thread.get(t, 0) + 1
            tag = ev[2]
            kind = BY_TAG.get(tag)
            if kind is CALL and len(ev) == _NC:
                code, event = _CALL, ev[_C.event]
            elif kind is ENTRY and len(ev) == _NE:
                code, event = _ENTRY, ev[_E.event]
            elif kind is EXIT and len(ev) == _NX:
                code, event = _EXIT, ev[_X.event]
            else:
                code, text = stored_text(buf, ev, text_of)
                event = ""
            head = len(body)
            body.append(code | (_EVENT_CODE.get(event, 0) << EVENT_SHIFT))
            if indexed:
                _uvarint(body, t)
            ts = ev[0]
            _uvarint(times, _zigzag(ts - last_ts.get(t, 0)))
            last_ts[t] = ts
            if not n or ts < earliest:
                earliest = ts
            if not n or ts > latest:
                latest = ts
            extra: str | None = None  # a call's or entry's arguments, an exit's value
            if code == _CALL:
                ip = ev[_C.ip]
                parent = ev[_C.parent]
                _uvarint(body, tables.fn_fid(ip, ip.code.co_flags))
                _uvarint(body, 0 if parent is None else tables.fn_fid(parent, 0) + 1)
                extra = ev[_C.args]
            elif code == _ENTRY:
                fn = ev[_E.fn]
                _uvarint(body, tables.fn_fid(fn, fn.code.co_flags))
                _uvarint(body, ev[_E.depth])
                extra = ev[_E.args]
            elif code == _EXIT:
                fn = ev[_X.fn]
                _uvarint(body, tables.fn_fid(fn, fn.code.co_flags))
                _uvarint(body, ev[_X.depth])
                _uvarint(times, max(ev[_X.duration], 0))
                extra = ev[_X.value]
            else:
                _uvarint(body, tables.sid(text))
            if extra is not None:
                body[head] |= TEXT_FLAG
                _uvarint(body, tables.sid(extra))
            n += 1
        written = self.write_table_chunk(tables, body, times, n, (earliest, latest),
                                         [tables.thread_rows[t][0] for t in per_thread])
        self.tally.rows_written(tables.thread_rows)
        for t, count in per_thread.items():
            self.tally.events_written(tables.thread_rows[t][0], count)
        return written

    def take(self, bufs: Any, render: Render) -> tuple[int, set[int]]:
        """Consume every event now in ``bufs`` (a ring's BufferSet) into one chunk:
        (events written, tids of the threads they came from).

        With the C extension the buffers are consumed and encoded in one pass,
        without a tuple per event (fntrace/csrc/drain.c encode_buffers: the same
        bytes as write_events); a kind it does not store field by field comes
        back here for its text (``stored_text``).
        """
        speedups = _accel.speedups
        if speedups is not None:
            if len(self.function_keys) > KEY_CACHE_LIMIT:
                self.function_keys.clear()
            with bufs.lock:  # every consumer takes it: the read counters are this chunk's
                buffers = bufs.buffers()
                before = [(buf.read, buf.overrun + buf.dropped) for buf in buffers]
                payload, n, tids, first, last, notes = speedups.encode_buffers(
                    buffers, lambda buf, ev: stored_text(buf, ev, render.one), EVENT_CODES,
                    _NOTE_BYTES, self.function_keys, self._lz is not None)
            if n:
                if self._lz is not None:  # compressed by the encoder, as stored
                    self.write_stored((payload,), n, (first, last), tids, notes)
                else:
                    self.write_payload(payload, n, (first, last), tids, notes)
                self._tally_taken(buffers, before)
            return n, set(tids)
        pairs = bufs.consume()
        return self.write_events(pairs, render.one), {buf.tid for buf, _ in pairs}

    def _tally_taken(self, buffers: list[Any], before: list[tuple[int, int]]) -> None:
        """Count a chunk the C encoder made: each buffer's events are its read counter's
        growth, its row the buffer's fields.  The row's lost count was read by the
        encoder between ``before`` and now; when a thread lost events meanwhile, a
        row with the count as it is now follows, so the file's largest (what
        readers keep) is the one tallied."""
        late = []
        for buf, (read, lost) in zip(buffers, before, strict=True):
            taken = buf.read - read
            if taken <= 0:
                continue
            now = buf.overrun + buf.dropped
            row = (buf.tid, buf.name, buf.cpu, buf.thread_flags, now)
            if now != lost:
                late.append(row)
            self.tally.rows_written([row])
            self.tally.events_written(buf.tid, taken)
        if late:
            self.write_lost(late)

    def let_go(self) -> None:
        """In a forked child: the parent's file is the parent's.  Nothing more is
        written to it from here; this process's copy of its descriptor is closed
        (unbuffered: closing writes nothing), so no ResourceWarning or stray fd."""
        if not self.closed:
            self.closed = True
            self.f.close()

    def write_lost(self, threads: Iterable[tuple[int, str, int, str, int]]) -> None:
        """A chunk with thread rows only (lost counters changed, no events)."""
        tables = _ChunkTables()
        for row in threads:
            tables.thread(*row)
        self.write_table_chunk(tables, bytearray(), bytearray(), 0)
        self.tally.rows_written(tables.thread_rows)

    def write_table_chunk(self, tables: _ChunkTables, body: bytearray, times: bytearray,
                          n: int, span: tuple[int, int] | None = None,
                          tids: Iterable[int] | None = None) -> int:
        """One event chunk of these tables and ``n`` encoded events, their fields
        ``body`` and their times ``times`` (``span``: their earliest and latest
        timestamps; ``tids``: their threads'); nothing when it would hold
        nothing."""
        if n == 0 and not tables.thread_rows:
            return 0
        out = bytearray()
        _uvarint(out, len(tables.strings))
        for text in tables.strings:
            raw = text.encode("utf-8", "surrogatepass")
            _uvarint(out, len(raw))
            out += raw
        _uvarint(out, len(tables.funcs))
        for name, flags, file, line in tables.funcs:
            _uvarint(out, tables.strings[name])
            _uvarint(out, flags)
            _uvarint(out, 0 if file is None else tables.strings[file] + 1)
            _uvarint(out, line)
        _uvarint(out, len(tables.thread_rows))
        for tid, tname, cpu, tflags, lost in tables.thread_rows:
            _uvarint(out, tid)
            _uvarint(out, tables.strings[tname])
            _uvarint(out, cpu)
            _uvarint(out, tables.strings[tflags])
            _uvarint(out, lost)
        _uvarint(out, n)
        _uvarint(out, len(body))
        out += body
        out += times
        return self.write_payload(bytes(out), n, span, tids)

    def write_payload(self, payload: bytes, n: int,
                      span: tuple[int | None, int | None] | None = None,
                      tids: Iterable[int] | None = None, notes: bool | None = None) -> int:
        """Write one event chunk from its encoded payload (tables, count, events);
        ``span``, the events' earliest and latest timestamps, goes to the footer's
        index (a chunk of events without it leaves the file without an index),
        and so do ``tids``, its events' threads (None: not known), and ``notes``,
        whether it may hold a task note (None: searched for here)."""
        if notes is None:  # a string of its table may start with the prefix
            notes = _NOTE_BYTES in payload
        if self._lz is not None:
            head = bytearray(COMPRESSIONS["lz4"])
            _uvarint(head, len(payload))
            stored = (bytes(head), self._lz(payload))
        elif self.compression == "zlib":
            stored = (COMPRESSIONS["zlib"], zlib.compress(payload, 1))
        else:
            stored = (COMPRESSIONS["none"], payload)
        return self.write_stored(stored, n, span, tids, notes)

    def write_stored(self, stored: tuple[bytes, ...], n: int,
                     span: tuple[int | None, int | None] | None,
                     tids: Iterable[int] | None, notes: bool) -> int:
        """Write one event chunk as stored: ``stored``'s parts end to end are its
        compression flag, then the payload so compressed; the rest as
        write_payload's."""
        offset = self.bytes - self._first_chunk
        self._chunk(EVENTS, *stored)
        self.events += n
        if n:
            first, last = span if span is not None else (None, None)
            self.index.chunk_written(
                offset, None if first is None or last is None else (first, last), n, notes,
                tids)
        return n

    def finish(self, end_ts: int, extra: dict[str, Any] | None = None) -> None:
        """The footer: the file ends cleanly here."""
        if self.closed:
            return
        # A summary only when it counts every event written (not when raw payloads
        # were handed to write_payload, whose threads are not known here).
        threads = self.tally.fields(self.events)
        tids = [row["tid"] for row in threads["threads"]] if threads else None
        data = {"end_ts": end_ts, "events": self.events, **(extra or {}),
                **threads, **self.index.fields(self.events, tids)}
        self._chunk(FOOTER, json.dumps(data, sort_keys=True).encode())
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.f.close()
