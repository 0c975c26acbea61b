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
from typing import Any

__all__ = ["SUMMARY_KEYS", "Tally", "ThreadRow", "check", "readable", "thread_rows"]

#: The footer keys this module writes and reads.
SUMMARY_KEYS = ("threads",)
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
    ``ThreadRow``, each tid once, whose events add up to the footer's ``events``."""
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


def thread_rows(footer: dict[str, Any]) -> list[ThreadRow] | None:
    """The footer's thread rows (``check`` passed), or None when it has none."""
    rows = footer.get("threads")
    if rows is None:
        return None
    return [ThreadRow(r["tid"], r["name"], r["cpu"], r["flags"], r["events"], r["lost"])
            for r in rows]
