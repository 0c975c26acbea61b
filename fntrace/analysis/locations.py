"""Functions' source locations, as the exports read them from the records.

The trace file keeps each function's source file and first line (format
version 2; ``Record.src_file``/``src_line``).  The exports name a function by
its ``module:qualname`` (a speedscope frame, a Perfetto event name, a pstats
key...), and some of them meet a function by name only: a function-tracer
record's ``parent`` is a name.  So the location of each name is taken from
the first record of that function that carries one, as the records stream by,
and looked up by name; a record always comes through here before any item an
exporter makes of it, so a function's location is known when it is first
written.  A name recorded at two places (a function defined twice) keeps the
first.  Version-1 files have no locations: every lookup is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from fntrace.analysis.segments import RecordLike

__all__ = ["Location", "Locations"]

#: (source file, first line); the line is 0 where only the file is known.
Location = tuple[str, int]

_R = TypeVar("_R", bound=RecordLike)


class Locations:
    """Function name -> its :data:`Location`, filled by :meth:`watch`."""

    def __init__(self) -> None:
        self.by_name: dict[str, Location] = {}

    def watch(self, records: Iterable[_R]) -> Iterator[_R]:
        """``records`` unchanged, noting the location of each function met first."""
        seen = self.by_name
        for rec in records:
            file = rec.src_file
            if file is not None and rec.func not in seen:
                seen[rec.func] = (file, rec.src_line)
            yield rec

    def get(self, name: str | None) -> Location | None:
        return self.by_name.get(name) if name is not None else None
