"""The program's top frame is the root of its stacks (issue 12 item 5).

Under ``fntrace record``/``run`` the program's ``<module>`` is executed by
fntrace's runner, below fntrace's command line and its launcher.  Those frames
are not the program's: the ``<module>`` call has no parent (text, Chrome
JSON, folded stacks) and a ``stacktrace`` trigger's stack ends at it.  Both
hot paths, through the real command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """\
def leaf():
    return 1


def mid():
    return leaf()


mid()
mid()
"""


def fntrace(*args: str, cwd: Path, pure: bool) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    if pure:
        env["FNTRACE_PURE"] = "1"
    return subprocess.run([sys.executable, "-m", "fntrace", *args], env=env, cwd=cwd,
                          text=True, capture_output=True, timeout=120)


@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_program_top_frame_is_the_root(tmp_path: Path, tracer: str, pure: bool) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    dat = tmp_path / "t.dat"
    rec = fntrace("record", "-t", tracer, "-T", "leaf:stacktrace:1", "-o", str(dat), "--",
                  str(prog), cwd=tmp_path, pure=pure)
    assert rec.returncode == 0, rec.stderr
    text = fntrace("replay", str(dat), cwd=tmp_path, pure=pure).stdout
    stack = [line.split()[1] for line in text.splitlines() if line.lstrip().startswith("=>")]
    assert stack == ["__main__:leaf", "__main__:mid", "__main__:<module>"]
    assert "fntrace" not in text.replace(str(dat), "")

    out = tmp_path / "t.json"
    dump = fntrace("dump", str(dat), "--chrome", str(out), "--folded", str(tmp_path / "f.txt"),
                   cwd=tmp_path, pure=pure)
    assert dump.returncode == 0, dump.stderr
    events = json.loads(out.read_text())["traceEvents"]
    module = [ev for ev in events if ev.get("name") == "__main__:<module>"
              and ev.get("ph") in ("i", "X")]  # a call: one X event (graph), an i (function)
    assert len(module) == 1
    assert "parent" not in module[0].get("args", {})
    assert not any("fntrace" in json.dumps(ev.get("args", {})) for ev in events)
    folded = (tmp_path / "f.txt").read_text()
    assert folded and "fntrace" not in folded
    if tracer == "function":  # caller;callee pairs: the module has no caller
        assert "__main__:<module> 1\n" in folded
    else:  # whole stacks, each from the program's top frame
        assert all(line.startswith("__main__:<module>") for line in folded.splitlines())
