"""Live patching: every kind of function, the patch stack, exact restore, transitions, files.

Targets live in this module (or in modules written to tmp_path); each check
compares the values calls return with what the newest enabled patch (or the
original) must give, and the code object identity before and after.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import needs_threads

import fntrace
from fntrace import BusyError, inject, livepatch
from fntrace.core import engine
from fntrace.tracing.livepatch import Patch

MOD = __name__


def full(qualname: str) -> str:
    return f"{MOD}:{qualname}"


@pytest.fixture
def applied() -> Iterator[list[Patch]]:
    made: list[Patch] = []
    yield made
    for p in made:
        if p.applied:
            livepatch.unpatch(p)


# -- targets -----------------------------------------------------------------------------


def lp_func(x: int, y: int = 1) -> tuple[str, int]:
    return ("old", x + y)


ALIAS = lp_func  # another reference to the same function object


class Account:
    rate = 2

    def __init__(self, balance: int) -> None:
        self.balance = balance

    def interest(self, years: int = 1) -> int:
        return self.balance * self.rate * years

    @classmethod
    def make(cls, balance: int) -> tuple[str, int]:
        return (cls.__name__, balance)

    @staticmethod
    def fee(amount: int) -> int:
        return amount // 10


class Savings(Account):
    pass


def make_scaler(k: int) -> Callable[[int], int]:
    def scale(x: int) -> int:
        return x * k
    return scale


SCALE3 = make_scaler(3)
SCALE5 = make_scaler(5)


def make_greeter() -> Callable[[str], str]:
    def greet(name: str) -> str:  # nested, no free variables
        return f"hello {name}"
    return greet


GREET = make_greeter()


# -- every kind of function ----------------------------------------------------------------


def test_module_function_and_every_reference(applied: list[Patch]) -> None:
    orig = lp_func.__code__
    sig = inspect.signature(lp_func)
    held = {"f": lp_func}

    def new(x: int, y: int = 1) -> tuple[str, int]:
        return ("new", x * y)

    applied.append(livepatch.patch(lp_func, new))
    assert lp_func(2, 3) == ("new", 6)
    assert ALIAS(2) == ("new", 2)
    assert held["f"](4, y=5) == ("new", 20)
    assert inspect.signature(lp_func) == sig
    livepatch.unpatch(applied[0])
    assert lp_func.__code__ is orig
    assert inspect.signature(lp_func) == sig
    assert lp_func(2, 3) == ("old", 5)


def test_methods_classmethods_staticmethods(applied: list[Patch]) -> None:
    codes = (Account.interest.__code__, vars(Account)["make"].__func__.__code__,
             vars(Account)["fee"].__func__.__code__)
    sigs = (inspect.signature(Account(1).interest), inspect.signature(Savings.make),
            inspect.signature(Account.fee))

    def interest(self: Account, years: int = 1) -> int:
        return -self.balance * years

    def make(cls: type, balance: int) -> tuple[str, int]:
        return (f"new {cls.__name__}", balance)

    applied.append(livepatch.patch(Account(0).interest, interest))  # a bound method
    applied.append(livepatch.patch(vars(Account)["make"], make))    # the classmethod object
    applied.append(livepatch.patch(Account.fee, lambda amount: 0))  # the staticmethod's function
    acct = Savings(100)
    assert acct.interest(years=2) == -200
    assert Account.make(1) == ("new Account", 1)
    assert Savings.make(2) == ("new Savings", 2)
    assert acct.fee(50) == 0 and Account.fee(50) == 0
    for p in list(applied):
        livepatch.unpatch(p)
    assert (Account.interest.__code__, vars(Account)["make"].__func__.__code__,
            vars(Account)["fee"].__func__.__code__) == codes
    assert all(a is b for a, b in zip(codes, (Account.interest.__code__,
                                              vars(Account)["make"].__func__.__code__,
                                              vars(Account)["fee"].__func__.__code__),
                                      strict=True))
    assert (inspect.signature(Account(1).interest), inspect.signature(Savings.make),
            inspect.signature(Account.fee)) == sigs
    assert acct.interest(years=2) == 400
    assert Savings.make(2) == ("Savings", 2)
    assert Account.fee(50) == 5


def test_closures_and_nested_functions(applied: list[Patch]) -> None:
    orig = SCALE3.__code__
    cells = SCALE3.__closure__
    applied.append(livepatch.patch(SCALE3, lambda x: -x))
    # Every existing closure of that code is redirected, whichever object was named.
    assert (SCALE3(2), SCALE5(2)) == (-2, -2)
    assert SCALE3.__closure__ is cells
    applied.append(livepatch.patch(GREET, lambda name: f"hi {name}"))
    assert GREET("bob") == "hi bob"
    for p in list(applied):
        livepatch.unpatch(p)
    assert SCALE3.__code__ is orig and SCALE5.__code__ is orig
    assert (SCALE3(2), SCALE5(2), GREET("bob")) == (6, 10, "hello bob")


def test_from_import_references_in_other_modules(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 applied: list[Patch]) -> None:
    (tmp_path / "lp_src.py").write_text("def price(n):\n    return n * 10\n")
    (tmp_path / "lp_user.py").write_text(
        "from lp_src import price as cost\n\ndef total(n):\n    return cost(n) + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        src = importlib.import_module("lp_src")
        user = importlib.import_module("lp_user")
        orig = src.price.__code__
        assert user.total(2) == 21
        applied.append(livepatch.patch(src.price, lambda n: n * 100))
        assert user.cost is src.price
        assert (src.price(2), user.total(2)) == (200, 201)
        livepatch.unpatch(applied[0])
        assert src.price.__code__ is orig
        assert user.total(2) == 21
    finally:
        sys.modules.pop("lp_src", None)
        sys.modules.pop("lp_user", None)


def lp_gen(n: int) -> Iterator[int]:
    yield from range(n)


def test_generator_function(applied: list[Patch]) -> None:
    def new(n: int) -> Iterator[int]:
        yield from range(n, 0, -1)

    applied.append(livepatch.patch(lp_gen, new))
    assert inspect.isgeneratorfunction(lp_gen)
    assert list(lp_gen(3)) == [3, 2, 1]


# -- the stack -----------------------------------------------------------------------------


def v1(x: int, y: int = 1) -> tuple[str, int]:
    return ("v1", x)


def v2(x: int, y: int = 1) -> tuple[str, int]:
    return ("v2", x)


def v3(x: int, y: int = 1) -> tuple[str, int]:
    return ("v3", x)


def test_stacking_newest_wins_and_fallback(applied: list[Patch]) -> None:
    orig = lp_func.__code__
    sig = inspect.signature(lp_func)
    p1 = livepatch.patch(lp_func, v1)
    stub = lp_func.__code__
    p2 = livepatch.patch(lp_func, v2)
    p3 = livepatch.patch(lp_func, v3)
    applied.extend([p1, p2, p3])
    assert lp_func.__code__ is stub  # one IPMODIFY ops and stub for the whole stack
    assert len(engine.registered_ops()) == 1
    assert lp_func(1)[0] == "v3"
    livepatch.unpatch(p2)  # from the middle: the top still wins
    assert lp_func(1)[0] == "v3"
    livepatch.unpatch(p3)
    assert lp_func(1)[0] == "v1"
    p4 = livepatch.patch(lp_func, v2)
    applied.append(p4)
    assert lp_func(1)[0] == "v2"
    p4.set_enabled(False)
    assert lp_func(1)[0] == "v1"
    p1.set_enabled(False)
    assert lp_func(1) == ("old", 2)
    assert lp_func.__code__ is stub  # disabled patches stay applied
    p4.set_enabled(True)
    assert lp_func(1)[0] == "v2"
    assert [p.name for p in livepatch.patches()] == [p1.name, p4.name]
    livepatch.unpatch(p4)
    livepatch.unpatch(p1)
    assert lp_func.__code__ is orig
    assert inspect.signature(lp_func) == sig
    assert lp_func(1) == ("old", 2)
    with pytest.raises(ValueError, match="not applied"):
        livepatch.unpatch(p1)
    with pytest.raises(ValueError, match="not applied"):
        p1.set_enabled(True)


def test_names_and_bad_arguments(applied: list[Patch]) -> None:
    a = livepatch.patch(lp_func, v1)
    b = livepatch.patch(lp_func, v1)
    c = livepatch.patch(lp_func, v2, name="fix-42")
    applied.extend([a, b, c])
    assert (a.name, b.name, c.name) == (full("v1"), full("v1") + "#2", "fix-42")
    with pytest.raises(ValueError, match="taken"):
        livepatch.patch(lp_func, v3, name="fix-42")
    with pytest.raises(ValueError, match="has a '/'"):
        livepatch.patch(lp_func, v3, name="a/b")
    with pytest.raises(TypeError, match="not callable"):
        livepatch.patch(lp_func, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a Python function"):
        livepatch.patch(len, v1)
    assert len(livepatch.patches()) == 3


def test_patched_functions_are_permanent(applied: list[Patch]) -> None:
    applied.append(livepatch.patch(lp_func, v1))
    with pytest.raises(BusyError):
        fntrace.set_ftrace_enabled(False)
    assert fntrace.ftrace_enabled()
    assert lp_func(1)[0] == "v1"


# -- transition ---------------------------------------------------------------------------

hooks: dict[int, Callable[[], None]] = {}


def lp_rec(n: int, log: list[tuple[str, int]]) -> int:
    log.append(("old", n))
    hook = hooks.pop(n, None)
    if hook is not None:
        hook()
    return 0 if n == 0 else lp_rec(n - 1, log) + 1


def rec_new(n: int, log: list[tuple[str, int]]) -> int:
    log.append(("new", n))
    hook = hooks.pop(n, None)
    if hook is not None:
        hook()
    return 0 if n == 0 else lp_rec(n - 1, log) + 1


def rec_newer(n: int, log: list[tuple[str, int]]) -> int:
    log.append(("newer", n))
    return 0 if n == 0 else lp_rec(n - 1, log) + 1


@pytest.mark.parametrize("transition", [False, True])
def test_transition_with_a_recursive_function(transition: bool,
                                              applied: list[Patch]) -> None:
    """Patched at depth 2 of a call of depth 4.

    Without transition the deeper calls switch at once; with it they keep the
    old version while old frames are on the thread's stack, and the next
    call, from a clean stack, runs the new one.
    """
    hooks.clear()
    hooks[2] = lambda: applied.append(livepatch.patch(lp_rec, rec_new, transition=transition))
    log: list[tuple[str, int]] = []
    assert lp_rec(4, log) == 4
    deeper = "old" if transition else "new"
    assert log == [("old", 4), ("old", 3), ("old", 2), (deeper, 1), (deeper, 0)]
    log.clear()
    assert lp_rec(2, log) == 2
    assert log == [("new", 2), ("new", 1), ("new", 0)]
    assert applied[0].try_complete()


def test_transition_falls_back_to_the_patch_below(applied: list[Patch]) -> None:
    """A thread running the first patch's replacement keeps it, not the original."""
    hooks.clear()
    applied.append(livepatch.patch(lp_rec, rec_new))
    hooks[3] = lambda: applied.append(livepatch.patch(lp_rec, rec_newer, transition=True))
    log: list[tuple[str, int]] = []
    assert lp_rec(4, log) == 4
    assert log == [("new", 4), ("new", 3), ("new", 2), ("new", 1), ("new", 0)]
    log.clear()
    lp_rec(1, log)
    assert log == [("newer", 1), ("newer", 0)]


