"""The fntrace trace file (``fntrace.dat``): its reader (docs/tracefile.md).

A file is a fixed preamble (magic, version, a JSON header with its CRC) then
self-delimiting chunks.  Each chunk is ``SYNC type length crc32 payload``, so
a reader detects a corrupt chunk (CRC), skips it and resynchronises on the
next ``SYNC``; a chunk cut short by a crash is dropped with a note.  Event
chunks are self-contained (their own string, function and thread tables, and
per-thread timestamp deltas restarting at zero), so losing one chunk loses
only its events.  The writer (formats/tracewriter.py) appends one chunk per
batch it consumes from a ring buffer and flushes, so a process that dies
leaves everything written up to its last batch; a footer chunk marks a clean
end.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import itertools
import json
import operator
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields

from fntrace.core import accel as _accel
from fntrace.core.events import (
    CALL,
    ENTRY,
    EVENT_CODES,
    EVENT_SHIFT,
    EXIT,
    MARKER,
    TASK,
    TASK_PREFIX,
    TEXT_FLAG,
)
from fntrace.formats import footer as summary
from fntrace.formats.nesting import too_deep

# The writer and the file's layout (formats/tracewriter.py), here for the readers
# and for everything that names them as this module's.
from fntrace.formats.tracewriter import (
    CHUNK_HEADER,
    COMPRESSIONS,
    EVENTS,
    EVENTS_NAMES,
    FLUSH_INTERVAL,
    FOOTER,
    KIND_CODES,
    KINDS,
    MAGIC,
    MAX_CHUNK,
    MAX_LINE,
    PREAMBLE,
    SYNC,
    VERSION,
    TraceWriter,
    compressor,
    location,
    stored_text,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "COMPRESSIONS",
    "EVENT_CODES",
    "FLUSH_INTERVAL",
    "KIND_CODES",
    "SUPPORTED_VERSIONS",
    "VERSION",
    "Chunk",
    "Finished",
    "Record",
    "ThreadInfo",
    "TraceFile",
    "TraceFileError",
    "TraceWriter",
    "batched",
    "chunk_decoder",
    "compressor",
    "exit_status",
    "location",
    "merged_batches",
    "merged_records",
    "open_trace",
    "open_traces",
    "read_finished",
    "stored_text",
]

#: The versions this reader reads (formats/tracewriter.py writes VERSION).
SUPPORTED_VERSIONS = (1, 2, 3, 4)
_PREAMBLE, _CHUNK = PREAMBLE, CHUNK_HEADER
_CALL, _ENTRY, _EXIT, _MARKER = CALL.code, ENTRY.code, EXIT.code, MARKER.code


class TraceFileError(Exception):
    """The file cannot be read as a trace at all (one line, for the user)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One event of a trace file, in the terms of the reader API.

    Slotted: a trace has millions, and the C decoder (fntrace/csrc/decode.c)
    makes them by filling the slots, as ``__init__`` would."""

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
    #: The function's source file (its code's co_filename) and first line
    #: (co_firstlineno): None and 0 where unknown (a version-1 file, a marker).
    src_file: str | None = None
    src_line: int = 0


@dataclass(frozen=True)
class ThreadInfo:
    pid: int
    tid: int
    name: str
    cpu: int
    #: The FLAGS column's first two characters ("M." main thread, ".d" daemon).
    flags: str = ".."


def _unzigzag(n: int) -> int:
    return n >> 1 if not n & 1 else -((n + 1) >> 1)


# -- reading --------------------------------------------------------------------------
#: Limits a reader holds a file to: anything over them is corruption, never a
#: reason to allocate (a CRC only proves the bytes are the ones written, not
#: that a well-meaning writer wrote them).
MAX_HEADER = 1 << 20          # header JSON bytes
MAX_FOOTER = 1 << 20          # footer JSON bytes
MAX_PAYLOAD = 1 << 28         # an event chunk's payload, once decompressed
MAX_DEPTH = 1 << 16           # a function_graph nesting depth
MAX_VARINT_BYTES = 10         # a number is at most 64 bits: 10 LEB128 bytes
_INT_LIMIT = 1 << 63          # header and footer integers: 0 <= n < 2**63


class ChunkError(ValueError):
    """A chunk whose checksum is right but whose content breaks the format."""


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position); IndexError when the data ends inside the number."""
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 7 * MAX_VARINT_BYTES:
            raise ChunkError(f"a number at byte {pos} is longer than "
                             f"{MAX_VARINT_BYTES} bytes")


#: A function as a chunk's table gives it: name, co_flags, source file, first line.
FuncRow = tuple[str, int, str | None, int]


@dataclass
class Chunk:
    """An event chunk's tables, parsed, and its events still encoded: ``count``
    of them in ``data[pos:]`` (the decompressed payload).

    A chunk a reader keeps holds its payload as stored (``stored``: compressed,
    a few bytes per event less than decompressed) and decompresses it each time
    its events are read, so an open file's size in memory is about its size on
    disk; ``inflated`` holds the decompressed bytes while the chunk is parsed."""

    strings: list[str]
    funcs: list[FuncRow]
    threads: list[tuple[int, str, int, str, int]]
    count: int
    pos: int
    stored: bytes
    inflated: bytes | None = None
    #: (earliest, latest) timestamp and events per thread-table row, once counted.
    span: tuple[int | None, int | None] = (None, None)
    per_thread: list[int] = field(default_factory=list)
    #: The file's format version: how its events are laid out (_decode).
    version: int = VERSION

    @property
    def data(self) -> bytes:
        """The decompressed payload (tables, count, events)."""
        return self.inflated if self.inflated is not None else _inflate(self.stored)


