"""The trace instance: its tracefs files, the function tracer's text, triggers.

Every check reads the text files the way a user would (``inst.read``) and
parses the kernel line format ``TASK-PID [CPU] FLAGS TIMESTAMP: message``;
call counts are checked against a plain ``sys.setprofile`` counter.
"""

from __future__ import annotations

import inspect
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import pytest
from helpers import needs_threads

from fntrace.core import engine
from fntrace.core.oscaps import native_id
from fntrace.tracing import instance as instance_mod
from fntrace.tracing.instance import OPTIONS, Instance

# Both hot paths (C recorders and pure Python), see conftest.py.
pytestmark = pytest.mark.usefixtures("hot_path")

MOD = __name__


def full(*qualnames: str) -> str:
    return " ".join(f"{MOD}:{q}" for q in qualnames)


# -- parsing the trace text --------------------------------------------------------

LINE = re.compile(r"^ *(?P<task>\S.*?)-(?P<pid>\d+) +\[(?P<cpu>\d{3})\] (?P<flags>\S{5}) +"
                  r"(?P<ts>\d+\.\d{6}): (?P<msg>.*)$")
FUNC = re.compile(r"^(?P<func>[^ (]+)(?:\((?P<args>.*)\))?(?: <-(?P<parent>\S+))?$")


@dataclass
class Rec:
    task: str
    pid: int
    cpu: int
    flags: str
    ts: float
    msg: str
    stack: list[str] = field(default_factory=list)

    @property
    def func(self) -> str:
        m = FUNC.match(self.msg)
        assert m is not None, self.msg
        return m["func"]

    @property
    def args(self) -> str | None:
        m = FUNC.match(self.msg)
        assert m is not None, self.msg
        return m["args"]

    @property
    def parent(self) -> str | None:
        m = FUNC.match(self.msg)
        assert m is not None, self.msg
        return m["parent"]


def parse(text: str) -> list[Rec]:
    """Event records of a trace file; ``=> ...`` lines attach to the record before."""
    out: list[Rec] = []
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        if line.startswith(" => "):
            out[-1].stack.append(line[4:])
            continue
        m = LINE.match(line)
        assert m is not None, f"not a trace line: {line!r}"
        out.append(Rec(m["task"], int(m["pid"]), int(m["cpu"]), m["flags"], float(m["ts"]),
                       m["msg"]))
    return out


def funcs(inst: Instance) -> list[str]:
    """The function names of the function lines, in order."""
    return [r.func for r in parse(inst.read("trace")) if not r.msg.startswith(("<", "tracing"))]


def short(name: str | None) -> str | None:
    """``MOD:qual`` -> ``qual`` (names from elsewhere unchanged)."""
    if name is not None and name.startswith(f"{MOD}:"):
        return name[len(MOD) + 1:]
    return name


def lineof(fn: Callable[..., Any], text: str) -> int:
    """The line number of the first source line of ``fn`` containing ``text``."""
    lines, start = inspect.getsourcelines(fn)
    for i, line in enumerate(lines):
        if text in line:
            return start + i
    raise AssertionError(f"{text!r} not in {fn.__name__}")


@pytest.fixture
def inst() -> Iterator[Instance]:
    with Instance() as i:
        yield i


def function_tracer(inst: Instance, *qualnames: str, **options: int) -> None:
    for key, value in options.items():
        inst.write(f"options/{key.replace('_', '-') if key != 'func_stack_trace' else key}",
                   str(value))
    inst.write("set_ftrace_filter", full(*qualnames))
    inst.write("current_tracer", "function")


# -- traced functions --------------------------------------------------------------


def leaf(x: int) -> int:
    return x + 1


def mid(x: int) -> int:
    return leaf(x) * 2


def top() -> int:
    return mid(1) + mid(2)


def gen() -> Iterator[int]:
    try:
        yield 1
        yield 2
    except ValueError:
        yield 3


class _Suspend:
    def __await__(self) -> Iterator[None]:
        yield


async def coro() -> int:
    await _Suspend()
    return 5


def fa(a: Any, b: Any = "x", *rest: Any, **kw: Any) -> Any:
    return a


class Boom:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Huge:
    def __repr__(self) -> str:
        return "H" * 10_000


