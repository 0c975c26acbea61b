"""fntrace.otel: OpenTelemetry spans and logpoints for any function, at run time.

Selected functions become spans of the request they run in, with no change to
their code (docs/otel.md)::

    import fntrace.otel
    handle = fntrace.otel.instrument("myapp.db:*", attributes=["sql=query:str", "$retval"])
    ...
    handle.remove()          # the functions run untraced again

    fntrace.otel.logpoint("f:app/login myapp.auth:login user=user.name limit=5/s")

The same instrumentations can be added, listed and removed in a running process
through ``fntrace ctl PID otel/spans`` and ``otel/logpoints`` (docs/control.md), or at
start with ``fntrace run --otel 'PATTERN [KEY=EXPR...]'``.  Needs the OpenTelemetry
API (``pip install 'fntrace[otel]'``); the SDK and exporter are the program's choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fntrace.tracing.otel.registry import (
    MISSING,
    Handle,
    add_logpoint,
    add_spans,
    available,
    handles,
    remove_all,
)

__all__ = ["MISSING", "Handle", "available", "instrument", "instrumentations", "logpoint",
           "remove_all"]


def instrument(filter: str | Iterable[str], attributes: str | Iterable[str] | None = None, *,
               notrace: str | Iterable[str] = (), tracer_provider: Any = None,
               max_len: int = 64) -> Handle:
    """Make every call of the functions ``filter`` selects a span; returns a handle.

    ``filter`` and ``notrace`` take set_ftrace_filter patterns (``myapp.db:*``,
    ``*:mod:myapp.*``).  ``attributes``: ``KEY=EXPR[:TYPE]`` items in the probes'
    fetcharg grammar (``user=user.id``, ``n=len(items)``, ``$retval``, ``$arg*``),
    rendered with ``max_len`` as the repr limit.  ``tracer_provider``: the global
    one (set now or later) by default.
    """
    return add_spans(filter, attributes, notrace=notrace, tracer_provider=tracer_provider,
                     max_len=max_len)


def logpoint(definition: str, *, limit: int | None = None, to: str | None = None,
             tracer_provider: Any = None, logger_provider: Any = None,
             max_len: int = 64) -> Handle:
    """A probe (``f:GRP/EVENT FUNC[%return] [FETCHARGS] [limit=N/s] [to=event|log]``)
    whose hits become span events on the current span, or log records (``to=log``),
    at most ``limit`` a second."""
    return add_logpoint(definition, limit=limit, to=to, tracer_provider=tracer_provider,
                        logger_provider=logger_provider, max_len=max_len)


def instrumentations() -> list[Handle]:
    """Every live instrumentation of this process (code, --otel and ctl alike)."""
    return handles()
