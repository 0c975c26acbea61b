"""What ``fntrace record``/``run`` import before the program starts (issue 15).

Start-up is most of what recording a short program costs: each stdlib module
fntrace itself pulls in is paid by every traced run.  The program sees
``sys.modules`` as fntrace left it, so it can tell what fntrace imported; its
own imports of the same modules must still work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Not imported by fntrace on the way to the program (typing and tempfile were
#: ~20M and ~10M instructions each on 3.12, socket ~15M with its enums; the other
#: subcommands' modules brought tempfile, typing and the readers).
ABSENT = ("typing", "tempfile", "socket", "fntrace.cli.ctl", "fntrace.cli.attach",
          "fntrace.cli.dump", "fntrace.cli.replay", "fntrace.cli.report", "fntrace.cli.funcs",
          "fntrace.control", "fntrace.analysis")

PROGRAM = """\
import json, sys
loaded = sorted(sys.modules)
import typing, tempfile  # the program's own imports work as usual
print(json.dumps({"loaded": loaded, "any": repr(typing.Any),
                  "tmp": callable(tempfile.mkdtemp)}))
"""


def _run(tmp_path: Path, *args: str) -> dict[str, object]:
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    # -S: site on some installs imports typing itself; fntrace needs only the stdlib.
    res = subprocess.run([sys.executable, "-S", "-m", "fntrace", *args, "--", str(script)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
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


def test_the_header_names_the_host_as_socket_does() -> None:
    import socket

    from fntrace.recording.recorder import hostname

    assert hostname() == socket.gethostname()