def _inflate(payload: bytes) -> bytes:
    """The chunk's table-and-events bytes, refusing more than MAX_PAYLOAD of them."""
    flag = payload[:1]
    if flag == b"\x00":
        data = payload[1:]
    elif flag == b"\x02":
        data = _lz_inflate(payload)
    elif flag == b"\x01":
        inflater = zlib.decompressobj()
        data = inflater.decompress(payload[1:], MAX_PAYLOAD)
        if inflater.unconsumed_tail:
            raise ChunkError(f"it decompresses to more than {MAX_PAYLOAD} bytes")
        if not inflater.eof:
            raise ChunkError("its compressed data is cut short")
    else:
        raise ChunkError(f"unknown compression flag {flag!r}")
    if len(data) > MAX_PAYLOAD:
        raise ChunkError(f"its payload is over {MAX_PAYLOAD} bytes")
    return data


def _lz_inflate(payload: bytes) -> bytes:
    """An LZ4 chunk's bytes: its declared size is checked against MAX_PAYLOAD before
    anything is allocated, and the block must make exactly that many."""
    try:
        size, pos = _read_uvarint(payload, 1)
    except IndexError:
        raise ChunkError("its decompressed size is cut short") from None
    if size > MAX_PAYLOAD:
        raise ChunkError(f"it declares {size} bytes decompressed, more than {MAX_PAYLOAD}")
    lz_decompress: Callable[[bytes, int], bytes] | None = getattr(
        _accel.speedups, "lz_decompress", None)
    if lz_decompress is None:
        # Only a reader without the C extension needs the Python decompressor.
        from fntrace.formats import lzblock

        lz_decompress = lzblock.decompress
    try:
        data = lz_decompress(payload[pos:], size)
    except ValueError as exc:
        raise ChunkError(f"its LZ4 data is corrupt ({exc})") from None
    return data


def _text(raw: bytes) -> str:
    """A stored string.  The writer keeps lone surrogates (surrogatepass); strict
    UTF-8 refuses them as it refuses any bad byte, and such a string is read with
    its bad bytes escaped (``\\xed\\xa0\\x80``), so every consumer gets text any
    output stream can print."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def _count(data: bytes, pos: int, min_size: int, what: str) -> tuple[int, int]:
    """A table's or the events' count, at most what the bytes left can hold."""
    n, pos = _read_uvarint(data, pos)
    if n * min_size > len(data) - pos:
        raise ChunkError(f"{n} {what} cannot fit in the {len(data) - pos} bytes left")
    return n, pos


def _sid(strings: list[str], sid: int, what: str) -> str:
    if sid >= len(strings):
        raise ChunkError(f"{what} names string {sid} of {len(strings)}")
    return strings[sid]


def _parse_tables(payload: bytes, version: int = VERSION) -> Chunk:
    data = _inflate(payload)
    rd = _read_uvarint
    located = version >= 2  # version 1: name and flags only
    try:
        n, pos = _count(data, 0, 1, "strings")
        strings = []
        for _ in range(n):
            size, pos = rd(data, pos)
            if pos + size > len(data):
                raise ChunkError(f"a string of {size} bytes runs past the chunk's end")
            strings.append(_text(data[pos:pos + size]))
            pos += size
        n, pos = _count(data, pos, 4 if located else 2, "functions")
        funcs: list[FuncRow] = []
        for _ in range(n):
            sid, pos = rd(data, pos)
            flags, pos = rd(data, pos)
            file: str | None = None
            line = 0
            if located:
                fsid, pos = rd(data, pos)
                line, pos = rd(data, pos)
                if fsid:
                    file = _sid(strings, fsid - 1, "a function's file")
                if line > MAX_LINE:
                    raise ChunkError(f"a function's line {line} is over {MAX_LINE}")
            funcs.append((_sid(strings, sid, "a function"), flags, file, line))
        n, pos = _count(data, pos, 5, "threads")
        threads = []
        for _ in range(n):
            tid, pos = rd(data, pos)
            sid, pos = rd(data, pos)
            cpu, pos = rd(data, pos)
            fsid, pos = rd(data, pos)
            lost, pos = rd(data, pos)
            threads.append((tid, _sid(strings, sid, "a thread"), cpu,
                            _sid(strings, fsid, "a thread"), lost))
        count, pos = _count(data, pos, 3, "events")
    except IndexError:
        raise ChunkError("its tables run past its end") from None
    return Chunk(strings, funcs, threads, count, pos, payload, data, version=version)


#: An event's first byte -> (kind code, event name, whether a text follows:
#: None for "always", versions 1-3, where a call, entry or exit stores its
#: text's index + 1 or 0); None: no such kind or event.
_HEADS: tuple[tuple[int, str, bool | None] | None, ...] = tuple(
    (b & 7, EVENTS_NAMES[b >> EVENT_SHIFT], None)
    if (b & 7) < len(KINDS) and (b >> EVENT_SHIFT) < len(EVENTS_NAMES)
    else None for b in range(256))
#: The same in version 4: TEXT_FLAG says whether a call, entry or exit has a
#: text (its string index follows its fields); a marker's or text's byte has it clear.
_HEADS_4: tuple[tuple[int, str, bool | None] | None, ...] = tuple(
    (b & 7, EVENTS_NAMES[(b & ~TEXT_FLAG) >> EVENT_SHIFT], bool(b & TEXT_FLAG))
    if (b & 7) < len(KINDS) and ((b & ~TEXT_FLAG) >> EVENT_SHIFT) < len(EVENTS_NAMES)
    and not (b & TEXT_FLAG and (b & 7) >= _MARKER)
    else None for b in range(256))


def _text_field(data: bytes, pos: int, has_text: bool | None) -> tuple[int, int]:
    """A call's, entry's or exit's text as (its string index + 1, or 0 for
    none; the position after it): stored so in versions 1-3 (``has_text``
    None), stored as the index when the head's TEXT_FLAG says so in version 4."""
    if has_text is None:
        return _read_uvarint(data, pos)
    if not has_text:
        return 0, pos
    sid, pos = _read_uvarint(data, pos)
    return sid + 1, pos


