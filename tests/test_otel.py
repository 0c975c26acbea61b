"""fntrace.otel: spans and logpoints through the real OpenTelemetry SDK.

Every test exports through a SimpleSpanProcessor into the SDK's
InMemorySpanExporter (spans are there when the call that ended them returns:
nothing waits for a batch), and checks the exact span tree -- names,
parent/child, trace ids, attributes, status -- against what the test's own
code does (the oracle is the program's call structure, written out by hand).
Runs on the C and the pure hot path.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import CLOSE_RUNS_TRY_LESS_GENERATOR

pytest.importorskip("opentelemetry.sdk", reason="needs opentelemetry-sdk (the test extra)")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import StatusCode

import fntrace
import fntrace.otel
from fntrace.tracing.otel.spans import UNKNOWN_311

pytestmark = pytest.mark.usefixtures("hot_path")
PY311 = sys.version_info < (3, 12)


# -- the program under test ------------------------------------------------------------

def leaf(x: int) -> int:
    return x * 2


def middle(x: int) -> int:
    return leaf(x) + leaf(x + 1)


def top(x: int) -> int:
    return middle(x) + 1


def fails(x: int) -> int:
    raise ValueError(f"bad {x}")


def catches(x: int) -> int:
    try:
        return fails(x)
    except ValueError:
        return -1


def gen(n: int) -> Iterator[int]:
    for i in range(n):
        yield leaf(i)


async def co_leaf(x: int) -> int:
    await asyncio.sleep(0)
    return x


async def co_top(x: int) -> int:
    a = await co_leaf(x)
    await asyncio.sleep(0)
    b = await co_leaf(x + 1)
    return a + b


class User:
    def __init__(self, uid: int, name: str) -> None:
        self.id = uid
        self.name = name

    @property
    def broken(self) -> int:
        raise RuntimeError("property of the program")

    def __repr__(self) -> str:
        return f"User({self.id})"


def login(user: User, tags: list[str], flag: bool = True) -> dict[str, int]:
    return {"n": len(tags)}


MOD = __name__


def qual(fn: Any) -> str:
    return f"{MOD}.{fn.__qualname__}"


# -- fixtures ---------------------------------------------------------------------------

class Otel:
    def __init__(self, sampler: Any = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = (TracerProvider(sampler=sampler) if sampler is not None
                         else TracerProvider())
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def instrument(self, *patterns: str, **kw: Any) -> fntrace.otel.Handle:
        return fntrace.otel.instrument([f"{MOD}:{p}" for p in patterns],
                                       tracer_provider=self.provider, **kw)


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    try:
        yield o
    finally:
        fntrace.otel.remove_all()
        o.provider.shutdown()
    assert fntrace.enabled_functions() == ""


def tree(spans: list[ReadableSpan]) -> list[tuple[str, str | None]]:
    """(span name, parent span's name) in end order; names made short for reading."""
    by_id = {s.context.span_id: s for s in spans}
    out = []
    for s in spans:
        parent = by_id.get(s.parent.span_id) if s.parent is not None else None
        if s.parent is not None:
            assert parent is not None, f"{s.name}'s parent was not exported"
        out.append((short(s.name), short(parent.name) if parent is not None else None))
    return out


def short(name: str) -> str:
    return name.removeprefix(MOD + ".")


# -- spans --------------------------------------------------------------------------------

def test_nested_calls_exact_tree_and_attributes(otel: Otel) -> None:
    otel.instrument("top", "middle", "leaf")
    with otel.tracer.start_as_current_span("request") as req:
        assert top(3) == 15
    spans = otel.spans()
    assert tree(spans) == [("leaf", "middle"), ("leaf", "middle"), ("middle", "top"),
                           ("top", "request"), ("request", None)]
    trace_id = req.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}
    for s in spans[:-1]:
        fn = {"leaf": leaf, "middle": middle, "top": top}[short(s.name)]
        assert dict(s.attributes or {}) == {
            "code.function.name": qual(fn),
            "code.file.path": fn.__code__.co_filename,
            "code.line.number": fn.__code__.co_firstlineno,
        }
        assert s.status.status_code == StatusCode.UNSET
        assert s.kind == trace.SpanKind.INTERNAL
        assert s.instrumentation_scope is not None
        assert s.instrumentation_scope.name == "fntrace"


