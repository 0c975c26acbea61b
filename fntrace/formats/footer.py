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
trusts"); ``check`` says why in one line.  The writer's half, the counting,
is formats/tally.py; this module reads and checks what it wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

# The writer's half (what it keeps as it writes), here for everything that names
# it as this module's.
from fntrace.formats.tally import (
    INDEX_KEY,
    INDEX_THREADS_KEY,
    MAX_CHUNK_THREADS,
    MAX_INDEX_ROWS,
    MAX_INDEX_THREADS,
    SUMMARY_KEYS,
    ChunkIndex,
    Tally,
    readable,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["INDEX_KEY", "INDEX_THREADS_KEY", "MAX_CHUNK_THREADS", "MAX_INDEX_ROWS",
           "MAX_INDEX_THREADS", "SUMMARY_KEYS", "ChunkIndex", "IndexRow", "Tally", "ThreadRow",
           "check", "check_index", "index_rows", "readable", "thread_rows"]

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