def _decode(chunk: Chunk, pid: int, out: list[Record]) -> None:
    """Append the chunk's events to ``out``; ChunkError at the first one that lies
    (those before it are kept).

    Version 4 stores the events' fields (``fields``, from ``pos``) and then
    their times (``times``, from ``tpos``: each timestamp delta, each exit's
    duration); versions 1-3 store each event's times among its fields, read
    here from the one stream where the fields are."""
    data, pos, strings, funcs, threads = (chunk.data, chunk.pos, chunk.strings, chunk.funcs,
                                          chunk.threads)
    last_ts = [0] * len(threads)
    rd = _read_uvarint
    compact = chunk.version >= 4
    heads = _HEADS_4 if compact else _HEADS
    # version 4: a chunk of one thread stores no thread index (0, its only row)
    indexed = not compact or len(threads) > 1
    fields = times = data
    tpos = 0
    if compact:
        try:
            size, pos = rd(data, pos)
        except IndexError:
            raise ChunkError("it ends before its events' fields' length") from None
        tpos = pos + size
        if tpos > len(data):
            raise ChunkError(f"its events' fields ({size} bytes) run past its end")
        fields = data[:tpos]  # a field read past them is cut short, as at a chunk's end
    t = 0
    i = 0
    try:
        for i in range(chunk.count):
            head = heads[fields[pos]]
            if head is None:
                raise ChunkError(f"event {i}: unknown kind/event byte {fields[pos]:#04x}")
            pos += 1
            code, event, has_text = head
            if indexed:
                t, pos = rd(fields, pos)
            if compact:
                delta, tpos = rd(times, tpos)
            else:
                delta, pos = rd(fields, pos)
            ts = last_ts[t] + _unzigzag(delta)
            last_ts[t] = ts
            tid = threads[t][0]
            if code == _CALL:
                f, pos = rd(fields, pos)
                p, pos = rd(fields, pos)
                a, pos = _text_field(fields, pos, has_text)
                name, flags, file, line = funcs[f]
                out.append(Record("call", pid, tid, ts, name,
                                  funcs[p - 1][0] if p else None, 0, event,
                                  strings[a - 1] if a else None, None, None, None, flags,
                                  file, line))
            elif code == _ENTRY:
                f, pos = rd(fields, pos)
                depth, pos = rd(fields, pos)
                a, pos = _text_field(fields, pos, has_text)
                if depth > MAX_DEPTH:
                    raise ChunkError(f"event {i}: depth {depth} over {MAX_DEPTH}")
                name, flags, file, line = funcs[f]
                out.append(Record("entry", pid, tid, ts, name, None, depth, event,
                                  strings[a - 1] if a else None, None, None, None, flags,
                                  file, line))
            elif code == _EXIT:
                f, pos = rd(fields, pos)
                depth, pos = rd(fields, pos)
                if compact:
                    dur, tpos = rd(times, tpos)
                else:
                    dur, pos = rd(fields, pos)
                v, pos = _text_field(fields, pos, has_text)
                if depth > MAX_DEPTH:
                    raise ChunkError(f"event {i}: depth {depth} over {MAX_DEPTH}")
                name, flags, file, line = funcs[f]
                out.append(Record("exit", pid, tid, ts, name, None, depth, event, None,
                                  strings[v - 1] if v else None, dur, None, flags,
                                  file, line))
            else:
                s, pos = rd(fields, pos)
                text = strings[s]
                kind = KINDS[code]
                if code == _MARKER and text.startswith(TASK_PREFIX):
                    kind, text = TASK.name, text[len(TASK_PREFIX):]
                out.append(Record(kind, pid, tid, ts, "", None, 0, "", None, None,
                                  None, text))
    except IndexError:
        # Every index above is a varint (never negative): out of range is a lie.
        raise ChunkError(f"event {i}: a thread, function or string index out of range, "
                         f"or the chunk ends inside it") from None
    if compact and pos != len(fields):
        raise ChunkError(f"{len(fields) - pos} bytes after its {chunk.count} events' fields")
    if compact and tpos != len(data):
        raise ChunkError(f"{len(data) - tpos} bytes after its {chunk.count} events' times")
    if not compact and pos != len(data):
        raise ChunkError(f"{len(data) - pos} bytes after its {chunk.count} events")


