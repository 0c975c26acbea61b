"""The C path guards itself (issue 11 item 9).

The extension reads CPython's interpreter frames through its own mirror of
their layout (3.11-3.13).  At import, fntrace.core.accel reads a running function
frame and a running generator frame both ways; any difference turns the C
path off with one warning, and tracing goes on in pure Python.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fntrace.core.accel as accel

ROOT = Path(__file__).resolve().parent.parent
built: Any = accel.built
needs_c = pytest.mark.skipif(built is None, reason="the C extension is not built")


@needs_c
def test_self_check_passes_on_this_python() -> None:
    assert accel.self_check(built) is None
    assert accel.status() in ("C hot path: on", "C hot path: off (switched off at run time)")


@needs_c
def test_each_field_is_compared() -> None:
    """The check is not vacuous: a wrong function, owner or value is reported."""
    def probe(a: object) -> tuple[Any, ...]:
        frame = sys._getframe()
        return (built.check_frame(frame, probe, (a,), 0),
                built.check_frame(frame, test_each_field_is_compared, (a,), 0),
                built.check_frame(frame, probe, (a,), 1),
                built.check_frame(frame, probe, (object(),), 0),
                built.check_frame(sys._getframe(1), probe, (), 0))

    ok, func, owner, value, other = probe(object())
    assert ok is None
    assert "(function)" in func
    assert "(owner)" in owner
    assert "(locals)" in value
    assert "not the thread's current frame" in other


PROGRAM = """\
def leaf(x):
    return x + 1


def run():
    return [leaf(i) for i in range(5)]


run()
"""


def fntrace(*args: str, cwd: Path, mismatch: bool) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    if mismatch:
        env["FNTRACE_TEST_LAYOUT_MISMATCH"] = "1"
    return subprocess.run([sys.executable, "-W", "always", "-m", "fntrace", *args], env=env,
                          cwd=cwd, text=True, capture_output=True, timeout=120)


@needs_c
def test_mismatch_turns_the_c_path_off_with_one_warning(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    version = fntrace("--version", cwd=tmp_path, mismatch=True)
    assert "C hot path: off (the C extension's view of CPython's frames" in version.stdout
    assert version.stderr.count("fntrace: C hot path off") == 1

    dat = tmp_path / "t.dat"
    rec = fntrace("record", "-t", "function", "-F", "leaf", "-o", str(dat), "--", str(prog),
                  cwd=tmp_path, mismatch=True)
    assert rec.returncode == 0, rec.stderr
    assert rec.stderr.count("fntrace: C hot path off") == 1
    assert rec.stderr.count("Warning") == 1
    text = fntrace("replay", str(dat), cwd=tmp_path, mismatch=False).stdout
    # the caller is the list comprehension's frame up to 3.11, run itself from 3.12
    assert len(re.findall(r"__main__:leaf <-__main__:run(\.<locals>\.<listcomp>)?\n", text)) == 5

    plain = fntrace("--version", cwd=tmp_path, mismatch=False)
    assert "C hot path: on" in plain.stdout
    assert "C hot path off" not in plain.stderr
