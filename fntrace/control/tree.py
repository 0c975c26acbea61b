"""The served tree: tracefs paths mapped onto this process's instances.

The root is the top-level instance (made on first use, so a process that is
never steered owns no instance at all; under ``fntrace record/run --live`` it is
the recording instance); ``instances/NAME/...`` are named
instances that ``mkdir``/``rmdir`` create and close, as in tracefs;
``control/stats`` is the server's own counters; ``control/unmatched`` lists the
patterns that match no loaded function, with advice (core/hints.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fntrace.control.protocol import ControlError
from fntrace.tracing.instance import Instance

__all__ = ["Tree"]

#: The pattern files control/unmatched checks, and the Instance attribute of each.
_PATTERN_FILES = (("set_ftrace_filter", "filter"), ("set_ftrace_notrace", "notrace"),
                  ("set_graph_function", "graph_function"),
                  ("set_graph_notrace", "graph_notrace"))
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"{path}: '.' and '..' are not allowed in paths")
    return parts


def otel_files() -> Any:
    """The ``otel/`` subtree (control/otel_files.py), imported when first used."""
    from fntrace.control import otel_files as files

    return files


class Tree:
    def __init__(self, stats: Callable[[], str]) -> None:
        self._top: Instance | None = None
        self.recording = False  # the top level is a recording's (record/run --live)
        self.named: dict[str, Instance] = {}
        self._stats = stats

    @property
    def top(self) -> Instance:
        if self._top is None:
            self._top = Instance("top")
        return self._top

    def adopt_top(self, inst: Instance) -> None:
        """Serve ``inst`` as the top level: ``fntrace record/run --live`` hand over the
        instance that records, so what ``ctl`` changes is what lands in the trace."""
        if self._top is not None and self._top is not inst:
            raise FileExistsError("the top-level instance is already in use")
        self._top = inst
        self.recording = True

    def resolve(self, path: str) -> tuple[Instance, str]:
        """The instance a file path belongs to, and the path inside it."""
        parts = _parts(path)
        if parts[:1] == ["instances"]:
            if len(parts) < 3:
                raise IsADirectoryError(f"{path}: is a directory")
            inst = self.named.get(parts[1])
            if inst is None:
                raise FileNotFoundError(f"no such instance: {parts[1]}")
            return inst, "/".join(parts[2:])
        if not parts:
            raise IsADirectoryError("/: is a directory")
        if self.recording and parts == ["trace_pipe"]:
            # trace_pipe consumes what it shows: a second reader would take events
            # away from the recording (the kernel lets two readers race; we refuse).
            raise ControlError("EBUSY", "trace_pipe: the recording (fntrace record/run "
                               "--live) reads the top level's buffer; mkdir instances/NAME "
                               "and stream instances/NAME/trace_pipe instead")
        return self.top, "/".join(parts)

    def read(self, path: str) -> str:
        parts = _parts(path)
        if parts[:1] == ["control"]:
            if parts == ["control", "stats"]:
                return self._stats()
            if parts == ["control", "unmatched"]:
                return self.unmatched()
            raise FileNotFoundError(f"no such file: {path}")
        if parts[:1] == ["otel"]:
            return otel_files().read(parts)
        inst, rest = self.resolve(path)
        return inst.read(rest)

    def unmatched(self) -> str:
        """``control/unmatched``: each pattern of every instance's pattern files that
        matches no function loaded in this process now, with what was probably meant
        (the kernel refuses such a pattern with EINVAL; here modules may load later,
        so it is kept and this file says it)."""
        from fntrace.core import hints

        insts = ([("", self._top)] if self._top is not None else []) + [
            (f"instances/{name}/", inst) for name, inst in sorted(self.named.items())]
        groups = [(f"{prefix}{file}", getattr(inst, attr).lines)
                  for prefix, inst in insts for file, attr in _PATTERN_FILES]
        return "".join(f"{msg}\n" for msg in hints.report_unmatched(groups))

    def write(self, path: str, value: str, append: bool) -> None:
        if _parts(path)[:1] == ["control"]:
            raise PermissionError(f"{path}: read-only")
        if _parts(path)[:1] == ["otel"]:
            otel_files().write(_parts(path), value, append)
            return
        inst, rest = self.resolve(path)
        inst.write(rest, value, append=append)

    def ls(self, path: str) -> list[str]:
        parts = _parts(path)
        if not parts:
            return sorted([*self.top.listdir(""), "control", "instances", "otel"])
        if parts[:1] == ["otel"]:
            return otel_files().ls(parts)
        if parts == ["control"]:
            return ["stats", "unmatched"]
        if parts == ["instances"]:
            return sorted(self.named)
        if parts[0] == "instances":
            inst = self.named.get(parts[1])
            if inst is None:
                raise FileNotFoundError(f"no such instance: {parts[1]}")
            return inst.listdir("/".join(parts[2:]))
        return self.top.listdir("/".join(parts))

    def _instance_name(self, path: str, what: str) -> str:
        parts = _parts(path)
        if len(parts) != 2 or parts[0] != "instances":
            raise PermissionError(f"{what} {path}: only instances/NAME can be {what}'d")
        if not _NAME.match(parts[1]):
            raise ValueError(f"{what} {path}: an instance name is 1-64 letters, digits, "
                             "'_', '.', '-' (not starting with '.' or '-')")
        return parts[1]

    def mkdir(self, path: str) -> None:
        name = self._instance_name(path, "mkdir")
        if name in self.named:
            raise FileExistsError(f"instance {name} exists")
        self.named[name] = Instance(name)

    def rmdir(self, path: str, busy: Callable[[Instance], bool]) -> None:
        """Close and forget a named instance; EBUSY while a trace_pipe reads it."""
        name = self._instance_name(path, "rmdir")
        inst = self.named.get(name)
        if inst is None:
            raise FileNotFoundError(f"no such instance: {name}")
        if busy(inst):
            raise ControlError("EBUSY", f"instance {name} is busy: a trace_pipe reads it")
        del self.named[name]
        inst.close()

    def close(self) -> None:
        for inst in self.named.values():
            inst.close()
        self.named.clear()
        if self._top is not None:
            self._top.close()
            self._top = None