class FakeReprClock:
    """``time`` for fntrace.tracing.reprs: only a Slow repr takes time (20 ms), every other
    repr none, however loaded the machine (a real clock made any repr "slow" when
    the process was paused during it)."""

    now = 0

    @staticmethod
    def perf_counter_ns() -> int:
        return FakeReprClock.now


class Slow:
    calls = 0

    def __repr__(self) -> str:
        Slow.calls += 1
        FakeReprClock.now += 20_000_000
        return "Slow!"


def work(n: int) -> int:
    return n


def ma(x: int) -> int:
    return x


def mb(x: int) -> int:
    return x


def mc(x: int) -> int:
    return ma(x)


def t_off() -> None:
    pass


def t_on() -> None:
    pass


def t_snap() -> None:
    pass


def t_stack() -> None:
    pass


def t_dump() -> None:
    pass


def call_t_stack() -> None:
    t_stack()


def t_gen() -> Iterator[int]:
    yield 1
    yield 2
    yield 3


# -- the file interface --------------------------------------------------------------


def walk(inst: Instance, path: str = "") -> list[str]:
    """Every file path under ``path``, by listdir (a name that is no directory is a file)."""
    out = []
    for name in inst.listdir(path):
        sub = f"{path}/{name}" if path else name
        try:
            inst.listdir(sub)
        except FileNotFoundError:
            out.append(sub)
        else:
            out.extend(walk(inst, sub))
    return out


KERNEL_FILES = {
    "current_tracer", "available_tracers", "tracing_on", "trace", "trace_pipe", "trace_marker",
    "set_ftrace_filter", "set_ftrace_notrace", "set_graph_function", "set_graph_notrace",
    "set_ftrace_pid", "set_ftrace_notrace_pid", "max_graph_depth", "tracing_thresh",
    "buffer_size_kb", "buffer_total_size_kb", "trace_options", "trace_clock",
    "available_filter_functions", "enabled_functions", "function_profile_enabled",
    "trace_stat/function0", "stack_tracer_enabled", "stack_max_size", "stack_trace",
    "snapshot", "options/overwrite", "options/func-args",
}
WRITE_ONLY = {"trace_marker"}
READ_ONLY = ["available_tracers", "buffer_total_size_kb", "available_filter_functions",
             "enabled_functions", "trace_pipe", "stack_trace"]


def test_every_file_reads(inst: Instance) -> None:
    inst.write("trace_marker", "x")  # so that per_thread/<tid>/stats exists
    files = walk(inst)
    assert KERNEL_FILES <= set(files)
    tid = native_id()
    assert f"per_thread/{tid}/stats" in files
    assert {f"options/{o}" for o in OPTIONS} <= set(files)
    # Files that mean nothing for Python are absent (instance.py docstring).
    assert not {"tracing_cpumask", "set_event", "events"} & set(inst.listdir())
    for path in files:
        if path in WRITE_ONLY:
            with pytest.raises(PermissionError):
                inst.read(path)
            continue
        text = inst.read(path)
        assert isinstance(text, str)
        assert text == "" or text.endswith("\n"), path


def test_default_contents(inst: Instance) -> None:
    assert inst.read("current_tracer") == "nop\n"
    assert inst.read("tracing_on") == "1\n"
    assert inst.read("buffer_size_kb") == "1408\n"
    assert inst.read("trace_clock") == "[local] global mono mono_raw boot realtime counter\n"
    assert inst.read("set_ftrace_filter") == ""
    assert inst.read("set_ftrace_pid") == ""
    assert inst.read("max_graph_depth") == "0\n"
    assert inst.read("options/overwrite") == "1\n"
    assert inst.read("options/repr-max-len") == "64\n"
    assert inst.read("trace_options").splitlines() == [
        name if value else f"no{name}" for name, value in OPTIONS.items()
        if name not in ("repr-max-len", "repr-max-us")]
    assert inst.read("available_tracers").split()[:2] == ["nop", "function"]
    assert inst.read("trace_pipe") == ""


def test_listdir(inst: Instance) -> None:
    assert inst.listdir("options") == sorted(OPTIONS)
    assert "options" in inst.listdir()
    assert "trace_stat" in inst.listdir("/")
    assert inst.listdir("trace_stat") == ["function0"]
    assert "per_thread" not in inst.listdir()  # no thread has written yet
    inst.write("trace_marker", "x")
    tid = native_id()
    assert inst.listdir("per_thread") == [str(tid)]
    assert inst.listdir(f"per_thread/{tid}") == ["stats"]
    with pytest.raises(FileNotFoundError):
        inst.listdir("nope")
    with pytest.raises(FileNotFoundError):
        inst.listdir("per_thread/1")


