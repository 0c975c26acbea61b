"""What every reader of trace files shares (uftrace's utils/): opening the files of a
recording with their problems said, a progress count, a quiet end after a closed pipe.

replay, report, dump and info each used their own copy of some of these;
they import them from here, and nothing here imports them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from fntrace.formats.tracefile import TraceFile, TraceFileError, open_traces

__all__ = ["ChunkProgress", "clear_line", "open_files", "progress", "progress_batches",
           "quiet_stdout", "say_problems", "terminal"]

T = TypeVar("T")


def open_files(path: str, command: str | None = None, indexed: bool = False,
               ) -> list[TraceFile]:
    """The trace file ``path`` and its followed children's, what is wrong with them said
    on stderr (the readable part is used).

    With ``command`` (replay, info) a problem is ``fntrace COMMAND: warning: FILE:
    PROBLEM`` and a file that cannot be read at all ends the command (``fntrace
    COMMAND: why``, exit status 1); without it (report, dump, which say their own
    error) a problem is ``fntrace: FILE: PROBLEM`` and TraceFileError is raised.
    ``indexed``: a finished file is opened by its footer's chunk index (its chunks
    read as they are reached: call ``say_problems`` after reading).
    """
    try:
        files = open_traces(path, indexed)
    except TraceFileError as exc:
        if command is None:
            raise
        raise SystemExit(f"fntrace {command}: {exc}") from None
    say_problems(files, command)
    return files


def say_problems(files: Iterable[TraceFile], command: str | None = None) -> None:
    """Say on stderr the files' problems not said yet (as ``open_files`` does)."""
    prefix = "fntrace: " if command is None else f"fntrace {command}: warning: "
    for tf in files:
        for problem in tf.new_problems():
            print(f"{prefix}{tf.path}: {problem}", file=sys.stderr)


def terminal(stream: IO[str] | None = None) -> IO[str] | None:
    """``stream`` (stderr by default) if it is a terminal, else None: progress is
    drawn only where a person watches, never into a file or a pipe."""
    out = sys.stderr if stream is None else stream
    try:
        return out if out.isatty() else None
    except (AttributeError, ValueError):
        return None


def clear_line(out: IO[str], width: int) -> None:
    """Blank the progress line (``width`` columns) and go back to its start."""
    out.write("\r" + " " * width + "\r")
    out.flush()


def progress(items: Iterable[T], label: str, stream: IO[str] | None = None,
             every: int = 1 << 16) -> Iterator[T]:
    """Pass items through, counting them on a terminal's stderr (and nothing elsewhere)."""
    out = terminal(stream)
    if out is None:
        yield from items
        return
    n = 0
    try:
        for item in items:
            n += 1
            if n % every == 0:
                out.write(f"\r{label}: {n:,} records")
                out.flush()
            yield item
    finally:
        if n >= every:
            clear_line(out, len(label) + 24)


def progress_batches(batches: Iterable[list[T]], label: str, stream: IO[str] | None = None,
                     every: int = 1 << 16) -> Iterator[list[T]]:
    """``progress`` for items that come in lists (a reader in C takes a list at a time)."""
    out = terminal(stream)
    if out is None:
        yield from batches
        return
    n = 0
    try:
        for batch in batches:
            before = n
            n += len(batch)
            if n // every != before // every:
                out.write(f"\r{label}: {n // every * every:,} records")
                out.flush()
            yield batch
    finally:
        if n >= every:
            clear_line(out, len(label) + 24)


class ChunkProgress:
    """How far a file's reading is, as a percentage on a terminal's stderr (nothing
    elsewhere): ``on_chunk`` is what ``open_trace`` calls after each chunk."""

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.out = sys.stderr if stream is None else stream
        self.label = label
        self.shown = -1
        self.width = 0
        try:
            self.tty = bool(self.out.isatty())
        except (AttributeError, ValueError):
            self.tty = False

    def on_chunk(self, offset: int, size: int) -> None:
        percent = offset * 100 // size if size else 100
        if not self.tty or percent == self.shown:
            return
        self.shown = percent
        text = f"\r{self.label}: {percent}%"
        self.width = max(self.width, len(text))
        self.out.write(text)
        self.out.flush()

    def done(self) -> None:
        """Erase the count (the command's own output follows)."""
        if self.tty and self.width:
            self.out.write("\r" + " " * self.width + "\r")
            self.out.flush()
            self.width = 0


def quiet_stdout() -> None:
    """After a closed pipe (``| head``), keep the interpreter's final flush quiet."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
