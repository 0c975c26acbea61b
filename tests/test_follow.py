"""fntrace record --follow: every child process (os.fork, multiprocessing fork /
spawn / forkserver, a Python subprocess and its own child) records its own file
PATH.<pid>, and replay/report merge them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from helpers import needs_subprocess

from fntrace.formats.tracefile import child_paths, open_trace

ROOT = str(Path(__file__).resolve().parent.parent)
ENV = {**os.environ, "PYTHONPATH": ROOT}

WORK = """
    import os
    def leaf(x):
        return x + 1
    def work(n, label):
        os.write(1, f"WORK {os.getpid()} {os.getppid()} {label} {n}\\n".encode())
        return [leaf(i) for i in range(n)]
"""

MAIN = """
    import multiprocessing as mp
    import os
    import subprocess
    import sys
    import work
    from multiprocessing import forkserver, resource_tracker

    if __name__ == "__main__":
        here = os.path.dirname(os.path.abspath(__file__))
        work.work(1, "root")
        subprocess.run([sys.executable, os.path.join(here, "child.py")], check=True, cwd=here)
        for n, method in ((3, "spawn"), (4, "fork"), (5, "forkserver")):
            p = mp.get_context(method).Process(target=work.work, args=(n, method))
            p.start()
            p.join()
            assert p.exitcode == 0, (method, p.exitcode)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            work.work(6, "osfork")
            os._exit(0)
        os.waitpid(pid, 0)
        # The helper processes finish (and so do their files) before the root does.
        forkserver._forkserver._stop()
        resource_tracker._resource_tracker._stop()
"""

CHILD = """
    import subprocess
    import sys
    import work
    work.work(2, "subprocess")
    subprocess.run([sys.executable, "-c", "import work; work.work(7, 'grandchild')"],
                   check=True)
"""


def record(tmp: Path) -> subprocess.CompletedProcess[str]:
    for name, body in (("work.py", WORK), ("main.py", MAIN), ("child.py", CHILD)):
        (tmp / name).write_text(textwrap.dedent(body))
    cmd = [sys.executable, "-m", "fntrace", "record", "--follow",
           "-F", "work:work", "-F", "work:leaf", "-o", "t.dat", "--", "main.py"]
    return subprocess.run(cmd, cwd=tmp, env=ENV, text=True, capture_output=True, timeout=60)


def fntrace(tmp: Path, *args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "fntrace", *args], cwd=tmp, env=ENV,
                         text=True, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


@needs_subprocess
def test_every_process_records_its_own_file(tmp_path: Path) -> None:
    res = record(tmp_path)
    assert res.returncode == 0, res.stderr
    # (3.12+ warns that fork() in a process with threads, fntrace's writer, may deadlock.)
    assert "Traceback" not in res.stderr and "fntrace" not in res.stderr, res.stderr
    # The oracle: what each process says it did (pid, parent, label, leaf calls).
    did = {int(pid): (int(ppid), label, int(n)) for pid, ppid, label, n in
           re.findall(r"^WORK (\d+) (\d+) (\w+) (\d+)$", res.stdout, re.M)}
    labels = sorted(label for _, label, _ in did.values())
    assert labels == ["fork", "forkserver", "grandchild", "osfork", "root", "spawn",
                      "subprocess"]
    root = next(pid for pid, (_, label, _) in did.items() if label == "root")
    main = tmp_path / "t.dat"
    files = [str(main), *child_paths(str(main))]
    traces = {open_trace(p).pid: open_trace(p) for p in files}
    assert len(traces) == len(files)  # one file per process
    for path in files[1:]:
        assert path == f"{main}.{open_trace(path).pid}"
    # Workers, plus multiprocessing's helpers (the fork server, the resource tracker)
    # which record files with none of the program's calls.
    assert set(did) <= set(traces) and len(traces) - len(did) == 2
    for pid, tf in traces.items():
        assert not tf.truncated
        assert tf.header["root_pid" if pid != root else "pid"] == root
        calls = Counter(r.func for r in tf.records() if r.kind == "entry")
        exits = Counter(r.func for r in tf.records() if r.kind == "exit")
        assert calls == exits
        if pid in did:
            ppid, label, n = did[pid]
            assert calls == {"work:work": 1, "work:leaf": n}, label
            if pid != root:
                assert tf.header["ppid"] == ppid, label
        else:
            assert calls == {}
    by_label = {label: pid for pid, (_, label, _) in did.items()}
    assert did[by_label["grandchild"]][0] == by_label["subprocess"]
    assert did[by_label["subprocess"]][0] == root

    # replay: one line per call, labelled by the pid that made it.
    out = fntrace(tmp_path, "replay", "t.dat")
    leaf_lines = Counter(int(m.group(1)) for m in
                         re.finditer(r"^\s*(\d+) .*work:leaf\(\);", out, re.M))
    assert leaf_lines == {pid: n for pid, (_, _, n) in did.items()}
    # report: the counts of all processes together.
    table = fntrace(tmp_path, "report", "-s", "name", "t.dat")
    rows = [line.split() for line in table.splitlines() if line.endswith(("work", "leaf"))]
    counts = {row[-1]: int(row[4]) for row in rows}  # total, self (value and unit), calls
    assert counts == {"work:leaf": sum(n for _, _, n in did.values()),
                      "work:work": len(did)}


@needs_subprocess
def test_user_sitecustomize_still_runs_in_children(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos.write(1, b'USER SITE\\n')\n")
    (tmp_path / "work.py").write_text(textwrap.dedent(WORK))
    (tmp_path / "main.py").write_text(textwrap.dedent("""
        import subprocess, sys, work
        work.work(2, "root")
        code = "import sys, work; work.work(3, 'child'); "
        code += "print(any('_follow' in p for p in sys.path))"
        subprocess.run([sys.executable, "-c", code], check=True)
    """))
    env = {**ENV, "PYTHONPATH": os.pathsep.join((ROOT, str(site)))}
    res = subprocess.run([sys.executable, "-m", "fntrace", "record", "--follow", "-F", "work:leaf",
                          "-o", "t.dat", "--", "main.py"], cwd=tmp_path, env=env, text=True,
                         capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "USER SITE" and lines[2] == "USER SITE"  # the root's, the child's
    assert lines[4] == "False"  # fntrace's folder is off the child's sys.path
    (child,) = child_paths(str(tmp_path / "t.dat"))
    assert open_trace(child).pid == int(lines[3].split()[1])
    assert Counter(r.func for r in open_trace(child).records() if r.kind == "entry") == {
        "work:leaf": 3}