def test_unknown_paths(inst: Instance) -> None:
    for path in ("nope", "options/nope", "per_thread/1/stats", "events/enable",
                 "tracing_cpumask"):
        with pytest.raises(FileNotFoundError):
            inst.read(path)
        with pytest.raises(FileNotFoundError):
            inst.write(path, "1")


def test_read_only_files_refuse_writes(inst: Instance) -> None:
    for path in READ_ONLY:
        before = inst.read(path) if path != "trace_pipe" else None
        with pytest.raises(PermissionError):
            inst.write(path, "1")
        if before is not None:
            assert inst.read(path) == before


def snapshot_of_files(inst: Instance) -> dict[str, str]:
    paths = ["current_tracer", "tracing_on", "buffer_size_kb", "trace_options", "trace_clock",
             "set_ftrace_filter", "set_ftrace_notrace", "set_ftrace_pid", "max_graph_depth",
             "trace", *[f"options/{o}" for o in OPTIONS]]
    return {p: inst.read(p) for p in paths}


@pytest.mark.parametrize(("path", "text"), [
    ("current_tracer", "bogus"),
    ("tracing_on", "2"),
    ("tracing_on", "on"),
    ("buffer_size_kb", "-1"),
    ("buffer_size_kb", "abc"),
    ("buffer_size_kb", "0"),
    ("options/overwrite", "2"),
    ("options/func-args", "yes"),
    ("options/repr-max-len", "0"),
    ("options/repr-max-us", "-5"),
    ("trace_options", "bogus"),
    ("trace_options", "norepr-max-len"),
    ("trace_clock", "bogus"),
    ("set_ftrace_filter", "ma a[b"),
    ("set_ftrace_filter", "ma:traceoff:0"),
    ("set_ftrace_filter", "ma:bogus:x:y"),
    ("set_ftrace_notrace", "!!x"),
    ("set_ftrace_pid", "12 abc"),
    ("max_graph_depth", "-1"),
    ("snapshot", "x"),
])
def test_malformed_write_changes_nothing(inst: Instance, path: str, text: str) -> None:
    function_tracer(inst, "ma", "mb")
    inst.write("set_ftrace_filter", "mb:traceon", append=True)
    inst.write("trace_marker", "before")
    ma(1)
    before = snapshot_of_files(inst)
    with pytest.raises(ValueError):
        inst.write(path, text)
    assert snapshot_of_files(inst) == before
    # The tracer's ops still has the old filter: ma traced, mc not.
    mc(1)
    assert [(short(r.func), short(r.parent)) for r in parse(inst.read("trace"))
            if r.msg != "tracing_mark_write: before"] == [
        ("ma", "test_malformed_write_changes_nothing"), ("ma", "mc")]


def test_malformed_filter_append_keeps_the_ops_filter(inst: Instance) -> None:
    function_tracer(inst, "ma")
    with pytest.raises(ValueError):
        inst.write("set_ftrace_filter", f"{full('mb')} [oops", append=True)
    assert inst.read("set_ftrace_filter") == f"{full('ma')}\n"
    ma(1)
    mb(1)
    assert funcs(inst) == [full("ma")]


def test_filter_file_shows_functions_then_triggers(inst: Instance) -> None:
    inst.write("set_ftrace_filter", f"{full('ma')} t_off:traceoff:2 {full('mb')} t_on:traceon")
    assert inst.read("set_ftrace_filter") == (
        f"{full('ma')}\n{full('mb')}\nt_off:traceoff:count=2\nt_on:traceon:unlimited\n")
    inst.write("set_ftrace_filter", full("mc"))  # O_TRUNC resets functions, not triggers
    assert inst.read("set_ftrace_filter") == (
        f"{full('mc')}\nt_off:traceoff:count=2\nt_on:traceon:unlimited\n")


# -- the function tracer's text ----------------------------------------------------------