_TS = operator.attrgetter("ts")
#: The C decoder, made once per extension module: [(module, decoder)].
_C_DECODER: list[tuple[Any, Any]] = []
#: Record's fields in order (the C decoder fills its slots by these names).
RECORD_FIELDS = tuple(f.name for f in fields(Record))


def chunk_decoder() -> Any:
    """The C chunk decoder (fntrace/csrc/decode.c ChunkDecoder), or None on the pure
    path.  It decodes a chunk's events into the Records ``_decode`` makes, or
    says it leaves the chunk to ``_decode``."""
    speedups = _accel.speedups
    if speedups is None or not hasattr(speedups, "ChunkDecoder"):
        return None
    if not _C_DECODER or _C_DECODER[0][0] is not speedups:
        _C_DECODER[:] = [(speedups, speedups.ChunkDecoder(
            Record, RECORD_FIELDS, KINDS, EVENTS_NAMES, TASK_PREFIX, TASK.name, MAX_DEPTH))]
    return _C_DECODER[0][1]


def _json(raw: bytes, limit: int) -> Any:
    """A header's or footer's JSON value; ValueError saying why it is not one."""
    if len(raw) > limit:
        raise ValueError(f"{len(raw)} bytes, over the {limit}-byte limit")
    try:
        text = raw.decode("utf-8")
        if too_deep(text):
            raise RecursionError
        return json.loads(text)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() digit limits
        raise ValueError(f"not JSON ({str(exc).splitlines()[0][:80]})") from None


def _is_int(v: Any) -> bool:
    return type(v) is int and 0 <= v < _INT_LIMIT


def _is_str(v: Any) -> bool:
    return type(v) is str


#: The tracers a header may name (fntrace.tracing.tracers.available(); a test keeps them equal).
TRACERS = ("nop", "function", "function_graph")


def _is_tracer(v: Any) -> bool:
    return v in TRACERS


