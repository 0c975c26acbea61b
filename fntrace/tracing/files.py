"""The tracefs file table: each path of an instance and the code that serves it.

In the kernel every tracer and tracing feature creates its own files when it
initialises (``trace_create_file`` with its own file operations); tracefs
itself knows none of them.  Here each feature module of the tracing layer has a
``register_files(table)`` function declaring its files, fntrace/tracing/tracefs.py
calls them from one list, and the table built that way is the one every
Instance serves: built once, so a read or write is a dict lookup and a call.

A file is a path with a reader ``(inst) -> text`` and/or a writer
``(inst, text, append)``; without a reader it is write-only, without a writer
read-only (PermissionError either way, as the kernel's file modes).  A
directory whose files come and go with the instance's state (``options/``,
``events/``, ``per_thread/``, ``fail_function/``, ``livepatch/``) is a
Directory: it lists its files per instance and serves the paths under its name.
A path may be registered once only: a second registration is a ValueError when
the table is built, not a file silently shadowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from fntrace.tracing.instance import Instance
else:
    Protocol = object  # structural types are the type checker's: at run time, plain classes

__all__ = ["MAX_UINT", "Directory", "FileTable", "Reader", "Writer", "parse_bool",
           "parse_uint"]

Reader = Callable[["Instance"], str]
Writer = Callable[["Instance", str, bool], None]
Closer = Callable[["Instance"], None]


class Directory(Protocol):
    """Files under one name whose set depends on the instance (``events/GRP/EVENT/...``)."""

    def names(self, inst: Instance) -> Iterable[str]:
        """The paths of its files now, relative to the directory."""
        ...

    def read(self, inst: Instance, path: str) -> str | None:
        """The text of ``path`` (relative); None when there is no such file."""
        ...

    def write(self, inst: Instance, path: str, text: str, append: bool) -> bool:
        """Write ``path`` (relative); False when there is no such file."""
        ...


class FileTable:
    """Every file of an instance: static files, directories, and what closing undoes."""

    def __init__(self) -> None:
        self.readers: dict[str, Reader] = {}
        self.writers: dict[str, Writer] = {}
        self.directories: dict[str, Directory] = {}
        #: Run by Instance.close, in registration order (features registered later
        #: may rely on the earlier ones being stopped first, as the tracer is).
        self.closers: list[Closer] = []

    def file(self, path: str, read: Reader | None = None, write: Writer | None = None) -> None:
        """Register the file ``path`` with its reader and/or writer."""
        if read is None and write is None:
            raise ValueError(f"tracefs: {path} has neither a reader nor a writer")
        self._claim(path)
        if read is not None:
            self.readers[path] = read
        if write is not None:
            self.writers[path] = write

    def directory(self, name: str, served: Directory) -> None:
        """Register the directory ``name`` (one path component) and what serves it."""
        if "/" in name:
            raise ValueError(f"tracefs: directory {name!r} is not one path component")
        self._claim(name)
        if any(p.partition("/")[0] == name for p in (*self.readers, *self.writers)):
            raise ValueError(f"tracefs: directory {name} holds files registered before it")
        self.directories[name] = served

    def on_close(self, closer: Closer) -> None:
        """``closer(inst)`` undoes what the feature registered for ``inst`` (Instance.close)."""
        self.closers.append(closer)

    def _claim(self, path: str) -> None:
        if (path in self.readers or path in self.writers
                or path.partition("/")[0] in self.directories):
            raise ValueError(f"tracefs: {path} is registered twice")

    def names(self, inst: Instance) -> set[str]:
        """Every file path of ``inst`` now (directories expanded)."""
        out = set(self.readers) | set(self.writers)
        for name, served in self.directories.items():
            out |= {f"{name}/{sub}" for sub in served.names(inst)}
        return out


#: The largest number an integer file takes: sizes, depths and times all fit
#: well inside the C side's 64-bit fields after their scaling (KiB, ns).
MAX_UINT = 1 << 40


def parse_bool(text: str, what: str) -> bool:
    """A 0/1 file's value (ValueError naming ``what`` otherwise)."""
    value = text.strip()
    if value not in ("0", "1"):
        raise ValueError(f"{what}: expected 0 or 1, got {text!r}")
    return value == "1"


def parse_uint(text: str, what: str) -> int:
    """An integer file's value, 0 to MAX_UINT (ValueError naming ``what`` otherwise)."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 13 or int(value) > MAX_UINT:
        raise ValueError(f"{what}: expected an integer from 0 to {MAX_UINT}, "
                         f"got {text[:40]!r}")
    return int(value)
