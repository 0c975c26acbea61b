"""fprobe events: ``dynamic_events`` probes with argument fetching and filters.

parser.py reads the spec grammar, fetch.py evaluates fetchargs against a call,
condition.py compiles event filters, events.py registers and records events.

The names below load their module on first use (PEP 562): every Instance has
its probe events (events.py), but the grammar (parser.py, with re and
dataclasses) is loaded only by the first definition, so a recording without
probes never pays for it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.tracing.probes.events import PROBE, ProbeEvent, ProbeEvents
    from fntrace.tracing.probes.parser import (
        FetchArg,
        ProbeSpec,
        RemoveSpec,
        SpecError,
        Step,
        parse_spec,
    )

__all__ = ["PROBE", "FetchArg", "ProbeEvent", "ProbeEvents", "ProbeSpec", "RemoveSpec",
           "SpecError", "Step", "parse_spec"]

#: Public name -> the module that defines it.
_WHERE = {"PROBE": "events", "ProbeEvent": "events", "ProbeEvents": "events",
          "FetchArg": "parser", "ProbeSpec": "parser", "RemoveSpec": "parser",
          "SpecError": "parser", "Step": "parser", "parse_spec": "parser"}


def __getattr__(name: str) -> Any:
    """A public name: its module is imported now (PEP 562)."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