def _is_strs(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


def _is_scalar(v: Any) -> bool:
    return v is None or type(v) in (bool, str) or _is_int(v) or (
        type(v) is float and v == v and abs(v) != float("inf")) or (
        type(v) is list and all(_is_scalar(x) for x in v))


def _is_options(v: Any) -> bool:
    if type(v) is not dict:
        return False
    for key, value in v.items():
        if key == "instance_options":
            if type(value) is not dict or not all(
                    type(x) is int and 0 <= x < 1 << 31 for x in value.values()):
                return False
        elif not _is_scalar(value):
            return False
    return True


#: The header's fields as the commands read them: name -> check.  A field of the
#: wrong type is dropped (its reader's default is used) and said once.
HEADER_FIELDS = {
    "version": _is_int, "program": _is_str, "argv": _is_strs, "python": _is_str,
    "implementation": _is_str, "pid": _is_int, "ppid": _is_int, "root_pid": _is_int,
    "start_realtime_ns": _is_int, "start_ts": _is_int, "clock": _is_str, "tracer": _is_tracer,
    "options": _is_options, "hostname": _is_str,
}
FOOTER_FIELDS = {"end_ts": _is_int, "events": _is_int}


def _checked(raw: bytes, limit: int, fields: dict[str, Any]) -> dict[str, Any]:
    """The JSON object in ``raw`` with ``fields`` of the right type; ValueError why not."""
    value = _json(raw, limit)
    if type(value) is not dict:
        shown = repr(value)
        raise ValueError(f"a JSON {type(value).__name__} "
                         f"({shown if len(shown) <= 20 else shown[:17] + '...'}), "
                         f"not an object")
    bad = sorted(k for k, check in fields.items() if k in value and not check(value[k]))
    if bad:
        raise ValueError(f"field {', '.join(bad)} of the wrong type or out of range")
    return value


def _footer(payload: bytes) -> dict[str, Any]:
    """The footer's JSON object, checked; ValueError (why, one line) when it is corrupt."""
    footer = _checked(payload, MAX_FOOTER, FOOTER_FIELDS)
    if "end_ts" not in footer:
        raise ValueError("no end_ts")
    summary.check(footer)
    return footer


def _preamble(path: str, data: bytes) -> tuple[bytes, int, int]:
    """(header bytes, offset of the first chunk, format version) of a file starting
    with ``data``; TraceFileError when it is no trace file at all, or one of a
    version this reader does not know."""
    if len(data) < _PREAMBLE.size or data[:8] != MAGIC:
        raise TraceFileError(f"{path}: not an fntrace trace file")
    _, version, hlen, hcrc = _PREAMBLE.unpack_from(data)
    if version not in SUPPORTED_VERSIONS:
        raise TraceFileError(f"{path}: trace file version {version} is not supported; "
                             f"supported: {', '.join(map(str, SUPPORTED_VERSIONS))}")
    head = data[_PREAMBLE.size:_PREAMBLE.size + hlen]
    if len(head) < hlen or zlib.crc32(head) != hcrc:
        raise TraceFileError(f"{path}: trace file header is truncated or corrupt")
    return head, _PREAMBLE.size + hlen, version


@dataclass(frozen=True)
class Finished:
    """A cleanly finished file as its preamble and footer say it, nothing else read."""

    path: str
    size: int
    header: dict[str, Any]
    footer: dict[str, Any]
    threads: list[summary.ThreadRow]
    #: The format version, the first chunk's offset and the footer chunk's.
    version: int = VERSION
    start: int = 0
    footer_at: int = 0


#: How much of a file's end is read first to find its footer (most footers are
#: far smaller; a larger one is read whole, up to MAX_FOOTER).
_TAIL = 1 << 16


def read_finished(path: str) -> Finished | None:
    """The file's header and its footer's summary, reading only the preamble and
    the tail; None when that cannot be had so (no footer as the last chunk: a
    crashed or cut recording; a footer without the summary: an older writer; a
    header or footer that is not right: the full read says what is wrong).

    The footer is the chunk that ends the file: its JSON is UTF-8, where the
    byte 0xf7 cannot occur, so the last SYNC in the tail is its chunk header,
    which is checked (type, length reaching exactly the end, CRC).  The event
    chunks before it are not read: their checksums are checked by the readers
    that decode them (``fntrace info --scan`` does).
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            first = f.read(_PREAMBLE.size)
            if len(first) == _PREAMBLE.size and first[:8] == MAGIC:
                first += f.read(_PREAMBLE.unpack_from(first)[2])
            try:
                head, start, version = _preamble(path, first)
                header = _checked(head, MAX_HEADER, HEADER_FIELDS)
            except (TraceFileError, ValueError):
                return None
            tail, at = b"", -1
            for want in (_TAIL, MAX_FOOTER + _CHUNK.size):
                want = min(want, size - start)
                f.seek(size - want)
                tail = f.read(want)
                at = tail.rfind(SYNC)
                if at >= 0 or want == size - start:
                    break
    except OSError:
        return None
    if at < 0 or len(tail) - at < _CHUNK.size:
        return None
    _, kind, length, crc = _CHUNK.unpack_from(tail, at)
    payload = tail[at + _CHUNK.size:]
    if kind != FOOTER or len(payload) != length or zlib.crc32(payload) != crc:
        return None
    try:
        footer = _footer(payload)
    except ValueError:
        return None
    rows = summary.thread_rows(footer)
    if rows is None:
        return None
    return Finished(path, size, header, footer, rows, version, start,
                    size - len(tail) + at)


class TraceFile:
    """A trace file opened for reading: header, threads, lost counts, records.

    What a file gets wrong is said in ``problems`` (one line each) and the rest is
    read: a corrupt chunk loses its events only; a header or footer that is not
    what the writer writes (``corrupt``) is replaced by defaults, every event
    still read, and the commands exit non-zero after printing what they could.
    """

    def __init__(self, path: str, data: bytes,
                 on_chunk: Callable[[int, int], None] | None = None,
                 finished: Finished | None = None) -> None:
        """Read ``data`` (the whole file) chunk by chunk; or, given ``finished`` (a
        cleanly finished file whose footer has a checked index), read nothing
        more now: the footer says the threads and counts, its index where each
        event chunk is and when, and a chunk is read when a reader reaches it."""
        self.path = path
        self.on_chunk = on_chunk
        self.problems: list[str] = []
        #: The problems that are corruption of the header or footer (also in problems).
        self.corrupt: list[str] = []
        self.threads: dict[tuple[int, int], ThreadInfo] = {}
        self.lost: dict[tuple[int, int], int] = {}
        self.end_ts: int | None = None
        self.events = 0
        self.footer: dict[str, Any] | None = None
        #: The format version the file was written in (SUPPORTED_VERSIONS).
        self.version = VERSION
        self._footer_seen = False
        #: Chunks read (encoded or decoded), or still to read (the index's rows).
        self._chunks: list[Chunk | list[Record] | summary.IndexRow] = []
        self._said = 0  # problems already handed out (new_problems)
        #: The C decoder when the C path is on (chosen once: the chunks it
        #: checked are the ones it decodes).
        self._decoder = chunk_decoder()
        if finished is not None:
            self._from_footer(finished)
            return
        head, start, self.version = _preamble(path, data)
        self.header: dict[str, Any] = {}
        try:
            self.header = _checked(head, MAX_HEADER, HEADER_FIELDS)
        except ValueError as exc:
            self._corrupt(f"corrupt header: {exc}; read with defaults (pid 0, start 0)")
        self.pid: int = self.header.get("pid", 0)
        self._scan(data, start)

    def _from_footer(self, fin: Finished) -> None:
        self.version = fin.version
        self.header = fin.header
        self.pid = self.header.get("pid", 0)
        self.footer = fin.footer
        self._footer_seen = True
        self.end_ts = fin.footer["end_ts"]
        self.events = fin.footer["events"]
        for row in fin.threads:
            key = (self.pid, row.tid)
            self.threads[key] = ThreadInfo(self.pid, row.tid, row.name, row.cpu, row.flags)
            self.lost[key] = row.lost
        self._chunks = list(summary.index_rows(fin.footer, fin.start) or ())

    def _corrupt(self, why: str) -> None:
        self.problems.append(why)
        self.corrupt.append(why)

    def new_problems(self) -> list[str]:
        """The problems found since the last call: a file opened by its index finds
        a bad chunk only when a reader reaches it, after the first were said."""
        new = self.problems[self._said:]
        self._said = len(self.problems)
        return new

    @property
    def truncated(self) -> bool:
        return bool(self.problems)

    def _scan(self, data: bytes, pos: int) -> None:
        size = len(data)
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
            self._take(kind, payload, pos)
            pos = start + length
            if self.on_chunk is not None:
                self.on_chunk(pos, size)
        if not self._footer_seen:
            self.problems.append("truncated: no end-of-trace footer (the program died before "
                                 "fntrace could finish the file)")

    def _resync(self, data: bytes, pos: int, why: str) -> int:
        nxt = data.find(SYNC, pos + 1)
        self.problems.append(why)
        return len(data) if nxt < 0 else nxt

    def _take(self, kind: bytes, payload: bytes, offset: int) -> None:
        if kind == FOOTER:
            self._footer_seen = True
            try:
                footer = _footer(payload)
            except ValueError as exc:
                self._corrupt(f"corrupt footer at offset {offset}: {exc}; "
                              f"the trace's end is taken from its last event")
                return
            self.footer = footer
            self.end_ts = footer["end_ts"]
            return
        if kind != EVENTS:
            self.problems.append(f"unknown chunk type {kind!r} at offset {offset}; skipped")
            return
        got = self._event_chunk(payload, offset, True)
        if got is not None:
            self._chunks.append(got)

    def _event_chunk(self, payload: bytes, offset: int,
                     counted: bool) -> Chunk | list[Record] | None:
        """An event chunk's payload as kept (None: nothing to keep, said why in
        problems when it is broken).  ``counted``: the chunk's thread rows and
        events count into the file's (a full scan); a file opened by its index
        has them from its footer."""
        try:
            chunk = _parse_tables(payload, self.version)
        except (ChunkError, zlib.error) as exc:
            self.problems.append(f"unreadable chunk at offset {offset}: {exc}; skipped")
            return None
        if counted:
            for tid, name, cpu, flags, lost in chunk.threads:
                key = (self.pid, tid)
                self.threads[key] = ThreadInfo(self.pid, tid, name, cpu, flags)
                self.lost[key] = max(self.lost.get(key, 0), lost)
        else:
            # Opened by its footer: a thread the footer does not list (a footer
            # that disagrees with its chunks) is known by the chunk's own row.
            for tid, name, cpu, flags, lost in chunk.threads:
                key = (self.pid, tid)
                if key not in self.threads:
                    self.threads[key] = ThreadInfo(self.pid, tid, name, cpu, flags)
                    self.lost.setdefault(key, lost)
        if not chunk.count:
            return None
        dec = self._decoder
        got = None if dec is None else dec.tally(
            chunk.data, chunk.pos, chunk.count, len(chunk.strings), len(chunk.funcs),
            len(chunk.threads), chunk.version)
        if got is not None:
            # The C decoder reads it exactly: kept as stored, decoded when read.
            chunk.per_thread, first, last = got
            chunk.span = (first, last)
            chunk.inflated = None
            if counted:
                self.events += chunk.count
            return chunk
        records: list[Record] = []
        try:
            _decode(chunk, self.pid, records)
        except ChunkError as exc:
            self.problems.append(f"chunk at offset {offset}: {exc}; its {len(records)} "
                                 f"events before it are kept, "
                                 f"{chunk.count - len(records)} lost")
        if counted:
            self.events += len(records)
        return records or None

    def _load(self, i: int, keep: bool) -> Chunk | list[Record]:
        """Chunk ``i``, read now if the index only named it (kept in place when
        ``keep``: a streaming read lets each chunk go once merged)."""
        item = self._chunks[i]
        if not isinstance(item, summary.IndexRow):
            return item
        got = self._read_indexed(item)
        if keep:
            self._chunks[i] = got
        return got

    def _read_indexed(self, row: summary.IndexRow) -> Chunk | list[Record]:
        """The event chunk the index's ``row`` names, checked as a full scan checks
        it; what is wrong goes to problems and its events are lost ([])."""
        at = row.offset
        try:
            with open(self.path, "rb") as f:
                f.seek(at)
                head = f.read(_CHUNK.size)
                if len(head) < _CHUNK.size:
                    raise EOFError
                sync, kind, length, crc = _CHUNK.unpack(head)
                if sync != SYNC or kind != EVENTS or length > MAX_CHUNK:
                    self.problems.append(f"the footer's index names no event chunk at "
                                         f"offset {at}; its {row.count} events are lost")
                    return []
                payload = f.read(length)
        except EOFError:
            payload, length, crc = b"", 1, 0
        except OSError as exc:
            self.problems.append(f"chunk at offset {at} unreadable ({exc.strerror or exc}); "
                                 f"its {row.count} events are lost")
            return []
        if len(payload) != length or zlib.crc32(payload) != crc:
            self.problems.append(f"corrupt chunk at offset {at} (cut short or checksum "
                                 f"mismatch); its {row.count} events are lost")
            return []
        said = len(self.problems)
        got = self._event_chunk(payload, at, False)
        n = 0 if got is None else got.count if isinstance(got, Chunk) else len(got)
        if n != row.count and len(self.problems) == said:  # (a broken chunk said why)
            self.problems.append(f"chunk at offset {at} holds {n} events where the "
                                 f"footer's index says {row.count}")
        return [] if got is None else got

    def chunks(self) -> list[Chunk | list[Record]]:
        """The file's events chunk by chunk, in file order: a Chunk still encoded
        (one the C decoder reads exactly), or the Records of one decoded in
        Python (the pure path's, and any the C decoder leaves to it).  A file
        opened by its index reads its chunks now."""
        loaded = [self._load(i, True) for i in range(len(self._chunks))]
        return [c for c in loaded if isinstance(c, Chunk) or c]

    def has_notes(self, prefix: str) -> bool:
        """Whether a marker's text may start with ``prefix`` (the task notes'): False
        when no chunk holds such a string, so a reader looking for them need not
        decode any event."""
        for i, item in enumerate(self._chunks):
            if isinstance(item, summary.IndexRow) and not item.notes:
                continue  # the writer saw no note's prefix in its bytes
            chunk = self._load(i, True)
            if isinstance(chunk, list):
                if any(rec.kind == TASK.name for rec in chunk):
                    return True
            elif any(text.startswith(prefix) for text in chunk.strings):
                return True
        return False

    def tally(self) -> tuple[dict[tuple[int, int], int], int | None]:
        """Events per (pid, tid) and the latest timestamp (None: no event), as the
        records count them; the C decoder counts an encoded chunk without a record."""
        counts: dict[tuple[int, int], int] = {}
        last: int | None = None
        for chunk in self.chunks():
            per_thread, _, latest = self._tally(chunk)
            for key, n in per_thread.items():
                counts[key] = counts.get(key, 0) + n
            if latest is not None:
                last = latest if last is None else max(last, latest)
        return counts, last

    def chunk_span(self, chunk: Chunk | list[Record]) -> tuple[int | None, int | None]:
        """One of ``chunks()``'s earliest and latest timestamps (None: no event)."""
        _, first, last = self._tally(chunk)
        return first, last

    def _tally(self, chunk: Chunk | list[Record],
               ) -> tuple[dict[tuple[int, int], int], int | None, int | None]:
        """One chunk's events per (pid, tid), earliest and latest timestamps."""
        if isinstance(chunk, Chunk):  # counted in C when the file was opened
            counts: dict[tuple[int, int], int] = {}
            for row, n in zip(chunk.threads, chunk.per_thread, strict=True):
                if n:
                    counts[self.pid, row[0]] = counts.get((self.pid, row[0]), 0) + n
            return counts, chunk.span[0], chunk.span[1]
        counts = {}
        records = self.chunk_records(chunk)
        for rec in records:
            counts[rec.pid, rec.tid] = counts.get((rec.pid, rec.tid), 0) + 1
        stamps = [rec.ts for rec in records]
        return counts, min(stamps, default=None), max(stamps, default=None)

    def chunk_records(self, chunk: Chunk | list[Record]) -> list[Record]:
        """One of ``chunks()``'s chunks as Records, in file order."""
        if isinstance(chunk, list):
            return chunk
        dec = self._decoder
        data = chunk.data
        if dec is not None:
            decoded: list[Record] | None = dec.decode(
                data, chunk.pos, chunk.count, chunk.strings, chunk.funcs,
                [row[0] for row in chunk.threads], self.pid, chunk.version)
            if decoded is not None:
                return decoded
        chunk = dataclasses.replace(chunk, inflated=data)
        records: list[Record] = []
        _decode(chunk, self.pid, records)
        return records

    def records(self, since: int | None = None) -> Iterator[Record]:
        """Every record, in time order: ``record_batches``, one record at a time."""
        return itertools.chain.from_iterable(self.record_batches(since))

    def record_batches(self, since: int | None = None,
                       tids: set[int] | None = None) -> Iterator[list[Record]]:
        """Every record, in time order (stable: equal timestamps keep file order);
        ``since``: a chunk the index says ends before it is not read (its records
        are earlier, which the caller drops: the others still come).

        Streamed: a chunk is decoded when the merge reaches its earliest
        timestamp and let go when its last record is out, so only chunks whose
        times overlap are held at once (a recording's chunks follow each other
        in time).  The order is that of one stable sort of every record by
        timestamp: each chunk is sorted alone, and the merge takes the lowest
        (timestamp, chunk index) first.  Each list is a run of one chunk's records
        that no other record comes between (a reader in C takes a run at once).
        ``tids``: a chunk the index says holds none of these threads' events is
        not read (the caller drops the others' records: the ones it wants come)."""
        starts = []
        for i, chunk in enumerate(self._chunks):
            if isinstance(chunk, summary.IndexRow) and (
                    (since is not None and chunk.last < since)
                    or (tids is not None and chunk.tids is not None
                        and chunk.tids.isdisjoint(tids))):
                continue
            first = chunk.first if isinstance(chunk, summary.IndexRow) else self._tally(chunk)[1]
            if first is not None:
                starts.append((first, i))
        starts.sort()
        return _merge_chunks(starts, self._sorted_chunk)

    def _sorted_chunk(self, i: int) -> list[Record]:
        records = list(self.chunk_records(self._load(i, False)))
        records.sort(key=_TS)
        return records

    @property
    def start_ts(self) -> int:
        value = self.header.get("start_ts", 0)
        return value if isinstance(value, int) else 0


