"""fprobe events: dynamic_events specs, fetchargs, %return, filters, enable and removal.

Every check reads the ``trace`` file as a user would and compares the exact
event messages (``EVENT: (module:func) name=value ...``) with values computed
here independently.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import needs_threads

from fntrace.core import engine
from fntrace.core.engine import BusyError
from fntrace.core.oscaps import native_id
from fntrace.tracing.instance import Instance
from fntrace.tracing.probes import ProbeSpec, RemoveSpec, SpecError, Step, parse_spec

MOD = __name__
LINE = re.compile(r"^ *(?P<task>\S.*?)-(?P<pid>\d+) +\[(?P<cpu>\d{3})\] (?P<flags>\S{5}) +"
                  r"(?P<ts>\d+\.\d{6}): (?P<msg>.*)$")


def msgs(inst: Instance) -> list[str]:
    out = []
    for line in inst.read("trace").splitlines():
        if line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m is not None, line
        out.append(m["msg"])
    return out


@pytest.fixture
def inst() -> Iterator[Instance]:
    with Instance() as i:
        yield i


def define(inst: Instance, *specs: str) -> None:
    """Define events (appending) and enable each."""
    for spec in specs:
        inst.write("dynamic_events", spec, append=True)
        parsed = parse_spec(spec)
        inst.write(f"events/{parsed.group}/{parsed.event}/enable", "1")


# -- traced functions ------------------------------------------------------------------

class User:
    def __init__(self, uid: int, name: str) -> None:
        self.id = uid
        self.name = name

    @property
    def broken(self) -> int:
        raise RuntimeError("property failed")


class Request:
    def __init__(self, headers: dict[str, Any], user: User) -> None:
        self.headers = headers
        self.user = user


class Handler:
    def handle(self, req: Request, items: list[int], *extra: Any, flag: bool = False) -> int:
        return len(items) + len(extra)


def add(a: int, b: int) -> int:
    return a + b


def rebinds(x: int) -> int:
    x = x * 10
    return x


def fails(n: int) -> int:
    raise KeyError(n)


def inner(v: int) -> int:
    return v


def middle(v: int) -> int:
    return inner(v)


def outer(v: int) -> int:
    return middle(v)


def gen(n: int) -> Iterator[int]:
    yield n
    yield n + 1
    return n * 100


def calls_back(x: int, cb: Any) -> int:
    cb()
    return x


def pair(a: Any, b: Any) -> None:
    return None


def helper_one(v: int) -> int:
    return v


def helper_two(v: int) -> int:
    return v


# -- fetchargs -----------------------------------------------------------------------


def test_every_fetcharg_form_exact(inst: Instance) -> None:
    define(inst, f"f:web/handle {MOD}:Handler.handle req items $arg3 "
                 "host=req.headers['Host'] uid=req.user.id nitems=len(items) "
                 "first=items[0] last=items[-1] sp=req.headers[\"a b\"] "
                 "uname=$arg2.user.name:str")
    req = Request({"Host": "example.org", "a b": 5}, User(42, "bob"))
    items = [3, 1, 4]
    assert Handler().handle(req, items, "x", flag=True) == 4
    req_text = repr(req)[:61] + "..." if len(repr(req)) > 64 else repr(req)
    assert msgs(inst) == [
        f"handle: ({MOD}:Handler.handle) req={req_text} items=[3, 1, 4] arg3=[3, 1, 4] "
        "host='example.org' uid=42 nitems=3 first=3 last=4 sp=5 uname=\"bob\""]


def test_arg_star_lists_every_parameter(inst: Instance) -> None:
    define(inst, f"f {MOD}:Handler.handle $arg*")
    h = Handler()
    h.handle(Request({}, User(1, "a")), [1], 7, 8)
    (msg,) = msgs(inst)
    head = f"handle__entry: ({MOD}:Handler.handle) self="
    assert msg.startswith(head)
    assert re.fullmatch(re.escape(head) + r"<.*> req=<.*> items=\[1\] extra=\(7, 8\) flag=False",
                        msg), msg


def test_default_names_and_normalized_definitions(inst: Instance) -> None:
    inst.write("dynamic_events", f"f {MOD}:add a $arg2 total=len(a):x")
    inst.write("dynamic_events", f"f:grp/ {MOD}:add%return $retval $stack", append=True)
    inst.write("dynamic_events", f"f:only {MOD}:<lambda>", append=True)
    inst.write("dynamic_events", f"f {MOD}:<lambda>%return", append=True)
    assert inst.read("dynamic_events") == (
        f"f:fprobes/add__entry {MOD}:add a=a arg2=$arg2 total=len(a):x\n"
        f"f:grp/add__exit {MOD}:add%return retval=$retval stack=$stack\n"
        f"f:fprobes/only {MOD}:<lambda>\n"
        f"f:fprobes/_lambda___exit {MOD}:<lambda>%return\n")
    assert inst.listdir("events") == ["fprobes", "grp"]
    assert inst.listdir("events/fprobes") == ["_lambda___exit", "add__entry", "only"]
    assert inst.listdir("events/grp/add__exit") == ["enable", "filter"]
    assert inst.read("events/grp/add__exit/enable") == "0\n"
    assert inst.read("events/grp/add__exit/filter") == "none\n"


def test_unnamed_expressions_are_named_by_position(inst: Instance) -> None:
    define(inst, f"f {MOD}:Handler.handle len(items) items[1] req.user.id")
    Handler().handle(Request({}, User(9, "n")), [5, 6])
    assert msgs(inst) == [f"handle__entry: ({MOD}:Handler.handle) arg1=2 arg2=6 arg3=9"]


def test_type_suffixes(inst: Instance) -> None:
    define(inst, f"f {MOD}:add a:x b:x r=a:repr")
    inst.write("dynamic_events", f"f:t/s {MOD}:Handler.handle n=items:len s=items:str "
                                 "r=items:repr req:x q=req.headers['q']:str", append=True)
    inst.write("events/t/s/enable", "1")
    add(255, -26)
    add(0, 1)
    Handler().handle(Request({"q": 'say "hi"\n'}, User(1, "u")), [1, 2])
    assert msgs(inst) == [
        f"add__entry: ({MOD}:add) a=0xff b=-0x1a r=255",
        f"add__entry: ({MOD}:add) a=0x0 b=0x1 r=0",
        f"s: ({MOD}:Handler.handle) n=2 s=\"[1, 2]\" r=[1, 2] "
        "req=<error: TypeError> q=\"say \\\"hi\\\"\\n\"",
    ]


def test_str_type_is_bounded_by_repr_max_len(inst: Instance) -> None:
    inst.write("options/repr-max-len", "8")
    define(inst, f"f {MOD}:inner s=v:str v")
    inner("abcdefghijkl")  # type: ignore[arg-type]
    assert msgs(inst) == [f"inner__entry: ({MOD}:inner) s=\"abcdefgh\"... v='abcd..."]


def test_failing_fetches_render_errors_and_never_break_the_program(inst: Instance) -> None:
    define(inst, f"f {MOD}:Handler.handle b=req.user.broken m=req.missing "
                 "k=req.headers['nope'] i=items[10] n=len(req) ok=req.user.id $arg9")
    req = Request({}, User(5, "u"))
    assert Handler().handle(req, [1]) == 1
    assert msgs(inst) == [
        f"handle__entry: ({MOD}:Handler.handle) b=<error: RuntimeError> "
        "m=<error: AttributeError> k=<error: KeyError> i=<error: IndexError> "
        "n=<error: TypeError> ok=5 arg9=<error: IndexError>"]


def test_unknown_parameter_renders_name_error(inst: Instance) -> None:
    define(inst, f"f {MOD}:add a nosuch")
    assert add(1, 2) == 3
    assert msgs(inst) == [f"add__entry: ({MOD}:add) a=1 nosuch=<error: NameError>"]


def test_stack_is_the_caller_chain() -> None:
    with Instance() as inst:
        define(inst, f"f {MOD}:inner $stack v", f"f {MOD}:middle%return $stack $retval")
        outer(3)
        this = f"{MOD}:test_stack_is_the_caller_chain"
        frame = sys._getframe()
        above = frame.f_back
        assert above is not None
        from fntrace.core.symbols import function_for_frame

        caller_of_test = function_for_frame(above).name
        assert msgs(inst) == [
            f"inner__entry: ({MOD}:inner) stack={MOD}:middle<-{MOD}:outer<-{this}"
            f"<-{caller_of_test} v=3",
            f"middle__exit: ({MOD}:middle) stack={MOD}:outer<-{this}<-{caller_of_test}"
            f"<-{function_for_frame(above.f_back).name if above.f_back else ''} retval=3",
        ]


# -- %return ---------------------------------------------------------------------------


def test_return_captures_entry_arguments_and_retval(inst: Instance) -> None:
    define(inst, f"f {MOD}:rebinds%return x $retval", f"f {MOD}:rebinds x")
    assert rebinds(4) == 40
    assert msgs(inst) == [f"rebinds__entry: ({MOD}:rebinds) x=4",
                          f"rebinds__exit: ({MOD}:rebinds) x=4 retval=40"]


def test_return_of_an_exception(inst: Instance) -> None:
    define(inst, f"f {MOD}:fails%return n $retval")
    with pytest.raises(KeyError) as info:
        fails(7)
    assert info.value.args == (7,)
    what = "unwind" if sys.version_info < (3, 12) else "KeyError"
    assert msgs(inst) == [f"fails__exit: ({MOD}:fails) n=7 retval=<error: {what}>"]


def test_return_of_a_generator_fires_once_at_its_end(inst: Instance) -> None:
    define(inst, f"f {MOD}:gen%return n $retval", f"f {MOD}:gen n")
    g = gen(2)
    assert next(g) == 2
    assert inst.read("events/fprobes/gen__exit/enable") == "1\n"
    assert next(g) == 3
    with pytest.raises(StopIteration) as stop:
        next(g)
    assert stop.value.value == 200
    assert msgs(inst) == [f"gen__entry: ({MOD}:gen) n=2",
                          f"gen__exit: ({MOD}:gen) n=2 retval=200"]
    ev = inst.probes.events[("fprobes", "gen__exit")]
    assert ev.pending == {}


def test_return_without_entry_fields_and_recursion(inst: Instance) -> None:
    def fact(n: int) -> int:
        return 1 if n <= 1 else n * fact(n - 1)

    define(inst, f"f:fact {MOD}:*fact%return n $retval", f"f:e/r {MOD}:*fact%return $retval")
    assert fact(4) == 24
    assert msgs(inst) == [
        line for n, r in ((1, 1), (2, 2), (3, 6), (4, 24))
        for line in (f"fact: ({MOD}:{fact.__qualname__}) n={n} retval={r}",
                     f"r: ({MOD}:{fact.__qualname__}) retval={r}")]


def test_exit_of_a_call_entered_before_enable_is_not_reported(inst: Instance) -> None:
    inst.write("dynamic_events", f"f {MOD}:calls_back%return x $retval\n"
                                 f"f:g/r {MOD}:calls_back%return $retval")

    def enable() -> None:
        inst.write("events/fprobes/calls_back__exit/enable", "1")
        inst.write("events/g/r/enable", "1")

    assert calls_back(1, enable) == 1  # enabled inside the call: its exit is not reported
    assert calls_back(2, lambda: None) == 2
    assert msgs(inst) == [f"calls_back__exit: ({MOD}:calls_back) x=2 retval=2",
                          f"r: ({MOD}:calls_back) retval=2"]


# -- filters --------------------------------------------------------------------------

FILTER_CASES = [
    ("a > 10", [(11, "bob"), (12, "bob"), (50, "x")]),
    ("a >= 11 && a <= 12", [(11, "bob"), (12, "bob")]),
    ("a == 3 || b == \"bob\"", [(3, "al"), (11, "bob"), (12, "bob")]),
    ("!(a < 12) && b != 'bob'", [(50, "x")]),
    ("a == 0x3", [(3, "al")]),
    ("a < 3.5 && !(b == \"zed\")", [(1, "al"), (3, "al"), (-4, "neg")]),
    ("b ~ \"b*\"", [(11, "bob"), (12, "bob")]),
    ("(a == 1 || a == 50) && (b ~ '?' || b == 'al')", [(1, "al"), (50, "x")]),
    ("a == -4", [(-4, "neg")]),
    ("b == 3", []),            # a string field never equals a number
    ("a == \"3\"", []),        # nor an int a string
]
CALLS = [(1, "al"), (3, "al"), (11, "bob"), (12, "bob"), (50, "x"), (-4, "neg")]


@pytest.mark.parametrize(("cond", "expected"), FILTER_CASES)
def test_event_filter(inst: Instance, cond: str, expected: list[tuple[int, str]]) -> None:
    define(inst, f"f {MOD}:pair a b")
    inst.write("events/fprobes/pair__entry/filter", cond)
    assert inst.read("events/fprobes/pair__entry/filter") == f"{cond}\n"
    for a, b in CALLS:
        pair(a, b)
    assert msgs(inst) == [f"pair__entry: ({MOD}:pair) a={a} b={b!r}" for a, b in expected]


def test_filter_on_typed_and_failed_fields(inst: Instance) -> None:
    define(inst, f"f {MOD}:Handler.handle n=items:len u=req.user.name:str b=req.user.broken")
    inst.write("events/fprobes/handle__entry/filter",
               "n > 1 && u == 'bob' || b == 1 || !(b == 1) && n == 0")
    for items, name in (([1, 2], "bob"), ([1, 2], "al"), ([1], "bob"), ([], "z")):
        Handler().handle(Request({}, User(1, name)), items)
    assert msgs(inst) == [
        f"handle__entry: ({MOD}:Handler.handle) n=2 u=\"bob\" b=<error: RuntimeError>",
        f"handle__entry: ({MOD}:Handler.handle) n=0 u=\"z\" b=<error: RuntimeError>"]


def test_filter_of_return_event_sees_entry_fields_and_retval(inst: Instance) -> None:
    define(inst, f"f {MOD}:rebinds%return x $retval")
    inst.write("events/fprobes/rebinds__exit/filter", "x == 2 || retval == 50")
    for v in range(1, 6):
        rebinds(v)
    assert msgs(inst) == [f"rebinds__exit: ({MOD}:rebinds) x=2 retval=20",
                          f"rebinds__exit: ({MOD}:rebinds) x=5 retval=50"]


def test_filter_clear_and_malformed_filters(inst: Instance) -> None:
    define(inst, f"f {MOD}:add a b")
    path = "events/fprobes/add__entry/filter"
    inst.write(path, "a == 1")
    bad = [("a ==", 4), ("a = 1", 2), ("(a == 1", 7), ("a == 1 &&", 9), ("c == 1", 0),
           ("a == 1 b", 7), ("b < 'x'", 2), ("a ~ 3", 2), ("a == 1 | a == 2", 7),
           ("", 0), ("a == @", 5), ("a == 1)", 6), ("!", 1)]
    for text, col in bad:
        with pytest.raises(ValueError) as info:
            inst.write(path, text)
        assert isinstance(info.value, SpecError)
        assert info.value.column == col, (text, str(info.value))
        assert inst.read(path) == "a == 1\n"
    add(1, 0)
    add(2, 0)
    inst.write(path, "0")
    assert inst.read(path) == "none\n"
    add(3, 0)
    assert msgs(inst) == [f"add__entry: ({MOD}:add) a=1 b=0", f"add__entry: ({MOD}:add) a=3 b=0"]


def test_filter_with_arg_star_accepts_parameter_names(inst: Instance) -> None:
    define(inst, f"f {MOD}:add $arg*")
    inst.write("events/fprobes/add__entry/filter", "b == 2")
    add(1, 1)
    add(1, 2)
    assert msgs(inst) == [f"add__entry: ({MOD}:add) a=1 b=2"]


# -- malformed specs ---------------------------------------------------------------

BAD_SPECS = [
    ("p:foo bar", 0),
    ("f", 1),
    ("f:", 2),
    ("f:1grp/ev m:f", 2),
    ("f:grp/e-v m:f", 6),
    ("f:grp/ev", 8),
    ("f m:f%ret", 5),
    ("f m:f:g", 5),
    ("f !m:f", 2),
    ("f m:f[ x", 2),
    ("f m:*", 2),
    ("f m:f $retval", 6),
    ("f m:f $foo", 6),
    ("f m:f $arg0", 6),
    ("f m:f a.", 8),
    ("f m:f a[b]", 8),
    ("f m:f a['x'", 11),
    ("f m:f a['x", 8),
    ("f m:f a:hex", 8),
    ("f m:f a b a", 10),
    ("f m:f x=a y=b x=c", 14),
    ("f m:f 1a", 6),
    ("f m:f x=", 8),
    ("f m:f n=$arg*", 6),
    ("f m:f len(a", 11),
    ("f m:f len(a).b", 12),
    ("f m:f len($arg*)", 6 + 4 + 5),
    ("f m:f a+b", 7),
    ("f m:f a()", 7),
    ("f m:f $stack.x", 12),
    ("f m:f%return a['\\q']", 16),
    ("-:", 2),
    ("-:grp/", 6),
    ("-:grp/ev extra", 9),
    ("  f m:f a..b", 10),
]


@pytest.mark.parametrize(("spec", "column"), BAD_SPECS)
def test_malformed_spec_column_and_nothing_changes(spec: str, column: int) -> None:
    with Instance() as inst:
        define(inst, f"f {MOD}:add a")
        before_ops = engine.registered_ops()
        before = inst.read("dynamic_events")
        with pytest.raises(SpecError) as info:
            inst.write("dynamic_events", spec, append=True)
        assert isinstance(info.value, ValueError)
        assert info.value.column == column, str(info.value)
        assert f"(column {column})" in str(info.value)
        with pytest.raises(SpecError):
            inst.write("dynamic_events", f"f {MOD}:inner v\n{spec}\n", append=True)
        assert engine.registered_ops() == before_ops
        assert inst.read("dynamic_events") == before
        assert inst.listdir("events/fprobes") == ["add__entry"]


def test_whole_batch_is_refused_on_a_conflict(inst: Instance) -> None:
    inst.write("dynamic_events", f"f {MOD}:add a")
    with pytest.raises(SpecError) as info:
        inst.write("dynamic_events", f"f {MOD}:inner\nf:fprobes/add__entry {MOD}:inner",
                   append=True)
    assert info.value.column == 10
    assert "line 2" in str(info.value)
    with pytest.raises(SpecError) as info:
        inst.write("dynamic_events", f"f {MOD}:inner\n-:fprobes/nothing", append=True)
    assert info.value.column == 10
    assert inst.read("dynamic_events") == f"f:fprobes/add__entry {MOD}:add a=a\n"


# -- enable, removal, several events -------------------------------------------------


def test_created_disabled_and_enable_registers_one_ops(inst: Instance) -> None:
    base = engine.registered_ops()
    inst.write("dynamic_events", f"f {MOD}:add a\nf {MOD}:add%return $retval")
    assert engine.registered_ops() == base
    add(1, 1)
    assert msgs(inst) == []
    inst.write("events/fprobes/add__entry/enable", "1")
    assert len(engine.registered_ops()) == len(base) + 1
    inst.write("events/fprobes/add__entry/enable", "1")  # again: no change
    assert len(engine.registered_ops()) == len(base) + 1
    add(2, 2)
    inst.write("events/fprobes/add__exit/enable", "1")
    add(3, 3)
    inst.write("events/fprobes/add__entry/enable", "0")
    add(4, 4)
    inst.write("events/fprobes/add__exit/enable", "0")
    add(5, 5)
    assert engine.registered_ops() == base
    assert msgs(inst) == [f"add__entry: ({MOD}:add) a=2", f"add__entry: ({MOD}:add) a=3",
                          f"add__exit: ({MOD}:add) retval=6", f"add__exit: ({MOD}:add) retval=8"]
    with pytest.raises(ValueError):
        inst.write("events/fprobes/add__entry/enable", "2")
    with pytest.raises(FileNotFoundError):
        inst.write("events/fprobes/nope/enable", "1")
    with pytest.raises(FileNotFoundError):
        inst.read("events/fprobes/nope/enable")


def test_removal_and_truncating_write(inst: Instance) -> None:
    inst.write("dynamic_events", f"f {MOD}:add a\nf:g/x {MOD}:inner v\nf {MOD}:outer")
    inst.write("events/g/x/enable", "1")
    with pytest.raises(BusyError):
        inst.write("dynamic_events", "-:g/x", append=True)
    with pytest.raises(BusyError):
        inst.write("dynamic_events", f"f {MOD}:middle")  # truncation with one enabled
    assert len(inst.read("dynamic_events").splitlines()) == 3
    inst.write("events/g/x/enable", "0")
    inst.write("dynamic_events", "-:g/x\n-:outer__entry", append=True)
    assert inst.read("dynamic_events") == f"f:fprobes/add__entry {MOD}:add a=a\n"
    assert inst.listdir("events") == ["fprobes"]
    with pytest.raises(FileNotFoundError):
        inst.read("events/g/x/enable")
    inst.write("dynamic_events", f"f {MOD}:middle v")
    assert inst.read("dynamic_events") == f"f:fprobes/middle__entry {MOD}:middle v=v\n"
    inst.write("dynamic_events", "")
    assert inst.read("dynamic_events") == ""
    with pytest.raises(FileNotFoundError):
        inst.listdir("events")


def test_several_events_on_one_function(inst: Instance) -> None:
    define(inst, f"f {MOD}:add a", f"f:g/both {MOD}:add a b", f"f {MOD}:add%return $retval",
           f"f:g/ret {MOD}:add%return b $retval:x")
    inst.write("events/g/both/filter", "b > 1")
    add(1, 1)
    add(1, 2)
    assert msgs(inst) == [
        f"add__entry: ({MOD}:add) a=1", f"add__exit: ({MOD}:add) retval=2",
        f"ret: ({MOD}:add) b=1 retval=0x2",
        f"add__entry: ({MOD}:add) a=1", f"both: ({MOD}:add) a=1 b=2",
        f"add__exit: ({MOD}:add) retval=3", f"ret: ({MOD}:add) b=2 retval=0x3"]


def test_glob_function_with_explicit_event(inst: Instance) -> None:
    define(inst, f"f:g/helpers {MOD}:helper_* v")
    helper_one(1)
    helper_two(2)
    add(0, 0)
    assert msgs(inst) == [f"helpers: ({MOD}:helper_one) v=1", f"helpers: ({MOD}:helper_two) v=2"]


# -- instance state: tracer, tracing_on, pids, threads, close ---------------------------


def test_works_with_any_tracer_and_respects_tracing_on(inst: Instance) -> None:
    define(inst, f"f {MOD}:add a")
    inst.write("set_ftrace_filter", f"{MOD}:inner")
    inst.write("current_tracer", "function")
    add(1, 0)
    inner(5)
    inst.write("tracing_on", "0")
    add(2, 0)
    inst.write("tracing_on", "1")
    inst.write("current_tracer", "nop")
    add(3, 0)
    got = [m for m in msgs(inst)]
    assert got == [f"add__entry: ({MOD}:add) a=1", f"{MOD}:inner <-{MOD}:"
                   "test_works_with_any_tracer_and_respects_tracing_on",
                   f"add__entry: ({MOD}:add) a=3"]


@needs_threads
def test_pid_filter_and_threads(inst: Instance) -> None:
    define(inst, f"f {MOD}:add a", f"f {MOD}:add%return a $retval")
    tids: list[int] = []

    def worker(v: int) -> None:
        tids.append(native_id())
        add(v, 1)

    t = threading.Thread(target=worker, args=(10,), name="probe-worker")
    t.start()
    t.join()
    inst.write("set_ftrace_pid", str(tids[0]))
    add(20, 1)  # main thread filtered out
    t = threading.Thread(target=worker, args=(30,), name="probe-worker")
    inst.write("set_ftrace_notrace_pid", str(native_id()))
    t.start()
    t.join()
    lines = [ln for ln in inst.read("trace").splitlines() if not ln.startswith("#")]
    assert [LINE.match(ln)["task"].strip() for ln in lines] == ["probe-worker"] * 2  # type: ignore[index]
    assert msgs(inst) == [f"add__entry: ({MOD}:add) a=10", f"add__exit: ({MOD}:add) a=10 retval=11"]


def test_close_unregisters_every_event() -> None:
    base = engine.registered_ops()
    inst = Instance()
    try:
        define(inst, f"f {MOD}:add a", f"f {MOD}:add%return $retval")
        assert len(engine.registered_ops()) == len(base) + 2
    finally:
        inst.close()
    assert engine.registered_ops() == base
    add(1, 2)
    assert msgs(inst) == []


def test_parse_spec_objects() -> None:
    spec = parse_spec(f"f:g/e {MOD}:Handler.handle%return n=len(req.headers['a'][-2].x):x")
    assert isinstance(spec, ProbeSpec)
    assert (spec.group, spec.event, spec.is_return) == ("g", "e", True)
    (arg,) = spec.args
    assert (arg.name, arg.base, arg.param, arg.type) == ("n", "param", "req", "x")
    assert arg.steps == (Step("attr", "headers"), Step("item", "a"), Step("item", -2),
                         Step("attr", "x"), Step("len"))
    assert arg.text() == "n=len(req.headers['a'][-2].x):x"
    rm = parse_spec("-:ev")
    assert isinstance(rm, RemoveSpec)
    assert (rm.group, rm.event) == ("fprobes", "ev")


async def coro(n: int) -> int:
    import asyncio

    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return n + 1


def test_coroutine_entry_and_return_fire_once_across_awaits(inst: Instance) -> None:
    import asyncio

    define(inst, f"f {MOD}:coro n", f"f {MOD}:coro%return n $retval")
    assert asyncio.run(coro(5)) == 6
    assert msgs(inst) == [f"coro__entry: ({MOD}:coro) n=5",
                          f"coro__exit: ({MOD}:coro) n=5 retval=6"]
    assert inst.probes.events[("fprobes", "coro__exit")].pending == {}
