"""The instrumentations live in this process: added, listed, removed by id.

The code API (fntrace.otel), ``fntrace run --otel`` and the live control files
(``fntrace ctl PID otel/...``) all go through here, so each sees what the
others added.  OpenTelemetry is imported only when something is added: a
process that never uses it never loads it, and one without it installed gets
one clear error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

__all__ = ["MISSING", "Handle", "add_line", "add_logpoint", "add_spans", "available",
           "check_line", "handles", "remove", "remove_all", "split_spans_line"]

MISSING = ("OpenTelemetry is not installed in this Python: pip install 'fntrace[otel]' "
           "(the API), plus an SDK and exporter of your choice")
#: Instrumentations one process may hold at once.
MAX_HANDLES = 256

_lock = threading.RLock()
_handles: dict[int, Handle] = {}
_next_id = 1


def available() -> bool:
    """Whether the OpenTelemetry API can be imported here."""
    try:
        import opentelemetry.trace  # noqa: F401
    except ImportError:
        return False
    return True


def _require() -> None:
    if not available():
        raise ModuleNotFoundError(MISSING)


class Handle:
    """One live instrumentation (spans or a logpoint); ``remove()`` undoes it.

    After ``remove()`` its functions are no longer patched (unless another
    instrumentation selects them): they run at untraced speed again.
    """

    def __init__(self, kind: str, sink: Any, text: str) -> None:
        self.id = 0
        self.kind = kind   # "spans" or "logpoint"
        self.sink = sink
        self.text = text   # the definition, normalized (what otel/ files list)

    @property
    def active(self) -> bool:
        return bool(self.sink.active)

    def remove(self) -> None:
        """Stop it; a second call does nothing."""
        with _lock:
            _handles.pop(self.id, None)
        self.sink.stop()

    def stats(self) -> str:
        s = self.sink
        if self.kind == "spans":
            return f"spans={s.nspans} in_flight={len(s.calls)} errors={s.ops.nerrors}"
        return (f"sent={s.nhits} limited={s.nlimited} no_span={s.nnospan} "
                f"errors={s.ops.nerrors}")

    def __enter__(self) -> Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"<fntrace.otel {self.kind} #{self.id} {self.text!r} {state}>"


def _add(handle: Handle) -> Handle:
    global _next_id
    with _lock:
        if len(_handles) >= MAX_HANDLES:
            raise OverflowError(f"otel: at most {MAX_HANDLES} instrumentations at once")
        handle.id = _next_id
        _next_id += 1
        handle.sink.start()
        _handles[handle.id] = handle
    return handle


def add_spans(patterns: str | Iterable[str], attributes: str | Iterable[str] | None = None,
              notrace: str | Iterable[str] = (), tracer_provider: Any = None,
              max_len: int = 64) -> Handle:
    """Spans for every call of the functions ``patterns`` select (set_ftrace_filter
    grammar), with the ``KEY=EXPR`` ``attributes``; ValueError if malformed."""
    _require()
    from fntrace.tracing.otel.attributes import parse_attributes
    from fntrace.tracing.otel.spans import SpanSink

    specs = parse_attributes(list(attributes) if attributes is not None
                             and not isinstance(attributes, str) else attributes)
    sink = SpanSink(patterns, specs, notrace=notrace, tracer_provider=tracer_provider,
                    max_len=max_len)
    words = " ".join(sink.patterns).split()
    text = " ".join([*words, *(a.text() for a in specs)])
    return _add(Handle("spans", sink, text))


def add_logpoint(definition: str, limit: int | None = None, to: str | None = None,
                 tracer_provider: Any = None, logger_provider: Any = None,
                 max_len: int = 64, clock: Any = None) -> Handle:
    """A logpoint (see logpoints.py for the definition's grammar)."""
    _require()
    from fntrace.tracing.otel.logpoints import LogpointSink, parse_logpoint

    parsed = parse_logpoint(definition, limit=limit, to=to)
    kw = {"clock": clock} if clock is not None else {}
    sink = LogpointSink(parsed, tracer_provider=tracer_provider,
                        logger_provider=logger_provider, max_len=max_len, **kw)
    return _add(Handle("logpoint", sink, parsed.text()))


def split_spans_line(line: str) -> tuple[list[str], list[str]]:
    """(patterns, attributes) of a spans definition line (``otel/spans``, ``--otel``):
    words that are ``KEY=EXPR`` or start with ``$`` are attributes, the others
    set_ftrace_filter patterns."""
    patterns: list[str] = []
    attrs: list[str] = []
    for word in line.split():
        (attrs if "=" in word or word.startswith("$") else patterns).append(word)
    if not patterns:
        raise ValueError(f"otel spans: {line!r}: no function pattern")
    return patterns, attrs


def check_line(kind: str, line: str) -> None:
    """Parse a definition line of ``kind`` ("spans", "logpoint"); ValueError if malformed."""
    if kind == "spans":
        from fntrace.core.filter import parse
        from fntrace.tracing.otel.attributes import parse_attributes

        patterns, attrs = split_spans_line(line)
        parse(patterns)
        parse_attributes(attrs)
    else:
        from fntrace.tracing.otel.logpoints import parse_logpoint

        parse_logpoint(line)


def add_line(kind: str, line: str) -> Handle:
    """Add the instrumentation a definition line describes."""
    if kind == "spans":
        patterns, attrs = split_spans_line(line)
        return add_spans(patterns, attrs)
    return add_logpoint(line)


def handles(kind: str | None = None) -> list[Handle]:
    with _lock:
        return [h for _, h in sorted(_handles.items()) if kind is None or h.kind == kind]


def find(handle_id: int) -> Handle | None:
    with _lock:
        return _handles.get(handle_id)


def remove(handle_id: int) -> None:
    handle = find(handle_id)
    if handle is None:
        raise KeyError(f"otel: no instrumentation #{handle_id}")
    handle.remove()


def remove_all(kind: str | None = None) -> None:
    for handle in handles(kind):
        handle.remove()