def _merge_chunks(starts: list[tuple[int, int]],
                  load: Callable[[int], list[Record]]) -> Iterator[list[Record]]:
    """The records of chunks, each ``load``ed (sorted by time) when the merge reaches
    its (earliest timestamp, chunk index) in ``starts`` (sorted), merged by
    (timestamp, chunk index): runs of one chunk's records, in order."""
    heap: list[tuple[int, int, int, list[Record]]] = []  # (ts, chunk, position, records)
    nxt = 0
    while True:
        while nxt < len(starts) and (not heap or starts[nxt] < heap[0][:2]):
            i = starts[nxt][1]
            nxt += 1
            records = load(i)
            if records:
                heapq.heappush(heap, (records[0].ts, i, 0, records))
        if not heap:
            return
        _, i, pos, records = heapq.heappop(heap)
        # The next record of another chunk, or the next chunk to load: this one's
        # records go out until theirs come first.
        rival = heap[0][:2] if heap else None
        if nxt < len(starts) and (rival is None or starts[nxt] < rival):
            rival = starts[nxt]
        end = len(records)
        if rival is not None:
            # up to the first record after the rival: (ts, i) > (rival ts, rival chunk)
            cut = bisect.bisect_right if i < rival[1] else bisect.bisect_left
            end = max(cut(records, rival[0], pos, end, key=_TS), pos + 1)
        yield records if pos == 0 and end == len(records) else records[pos:end]
        if end < len(records):
            heapq.heappush(heap, (records[end].ts, i, end, records))


