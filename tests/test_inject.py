"""Error injection (fail_function): when calls fail, what callers see, the trace, the files.

Every target lives in this module and is named by its full ``module:qualname``.
Which calls fail is checked call by call against an independent oracle of
the kernel's should_fail() order (space, interval, a random.Random(seed) draw,
times); an autouse fixture checks that no ops, stub or patch is left behind.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import random
import re
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import needs_subprocess, needs_threads

import fntrace
from fntrace import BusyError, inject, livepatch, parse_inject_spec
from fntrace.core import engine
from fntrace.tracing.inject import Injection

MOD = __name__
FNTRACE_DIR = str(Path(fntrace.__file__).parent)


def full(qualname: str) -> str:
    return f"{MOD}:{qualname}"


@pytest.fixture
def injections() -> Iterator[list[Injection]]:
    made: list[Injection] = []
    yield made
    for j in made:
        j.remove()


# -- targets -------------------------------------------------------------------------------

body_calls: list[Any] = []


def inj_save(path: str) -> str:
    body_calls.append(path)
    return f"saved {path}"


def inj_size(path: str) -> int:
    body_calls.append(path)
    return 1234


def inj_count(i: int) -> int:
    return i


def caller_of_save(path: str) -> str:
    return inj_save(path)  # the caller's line, expected in tracebacks


CALLER_LINE = caller_of_save.__code__.co_firstlineno + 1


class Store:
    def write(self, data: str) -> int:
        return len(data)

    @classmethod
    def open(cls, name: str) -> str:
        return f"{cls.__name__}:{name}"

    @staticmethod
    def check(x: int) -> int:
        return x


def inj_gen(n: int) -> Generator[int, None, str]:
    yield from range(n)
    return "done"


async def inj_coro(x: int) -> int:
    return x * 2


# -- raising -------------------------------------------------------------------------------


def _frames(exc: BaseException) -> list[tuple[str, str, int | None]]:
    return [(fs.name, fs.filename, fs.lineno) for fs in traceback.extract_tb(exc.__traceback__)]


def test_injected_exception_reaches_the_caller(injections: list[Injection]) -> None:
    """Type, message and traceback: the caller's line, then frames named as the target.

    The traceback ends in two frames named ``inj_save`` at its ``def`` line
    (the core's stub, then the relabelled raiser); no fntrace frame appears,
    and a note says the failure was injected.
    """
    body_calls.clear()
    orig = inj_save.__code__
    injections.append(inject(inj_save, raise_=OSError("disk full")))
    raised: list[OSError] = []
    for _ in range(3):
        with pytest.raises(OSError) as info:
            caller_of_save("/data")
        raised.append(info.value)
    assert body_calls == []
    first = orig.co_firstlineno
    for exc in raised:
        assert type(exc) is OSError
        assert exc.args == ("disk full",)
        assert str(exc) == "disk full"
        assert exc.__notes__ == [f"injected by fntrace fail_function into {full('inj_save')}"]
        frames = _frames(exc)
        # Fresh exception each time: the traceback does not grow across injections.
        assert frames[-3:] == [("caller_of_save", __file__, CALLER_LINE),
                               ("inj_save", __file__, first), ("inj_save", __file__, first)]
        assert frames[0][0] == "test_injected_exception_reaches_the_caller"
        assert not any(f[1].startswith(FNTRACE_DIR) for f in frames)
        assert exc.__cause__ is None and exc.__context__ is None
    assert len({id(e) for e in raised}) == 3
    text = "".join(traceback.format_exception(raised[0]))
    assert text.endswith(f"OSError: disk full\ninjected by fntrace fail_function into "
                         f"{full('inj_save')}\n")
    assert "def inj_save(path: str) -> str:" in text
    injections[0].remove()
    assert inj_save.__code__ is orig
    assert caller_of_save("/x") == "saved /x"


def test_exception_class_is_instantiated_and_subclasses_kept(
        injections: list[Injection]) -> None:
    injections.append(inject(full("inj_size"), raise_=KeyError))
    with pytest.raises(KeyError) as info:
        inj_size("a")
    assert type(info.value) is KeyError and info.value.args == ()
    injections.pop().remove()
    injections.append(inject(inj_size, raise_=OSError(errno.ENOENT, "gone")))
    with pytest.raises(FileNotFoundError) as info2:
        inj_size("a")
    assert (info2.value.errno, info2.value.strerror) == (errno.ENOENT, "gone")


def test_retval_skips_the_body(injections: list[Injection]) -> None:
    body_calls.clear()
    orig = inj_size.__code__
    sig = inspect.signature(inj_size)
    j = inject(inj_size, retval=0)
    injections.append(j)
    assert [inj_size(p) for p in "abc"] == [0, 0, 0]
    assert body_calls == []
    assert inspect.signature(inj_size) == sig
    assert (j.hits, j.injected) == (3, 3)
    j.remove()
    j.remove()  # idempotent
    assert inj_size.__code__ is orig
    assert inj_size("d") == 1234
    assert body_calls == ["d"]


def test_methods_generators_and_coroutines(injections: list[Injection]) -> None:
    injections.append(inject(Store().write, retval=-1))
    injections.append(inject(vars(Store)["open"], raise_=PermissionError("ro")))
    injections.append(inject(Store.check, retval=7))
    injections.append(inject(inj_gen, raise_=ValueError("gen")))
    injections.append(inject(inj_coro, retval=99))
    assert Store().write("abc") == -1
    with pytest.raises(PermissionError, match="ro"):
        Store.open("x")
    assert Store.check(1) == 7
    gen = inj_gen(3)
    assert inspect.isgenerator(gen)
    with pytest.raises(ValueError, match="gen"):
        next(gen)  # the body would start here
    assert asyncio.run(inj_coro(1)) == 99
    injections.pop().remove()
    injections.pop().remove()
    injections.append(inject(inj_gen, retval="early"))
    gen = inj_gen(3)
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "early"


def test_raise_and_retval_together_is_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        inject(inj_size, raise_=OSError, retval=1)
    with pytest.raises(TypeError, match="exception class or instance"):
        inject(inj_size, raise_="boom")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probability must be between 0 and 100"):
        inject(inj_size, probability=101)
    assert engine.registered_ops() == []


# -- when calls fail: the oracle ---------------------------------------------------------


def oracle(n: int, *, probability: int = 100, interval: int = 1, times: int = -1,
           space: int = 0, seed: int | None = None,
           eligible: Callable[[int], bool] = lambda i: True) -> list[int]:
    """Indices (0-based) of the calls that fail, by the documented rules, written afresh."""
    rng = random.Random(seed)
    failed: list[int] = []
    reached_interval = 0
    for i in range(n):
        if not eligible(i) or probability == 0:
            continue
        if times != -1 and len(failed) >= times:
            continue
        if space > 0:
            space -= 1
            continue
        if interval > 1:
            reached_interval += 1
            if reached_interval % interval != 0:
                continue
        if not rng.randrange(100) < probability:
            continue
        failed.append(i)
    return failed


FAILED = object()


def run_calls(n: int, **kwargs: Any) -> tuple[list[int], Injection]:
    j = inject(inj_count, retval=FAILED, **kwargs)
    try:
        results = [inj_count(i) for i in range(n)]
    finally:
        j.remove()
    assert all(r is FAILED or r == i for i, r in enumerate(results))
    return [i for i, r in enumerate(results) if r is FAILED], j


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
@pytest.mark.parametrize("probability", [1, 10, 50, 99])
def test_seeded_probability_is_exact(seed: int, probability: int) -> None:
    got, j = run_calls(300, probability=probability, seed=seed)
    want = oracle(300, probability=probability, seed=seed)
    assert got == want
    assert (j.hits, j.injected) == (300, len(want))
    # Not trivially all or nothing.
    assert 0 < len(want) < 300 or probability in (1, 99)


def test_probability_edges() -> None:
    assert run_calls(50, probability=0)[0] == []
    assert run_calls(50, probability=100, seed=3)[0] == list(range(50))


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"interval": 3}, [2, 5, 8, 11, 14, 17]),
    ({"times": 4}, [0, 1, 2, 3]),
    ({"space": 5}, list(range(5, 20))),
    ({"space": 2, "interval": 3, "times": 2}, [4, 7]),
    ({"interval": 4, "times": -1}, [3, 7, 11, 15, 19]),
    ({"times": 0}, []),
])
def test_interval_times_space_are_exact(kwargs: dict[str, Any], expected: list[int]) -> None:
    got, j = run_calls(20, **kwargs)
    assert got == expected == oracle(20, **kwargs)
    assert (j.hits, j.injected) == (20, len(expected))


def test_all_attributes_with_seeded_probability() -> None:
    kwargs: dict[str, Any] = {"probability": 40, "interval": 2, "times": 25, "space": 7,
                              "seed": 99}
    got, j = run_calls(400, **kwargs)
    assert got == oracle(400, **kwargs)
    assert len(got) == 25
    assert j.attr.times == 0 and j.attr.space == 0  # budgets count down, as debugfs shows


def test_condition_on_arguments() -> None:
    def odd(args: dict[str, Any]) -> bool:
        return args["i"] % 2 == 1

    kwargs: dict[str, Any] = {"space": 2, "interval": 2, "probability": 70, "seed": 5}
    got, j = run_calls(60, condition=odd, **kwargs)
    want = oracle(60, eligible=lambda i: i % 2 == 1, **kwargs)
    assert got == want
    assert (j.hits, j.injected) == (60, len(want))  # hits: every call, eligible or not


def test_condition_calling_the_target_does_not_recurse(injections: list[Injection]) -> None:
    def cond(args: dict[str, Any]) -> bool:
        return bool(inj_count(args["i"]) == 3)  # reenters: refused by the RECURSION guard

    j = inject(inj_count, retval=-1, condition=cond)
    injections.append(j)
    assert [inj_count(i) for i in range(5)] == [0, 1, 2, -1, 4]
    assert j.ops is not None and j.ops.nmissed == 5


@needs_threads
def test_counts_are_exact_across_threads(injections: list[Injection]) -> None:
    j = inject(inj_count, retval=-1, times=100)
    injections.append(j)
    results: list[list[int]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def work(k: int) -> None:
        barrier.wait()
        results[k] = [inj_count(i) for i in range(250)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert (j.hits, j.injected) == (1000, 100)
    assert sum(r.count(-1) for r in results) == 100


# -- the trace ------------------------------------------------------------------------------

LINE = re.compile(r"^ *(?P<task>\S.*?)-(?P<pid>\d+) +\[(?P<cpu>\d{3})\] (?P<flags>\S{5}) +"
                  r"(?P<ts>\d+\.\d{6}): (?P<msg>.*)$")


def messages(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        m = LINE.match(line)
        assert m is not None, line
        out.append(m["msg"])
    return out


def test_each_injection_is_in_every_instance_trace(injections: list[Injection]) -> None:
    with fntrace.Instance() as a, fntrace.Instance() as b, fntrace.Instance() as off:
        off.write("tracing_on", "0")
        injections.append(inject(inj_save, raise_=OSError("disk full"), times=1))
        injections.append(inject(inj_size, retval=0, interval=2))
        for p in ("x", "y"):
            with pytest.raises(OSError) if p == "x" else _nothing():
                inj_save(p)
            inj_size(p)
        want = [f"fail_function: {full('inj_save')} raised OSError('disk full')",
                f"fail_function: {full('inj_size')} returned 0"]
        assert messages(a.read("trace")) == want
        assert messages(b.read("trace_pipe")) == want
        assert messages(b.read("trace_pipe")) == []
        assert messages(off.read("trace")) == []
        a.write("set_ftrace_filter", full("caller_of_save"))
        a.write("current_tracer", "function_graph")  # another tracer renders it too
        graph = a.read("trace")
        assert messages("\n".join(ln for ln in graph.splitlines()
                                  if "fail_function" in ln)) == want


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_pid_filter_applies_to_injection_events(injections: list[Injection]) -> None:
    with fntrace.Instance() as inst:
        inst.write("set_ftrace_pid", "1")  # no such thread here
        injections.append(inject(inj_size, retval=0))
        inj_size("x")
        assert messages(inst.read("trace")) == []


# -- instance files --------------------------------------------------------------------------


def test_fail_function_files(injections: list[Injection]) -> None:
    body_calls.clear()
    orig = inj_size.__code__
    name = full("inj_size")
    with fntrace.Instance() as inst:
        assert inst.listdir("fail_function") == ["inject", "interval", "probability", "space",
                                                 "times"]
        # The kernel's defaults.
        assert [inst.read(f"fail_function/{f}") for f in
                ("inject", "probability", "interval", "times", "space")] == [
            "", "0\n", "1\n", "1\n", "0\n"]
        inst.write("fail_function/inject", name)
        assert inst.read("fail_function/inject") == f"{name}\n"
        assert inst.read(f"fail_function/{name}/retval") == "None\n"
        assert inst.listdir("fail_function") == sorted(["inject", "interval", "probability",
                                                        "space", "times", name])
        assert inst.listdir(f"fail_function/{name}") == ["retval"]
        assert inj_size("a") == 1234  # probability 0: nothing fails yet
        inst.write("fail_function/probability", "100")
        inst.write(f"fail_function/{name}/retval", "-5")
        assert inj_size("b") == -5
        assert inj_size("c") == 1234  # times was 1
        assert inst.read("fail_function/times") == "0\n"
        inst.write("fail_function/times", "-1")
        inst.write(f"fail_function/{name}/retval", "OSError('disk full')")
        assert inst.read(f"fail_function/{name}/retval") == "OSError('disk full')\n"
        with pytest.raises(OSError, match="disk full"):
            inj_size("d")
        inst.write(f"fail_function/{name}/retval", "{'a': [1, 2]}")
        assert inj_size("e") == {"a": [1, 2]}
        assert body_calls == ["a", "c"]
        assert messages(inst.read("trace")) == [
            f"fail_function: {name} returned -5",
            f"fail_function: {name} raised OSError('disk full')",
            f"fail_function: {name} returned {{'a': [1, 2]}}"]
        # A second function shares the attributes.
        inst.write("fail_function/inject", full("inj_count"))
        assert inst.read("fail_function/inject") == f"{name}\n{full('inj_count')}\n"
        assert inj_count(3) is None
        inst.write("fail_function/inject", f"!{name}")
        assert inst.read("fail_function/inject") == f"{full('inj_count')}\n"
        assert inj_size.__code__ is orig
        assert inj_size("f") == 1234
        inst.write("fail_function/inject", "")  # clears the list
        assert inst.read("fail_function/inject") == ""
        assert inj_count(3) == 3
        inst.write("fail_function/inject", name)
    # close() removed the instance's injection.
    assert inj_size.__code__ is orig
    assert engine.registered_ops() == []


class _SlowClock:
    """time for fntrace.tracing.reprs where every repr seems to take a second (a loaded machine)."""

    def __init__(self) -> None:
        self.now = 0

    def perf_counter_ns(self) -> int:
        self.now += 10 ** 9
        return self.now


def test_fail_function_text_never_depends_on_timing(injections: list[Injection],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure lines show the injected value, however slow the machine: the
    value is rendered once, when the injection is set, never timed (it used to be
    timed in each failing call, and under load became '<OSError object>')."""
    from fntrace.tracing import reprs

    monkeypatch.setattr(reprs, "time", _SlowClock())
    name = full("inj_size")
    with fntrace.Instance() as inst:
        inst.write("fail_function/inject", name)
        inst.write("fail_function/probability", "100")
        inst.write("fail_function/times", "-1")
        inst.write(f"fail_function/{name}/retval", "OSError('disk full')")
        for _ in range(3):
            with pytest.raises(OSError, match="disk full"):
                inj_size("x")
        inst.write(f"fail_function/{name}/retval", "[1, 2]")
        assert inj_size("y") == [1, 2] and inj_size("z") == [1, 2]
        assert inst.read(f"fail_function/{name}/retval") == "[1, 2]\n"
        assert messages(inst.read("trace")) == [
            *[f"fail_function: {name} raised OSError('disk full')"] * 3,
            *[f"fail_function: {name} returned [1, 2]"] * 2]


@pytest.mark.parametrize(("path", "text", "error", "message"), [
    ("fail_function/probability", "101", ValueError, "between 0 and 100"),
    ("fail_function/probability", "abc", ValueError, "expected an integer"),
    ("fail_function/interval", "0", ValueError, "interval must be >= 1"),
    ("fail_function/times", "-2", ValueError, "times must be >= -1"),
    ("fail_function/space", "-1", ValueError, "space must be >= 0"),
    ("fail_function/inject", "nosuchmodule:nothing", ValueError, "no such function"),
    ("fail_function/inject", "!" + full("inj_count"), FileNotFoundError, "is not injected"),
    ("fail_function/inject", full("inj_size"), BusyError, "already injected"),
    ("fail_function/nosuch/retval", "1", FileNotFoundError, "no such file"),
    (f"fail_function/{full('inj_size')}/retval", "open('x')", ValueError,
     "a Python literal or a builtin exception"),
])
def test_fail_function_files_refuse_bad_writes(path: str, text: str, error: type[Exception],
                                               message: str) -> None:
    with fntrace.Instance() as inst:
        inst.write("fail_function/inject", full("inj_size"))
        before = {f: inst.read(f"fail_function/{f}") for f in
                  ("inject", "probability", "interval", "times", "space",
                   f"{full('inj_size')}/retval")}
        with pytest.raises(error, match=re.escape(message)):
            inst.write(path, text)
        assert {f: inst.read(f"fail_function/{f}") for f in before} == before


# -- the spec and the CLI -----------------------------------------------------------------


def _norm(spec: dict[str, Any]) -> dict[str, Any]:
    out = dict(spec)
    if "raise_" in out:
        out["raise_"] = (type(out["raise_"]), out["raise_"].args)
    return out


@pytest.mark.parametrize(("text", "expected"), [
    ('m:f:raise=OSError("disk full"):probability=10',
     {"target": "m:f", "raise_": (OSError, ("disk full",)), "probability": 10}),
    ("m:f:retval=0:times=3", {"target": "m:f", "retval": 0, "times": 3}),
    ("pkg.mod:Cls.meth:raise=KeyError", {"target": "pkg.mod:Cls.meth",
                                         "raise_": (KeyError, ())}),
    ("save:raise=OSError(28, 'No space: left'):interval=2:space=1:seed=4",
     {"target": "save", "raise_": (OSError, (28, "No space: left")), "interval": 2,
      "space": 1, "seed": 4}),
    ("m:*.load:retval={'k': (1, None)}:times=-1",
     {"target": "m:*.load", "retval": {"k": (1, None)}, "times": -1}),
    ("m:f", {"target": "m:f"}),
])
def test_spec_parser(text: str, expected: dict[str, Any]) -> None:
    assert _norm(parse_inject_spec(text)) == expected


@pytest.mark.parametrize(("text", "message"), [
    (":raise=OSError", "no function named"),
    ("raise=OSError", "no function named"),
    ("m:f:raise=Foo('x')", "'Foo' is not a builtin exception"),
    ("m:f:raise=print('x')", "'print' is not a builtin exception"),
    ("m:f:raise=OSError(open('x'))", "exception arguments must be literals"),
    ("m:f:raise=__import__('os').system('x')", "expected a builtin exception name"),
    ("m:f:raise=OSError(msg='x')", "keyword arguments are not allowed"),
    ("m:f:raise=OSError(", "unbalanced brackets"),
    ("m:f:raise=OSError('x):times=1", "unterminated string"),
    ("m:f:retval=os.getcwd()", "retval must be a Python literal"),
    ("m:f:retval=1:raise=OSError", "give raise or retval, not both"),
    ("m:f:times=2:times=3", "times given twice"),
    ("m:f:probability=101", "probability must be between 0 and 100"),
    ("m:f:probability=ten", "probability: expected an integer"),
    ("m:f:interval=0", "interval must be >= 1"),
    ("m:f:times=-2", "times must be >= -1"),
    ("m:f:times=1:colour=red", "unknown field 'colour=red'"),
    ("m:f[:times=1", "unbalanced brackets"),
])
def test_spec_parser_refuses_malformed_specs(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_inject_spec(text)
    assert repr(text) in str(info.value)


def test_spec_drives_inject(injections: list[Injection]) -> None:
    spec = parse_inject_spec(f'{full("inj_count")}:raise=OSError("disk full"):interval=2')
    injections.append(inject(**spec))
    outcomes = []
    for i in range(4):
        try:
            outcomes.append(inj_count(i))
        except OSError as exc:
            outcomes.append(str(exc))
    assert outcomes == [0, "disk full", 2, "disk full"]


@needs_subprocess
def test_cli_run_with_inject(tmp_path: Path) -> None:
    (tmp_path / "store_mod.py").write_text(
        "def save(path):\n    return 'saved ' + path\n")
    (tmp_path / "prog.py").write_text(
        "import store_mod\n"
        "for p in ['a', 'b', 'c']:\n"
        "    try:\n"
        "        print(store_mod.save(p))\n"
        "    except OSError as exc:\n"
        "        print('failed', p, exc)\n")
    env = {"PYTHONPATH": str(Path(FNTRACE_DIR).parent), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "fntrace", "run", "-F", "nothing:matches",
         "--inject", 'store_mod:save:raise=OSError("disk full"):interval=2',
         "--", str(tmp_path / "prog.py")],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [ln for ln in lines if "fail_function" not in ln] == [
        "saved a", "failed b disk full", "saved c"]
    assert [ln.split(": ", 1)[1] for ln in lines if "fail_function" in ln] == [
        "fail_function: store_mod:save raised OSError('disk full')"]
    bad = subprocess.run(
        [sys.executable, "-m", "fntrace", "run", "--inject", "m:f:raise=Nope",
         "--", str(tmp_path / "prog.py")],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert bad.returncode != 0
    assert "'Nope' is not a builtin exception" in bad.stderr
    assert bad.stdout == ""


# -- conflicts ----------------------------------------------------------------------------------


def lp_target(x: int) -> int:
    return x


def lp_new(x: int) -> int:
    return -x


def test_injection_into_a_livepatched_function_is_busy(injections: list[Injection]) -> None:
    p = livepatch.patch(lp_target, lp_new)
    try:
        stub = lp_target.__code__
        with pytest.raises(BusyError, match=re.escape(full("lp_target"))):
            inject(lp_target, retval=0)
        with pytest.raises(BusyError):
            inject(f"{MOD}:lp_*", retval=0)  # a glob covering it
        with fntrace.Instance() as inst:
            inst.write("fail_function/inject", full("inj_count"))
            with pytest.raises(BusyError):
                inst.write("fail_function/inject", full("lp_target"))
            assert inst.read("fail_function/inject") == f"{full('inj_count')}\n"
        assert lp_target.__code__ is stub
        assert lp_target(3) == -3
        assert [op for op in engine.registered_ops() if op is not p and
                op.func is not None and getattr(op.func, "__self__", None) is not None
                and isinstance(op.func.__self__, Injection)] == []
    finally:
        livepatch.unpatch(p)
