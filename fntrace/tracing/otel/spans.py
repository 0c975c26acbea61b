"""The span sink: every call of a selected function becomes an OpenTelemetry span.

One ops per instrumentation, with its own filter (fntrace's core then patches
only the selected code: the rest of the program runs as untraced).  At a
call's start the span is started through the OpenTelemetry *API* in the
current context -- so it joins the request's trace under whatever span is
current, and the tracer provider's sampler decides -- and made current itself,
so the calls beneath it (selected functions, or any other instrumentation's
spans) become its children.  At the call's end the context is restored and the
span ended.

Generators and coroutines get one span per call, not per resumption: the span
starts at the first run (``start``), is made current again at each
``resume``/``throw`` and set aside at each ``yield`` (an ``await`` that
suspends is one), and ends at ``return`` or ``unwind``.  Each resumption runs in
the context of whoever resumes it (an asyncio task's own context, another
thread's), and attach/detach are paired within that resumption, so contexts
never leak from one task or thread into another.

A call is found again at its exit by its frame: the open calls are keyed by
``id(frame)`` (a frame lives until its call ends; a generator's frame object
stays the same across resumptions), and the key is checked against the code so
a reused id is never mistaken for another call.

Exceptions are recorded on the span (``record_exception``) with status ERROR,
except GeneratorExit (a generator closed is no failure).  On Python 3.11 the
interpreter hides an unwinding frame's exception from profile functions: the
span still gets status ERROR, described as of unknown type.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from fntrace.core import engine
from fntrace.core.flags import Event
from fntrace.core.ops import Ops
from fntrace.tracing.otel.attributes import AttrSpec, values
from fntrace.tracing.reprs import SafeRepr

if TYPE_CHECKING:
    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function

__all__ = ["DEFAULT_NOTRACE", "SpanSink", "code_attributes"]

#: OpenTelemetry itself is never instrumented: its exporter's calls would make spans
#: that are exported, whose export makes spans...
DEFAULT_NOTRACE = ("*:mod:opentelemetry.*",)
_INSTRUMENTATION = "fntrace"
NAMES_CACHE = 4096
FAILED_STR = "<str() failed>"
UNKNOWN_311 = "exception (type unknown on 3.11: the interpreter hides it from profile hooks)"


def code_attributes(fn: Function) -> dict[str, Any]:
    """The semantic conventions' code attributes of a function (computed once per code)."""
    return {
        "code.function.name": f"{fn.module}.{fn.qualname}",
        "code.file.path": fn.filename,
        "code.line.number": fn.lineno,
    }


class _Call:
    """One call in flight: its span, and the context token while it runs."""

    __slots__ = ("code", "span", "token")

    def __init__(self, code: Any, span: Span, token: object | None) -> None:
        self.code = code
        self.span = span
        self.token = token


class SpanSink:
    """An instrumentation: an ops whose calls become spans (see the module docstring)."""

    def __init__(self, patterns: str | Iterable[str], attributes: tuple[AttrSpec, ...] = (),
                 notrace: str | Iterable[str] = (), tracer_provider: Any = None,
                 max_len: int = 64) -> None:
        self.patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        if not " ".join(self.patterns).split():
            raise ValueError("otel: an instrumentation needs a filter (an empty one would "
                             "make a span of every call of the program)")
        self.attributes = attributes
        self.entry_attrs = tuple(a for a in attributes if not a.arg.at_exit)
        self.exit_attrs = tuple(a for a in attributes if a.arg.at_exit)
        self.safe_repr = SafeRepr(max_len)
        self.tracer = trace.get_tracer(_INSTRUMENTATION, tracer_provider=tracer_provider)
        notrace_lines = [*DEFAULT_NOTRACE,
                         *([notrace] if isinstance(notrace, str) else list(notrace))]
        self.ops = Ops(self._enter, ret=self._exit, filter=self.patterns, notrace=notrace_lines,
                       private=self)
        self.calls: dict[int, _Call] = {}
        # id(Function) -> (Function, span name, code attributes); the Function is
        # compared, so an id reused after a code object was freed is never misnamed.
        self.names: dict[int, tuple[Function, str, dict[str, Any]]] = {}
        self.nspans = 0
        self.active = False

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        engine.register(self.ops)
        self.active = True

    def stop(self) -> None:
        """Unregister; calls still in flight get their spans ended now, marked so."""
        if self.active:
            self.active = False
            engine.unregister(self.ops)
        for call in list(self.calls.values()):
            call.span.set_attribute("fntrace.removed", True)
            call.span.end()
        self.calls.clear()
        self.names.clear()

    # -- the callbacks -------------------------------------------------------------
    def _name(self, fn: Function) -> tuple[str, dict[str, Any]]:
        got = self.names.get(id(fn))
        if got is None or got[0] is not fn:
            attrs = code_attributes(fn)
            got = (fn, attrs["code.function.name"], attrs)
            if len(self.names) >= NAMES_CACHE:  # code made at run time: stay bounded
                self.names.clear()
            self.names[id(fn)] = got
        return got[1], got[2]

    def _enter(self, fn: Function, parent: Function | None, ops: Ops,
               fregs: FtraceRegs) -> None:
        key = id(fregs.frame)
        if fregs.event == Event.START:
            name, attrs = self._name(fn)
            span = self.tracer.start_span(name, attributes=attrs,
                                          record_exception=False, set_status_on_exception=False)
            self.nspans += 1
            if self.entry_attrs and span.is_recording():
                span.set_attributes(values(self.entry_attrs, fregs, self.safe_repr))
            token = otel_context.attach(trace.set_span_in_context(span))
            self.calls[key] = _Call(fregs.frame.f_code, span, token)
            return
        # resume / throw: the call's span is current again while it runs
        call = self.calls.get(key)
        if call is not None and call.code is fregs.frame.f_code and call.token is None:
            call.token = otel_context.attach(trace.set_span_in_context(call.span))

    def _exit(self, fn: Function, parent: Function | None, ops: Ops,
              fregs: FtraceRegs) -> None:
        key = id(fregs.frame)
        call = self.calls.get(key)
        if call is None or call.code is not fregs.frame.f_code:
            return
        if call.token is not None:
            otel_context.detach(call.token)  # type: ignore[arg-type]
            call.token = None
        event = fregs.event
        if event == Event.YIELD:
            return
        del self.calls[key]
        span = call.span
        try:
            if span.is_recording():
                if event == Event.UNWIND:
                    self._failed(span, fregs.exception)
                if self.exit_attrs:
                    span.set_attributes(values(self.exit_attrs, fregs, self.safe_repr))
        finally:
            span.end()  # whatever the program's objects did above, the span is sent

    def _failed(self, span: Span, exc: BaseException | None) -> None:
        if exc is None:
            span.set_status(Status(StatusCode.ERROR, UNKNOWN_311))
            return
        if isinstance(exc, GeneratorExit):
            return
        # The status first, described with the bounded text (str() of the program's
        # exception may raise or be huge); record_exception may still fail on it.
        try:
            text = str(exc)
        except Exception:
            text = FAILED_STR
        limit = self.safe_repr.max_len
        if len(text) > limit:
            text = text[:max(limit - 3, 1)] + "..."
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {text}"))
        if text != FAILED_STR:
            span.record_exception(exc)  # it reads str(exc) again, which worked once
