"""The tracers (one module each) and the registry current_tracer chooses from."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fntrace.tracing.tracers.base import Tracer

__all__ = ["available", "get"]


def _table() -> dict[str, type[Tracer] | None]:
    from fntrace.tracing.tracers.function import FunctionTracer
    from fntrace.tracing.tracers.function_graph import FunctionGraphTracer

    return {"nop": None, "function": FunctionTracer, "function_graph": FunctionGraphTracer}


def available() -> list[str]:
    return list(_table())


def get(name: str) -> type[Tracer] | None:
    """The tracer class for current_tracer ``name`` (None for nop)."""
    table = _table()
    if name not in table:
        raise ValueError(f"current_tracer: unknown tracer {name!r}; "
                         f"available: {' '.join(table)}")
    return table[name]
