"""The footer's summary of a trace file: what ``fntrace info`` shows, kept by the writer.

Counting a file's events per thread means decoding every record: 23 s for a
2.5M-event recording.  The writer knows those numbers as it writes, so a file
finished cleanly carries them in its footer (``threads``: one row per thread,
its name, CPU, FLAGS, events written and events lost, exactly as a reader
that decodes every chunk would count them), and ``info`` reads the preamble
and the file's tail only.

The key is optional: a file without it (written before it existed, or by a
writer that could not count, e.g. raw payloads handed to ``write_payload``)
is counted by the full scan.  A footer whose summary is malformed is corrupt
like any other malformed footer field (docs/tracefile.md "What a reader
trusts"); ``check`` says why in one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["INDEX_KEY", "INDEX_THREADS_KEY", "MAX_CHUNK_THREADS", "MAX_INDEX_ROWS",
           "MAX_INDEX_THREADS", "SUMMARY_KEYS", "ChunkIndex", "IndexRow", "Tally", "ThreadRow",
           "check", "check_index", "index_rows", "readable", "thread_rows"]

#: The footer keys this module writes and reads.
SUMMARY_KEYS = ("threads", "index", "index_threads")
#: The footer key of the event chunks' index.
INDEX_KEY = "index"
#: At most this many chunks are indexed (about 30 bytes of footer JSON each, well
#: under its 1 MiB limit with the thread rows); a file with more has no index
#: and is read by the full scan (at ~22,000 events a chunk: ~650M events).
MAX_INDEX_ROWS = 25_000
#: The footer key of each indexed chunk's threads (``replay --thread`` reads only
#: the chunks of the threads it shows).
INDEX_THREADS_KEY = "index_threads"
#: A chunk of more threads than this is indexed as "any thread" (-1).
MAX_CHUNK_THREADS = 8
#: At most this many ints in ``index_threads`` (a few hundred KB of footer JSON
#: at most); a file that would need more has none, and --thread reads every chunk.
MAX_INDEX_THREADS = 60_000
#: The fields of one row of ``threads``, each with the type it must have.
_ROW_FIELDS: dict[str, type] = {"tid": int, "name": str, "cpu": int, "flags": str,
                                "events": int, "lost": int}
_INT_LIMIT = 1 << 63


@dataclass(frozen=True)
class ThreadRow:
    """One thread of a finished file, as the footer says it."""

    tid: int
    name: str
    cpu: int
    flags: str
    events: int
    lost: int


def readable(text: str) -> str:
    """A string as a reader of the chunk tables gets it back: the writer keeps lone
    surrogates (surrogatepass) and the reader escapes what is not UTF-8, so the
    footer stores the escaped form and both ways of reading agree."""
    raw = text.encode("utf-8", "surrogatepass")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


class Tally:
    """What one writer has put in its file, per thread, for the footer.

    Thread rows are kept as a reader keeps them (the last row's name, CPU and
    FLAGS; the largest lost count of any row), events as they are written.
    """

    def __init__(self) -> None:
        self.rows: dict[int, list[Any]] = {}  # tid -> [name, cpu, flags, events, lost]

    def rows_written(self, rows: Iterable[tuple[int, str, int, str, int]]) -> None:
        """Thread rows of a chunk just written: (tid, name, cpu, flags, lost)."""
        for tid, name, cpu, flags, lost in rows:
            row = self.rows.get(tid)
            if row is None:
                self.rows[tid] = [readable(name), cpu, readable(flags), 0, lost]
            else:
                row[0], row[1], row[2] = readable(name), cpu, readable(flags)
                row[4] = max(row[4], lost)

    def events_written(self, tid: int, n: int) -> None:
        """``n`` events of thread ``tid`` in a chunk just written (its row in it too)."""
        self.rows[tid][3] += n

    def fields(self, events: int) -> dict[str, Any]:
        """The footer keys: ``{"threads": [...]}``; nothing unless the rows account
        for all ``events`` the file holds (a chunk written without its threads known)."""
        if sum(r[3] for r in self.rows.values()) != events:
            return {}
        return {"threads": [{"tid": tid, "name": r[0], "cpu": r[1], "flags": r[2],
                             "events": r[3], "lost": r[4]}
                            for tid, r in sorted(self.rows.items())]}


def _is_count(v: Any) -> bool:
    return type(v) is int and 0 <= v < _INT_LIMIT


def check(footer: dict[str, Any]) -> None:
    """ValueError (one line: why) when the footer's summary keys, where present, are
    not what a writer writes: ``threads`` a list of rows with exactly the fields of
    ``ThreadRow``, each tid once, whose events add up to the footer's ``events``;
    ``index_threads`` a row of places in them per indexed chunk."""
    if "threads" not in footer:
        return
    rows = footer["threads"]
    if type(rows) is not list:
        raise ValueError("field threads is not a list")
    seen: set[int] = set()
    total = 0
    for i, row in enumerate(rows):
        if type(row) is not dict or set(row) != set(_ROW_FIELDS):
            raise ValueError(f"threads[{i}] is not a thread row")
        for key, kind in _ROW_FIELDS.items():
            value = row[key]
            if type(value) is not kind or (kind is int and not _is_count(value)):
                raise ValueError(f"threads[{i}].{key} of the wrong type or out of range")
        if row["tid"] in seen:
            raise ValueError(f"threads[{i}]: thread {row['tid']} twice")
        seen.add(row["tid"])
        total += row["events"]
    if total != footer.get("events"):
        raise ValueError(f"its threads' events ({total}) are not its events "
                         f"({footer.get('events')})")
    _chunk_threads(footer, False)  # index_threads' own form (check_index: its rows' number)


def thread_rows(footer: dict[str, Any]) -> list[ThreadRow] | None:
    """The footer's thread rows (``check`` passed), or None when it has none."""
    rows = footer.get("threads")
    if rows is None:
        return None
    return [ThreadRow(r["tid"], r["name"], r["cpu"], r["flags"], r["events"], r["lost"])
            for r in rows]