def test_unselected_function_makes_no_span_and_children_skip_it(otel: Otel) -> None:
    otel.instrument("top", "leaf")  # middle is not selected
    top(1)
    assert tree(otel.spans()) == [("leaf", "top"), ("leaf", "top"), ("top", None)]


def test_exception_recorded_with_status_error(otel: Otel) -> None:
    otel.instrument("catches", "fails")
    assert catches(7) == -1
    spans = otel.spans()
    assert tree(spans) == [("fails", "catches"), ("catches", None)]
    failed, caught = spans
    assert failed.status.status_code == StatusCode.ERROR
    assert caught.status.status_code == StatusCode.UNSET
    if PY311:
        assert failed.status.description == UNKNOWN_311
        assert failed.events == ()
    else:
        assert failed.status.description == "ValueError: bad 7"
        (event,) = failed.events
        assert event.name == "exception"
        attrs = dict(event.attributes or {})
        assert attrs["exception.type"] == "ValueError"
        assert attrs["exception.message"] == "bad 7"


def test_exception_that_escapes_reaches_the_program_unchanged(otel: Otel) -> None:
    otel.instrument("fails")
    with pytest.raises(ValueError, match=r"^bad 3$") as info:
        fails(3)
    assert info.value.__traceback__ is not None
    assert [s.status.status_code for s in otel.spans()] == [StatusCode.ERROR]


def test_threads_each_their_own_tree(otel: Otel) -> None:
    otel.instrument("top", "middle", "leaf")
    barrier = threading.Barrier(3)
    ids: dict[str, int] = {}

    def worker(name: str) -> None:
        barrier.wait()
        with otel.tracer.start_as_current_span(name) as span:
            ids[name] = span.get_span_context().trace_id
            for _ in range(3):
                top(1)

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans = otel.spans()
    assert len(spans) == 3 * (3 * 4 + 1)
    for name, trace_id in ids.items():
        mine = [s for s in spans if s.context.trace_id == trace_id]
        assert tree(mine) == [("leaf", "middle"), ("leaf", "middle"), ("middle", "top"),
                              ("top", name)] * 3 + [(name, None)]


def test_context_carried_into_a_thread(otel: Otel) -> None:
    """A thread started with the caller's context (copy_context().run) joins its trace;
    one started without it begins its own (threading does not carry contexts)."""
    otel.instrument("top", "middle", "leaf")
    with otel.tracer.start_as_current_span("request") as req:
        ctx = contextvars.copy_context()
        carried = threading.Thread(target=ctx.run, args=(top, 1))
        bare = threading.Thread(target=top, args=(2,))
        carried.start()
        carried.join()
        bare.start()
        bare.join()
    spans = otel.spans()
    rid = req.get_span_context().trace_id
    joined = [s for s in spans if s.context.trace_id == rid]
    alone = [s for s in spans if s.context.trace_id != rid]
    assert tree(joined) == [("leaf", "middle"), ("leaf", "middle"), ("middle", "top"),
                            ("top", "request"), ("request", None)]
    assert tree(alone) == [("leaf", "middle"), ("leaf", "middle"), ("middle", "top"),
                           ("top", None)]


def test_asyncio_tasks_one_span_per_coroutine_call(otel: Otel) -> None:
    otel.instrument("co_top", "co_leaf")

    async def main() -> list[int]:
        with otel.tracer.start_as_current_span("request"):
            return await asyncio.gather(co_top(1), co_top(10), co_top(100))

    assert asyncio.run(main()) == [3, 21, 201]
    spans = otel.spans()
    # Three interleaved tasks, each awaiting twice: still one span per coroutine call,
    # each co_leaf under its own task's co_top, each co_top under the request.
    by_id = {s.context.span_id: s for s in spans}
    tops = [s for s in spans if short(s.name) == "co_top"]
    leaves = [s for s in spans if short(s.name) == "co_leaf"]
    (req,) = [s for s in spans if s.name == "request"]
    assert len(spans) == 1 + 3 + 6
    assert all(s.parent is not None and s.parent.span_id == req.context.span_id for s in tops)
    for leaf_span in leaves:
        assert leaf_span.parent is not None
        assert short(by_id[leaf_span.parent.span_id].name) == "co_top"
    assert sorted(len([x for x in leaves if x.parent is not None
                       and x.parent.span_id == t.context.span_id]) for t in tops) == [2, 2, 2]
    assert {s.context.trace_id for s in spans} == {req.context.trace_id}
    # co_top's span covers its whole call (its leaves end inside it)
    for t in tops:
        assert t.start_time is not None and t.end_time is not None
        mine = [x for x in leaves if x.parent is not None
                and x.parent.span_id == t.context.span_id]
        assert all(t.start_time <= x.start_time and x.end_time is not None
                   and x.end_time <= t.end_time for x in mine if x.start_time is not None)


