"""``fntrace dump --chrome``'s events written in C, a batch of records at a time.

Made in Python (dump.ChromeWriter over segments.walk: a dict and a json.dumps
per event) an event costs microseconds; the C writer
(fntrace/csrc/render_chrome.c ChromeJSON) writes the same bytes from the
Records themselves, a list at a time into one string.  It is taken for a
whole document or not at all, decided before the first byte: on the C path,
for a trace without asyncio task notes (a task's track is chrome_tasks.py's).
ChromeWriter stays the reference, whose output this equals byte for byte
(tests/test_chrome_c.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import IO, Any

from fntrace.core import accel
from fntrace.core.events import CALL, ENTRY, EXIT, MARKER, TEXT
from fntrace.core.flags import Event
from fntrace.formats.tracefile import RECORD_FIELDS, Record

__all__ = ["available", "write_chrome_c"]


def available() -> bool:
    """Whether the C writer can be used (the C path is on)."""
    speedups = accel.speedups
    return speedups is not None and hasattr(speedups, "ChromeJSON")


def write_chrome_c(writer: Any, batches: Iterable[list[Record]], out: IO[str]) -> int:
    """What dump.write_chrome writes with ``writer`` (a ``dump.ChromeWriter``,
    given by the caller: dump.py imports this module) of the records in
    ``batches`` (in time order); the number of events written.  Only when
    ``available()``."""
    speedups = accel.speedups
    assert speedups is not None
    out.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
    n = 0
    for ev in writer.metadata():
        out.write((",\n" if n else "") + json.dumps(ev, ensure_ascii=True))
        n += 1

    def name_thread(pid: int, tid: int) -> list[str]:
        return [json.dumps(ev, ensure_ascii=True) for ev in writer.name_new(pid, tid)]

    c = speedups.ChromeJSON(Record, RECORD_FIELDS,
                            (ENTRY.record, EXIT.record, CALL.record, MARKER.record, TEXT.record),
                            (Event.UNWIND, Event.YIELD),
                            writer.t0 if writer.t0_known else None, n, name_thread)
    for batch in batches:
        out.write(c.write(batch))
    text, n = c.finish()
    out.write(text)
    out.write("\n]}\n")
    return int(n)
