"""The ``otel/`` files of the control tree: OpenTelemetry instrumentation, live.

``otel/spans``: one instrumentation a line, ``#ID PATTERN... [ATTR...]`` then its
counters after a tab.  Writing a line adds one: the words that are ``KEY=EXPR`` or
start with ``$`` are attributes (docs/otel.md), the others set_ftrace_filter
patterns.  ``-ID`` removes one.  As with tracefs's ``dynamic_events``, a write
without ``--append`` first removes every instrumentation of the file (an empty one
only removes).

``otel/logpoints``: the same for logpoints; a line is a probe definition
``f:GRP/EVENT FUNC[%return] [FETCHARGS] [limit=N/s] [to=event|log]``, removed by
``-ID`` or ``-:GRP/EVENT``.

A write is all or nothing: every line is parsed before anything is removed or
added, so a typo changes nothing.
"""

from __future__ import annotations

from fntrace.control.protocol import ControlError
from fntrace.tracing.otel import registry

__all__ = ["FILES", "is_otel", "ls", "read", "write"]

FILES = ("logpoints", "spans")
_KIND = {"spans": "spans", "logpoints": "logpoint"}


def is_otel(parts: list[str]) -> bool:
    return parts[:1] == ["otel"]


def _file(parts: list[str]) -> str:
    if len(parts) == 1:
        raise IsADirectoryError("otel: is a directory")
    if len(parts) != 2 or parts[1] not in FILES:
        raise FileNotFoundError(f"no such file: {'/'.join(parts)}")
    return parts[1]


def ls(parts: list[str]) -> list[str]:
    if len(parts) != 1:
        _file(parts)
        raise NotADirectoryError(f"{'/'.join(parts)}: not a directory")
    return list(FILES)


def read(parts: list[str]) -> str:
    kind = _KIND[_file(parts)]
    return "".join(f"#{h.id} {h.text}\t{h.stats()}\n" for h in registry.handles(kind))


def _removal(file: str, line: str) -> int | str | None:
    """The id (or logpoint name) a ``-...`` line removes, None for a definition."""
    if not line.startswith("-"):
        return None
    rest = line[1:]
    if rest.isdigit():
        return int(rest)
    if file == "logpoints" and rest.startswith(":") and len(rest) > 1:
        name = rest[1:]
        return name if "/" in name else f"fprobes/{name}"
    raise ValueError(f"otel/{file}: {line!r}: remove with -ID"
                     + (" or -:GRP/EVENT" if file == "logpoints" else ""))


def write(parts: list[str], value: str, append: bool) -> None:
    file = _file(parts)
    kind = _KIND[file]
    lines = [ln.strip() for ln in value.splitlines() if ln.strip() and not
             ln.strip().startswith("#")]
    if lines and not registry.available():
        raise ControlError("ENOSYS", registry.MISSING)
    plan: list[tuple[int | str | None, str]] = []
    for line in lines:
        target = _removal(file, line)
        if target is None:
            registry.check_line(kind, line)
        elif not append:
            raise ValueError(f"otel/{file}: {line!r}: a removal needs --append (a plain "
                             "write first removes everything)")
        else:
            _find(kind, target)
        plan.append((target, line))
    if not append:
        registry.remove_all(kind)
    for target, line in plan:
        if target is not None:
            _find(kind, target).remove()
        else:
            registry.add_line(kind, line)


def _find(kind: str, target: int | str) -> registry.Handle:
    for handle in registry.handles(kind):
        if handle.id == target or (isinstance(target, str) and
                                   handle.text.split()[0] == f"f:{target}"):
            return handle
    raise FileNotFoundError(f"otel: no {kind} instrumentation {target}")
