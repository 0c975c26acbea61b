"""Logpoints: a ``dynamic_events`` probe whose hits go to OpenTelemetry.

The definition is a probe's (``f:GRP/EVENT FUNC[%return] [FETCHARGS]``, see
docs/tracefs.md) with two words of its own at the end: ``limit=N/s`` (at most
N hits a second reach OpenTelemetry; the rest are counted and dropped, so a hot
function cannot flood a backend) and ``to=event`` (the default: an event named
``GRP/EVENT`` on the span current at the hit, dropped when no span records) or
``to=log`` (a log record through the global LoggerProvider, in the current
span's context so backends correlate it with the trace; without a configured
LoggerProvider OpenTelemetry's API drops it).

The fetchargs are the event's attributes, rendered as span attributes are
(attributes.py); entry fields of a ``%return`` probe are read at entry, as a
probe's are, and kept until the exit.  The rate limit is a token bucket
refilled continuously (a burst of up to N), checked before anything is
fetched, so a dropped hit costs one clock read.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import _logs as otel_logs
from opentelemetry import trace

from fntrace.core import engine
from fntrace.core.ops import Ops
from fntrace.tracing.otel.attributes import AttrSpec, values
from fntrace.tracing.otel.spans import DEFAULT_NOTRACE, code_attributes
from fntrace.tracing.probes.parser import ProbeSpec, SpecError, parse_spec
from fntrace.tracing.reprs import SafeRepr

if TYPE_CHECKING:
    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function

__all__ = ["Limit", "LogpointDef", "LogpointSink", "parse_logpoint"]

_LIMIT = re.compile(r"limit=([0-9]{1,9})/s")
TARGETS = ("event", "log")


class Limit:
    """A token bucket: ``rate`` hits a second, bursts of up to ``rate``."""

    __slots__ = ("clock", "last", "rate", "tokens")

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.clock = clock
        self.last = clock()

    def take(self) -> bool:
        now = self.clock()
        tokens = min(float(self.rate), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


@dataclass(frozen=True)
class LogpointDef:
    """A parsed logpoint: the probe, its rate limit (None: unlimited) and target."""

    probe: ProbeSpec
    limit: int | None
    to: str

    def text(self) -> str:
        tail = (f" limit={self.limit}/s" if self.limit is not None else "") + f" to={self.to}"
        return self.probe.text() + tail


def parse_logpoint(line: str, limit: int | None = None, to: str | None = None) -> LogpointDef:
    """Parse a logpoint definition; ValueError (the probe grammar's, with its column)."""
    words = line.split()
    while words and (words[-1].startswith("limit=") or words[-1].startswith("to=")):
        word = words.pop()
        if word.startswith("to="):
            if word[3:] not in TARGETS:
                raise ValueError(f"otel logpoint: {word!r}: to= is one of {', '.join(TARGETS)}")
            to = word[3:]
            continue
        m = _LIMIT.fullmatch(word)
        if m is None or int(m.group(1)) == 0:
            raise ValueError(f"otel logpoint: {word!r}: expected limit=N/s with N >= 1")
        limit = int(m.group(1))
    if to is not None and to not in TARGETS:
        raise ValueError(f"otel logpoint: to={to!r}: one of {', '.join(TARGETS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"otel logpoint: limit={limit}: at least 1 a second")
    spec = parse_spec(" ".join(words))
    if not isinstance(spec, ProbeSpec):
        raise SpecError(line, 0, "a logpoint is a definition (f:...), not a removal",
                        what="otel logpoint")
    return LogpointDef(spec, limit, to or "event")


class LogpointSink:
    """An ops that sends a probe's hits to OpenTelemetry (see the module docstring)."""

    def __init__(self, definition: LogpointDef, tracer_provider: Any = None,
                 logger_provider: Any = None, max_len: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.definition = definition
        probe = definition.probe
        self.name = f"{probe.group}/{probe.event}"
        specs = tuple(AttrSpec(a.name, a) for a in probe.args)
        self.entry_attrs = tuple(s for s in specs if not s.arg.at_exit)
        self.exit_attrs = tuple(s for s in specs if s.arg.at_exit)
        self.safe_repr = SafeRepr(max_len)
        self.limit = Limit(definition.limit, clock) if definition.limit is not None else None
        self.logger_provider = logger_provider
        self.nhits = 0       # sent to OpenTelemetry
        self.nlimited = 0    # dropped by the rate limit
        self.nnospan = 0     # to=event with no recording span current
        # %return: the entry's fields, by frame, until the exit reads them.
        self.pending: dict[int, dict[str, Any]] = {}
        func = self._entry if not probe.is_return else (
            self._remember if self.entry_attrs else None)
        ret = self._exit if probe.is_return else None
        self.ops = Ops(func, ret=ret, filter=probe.func.glob, notrace=DEFAULT_NOTRACE,
                       private=self)
        self.active = False

    def start(self) -> None:
        engine.register(self.ops)
        self.active = True

    def stop(self) -> None:
        if self.active:
            self.active = False
            engine.unregister(self.ops)
        self.pending.clear()

    # -- the callbacks -------------------------------------------------------------
    def _entry(self, fn: Function, parent: Function | None, ops: Ops,
               fregs: FtraceRegs) -> None:
        if fregs.event == "start":
            self._send(fn, fregs, self.entry_attrs, None)

    def _remember(self, fn: Function, parent: Function | None, ops: Ops,
                  fregs: FtraceRegs) -> None:
        if fregs.event == "start":
            self.pending[id(fregs.frame)] = values(self.entry_attrs, fregs, self.safe_repr)

    def _exit(self, fn: Function, parent: Function | None, ops: Ops,
              fregs: FtraceRegs) -> None:
        if fregs.event == "yield":
            return
        early = self.pending.pop(id(fregs.frame), None) if self.entry_attrs else None
        if self.entry_attrs and early is None:
            return  # the entry happened before this logpoint existed
        self._send(fn, fregs, self.exit_attrs, early)

    def _send(self, fn: Function, fregs: FtraceRegs, specs: tuple[AttrSpec, ...],
              early: dict[str, Any] | None) -> None:
        if self.limit is not None and not self.limit.take():
            self.nlimited += 1
            return
        span = trace.get_current_span()
        if self.definition.to == "event" and not span.is_recording():
            self.nnospan += 1
            return
        attrs = code_attributes(fn)
        if early:
            attrs.update(early)
        attrs.update(values(specs, fregs, self.safe_repr))
        self.nhits += 1
        if self.definition.to == "event":
            span.add_event(self.name, attributes=attrs)
            return
        provider = self.logger_provider or otel_logs.get_logger_provider()
        logger = provider.get_logger("fntrace")
        logger.emit(body=self.name, attributes=attrs, event_name=self.name,
                    severity_number=otel_logs.SeverityNumber.INFO, severity_text="INFO")