def exit_status(files: Iterable[TraceFile]) -> int:
    """A reading command's exit status: 1 when a header or footer was corrupt (the
    command still printed every event it could read), else 0."""
    return 1 if any(tf.corrupt for tf in files) else 0


def open_trace(path: str, on_chunk: Callable[[int, int], None] | None = None,
               indexed: bool = False) -> TraceFile:
    """Open one file; TraceFileError when it is no trace at all.  ``on_chunk(offset,
    size)`` is called after each chunk is read (a progress display).

    ``indexed``: a cleanly finished file whose footer has the chunk index is
    opened from its preamble and footer alone, its chunks read as a reader
    reaches them (``replay`` prints its first lines at once, whatever the
    size); any other file, or one whose index is not right, is read in full."""
    bad_index = None
    if indexed:
        fin = read_finished(path)
        if fin is not None and summary.INDEX_KEY in fin.footer:
            try:
                summary.check_index(fin.footer, fin.footer_at - fin.start)
            except ValueError as exc:
                bad_index = f"corrupt footer: {exc}; the file is read in full"
            else:
                if _chain_matches(fin):
                    return TraceFile(path, b"", finished=fin)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise TraceFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise TraceFileError(f"{path}: {exc.strerror or exc}") from None
    tf = TraceFile(path, data, on_chunk)
    if bad_index is not None:
        tf._corrupt(bad_index)
    return tf