def test_asyncio_task_created_inside_a_span_inherits_it(otel: Otel) -> None:
    otel.instrument("co_top", "co_leaf")

    async def main() -> int:
        task = asyncio.create_task(co_top(1))
        return await task

    with otel.tracer.start_as_current_span("request"):
        assert asyncio.run(main()) == 3
    assert tree(otel.spans()) == [("co_leaf", "co_top"), ("co_leaf", "co_top"),
                                  ("co_top", "request"), ("request", None)]


def test_generator_one_span_per_call(otel: Otel) -> None:
    otel.instrument("gen", "leaf", "top")
    with otel.tracer.start_as_current_span("request"):
        out = []
        for value in gen(3):
            out.append(top(value))  # the consumer's calls are not the generator's children
    assert out == [3, 11, 19]  # gen yields 0, 2, 4; top(v) = 2v + 2(v + 1) + 1
    spans = otel.spans()
    names = tree(spans)
    assert names.count(("gen", "request")) == 1
    # leaf inside the generator's body: under gen; top and its leaves: under the request
    assert names == [
        ("leaf", "gen"), ("leaf", "top"), ("leaf", "top"), ("top", "request"),
        ("leaf", "gen"), ("leaf", "top"), ("leaf", "top"), ("top", "request"),
        ("leaf", "gen"), ("leaf", "top"), ("leaf", "top"), ("top", "request"),
        ("gen", "request"), ("request", None)]


def guarded_gen(n: int) -> Iterator[int]:
    try:
        yield from range(n)
    finally:
        leaf(0)


def test_generator_closed_early_is_no_error(otel: Otel) -> None:
    otel.instrument("guarded_gen", "leaf")
    g = guarded_gen(5)
    assert next(g) == 0
    g.close()
    spans = otel.spans()
    assert tree(spans) == [("leaf", "guarded_gen"), ("guarded_gen", None)]
    span = spans[1]
    if PY311:  # the profile hook cannot tell GeneratorExit from another exception
        assert span.status.status_code == StatusCode.ERROR
    else:
        assert span.status.status_code == StatusCode.UNSET
        assert span.events == ()


def test_generator_closed_outside_try(otel: Otel) -> None:
    """Where the interpreter runs the close (every version but 3.13 before gh-140373's
    fix) the span ends there; where it finishes the generator silently, no exit is
    seen: the span stays in flight until the instrumentation is removed."""
    handle = otel.instrument("gen")
    g = gen(5)
    assert next(g) == 0
    g.close()
    if CLOSE_RUNS_TRY_LESS_GENERATOR:
        (span,) = otel.spans()
        assert handle.stats() == "spans=1 in_flight=0 errors=0"
    else:
        assert otel.spans() == []
        assert handle.stats() == "spans=1 in_flight=1 errors=0"
        handle.remove()
        (span,) = otel.spans()
        assert dict(span.attributes or {})["fntrace.removed"] is True


def test_generator_resumed_in_another_thread(otel: Otel) -> None:
    otel.instrument("gen", "leaf")
    with otel.tracer.start_as_current_span("request"):
        g = gen(2)
        assert next(g) == 0
    other: list[int] = []
    t = threading.Thread(target=lambda: other.extend(g))
    t.start()
    t.join()
    assert other == [2]
    assert tree(otel.spans()) == [("leaf", "gen"), ("request", None), ("leaf", "gen"),
                                  ("gen", "request")]
    # the thread's context was untouched once the generator was done with it
    assert not trace.get_current_span().is_recording()


def test_sampling_off_no_spans() -> None:
    o = Otel(sampler=ALWAYS_OFF)
    try:
        o.instrument("top", "middle", "leaf")
        with o.tracer.start_as_current_span("request"):
            assert top(2) == 11
        assert o.spans() == []
    finally:
        fntrace.otel.remove_all()