@dataclass(frozen=True)
class IndexRow:
    """One event chunk as the footer's index says it: where it starts (its chunk
    header's offset in the file), its earliest and latest timestamps, its events, and whether
    its bytes may hold an asyncio task note (a reader looking for notes reads
    only the chunks that may)."""

    offset: int
    first: int
    last: int
    count: int
    notes: bool
    #: The tids of its events' threads; None: not known (any thread may be there).
    tids: frozenset[int] | None = None


class ChunkIndex:
    """The event chunks one writer has written, for the footer (``index``).

    Why: a reader that merges chunks by time must know each chunk's earliest
    timestamp before it reads any, so without an index it inflates and counts
    every chunk when the file is opened (over a second on 25M events) before
    ``replay`` prints its first line.  The writer knows the offsets and times as
    it writes.  Offsets count from the first chunk (the end of the header), so a
    file whose header is rewritten keeps a true index.  Stored as deltas (offset
    from the previous chunk's, first from the previous first, last from this
    first) in one flat list of ints, five per chunk: about 30 bytes a chunk.
    """

    def __init__(self) -> None:
        self.rows: list[IndexRow] | None = []

    def chunk_written(self, offset: int, span: tuple[int, int] | None, count: int,
                      notes: bool, tids: Iterable[int] | None = None) -> None:
        """An event chunk of ``count`` (> 0) events at ``offset`` (from the first
        chunk's) of the threads ``tids`` (None: not known); ``span`` None when
        its times are not known (raw payloads): then the file gets no index."""
        if self.rows is None:
            return
        if span is None or len(self.rows) >= MAX_INDEX_ROWS:
            self.rows = None
            return
        self.rows.append(IndexRow(offset, span[0], span[1], count, notes,
                                  None if tids is None else frozenset(tids)))

    def fields(self, events: int, tids: list[int] | None = None) -> dict[str, Any]:
        """``{"index": [...], "index_threads": [...]}``; nothing unless the rows count
        all ``events``.  ``tids``: the footer's thread rows' tids, in their order;
        each chunk's threads are stored as places in it (small numbers): per
        chunk their number then the places, or -1 for any thread (not known, or
        more than MAX_CHUNK_THREADS)."""
        rows = self.rows
        if rows is None or sum(r.count for r in rows) != events:
            return {}
        flat: list[int] = []
        offset = first = 0
        for r in rows:
            flat += [r.offset - offset, r.first - first, r.last - r.first, r.count,
                     int(r.notes)]
            offset, first = r.offset, r.first
        out: dict[str, Any] = {INDEX_KEY: flat}
        if tids is not None:
            place = {tid: i for i, tid in enumerate(tids)}
            threads: list[int] = []
            for r in rows:
                if r.tids is None or len(r.tids) > MAX_CHUNK_THREADS or not r.tids <= place.keys():
                    threads.append(-1)
                else:
                    threads += [len(r.tids), *sorted(place[t] for t in r.tids)]
                if len(threads) > MAX_INDEX_THREADS:
                    return out
            out[INDEX_THREADS_KEY] = threads
        return out