def _chain_matches(fin: Finished) -> bool:
    """Whether the file's chunk headers, followed from the first chunk to the footer
    (a few bytes read per chunk, none inflated), are where the footer's index says
    its event chunks are: every indexed offset an event chunk's header, every
    length reaching the next.  A file rewritten after its footer (chunks cut,
    grown or moved) fails, and is read in full: the index is a writer's word
    for where things are, trusted only where the file agrees."""
    rows = summary.index_rows(fin.footer, fin.start) or []
    want = iter(r.offset for r in rows)
    nxt = next(want, None)
    pos = fin.start
    try:
        with open(fin.path, "rb") as f:
            while pos < fin.footer_at:
                f.seek(pos)
                head = f.read(_CHUNK.size)
                if len(head) < _CHUNK.size:
                    return False
                sync, kind, length, _ = _CHUNK.unpack(head)
                if sync != SYNC or length > MAX_CHUNK:
                    return False
                if pos == nxt:
                    if kind != EVENTS:
                        return False
                    nxt = next(want, None)
                elif nxt is not None and pos > nxt:
                    return False  # an indexed offset inside a chunk
                pos += _CHUNK.size + length  # (an event chunk of thread rows only: no row)
    except OSError:
        return False
    return pos == fin.footer_at and nxt is None


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


def open_traces(path: str, indexed: bool = False) -> list[TraceFile]:
    """``path`` and the files of the children recorded with ``--follow``."""
    return [open_trace(p, indexed=indexed) for p in [path, *child_paths(path)]]


def merged_records(files: list[TraceFile], since: int | None = None) -> Iterator[Record]:
    """Every record of several files in time order (their clock is shared);
    ``since``: chunks indexed as ending before it may be left out."""
    if len(files) == 1:
        return files[0].records(since)
    return heapq.merge(*(f.records(since) for f in files), key=_TS)


#: Records in a list of ``batched`` (a run of ``record_batches`` may be longer).
BATCH = 4096


def batched(records: Iterable[Record], size: int = BATCH) -> Iterator[list[Record]]:
    """Records in lists of ``size`` (the last one shorter), in their order."""
    it = iter(records)
    while batch := list(itertools.islice(it, size)):
        yield batch


def merged_batches(files: list[TraceFile], since: int | None = None,
                   keys: set[tuple[int, int]] | None = None) -> Iterator[list[Record]]:
    """``merged_records`` in lists, for a reader that takes many at once; ``keys``:
    (pid, tid) of the only threads the reader keeps, whose chunks alone are read
    where the index tells (the others' records may still come)."""
    def tids(tf: TraceFile) -> set[int] | None:
        return None if keys is None else {tid for pid, tid in keys if pid == tf.pid}

    if len(files) == 1:
        return files[0].record_batches(since, tids(files[0]))
    streams = (itertools.chain.from_iterable(f.record_batches(since, tids(f))) for f in files)
    return batched(heapq.merge(*streams, key=_TS))