def test_unsampled_parent_no_child_spans() -> None:
    """ParentBased sampling: calls under a request that was not sampled are not either."""
    o = Otel(sampler=ParentBased(ALWAYS_OFF))
    try:
        o.instrument("top", "middle", "leaf")
        with o.tracer.start_as_current_span("request"):
            top(2)
        assert o.spans() == []
    finally:
        fntrace.otel.remove_all()


def test_remove_leaves_functions_untraced(otel: Otel) -> None:
    handle = otel.instrument("top", "middle", "leaf")
    top(1)
    assert "middle" in fntrace.enabled_functions()
    assert fntrace.otel.instrumentations() == [handle]
    handle.remove()
    assert fntrace.enabled_functions() == ""
    assert fntrace.otel.instrumentations() == []
    assert not handle.active
    top(1)
    assert len(otel.spans()) == 4
    handle.remove()  # twice is harmless


def test_two_instrumentations_and_context_manager(otel: Otel) -> None:
    a = otel.instrument("top")
    with otel.instrument("leaf"):
        top(1)
    top(1)
    a.remove()
    assert tree(otel.spans()) == [("leaf", "top"), ("leaf", "top"), ("top", None), ("top", None)]


def test_span_in_flight_at_remove_is_ended_and_marked(otel: Otel) -> None:
    handle = otel.instrument("gen")
    g = gen(3)
    next(g)
    handle.remove()
    (span,) = otel.spans()
    assert dict(span.attributes or {})["fntrace.removed"] is True
    assert list(g) == [2, 4]


# -- attributes ---------------------------------------------------------------------------

def test_selected_arguments_and_retval(otel: Otel) -> None:
    otel.instrument("login", attributes=["user.id=user.id", "user.name=user.name:str",
                                         "ntags=len(tags)", "flag", "$retval", "who=user:repr",
                                         "anon=user",
                                         "bad=user.broken", "first=tags[0]"], max_len=8)
    login(User(42, "a-very-long-name"), ["x", "y"], flag=False)
    (span,) = otel.spans()
    attrs = dict(span.attributes or {})
    for key in ("code.function.name", "code.file.path", "code.line.number"):
        attrs.pop(key)
    assert attrs == {"user.id": 42, "user.name": "a-ver...", "ntags": 2, "flag": False,
                     "retval": "{'n': 2}", "who": "User(42)", "anon": "<test...",
                     "bad": "<error: RuntimeError>", "first": "x"}


def test_all_arguments_and_absent_parameters(otel: Otel) -> None:
    otel.instrument("top", "leaf", attributes=["$arg*", "missing=nothere", "r=$retval"])
    top(1)
    attrs = [{k: v for k, v in (s.attributes or {}).items() if not k.startswith("code.")}
             for s in otel.spans()]
    assert attrs == [{"x": 1, "r": 2}, {"x": 2, "r": 4}, {"x": 1, "r": 7}]


def test_huge_int_and_retval_of_unwind(otel: Otel) -> None:
    otel.instrument("leaf", "fails", attributes=["x", "$retval"])
    leaf(1 << 70)
    with pytest.raises(ValueError):
        fails(1)
    big, failed = otel.spans()
    assert dict(big.attributes or {})["x"] == str(1 << 70)  # past int64: its text
    assert "retval" not in dict(failed.attributes or {})