@needs_threads
def test_transition_is_per_thread(applied: list[Patch]) -> None:
    """A thread blocked inside the old version keeps it; others switch; files show it."""
    hooks.clear()
    inside = threading.Event()
    release = threading.Event()
    other_log: list[tuple[str, int]] = []

    def block() -> None:
        inside.set()
        assert release.wait(10)

    hooks[3] = block
    worker = threading.Thread(target=lambda: lp_rec(5, other_log))
    worker.start()
    try:
        assert inside.wait(10)
        p = livepatch.patch(lp_rec, rec_new, transition=True)
        applied.append(p)
        with fntrace.Instance() as inst:
            assert inst.read(f"livepatch/{p.name}/transition") == "1\n"
            assert not p.try_complete()
            log: list[tuple[str, int]] = []
            lp_rec(1, log)  # this thread has no old frame: it switches
            assert log == [("new", 1), ("new", 0)]
            release.set()
            worker.join(10)
            assert other_log == [("old", n) for n in range(5, -1, -1)]
            assert p.try_complete()
            assert inst.read(f"livepatch/{p.name}/transition") == "0\n"
    finally:
        release.set()
        worker.join(10)


# -- instance files and conflicts ---------------------------------------------------------


def test_livepatch_files(applied: list[Patch]) -> None:
    p1 = livepatch.patch(lp_func, v1)
    p2 = livepatch.patch(lp_func, v2, name="hotfix", transition=True)
    applied.extend([p1, p2])
    with fntrace.Instance() as inst:
        assert inst.read("livepatch") == (
            f"{full('v1')}: {full('lp_func')} -> {full('v1')} enabled=1\n"
            f"hotfix: {full('lp_func')} -> {full('v2')} enabled=1 transition\n")
        assert inst.listdir("livepatch") == sorted([full("v1"), "hotfix"])
        assert inst.listdir("livepatch/hotfix") == ["enabled", "target", "transition"]
        assert inst.read("livepatch/hotfix/target") == f"{full('lp_func')}\n"
        assert lp_func(1)[0] == "v2"
        inst.write("livepatch/hotfix/enabled", "0")
        assert inst.read("livepatch/hotfix/enabled") == "0\n"
        assert lp_func(1)[0] == "v1"
        assert "hotfix: " in inst.read("livepatch") and "enabled=0" in inst.read("livepatch")
        inst.write("livepatch/hotfix/enabled", "1")
        assert lp_func(1)[0] == "v2"
        with pytest.raises(ValueError, match="expected 0 or 1"):
            inst.write("livepatch/hotfix/enabled", "yes")
        with pytest.raises(PermissionError, match="read-only"):
            inst.write("livepatch/hotfix/transition", "0")
        with pytest.raises(FileNotFoundError):
            inst.write("livepatch/nosuch/enabled", "0")
        with pytest.raises(FileNotFoundError):
            inst.read("livepatch/hotfix/nosuch")
        assert inst.read("livepatch/hotfix/enabled") == "1\n"
        livepatch.unpatch(p2)
        assert inst.read("livepatch") == (
            f"{full('v1')}: {full('lp_func')} -> {full('v1')} enabled=1\n")
        with pytest.raises(FileNotFoundError):
            inst.read("livepatch/hotfix/enabled")
    assert lp_func(1)[0] == "v1"  # closing an instance leaves patches alone


def test_patching_an_injected_function_is_busy(applied: list[Patch]) -> None:
    orig = lp_func.__code__
    j = inject(lp_func, retval=("injected", 0))
    try:
        stub = lp_func.__code__
        with pytest.raises(BusyError, match=re.escape(full("lp_func"))):
            livepatch.patch(lp_func, v1)
        assert livepatch.patches() == []
        assert lp_func.__code__ is stub
        assert lp_func(1) == ("injected", 0)
        assert j.ops is not None and engine.registered_ops() == [j.ops]
    finally:
        j.remove()
    assert lp_func.__code__ is orig
    p = livepatch.patch(lp_func, v1)  # free again
    applied.append(p)
    assert lp_func(1)[0] == "v1"


def test_replacement_may_be_any_callable(applied: list[Patch]) -> None:
    class Fixer:
        def __call__(self, x: int, y: int = 1) -> tuple[str, int]:
            return ("callable", x)

    applied.append(livepatch.patch(lp_func, Fixer(), transition=True))
    assert lp_func(7) == ("callable", 7)
    assert re.fullmatch(rf"<Patch .* {re.escape(full('lp_func'))} -> .* enabled>",
                        repr(applied[0])) is not None
