"""fprobe events: ``dynamic_events`` probes with argument fetching and filters.

parser.py reads the spec grammar, fetch.py evaluates fetchargs against a call,
condition.py compiles event filters, events.py registers and records events.
"""

from __future__ import annotations

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
