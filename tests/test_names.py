"""Generated code is named after what the user wrote (issue 12 item 5).

A dataclass's methods are compiled by the dataclasses module as
``__create_fn__.<locals>.__init__`` and renamed by it; a namedtuple's
``__new__`` is a ``<lambda>``.  fntrace names them ``Item.__init__`` and
``Point.__new__``, filters select them by those names, and the generator's
exec'd module body is its own (``dataclasses:<exec>``), not an extra call of
the user's ``<module>``.  ``functools.wraps`` does not make a wrapper look
like the function it wraps.  Both hot paths give the same names.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import fntrace

pytestmark = pytest.mark.usefixtures("hot_path")

ROOT = Path(__file__).resolve().parent.parent
MOD = "names_work"

WORKLOAD = '''
from __future__ import annotations

import functools
from collections import namedtuple
from dataclasses import dataclass


def deco(f):
    @functools.wraps(f)
    def wrapper(*args):
        return f(*args)
    return wrapper


def run():
    @dataclass(order=True)
    class Item:
        name: str
        qty: int = 1

    Point = namedtuple("Point", "x y")

    class C:
        @deco
        def meth(self):
            return 1

    a = Item("a", 2)
    b = Item("b")
    text = repr(a)
    less = a < b
    p = Point(1, 2)
    q = p._replace(x=3)
    C().meth()
    return text, less, q
'''


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    (tmp_path / f"{MOD}.py").write_text(textwrap.dedent(WORKLOAD))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module(MOD)
    yield mod
    sys.modules.pop(MOD, None)


def called(text: str) -> Counter[str]:
    return Counter(re.findall(r"(\S+) <-", text))


def test_generated_methods_have_the_users_names(work: ModuleType) -> None:
    with fntrace.trace("function", filter=f"*:mod:{MOD}") as inst:
        work.run()
        text = inst.read("trace")
    r = "run.<locals>"
    got = called(text)
    # dataclasses' factory (one per method up to 3.12, per class on 3.13): a
    # function its text defines, no method, keeps its own name (see naming.py)
    assert got.pop(f"{MOD}:__create_fn__") >= 1
    assert got == Counter({
        f"{MOD}:run": 1,
        f"{MOD}:{r}.Item": 1,  # the class bodies
        f"{MOD}:{r}.C": 1,
        f"{MOD}:{r}.Item.__init__": 2,
        f"{MOD}:{r}.Item.__repr__": 1,
        f"{MOD}:{r}.Item.__lt__": 1,
        f"{MOD}:deco": 1,
        f"{MOD}:deco.<locals>.wrapper": 1,  # not named meth: wraps copied that name
        f"{MOD}:{r}.C.meth": 1,
    })


def test_filters_select_the_users_names(work: ModuleType) -> None:
    with fntrace.trace("function", filter="*Item.__init__") as inst:
        work.run()
        text = inst.read("trace")
    assert called(text) == Counter({f"{MOD}:run.<locals>.Item.__init__": 2})


def test_namedtuple_and_generator_code(work: ModuleType) -> None:
    with fntrace.trace("function", filter=["*Point.*", "*<exec>", "*<module>",
                                           "*__create_fn__*"]) as inst:
        work.run()
        text = inst.read("trace")
    got = called(text)
    # namedtuple names its methods typename.name (no enclosing scope)
    assert got["namedtuple_Point:Point.__new__"] == 1  # _replace makes its copy in C
    assert got["collections:Point._replace"] == 1
    assert got["collections:Point._make"] == 1
    # the generators' exec'd bodies: theirs, never a call of the user's module body
    assert got["collections:<exec>"] == 1
    assert got["dataclasses:<exec>"] >= 1
    assert got[f"{MOD}:__create_fn__"] >= 1  # the factory: no method, its own name
    assert not any(name.startswith(f"{MOD}:<") for name in got)
    assert not any("<lambda>" in name or "__create_fn__.<locals>" in name for name in got)


def fntrace_cmd(*args: str, cwd: Path, pure: bool) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    if pure:
        env["FNTRACE_PURE"] = "1"
    return subprocess.run([sys.executable, "-m", "fntrace", *args], env=env, cwd=cwd,
                          text=True, capture_output=True, timeout=120)


def report_calls(out: str) -> dict[str, int]:
    """Function name -> calls, from `fntrace report`'s table."""
    rows: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"\s*\S+ \S+\s+\S+ \S+\s+(\d+)\s+.*\s(\S+:\S+)$", line)
        if m:
            rows[m.group(2)] = int(m.group(1))
    return rows


def test_shop_example_report(tmp_path: Path, hot_path: str) -> None:
    """The README's example: one `<module>` call, the dataclass's own names."""
    pure = hot_path == "pure"
    dat = tmp_path / "shop.dat"
    rec = fntrace_cmd("record", "-o", str(dat), "--", str(ROOT / "examples" / "shop.py"),
                      cwd=tmp_path, pure=pure)
    assert rec.returncode == 0, rec.stderr
    rep = fntrace_cmd("report", str(dat), cwd=tmp_path, pure=pure)
    assert rep.returncode == 0, rep.stderr
    calls = report_calls(rep.stdout)
    assert calls["__main__:<module>"] == 1
    assert calls["__main__:Item.__init__"] == 2
    assert calls["__main__:Item.total"] == 2
    assert not any("__create_fn__.<locals>" in name for name in calls)

    sel = tmp_path / "sel.dat"
    rec = fntrace_cmd("record", "-F", "Item.__init__", "-o", str(sel), "--",
                      str(ROOT / "examples" / "shop.py"), cwd=tmp_path, pure=pure)
    assert rec.returncode == 0, rec.stderr
    rep = fntrace_cmd("report", str(sel), cwd=tmp_path, pure=pure)
    assert report_calls(rep.stdout) == {"__main__:Item.__init__": 2}
