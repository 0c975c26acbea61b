"""What ``fntrace record``/``run`` import before the program starts (issue 15).

Start-up is most of what recording a short program costs: each stdlib module
fntrace itself pulls in is paid by every traced run.  The program sees
``sys.modules`` as fntrace left it, so it can tell what fntrace imported; its
own imports of the same modules must still work.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Not imported by fntrace on the way to the program (typing and tempfile were
#: ~20M and ~10M instructions each on 3.12, socket ~15M with its enums; the other
#: subcommands' modules brought tempfile, typing and the readers).  The trace
#: file's reader (its dataclasses, with inspect, dis and tokenize behind them),
#: error injection and live patching (ast, copy, random) and the probe grammar
#: were ~80M more on 3.12: the recorder imports only the writer
#: (formats/tracewriter.py), the others load on first use.
ABSENT = ("typing", "tempfile", "socket", "fntrace.cli.ctl", "fntrace.cli.attach",
          "fntrace.cli.dump", "fntrace.cli.replay", "fntrace.cli.report", "fntrace.cli.funcs",
          "fntrace.control", "fntrace.analysis", "dataclasses", "inspect", "dis", "tokenize",
          "ast", "copy", "random", "fntrace.formats.tracefile", "fntrace.formats.footer",
          "fntrace.tracing.inject", "fntrace.tracing.livepatch",
          "fntrace.tracing.probes.parser", "fntrace.tracing.probes.condition",
          "shutil", "bz2", "lzma")  # shutil: argparse's width (cli/formatter.py)
#: ctypes: the 3.11 backend is built on it; from 3.12 fntrace's own start-up reached
#: it through the signal module's wrapper (recording/record.py _sigmask).
if sys.version_info >= (3, 12):
    ABSENT += ("ctypes",)

PROGRAM = """\
import json, os, signal, sys
loaded = sorted(sys.modules)
masks = [sorted(map(int, signal.pthread_sigmask(signal.SIG_BLOCK, [])))]
r, w = os.pipe()
if os.fork() == 0:  # fntrace holds SIGTERM/SIGINT over a fork: both sides get them back
    os.write(w, json.dumps(sorted(map(int, signal.pthread_sigmask(signal.SIG_BLOCK, [])))).encode())
    os._exit(0)
os.close(w)
masks.append(json.loads(os.read(r, 1000)))
os.wait()
masks.append(sorted(map(int, signal.pthread_sigmask(signal.SIG_BLOCK, []))))
import typing, tempfile  # the program's own imports work as usual
import dataclasses, inspect, random

@dataclasses.dataclass
class Point:
    x: int
    y: int = 2

def area(p: Point) -> int:
    return p.x * p.y

print(json.dumps({"loaded": loaded, "any": repr(typing.Any),
                  "tmp": callable(tempfile.mkdtemp), "masks": masks,
                  "dc": [repr(Point(1)), area(Point(3)), list(inspect.signature(area).parameters),
                         random.Random(1).randrange(1000)]}))
"""


def _run(tmp_path: Path, *args: str, pure: bool = False) -> dict[str, object]:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FNTRACE_PURE", None)
    if pure:
        env["FNTRACE_PURE"] = "1"
    # -S: site on some installs imports typing itself; fntrace needs only the stdlib.
    res = subprocess.run([sys.executable, "-S", "-m", "fntrace", *args, "--", str(script)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    line = [t for t in res.stdout.splitlines() if t.startswith("{")][-1]
    out = json.loads(line)
    assert isinstance(out, dict)
    return out


@pytest.mark.parametrize("command", [["record", "-o", "t.dat"], ["run", "-o", "t.txt"]])
def test_the_program_starts_without_what_fntrace_need_not_import(tmp_path: Path,
                                                                 command: list[str]) -> None:
    out = _run(tmp_path, *command)
    loaded = out["loaded"]
    assert isinstance(loaded, list)
    assert "fntrace.recording.record" in loaded  # it did run under fntrace
    assert [m for m in ABSENT if m in loaded or any(n.startswith(m + ".") for n in loaded)] == []
    assert (out["any"], out["tmp"]) == ("typing.Any", True)
    assert out["dc"] == ["Point(x=1, y=2)", 6, ["p"], random.Random(1).randrange(1000)]
    # the signal mask the program starts with (and has after a fork, in both
    # processes) is the one fntrace was started with: the child inherits ours
    mask = sorted(map(int, signal.pthread_sigmask(signal.SIG_BLOCK, [])))
    assert out["masks"] == [mask, mask, mask]


@pytest.mark.parametrize("pure", [False, True])
def test_a_dataclass_argument_is_shown_though_fntrace_did_not_import_dataclasses(
        tmp_path: Path, pure: bool) -> None:
    # The arguments' text imports dataclasses only once it meets one (tracing/value_text.py).
    out = _run(tmp_path, "run", "-o", "t.txt", "--args", pure=pure)
    loaded = out["loaded"]
    assert isinstance(loaded, list) and "dataclasses" not in loaded
    lines = [ln for ln in (tmp_path / "t.txt").read_text().splitlines() if ":area(" in ln]
    assert len(lines) == 1 and lines[0].endswith(" __main__:area(p=Point(x=3, y=2)) "
                                                 "<-__main__:<module>")


def test_the_header_names_the_host_as_socket_does() -> None:
    import socket

    from fntrace.recording.recorder import hostname

    assert hostname() == socket.gethostname()