def _is_int64(v: Any) -> bool:
    return type(v) is int and -_INT_LIMIT <= v < _INT_LIMIT


def index_rows(footer: dict[str, Any], start: int) -> list[IndexRow] | None:
    """The footer's index (``check_index`` passed), or None when it has none;
    ``start``, the first chunk's offset in the file, makes the offsets the file's."""
    flat = footer.get(INDEX_KEY)
    if flat is None:
        return None
    per_chunk = _chunk_threads(footer)
    rows = []
    offset, first = start, 0
    for i in range(0, len(flat), 5):
        doff, dfirst, span, count, notes = flat[i:i + 5]
        offset += doff
        first += dfirst
        rows.append(IndexRow(offset, first, first + span, count, bool(notes),
                             per_chunk[i // 5] if per_chunk is not None else None))
    return rows


def _chunk_threads(footer: dict[str, Any], per_row: bool = True,
                   ) -> list[frozenset[int] | None] | None:
    """Each indexed chunk's tids (None: any), or None when the footer has no
    ``index_threads`` (a file written before it existed: every chunk may hold
    any thread) or not the index and thread rows it refers to.  ValueError (one
    line) when it is not what a writer writes (``per_row``: nor a row per
    indexed chunk; the index is checked first, by check_index)."""
    flat = footer.get(INDEX_THREADS_KEY)
    rows = footer.get("threads")
    index = footer.get(INDEX_KEY)
    if flat is None or type(rows) is not list or type(index) is not list:
        return None  # of use only with both (whose own checks say what is wrong with them)
    if type(flat) is not list:
        raise ValueError("field index_threads is not a list")
    if len(flat) > MAX_INDEX_THREADS + MAX_CHUNK_THREADS + 1:
        raise ValueError("field index_threads is over its size limit")
    tids: list[int] = []
    for row in rows:
        tid = row.get("tid") if type(row) is dict else None
        if type(tid) is not int:
            raise ValueError("field index_threads without its thread rows")
        tids.append(tid)
    out: list[frozenset[int] | None] = []
    i = 0
    while i < len(flat):
        n = flat[i]
        if type(n) is not int or not -1 <= n <= MAX_CHUNK_THREADS or n == 0:
            raise ValueError(f"index_threads[{i}]: a count out of range")
        if n == -1:
            out.append(None)
            i += 1
            continue
        places = flat[i + 1:i + 1 + n]
        if len(places) != n or not all(type(p) is int and 0 <= p < len(tids) for p in places):
            raise ValueError(f"index_threads[{i}]: a thread out of range")
        out.append(frozenset(tids[p] for p in places))
        i += 1 + n
    if per_row and len(out) * 5 != len(index):
        raise ValueError("field index_threads has not a row per indexed chunk")
    return out


def check_index(footer: dict[str, Any], end: int) -> None:
    """ValueError (one line: why) when the footer's ``index``, where present, is not
    what a writer writes for a file whose event chunks lie in [0, end) counted
    from the first chunk: five ints a chunk, offsets rising inside that range,
    timestamps in 64 bits with the last not before the first, counts over 0
    adding up to the footer's ``events``, notes 0 or 1, at most MAX_INDEX_ROWS
    chunks."""
    flat = footer.get(INDEX_KEY)
    if flat is None:
        return
    if type(flat) is not list or len(flat) % 5 or len(flat) > 5 * MAX_INDEX_ROWS:
        raise ValueError("field index is not a list of five ints per chunk")
    if not all(_is_int64(v) for v in flat):
        raise ValueError("field index holds a value that is no 64-bit int")
    offset = first = total = 0
    for i in range(0, len(flat), 5):
        doff, dfirst, span, count, notes = flat[i:i + 5]
        offset += doff
        first += dfirst
        if (doff <= 0 if i else doff < 0) or not 0 <= offset < end:
            raise ValueError(f"index row {i // 5}: offset {offset} outside the chunks")
        if not _is_int64(first) or span < 0 or not _is_int64(first + span):
            raise ValueError(f"index row {i // 5}: timestamps out of range")
        if count <= 0 or notes not in (0, 1):
            raise ValueError(f"index row {i // 5}: a count or flag out of range")
        total += count
    if total != footer.get("events"):
        raise ValueError(f"its index's events ({total}) are not its events "
                         f"({footer.get('events')})")
    _chunk_threads(footer)
