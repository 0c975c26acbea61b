"""What one trace-file writer has written, kept for its footer (formats/footer.py).

The writer counts each thread's events and indexes its event chunks as it
writes them (formats/footer.py says why and how a reader uses both).  This is
the writing half, apart from the reader's row types and checks, so a
recording's start-up imports only what it writes with.
"""

from __future__ import annotations

from collections.abc import Iterable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["INDEX_KEY", "INDEX_THREADS_KEY", "MAX_CHUNK_THREADS", "MAX_INDEX_ROWS",
           "MAX_INDEX_THREADS", "SUMMARY_KEYS", "ChunkIndex", "Tally", "readable"]

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
        #: Per chunk (offset, first, last, count, notes, tids): the footer reader's
        #: IndexRow fields, in its order (formats/footer.py).
        self.rows: list[tuple[int, int, int, int, bool, frozenset[int] | None]] | None = []

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
        self.rows.append((offset, span[0], span[1], count, notes,
                          None if tids is None else frozenset(tids)))

    def fields(self, events: int, tids: list[int] | None = None) -> dict[str, Any]:
        """``{"index": [...], "index_threads": [...]}``; nothing unless the rows count
        all ``events``.  ``tids``: the footer's thread rows' tids, in their order;
        each chunk's threads are stored as places in it (small numbers): per
        chunk their number then the places, or -1 for any thread (not known, or
        more than MAX_CHUNK_THREADS)."""
        rows = self.rows
        if rows is None or sum(r[3] for r in rows) != events:
            return {}
        flat: list[int] = []
        offset = first = 0
        for r_offset, r_first, r_last, count, notes, _ in rows:
            flat += [r_offset - offset, r_first - first, r_last - r_first, count, int(notes)]
            offset, first = r_offset, r_first
        out: dict[str, Any] = {INDEX_KEY: flat}
        if tids is not None:
            place = {tid: i for i, tid in enumerate(tids)}
            threads: list[int] = []
            for *_, r_tids in rows:
                if r_tids is None or len(r_tids) > MAX_CHUNK_THREADS or not r_tids <= place.keys():
                    threads.append(-1)
                else:
                    threads += [len(r_tids), *sorted(place[t] for t in r_tids)]
                if len(threads) > MAX_INDEX_THREADS:
                    return out
            out[INDEX_THREADS_KEY] = threads
        return out