def test_function_lines_exact(inst: Instance) -> None:
    function_tracer(inst, "leaf", "mid", "top")
    top()
    recs = parse(inst.read("trace"))
    me = f"{MOD}:test_function_lines_exact"
    assert [(short(r.func), short(r.parent)) for r in recs] == [
        ("top", short(me)), ("mid", "top"), ("leaf", "mid"), ("mid", "top"), ("leaf", "mid")]
    tid = native_id()
    assert {(r.task, r.pid, r.cpu, r.flags) for r in recs} == {("MainThread", tid, 0, "M....")}
    assert [r.ts for r in recs] == sorted(r.ts for r in recs)
    assert all(r.args is None for r in recs)
    head = inst.read("trace").splitlines()
    assert head[0] == "# tracer: function"
    assert head[2] == "# entries-in-buffer/entries-written: 5/5   #P:1"


@needs_threads
def test_flags_column(inst: Instance) -> None:
    function_tracer(inst, "gen", "coro", "mid", "leaf")
    g = gen()
    next(g)
    next(g)
    g.throw(ValueError)
    g.close()
    c = coro()
    c.send(None)
    with pytest.raises(StopIteration):
        c.send(None)
    t = threading.Thread(target=mid, args=(1,), daemon=True, name="flag-daemon")
    t.start()
    t.join()
    t = threading.Thread(target=leaf, args=(1,), daemon=False, name="flag-plain")
    t.start()
    t.join()
    recs = parse(inst.read("trace"))
    assert [(r.task, short(r.func), r.flags) for r in recs] == [
        ("MainThread", "gen", "M.g.."),
        ("MainThread", "gen", "M.gr."),
        ("MainThread", "gen", "M.gt."),   # throw(ValueError)
        ("MainThread", "gen", "M.gt."),   # close(): GeneratorExit thrown in
        ("MainThread", "coro", "M.c.."),
        ("MainThread", "coro", "M.cr."),
        ("flag-daemon", "mid", ".d..."),
        ("flag-daemon", "leaf", ".d..."),
        ("flag-plain", "leaf", "....."),
    ]
    assert [r.cpu for r in recs] == [0] * 6 + [1, 1, 2]


def test_str_and_bytes_are_never_timed(monkeypatch: pytest.MonkeyPatch) -> None:
    """They are cut to the limit before repr (bounded work): a pause of the process
    during one must not mark str or bytes slow for the rest of the trace."""
    import reprlib

    from fntrace.tracing import reprs as reprs_module
    from fntrace.tracing.reprs import SafeRepr

    FakeReprClock.now = 0
    monkeypatch.setattr(reprs_module, "time", FakeReprClock)
    real = reprlib.Repr.repr

    def ticking(self: reprlib.Repr, x: Any) -> str:  # a repr SafeRepr times takes 1 us
        FakeReprClock.now += 1000
        return real(self, x)
    monkeypatch.setattr(reprlib.Repr, "repr", ticking)
    reprs = SafeRepr(max_len=10, max_us=0, call=True)  # any timed repr is "slow"
    assert reprs("a" * 50) == "'aaaaaa..." and reprs(b"b" * 50) == "b'bbbbb..."
    assert reprs([1]) == "[1]"  # timed, and now slow
    assert reprs("short") == "'short'" and reprs([2]) == "<list object>"
    assert reprs.slow_types == {list}


def test_func_args_reprs(inst: Instance, monkeypatch: pytest.MonkeyPatch) -> None:
    from fntrace.tracing import reprs

    monkeypatch.setattr(reprs, "time", FakeReprClock)
    function_tracer(inst, "fa", func_args=1, repr_max_len=40, repr_max_us=5000, repr_call=1)
    Slow.calls = 0
    fa(1, "y", 3, k=4)
    fa(Boom())
    fa(Huge())
    fa(Slow())
    fa(Slow(), Slow())
    fa("s" * 100)
    assert Slow.calls == 1  # slow once: that type is no longer repr'd
    recs = parse(inst.read("trace"))
    # The cutoff is said once, in a marker line just before the call that was slow.
    notes = [i for i, r in enumerate(recs) if r.msg.startswith("tracing_mark_write: ")]
    assert notes == [3]
    assert recs[3].msg.startswith("tracing_mark_write: fntrace: repr of Slow took ")
    args = [r.args for i, r in enumerate(recs) if i not in notes]
    assert args == [
        "a=1, b='y', rest=(3,), kw={'k': 4}",
        "a=<repr of Boom failed: RuntimeError>, b='x', rest=(), kw={}",
        f"a={'H' * 37}..., b='x', rest=(), kw={{}}",
        "a=Slow!, b='x', rest=(), kw={}",
        "a=<Slow object>, b=<Slow object>, rest=(), kw={}",
        f"a='{'s' * 36}..., b='x', rest=(), kw={{}}",
    ]