@pytest.mark.parametrize("bad, why", [
    ("x=", "expected an expression"),
    ("x=$retvalue", "unknown variable"),
    ("k=a.b()", "unexpected"),
    ("a=x a=y", "used twice"),
])
def test_malformed_attributes_refused(otel: Otel, bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        otel.instrument("leaf", attributes=bad)
    assert fntrace.otel.instrumentations() == []


def test_empty_filter_refused() -> None:
    with pytest.raises(ValueError, match="needs a filter"):
        fntrace.otel.instrument(" ")


def test_malformed_filter_refused() -> None:
    with pytest.raises(ValueError):
        fntrace.otel.instrument("a b:c:d:e")
    assert fntrace.otel.instrumentations() == []


def test_failing_str_of_exception_does_not_reach_program(otel: Otel) -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("str of the program's exception")

    def raises_nasty() -> None:
        raise Nasty()

    fntrace.otel.instrument(f"{MOD}:*raises_nasty", tracer_provider=otel.provider)
    with pytest.raises(Nasty):
        raises_nasty()
    (span,) = otel.spans()
    assert span.status.status_code == StatusCode.ERROR
    if not PY311:
        assert span.status.description == "Nasty: <str() failed>"


# -- logpoints ---------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_logpoint_event_on_current_span(otel: Otel) -> None:
    fntrace.otel.logpoint(f"f:app/login {MOD}:login uid=user.id ntags=len(tags)")
    with otel.tracer.start_as_current_span("request"):
        login(User(5, "n"), ["a"])
    (req,) = otel.spans()
    (event,) = req.events
    assert event.name == "app/login"
    assert dict(event.attributes or {}) == {
        "code.function.name": qual(login), "code.file.path": login.__code__.co_filename,
        "code.line.number": login.__code__.co_firstlineno, "uid": 5, "ntags": 1}


def test_logpoint_lands_on_the_instrumented_callers_span(otel: Otel) -> None:
    otel.instrument("middle")
    fntrace.otel.logpoint(f"f:app/leaf_exit {MOD}:leaf%return x $retval")
    middle(4)
    (span,) = otel.spans()
    assert [dict(e.attributes or {})["retval"] for e in span.events] == [8, 10]
    assert [dict(e.attributes or {})["x"] for e in span.events] == [4, 5]


def test_logpoint_without_span_is_counted(otel: Otel) -> None:
    h = fntrace.otel.logpoint(f"f:app/l {MOD}:leaf x")
    leaf(1)
    leaf(2)
    assert h.stats() == "sent=0 limited=0 no_span=2 errors=0"


def test_logpoint_rate_limit() -> None:
    o = Otel()
    clock = Clock()
    try:
        from fntrace.tracing.otel.registry import add_logpoint

        h = add_logpoint(f"f:app/l {MOD}:leaf x limit=3/s", clock=clock)
        with o.tracer.start_as_current_span("request"):
            for i in range(10):
                leaf(i)
            clock.now += 0.5  # half a second: 1.5 tokens back, one more hit
            for i in range(10, 13):
                leaf(i)
            clock.now += 10  # a long pause refills to the burst size, no more
            for i in range(20, 30):
                leaf(i)
        (req,) = o.spans()
        assert [dict(e.attributes or {})["x"] for e in req.events] == [0, 1, 2, 10, 20, 21, 22]
        assert h.stats() == "sent=7 limited=16 no_span=0 errors=0"
        assert h.text == f"f:app/l {MOD}:leaf x=x limit=3/s to=event"
    finally:
        fntrace.otel.remove_all()


def test_logpoint_as_log_record(otel: Otel) -> None:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    logs = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    fntrace.otel.logpoint(f"f:app/login {MOD}:login uid=user.id to=log", logger_provider=provider)
    with otel.tracer.start_as_current_span("request") as req:
        login(User(9, "n"), [])
    (record,) = logs.get_finished_logs()
    lr = record.log_record
    assert lr.body == "app/login"
    assert lr.event_name == "app/login"
    assert dict(lr.attributes or {})["uid"] == 9
    assert lr.trace_id == req.get_span_context().trace_id
    assert lr.span_id == req.get_span_context().span_id
    provider.shutdown()


@pytest.mark.parametrize("bad, why", [
    ("f:app/l x:y limit=0/s", "limit=N/s"),
    ("f:app/l x:y limit=3", "limit=N/s"),
    ("f:app/l x:y to=stdout", "to= is one of"),
    ("-:app/l", "not a removal"),
    ("f:app/l x:y $retval", r"\$retval is only available"),
])
def test_malformed_logpoint_refused(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        fntrace.otel.logpoint(bad)
    assert fntrace.otel.instrumentations() == []


def test_without_opentelemetry_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from fntrace.control import otel_files
    from fntrace.control.protocol import ControlError

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    assert not fntrace.otel.available()
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fntrace\[otel\]'"):
        fntrace.otel.instrument(f"{MOD}:leaf")
    with pytest.raises(ControlError, match="OpenTelemetry is not installed") as info:
        otel_files.write(["otel", "spans"], f"{MOD}:leaf", append=True)
    assert info.value.errno == "ENOSYS"
    assert otel_files.read(["otel", "spans"]) == ""
    assert fntrace.enabled_functions() == ""