def test_print_parent_off(inst: Instance) -> None:
    function_tracer(inst, "mid", "leaf", print_parent=0)
    mid(1)
    recs = parse(inst.read("trace"))
    assert [r.msg for r in recs] == [full("mid"), full("leaf")]


def test_func_stack_trace(inst: Instance) -> None:
    function_tracer(inst, "mid", "leaf", func_stack_trace=1)
    mid(3)
    recs = parse(inst.read("trace"))
    assert [r.msg for r in recs] == [f"{full('mid')} <-{MOD}:test_func_stack_trace",
                                     "<stack trace>",
                                     f"{full('leaf')} <-{full('mid')}", "<stack trace>"]
    here = lineof(test_func_stack_trace, "    mid(3)")
    this = f"{MOD}:test_func_stack_trace ({__file__}:{here})"
    mid_entry = f"{full('mid')} ({__file__}:{mid.__code__.co_firstlineno})"
    mid_call = f"{full('mid')} ({__file__}:{lineof(mid, 'leaf(x)')})"
    leaf_entry = f"{full('leaf')} ({__file__}:{leaf.__code__.co_firstlineno})"
    assert recs[1].stack[:2] == [mid_entry, this]
    assert recs[3].stack[:3] == [leaf_entry, mid_call, this]
    # The rest is the caller chain, the same for both (up to the depth limit), and no
    # fntrace frame is in it.
    tail_mid, tail_leaf = recs[1].stack[1:], recs[3].stack[2:]
    assert tail_leaf == tail_mid[:len(tail_leaf)]
    assert len(tail_mid) - len(tail_leaf) in (0, 1)
    assert not any(line.split(":")[0].startswith("fntrace") for line in recs[3].stack)


# -- counts against an independent oracle ------------------------------------------------


def o_leaf(n: int) -> int:
    return n


def o_fail(n: int) -> None:
    raise ValueError(n)


def o_rec(n: int) -> int:
    return o_leaf(n) if n == 0 else o_rec(n - 1) + 1


def o_gen(n: int) -> Iterator[int]:
    for i in range(n):
        yield o_leaf(i)


def o_work() -> int:
    total = 0
    for i in range(40):
        total += o_rec(i % 5)
        try:
            o_fail(i)
        except ValueError:
            pass
        total += sum(o_gen(i % 4))
    return total


O_NAMES = ("o_leaf", "o_fail", "o_rec", "o_gen", "o_work")


def oracle_counts() -> Counter[str]:
    codes = {globals()[n].__code__: n for n in O_NAMES}
    counts: Counter[str] = Counter()

    def prof(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in codes:
            counts[codes[frame.f_code]] += 1

    sys.setprofile(prof)
    try:
        o_work()
    finally:
        sys.setprofile(None)
    return counts


def test_counts_against_setprofile_oracle(inst: Instance) -> None:
    expected = oracle_counts()
    assert expected["o_work"] == 1 and expected["o_gen"] > 40  # the oracle saw resumes
    function_tracer(inst, *O_NAMES)
    o_work()
    got = Counter(short(f) for f in funcs(inst))
    assert got == expected


@needs_threads
def test_threads_are_separated(inst: Instance) -> None:
    function_tracer(inst, "work")
    tids: dict[str, int] = {}

    def body(n: int) -> None:
        tids[threading.current_thread().name] = native_id()
        for i in range(n):
            work(i)

    threads = [threading.Thread(target=body, args=(n,), name=name)
               for name, n in (("sep-a", 7), ("sep-b", 11))]
    for t in threads:
        t.start()
        t.join()
    body(3)
    recs = parse(inst.read("trace"))
    by_pid = Counter(r.pid for r in recs)
    main = native_id()
    assert by_pid == {tids["sep-a"]: 7, tids["sep-b"]: 11, main: 3}
    cpu_of = {(r.pid, r.task, r.cpu) for r in recs}
    assert cpu_of == {(tids["sep-a"], "sep-a", 0), (tids["sep-b"], "sep-b", 1),
                      (main, "MainThread", 2)}


# -- markers, pids, tracing_on ---------------------------------------------------------------


def test_markers_in_order(inst: Instance) -> None:
    function_tracer(inst, "ma", "mb")
    ma(1)
    inst.write("trace_marker", "hello\n")
    mb(1)
    instance_mod.marker("world")
    ma(2)
    msgs = [short(r.msg.split(" <-")[0]) for r in parse(inst.read("trace"))]
    assert msgs == ["ma", "tracing_mark_write: hello", "mb", "tracing_mark_write: world", "ma"]


def test_marker_reaches_every_live_instance() -> None:
    with Instance() as a, Instance() as b:
        instance_mod.marker("both")
        for i in (a, b):
            assert [r.msg for r in parse(i.read("trace"))] == ["tracing_mark_write: both"]


class Worker(threading.Thread):
    """A thread that reports its native id, then runs ``work`` when told to."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.ready = threading.Event()
        self.go = threading.Event()
        self.tid = 0

    def run(self) -> None:
        self.tid = native_id()
        self.ready.set()
        self.go.wait(10)
        for i in range(5):
            work(i)


def run_workers(inst: Instance, setup: Callable[[Worker, Worker], None]) -> Counter[int]:
    a, b = Worker("pid-a"), Worker("pid-b")
    for w in (a, b):
        w.start()
        w.ready.wait(10)
    try:
        setup(a, b)
    finally:
        for w in (a, b):
            w.go.set()
            w.join()
    work(0)
    return Counter(r.pid for r in parse(inst.read("trace")))


@needs_threads
def test_set_ftrace_pid(inst: Instance) -> None:
    function_tracer(inst, "work")
    pids: dict[str, int] = {}

    def setup(a: Worker, b: Worker) -> None:
        pids.update(a=a.tid, b=b.tid)
        inst.write("set_ftrace_pid", str(a.tid))
        assert inst.read("set_ftrace_pid") == f"{a.tid}\n"

    assert run_workers(inst, setup) == {pids["a"]: 5}


@needs_threads
def test_set_ftrace_notrace_pid(inst: Instance) -> None:
    function_tracer(inst, "work")
    pids: dict[str, int] = {}

    def setup(a: Worker, b: Worker) -> None:
        pids.update(a=a.tid, b=b.tid)
        inst.write("set_ftrace_notrace_pid", str(b.tid))

    assert run_workers(inst, setup) == {pids["a"]: 5, native_id(): 1}


@needs_threads
def test_notrace_pid_wins(inst: Instance) -> None:
    function_tracer(inst, "work")
    pids: dict[str, int] = {}

    def setup(a: Worker, b: Worker) -> None:
        pids.update(a=a.tid, b=b.tid)
        inst.write("set_ftrace_pid", f"{a.tid} {b.tid}")
        inst.write("set_ftrace_notrace_pid", str(a.tid))
        assert inst.read("set_ftrace_pid") == "".join(f"{p}\n" for p in sorted(pids.values()))

    assert run_workers(inst, setup) == {pids["b"]: 5}


def test_pid_append_and_reset(inst: Instance) -> None:
    inst.write("set_ftrace_pid", "5")
    inst.write("set_ftrace_pid", "3", append=True)
    assert inst.read("set_ftrace_pid") == "3\n5\n"
    inst.write("set_ftrace_pid", "")
    assert inst.read("set_ftrace_pid") == ""


def test_tracing_on_off_keeps_the_ops(inst: Instance) -> None:
    function_tracer(inst, "ma")
    assert inst.tracer is not None
    ops = list(inst.tracer.ops)
    ma(1)
    inst.write("tracing_on", "0")
    assert inst.read("tracing_on") == "0\n"
    ma(2)
    assert all(op.registered for op in ops)
    assert all(op in engine.registered_ops() for op in ops)
    inst.write("tracing_on", "1")
    ma(3)
    assert [r.msg.split(" <-")[0] for r in parse(inst.read("trace"))] == [full("ma")] * 2


# -- several instances ---------------------------------------------------------------------


GRAPH_LINE = re.compile(r"^ *(?P<cpu>\d+)\) +(?P<dur>[^|]*)\|  (?P<func>.*)$")


def test_instances_see_their_own_functions() -> None:
    with Instance() as a, Instance() as b, Instance() as c, Instance() as d:
        function_tracer(a, "ma")
        function_tracer(b, "mb", "mc", func_args=1)
        c.write("set_ftrace_filter", full("mc"))
        c.write("current_tracer", "nop")  # a nop instance records nothing
        c.write("set_ftrace_filter", "mc:stacktrace:1", append=True)
        d.write("set_ftrace_filter", full("mb", "mc"))
        d.write("current_tracer", "function_graph")
        ma(1)
        mb(2)
        mc(3)
        ma(4)
        ra = parse(a.read("trace"))
        rb = parse(b.read("trace"))
        rc = parse(c.read("trace"))
        graph = [GRAPH_LINE.match(line) for line in d.read("trace").splitlines()
                 if not line.startswith("#")]
        assert [m["func"] if m else None for m in graph] == [f"{full('mb')}();",
                                                             f"{full('mc')}();"]
        assert [(short(r.func), r.args) for r in ra] == [("ma", None)] * 3
        assert [short(r.parent) for r in ra] == ["test_instances_see_their_own_functions",
                                                 "mc", "test_instances_see_their_own_functions"]
        assert [(short(r.func), r.args) for r in rb] == [("mb", "x=2"), ("mc", "x=3")]
        assert [r.msg for r in rc] == ["<stack trace>"]
        assert rc[0].stack[0].startswith(f"{full('mc')} (")


# -- triggers -------------------------------------------------------------------------------


def registered_trigger_ops(inst: Instance) -> list[Any]:
    return [op for op in engine.registered_ops()
            if inst.triggers is not None and op is inst.triggers.ops]


def test_traceoff_count_and_traceon(inst: Instance) -> None:
    function_tracer(inst, "ma")
    inst.write("set_ftrace_filter", "t_off:traceoff:2 t_on:traceon", append=True)
    ma(1)
    t_off()
    assert inst.read("tracing_on") == "0\n"
    assert "t_off:traceoff:count=1\n" in inst.read("set_ftrace_filter")
    ma(2)  # not recorded
    t_off()  # tracing already off: no action, count kept
    assert "t_off:traceoff:count=1\n" in inst.read("set_ftrace_filter")
    t_on()
    assert inst.read("tracing_on") == "1\n"
    ma(3)
    t_off()
    assert inst.read("tracing_on") == "0\n"
    t_on()
    ma(4)
    t_off()  # count used up: tracing stays on
    ma(5)
    assert inst.read("tracing_on") == "1\n"
    assert inst.read("set_ftrace_filter") == (
        f"{full('ma')}\nt_off:traceoff:count=0\nt_on:traceon:unlimited\n")
    assert [r.args for r in parse(inst.read("trace"))] == [None] * 4
    assert len(funcs(inst)) == 4  # ma(1), ma(3), ma(4), ma(5)


def test_traceon_count_acts_only_when_off(inst: Instance) -> None:
    inst.write("set_ftrace_filter", "t_on:traceon:1")
    t_on()  # tracing is on: nothing to do, count kept
    assert inst.read("set_ftrace_filter") == "t_on:traceon:count=1\n"
    inst.write("tracing_on", "0")
    t_on()
    assert inst.read("tracing_on") == "1\n"
    assert inst.read("set_ftrace_filter") == "t_on:traceon:count=0\n"
    inst.write("tracing_on", "0")
    t_on()
    assert inst.read("tracing_on") == "0\n"


def test_trigger_rewritten_restarts_its_count(inst: Instance) -> None:
    inst.write("set_ftrace_filter", "t_off:traceoff:3")
    t_off()
    assert inst.read("set_ftrace_filter") == "t_off:traceoff:count=2\n"
    inst.write("tracing_on", "1")
    inst.write("set_ftrace_filter", "t_on:traceon", append=True)  # t_off's count kept
    assert inst.read("set_ftrace_filter") == "t_off:traceoff:count=2\nt_on:traceon:unlimited\n"
    inst.write("set_ftrace_filter", "t_off:traceoff:3", append=True)
    assert inst.read("set_ftrace_filter") == "t_on:traceon:unlimited\nt_off:traceoff:count=3\n"


def test_traceoff_with_full_name_glob(inst: Instance) -> None:
    inst.write("set_ftrace_filter", f"{full('t_off')}:traceoff")
    assert inst.read("set_ftrace_filter") == f"{full('t_off')}:traceoff:unlimited\n"
    t_on()
    assert inst.tracing_on
    t_off()
    assert not inst.tracing_on


def test_snapshot_trigger(inst: Instance) -> None:
    inst.write("set_ftrace_filter", "t_snap:snapshot:1")
    inst.write("trace_marker", "a")
    inst.write("trace_marker", "b")
    t_snap()
    assert [r.msg for r in parse(inst.read("snapshot"))] == [
        "tracing_mark_write: a", "tracing_mark_write: b"]
    assert parse(inst.read("trace")) == []
    assert inst.read("set_ftrace_filter") == "t_snap:snapshot:count=0\n"
    inst.write("trace_marker", "c")
    t_snap()  # used up
    assert [r.msg for r in parse(inst.read("trace"))] == ["tracing_mark_write: c"]
    assert len(parse(inst.read("snapshot"))) == 2


def test_stacktrace_trigger_with_nop(inst: Instance) -> None:
    inst.write("set_ftrace_filter", "t_stack:stacktrace:2")
    call_t_stack()
    inst.write("tracing_on", "0")
    call_t_stack()  # off: no stack, count kept
    assert inst.read("set_ftrace_filter") == "t_stack:stacktrace:count=1\n"
    inst.write("tracing_on", "1")
    t_stack()
    t_stack()  # used up
    recs = parse(inst.read("trace"))
    assert [r.msg for r in recs] == ["<stack trace>", "<stack trace>"]
    first = lineof(call_t_stack, "    t_stack()")
    assert recs[0].stack[:2] == [
        f"{full('t_stack')} ({__file__}:{t_stack.__code__.co_firstlineno})",
        f"{full('call_t_stack')} ({__file__}:{first})"]
    assert recs[1].stack[1].startswith(f"{MOD}:test_stacktrace_trigger_with_nop (")
    assert inst.read("set_ftrace_filter") == "t_stack:stacktrace:count=0\n"


def test_triggers_fire_on_calls_not_resumes(inst: Instance) -> None:
    inst.write("set_ftrace_filter", "t_gen:stacktrace")
    assert list(t_gen()) == [1, 2, 3]
    assert [r.msg for r in parse(inst.read("trace"))] == ["<stack trace>"]


def test_trigger_removed(inst: Instance) -> None:
    inst.write("set_ftrace_filter", "t_off:traceoff t_on:traceon")
    assert registered_trigger_ops(inst) != []
    inst.write("set_ftrace_filter", "!t_off:traceoff", append=True)
    assert inst.read("set_ftrace_filter") == "t_on:traceon:unlimited\n"
    t_off()
    assert inst.tracing_on
    inst.write("set_ftrace_filter", "!t_on:traceon")
    assert inst.read("set_ftrace_filter") == ""
    assert inst.triggers is None
    assert engine.registered_ops() == []


def test_event_commands_refused(inst: Instance) -> None:
    inst.write("set_ftrace_filter", "t_on:traceon")
    with pytest.raises(ValueError):
        inst.write("set_ftrace_filter", "t_off:enable_event:sys:ev:2", append=True)
    assert inst.read("set_ftrace_filter") == "t_on:traceon:unlimited\n"


def test_dump_trigger(inst: Instance, capsys: pytest.CaptureFixture[str]) -> None:
    inst.write("set_ftrace_filter", "t_dump:dump")
    assert inst.read("set_ftrace_filter") == "t_dump:dump:count=1\n"
    inst.write("trace_marker", "hello")
    capsys.readouterr()
    t_dump()
    err = capsys.readouterr().err
    assert err == inst.read("trace")
    assert [r.msg for r in parse(err)] == ["tracing_mark_write: hello"]
    t_dump()  # the kernel dumps once
    assert capsys.readouterr().err == ""
    assert inst.read("set_ftrace_filter") == "t_dump:dump:count=0\n"


def test_trigger_ops_record_nothing_and_go_on_close() -> None:
    with Instance() as inst:
        inst.write("set_ftrace_filter", "ma:traceon mb:snapshot")
        ops = inst.triggers.ops
        ma(1)
        mb(1)  # snapshot of an empty buffer
        assert parse(inst.read("trace")) == []
        assert parse(inst.read("snapshot")) == []
        assert ops in engine.registered_ops()
    assert not ops.registered
    assert inst.triggers is None


def test_traceoff_with_function_tracer_order(inst: Instance) -> None:
    function_tracer(inst, "ma", "mb")
    inst.write("set_ftrace_filter", "t_off:traceoff", append=True)
    ma(1)
    t_off()
    mb(1)
    assert [short(f) for f in funcs(inst)] == ["ma"]
