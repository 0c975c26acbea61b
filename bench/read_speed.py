"""How fast the readers read a recording: info (footer and --scan), replay, report, dump.

Records a pure-Python workload (``leaf``/``mid`` calls, function_graph) of about
``--calls`` x 6 events (or reads ``--file``), then times each reading command as
a user runs it (a fresh process, output to /dev/null or a file) and prints wall
seconds, CPU seconds (user + system: what a busy machine disturbs least),
events per CPU second and peak RSS; and the time ``replay | head -50`` waits
for its first line.

With ``--roots A,B`` each command runs with each fntrace source tree (its own
built extension) on the same file, in turns, so a before/after comparison is
one run of the machine.

    python3 bench/read_speed.py --calls 41600        # ~250k events
    python3 bench/read_speed.py --calls 416000       # ~2.5M events (issue 14's size)
    python3 bench/read_speed.py --file t.dat --roots /tmp/before,.
    /work/venvs/py3.12/bin/python bench/read_speed.py --calls 416000 --peers

``--peers`` (needs VizTracer in the running interpreter) records the same workload
with VizTracer and sets its reading costs beside fntrace's: VizTracer keeps its
events in memory and writes Chrome JSON when it saves, so its ``save`` is the
counterpart of ``fntrace dump --chrome``; and loading a Chrome JSON file
(``json.load``) is the least that any reader of it pays (``vizviewer`` serves the
file to the browser, which parses it), against fntrace's ``info``/``report`` on its
own file.  uftrace traces native code, not Python functions, so it has no same
run to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

WORK = """
def leaf(x):
    return x * 2

def mid(x):
    return leaf(x) + leaf(x + 1)

def main():
    total = 0
    for i in range({calls}):
        total += mid(i)
    print(total)

main()
"""

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args: list[str], cwd: str, root: str = ROOT) -> tuple[float, float, int]:
    """(wall s, CPU s, peak RSS KiB) of ``python -m fntrace ARGS`` with fntrace from
    ``root``, its output to /dev/null."""
    env = {**os.environ, "PYTHONPATH": root}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fntrace", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"fntrace {' '.join(args)}: exit status {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


PEER_SAVE = """
import json, resource, sys, time
from viztracer import VizTracer
src = open(sys.argv[1]).read().rsplit("main()", 1)[0]
ns = {"__name__": "work"}
exec(compile(src, sys.argv[1], "exec"), ns)
tracer = VizTracer(tracer_entries=int(sys.argv[3]), verbose=0)
tracer.start()
ns["main"]()
tracer.stop()
t0 = time.process_time()
c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
tracer.save(sys.argv[2])
c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = time.process_time() - t0 + (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
print(json.dumps({"save_cpu": cpu}))
"""

LOAD_JSON = "import json, sys; json.load(open(sys.argv[1]))"


def child(code: list[str], cwd: str) -> tuple[float, float, int, str]:
    """(wall s, CPU s, peak RSS KiB, stdout) of ``python CODE...`` (no fntrace)."""
    with tempfile.TemporaryFile("w+") as out:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *code], cwd=cwd, stdout=out, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"python {' '.join(code)}: exit status {proc.returncode}")
        out.seek(0)
        return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, out.read()


def peers(tmp: str, events: int) -> None:
    """VizTracer's save (its Chrome JSON written from memory) and a JSON load of
    each tool's Chrome file, beside fntrace's own readers of its file."""
    calls = events // 2
    code = os.path.join(tmp, "peer_save.py")
    with open(code, "w") as f:
        f.write(PEER_SAVE)
    out = child([code, "work.py", "viz.json", str(calls + 1000)], tmp)[3]
    save_cpu = json.loads(out.strip().splitlines()[-1])["save_cpu"]
    size = os.path.getsize(os.path.join(tmp, "viz.json"))
    print(f"{'viztracer save (JSON)':26} {'':>12} {'':>8} {save_cpu:8.3f} "
          f"{events / save_cpu:14,.0f}   ({size:,} bytes, {size / events:.1f} B/event)")
    for name in ("viz.json", "out.json"):
        if not os.path.exists(os.path.join(tmp, name)):
            continue
        best = min((child(["-c", LOAD_JSON, name], tmp) for _ in range(3)),
                   key=lambda r: r[1])
        print(f"{'json.load ' + name:26} {'':>12} {best[0]:8.3f} {best[1]:8.3f} "
              f"{events / best[1]:14,.0f} {best[2] / 1024:8.0f} MB", flush=True)


def first_line(path: str, cwd: str, root: str = ROOT) -> float:
    """Seconds until ``fntrace replay PATH`` has written its first line (then it is
    stopped, as ``| head`` stops it)."""
    env = {**os.environ, "PYTHONPATH": root}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fntrace", "replay", path], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.readline()
    secs = time.perf_counter() - t
    proc.kill()
    proc.wait()
    proc.stdout.close()
    return secs


RUNS = [("info (footer)", ["info", "t.dat"]),
        ("info --scan", ["info", "--scan", "t.dat"]),
        ("replay > /dev/null", ["replay", "t.dat"]),
        ("report", ["report", "t.dat"]),
        ("dump --folded", ["dump", "t.dat", "--folded", "out.txt"]),
        ("dump --chrome out.json", ["dump", "t.dat", "--chrome", "out.json"]),
        ("dump --chrome out.json.gz", ["dump", "t.dat", "--chrome", "out.json.gz"])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=41_600)
    ap.add_argument("--args", action="store_true", help="record --args --retval")
    ap.add_argument("--file", help="read this recording instead of making one")
    ap.add_argument("--roots", default=ROOT,
                    help="comma-separated fntrace source trees to compare (default: this one)")
    ap.add_argument("--peers", action="store_true",
                    help="VizTracer's save and a JSON load beside fntrace's readers")
    ap.add_argument("--skip", default="", help="comma-separated labels not to run")
    ns = ap.parse_args()
    roots = [os.path.abspath(r) for r in ns.roots.split(",")]
    skip = {s.strip() for s in ns.skip.split(",") if s.strip()}
    with tempfile.TemporaryDirectory() as tmp:
        if ns.file:
            shutil.copy(ns.file, os.path.join(tmp, "t.dat"))
        else:
            with open(os.path.join(tmp, "work.py"), "w") as f:
                f.write(WORK.format(calls=ns.calls))
            extra = ["--args", "--retval"] if ns.args else []
            run(["record", "-t", "function_graph", *extra, "-o", "t.dat", "--", "work.py"],
                tmp)
        from_footer = subprocess.run(
            [sys.executable, "-m", "fntrace", "info", "t.dat"], cwd=tmp, text=True,
            env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, check=True).stdout
        events = int(next(line.split()[1] for line in from_footer.splitlines()
                          if line.startswith("events:")))
        size = os.path.getsize(os.path.join(tmp, "t.dat"))
        print(f"{events:,} events, {size:,} bytes ({size / events:.2f} B/event)")
        for root in roots:
            startup = min(run(["--version"], tmp, root)[0] for _ in range(3))
            print(f"[{root}] {'fntrace --version (interpreter + import)':40} {startup:8.3f} s")
        print(f"{'':26} {'tree':>12} {'wall s':>8} {'CPU s':>8} {'events/CPU s':>14} "
              f"{'peak RSS':>10}")
        for label, args in RUNS:
            if label in skip:
                continue
            for root in roots:
                wall, cpu, rss = run(args, tmp, root)
                rate = "" if label == "info (footer)" else f"{events / cpu:14,.0f}"
                print(f"{label:26} {os.path.basename(root)[-12:]:>12} {wall:8.3f} {cpu:8.3f} "
                      f"{rate:>14} {rss / 1024:8.0f} MB", flush=True)
        if "first line" not in skip:
            for root in roots:
                secs = first_line("t.dat", tmp, root)
                print(f"{'replay | head: 1st line':26} {os.path.basename(root)[-12:]:>12} "
                      f"{secs:8.3f}", flush=True)
        if ns.peers and not ns.file:
            peers(tmp, events)
        for name in ("out.json", "out.json.gz"):
            path = os.path.join(tmp, name)
            if os.path.exists(path):
                n = os.path.getsize(path)
                print(f"{name:26} {n:,} bytes ({n / events:.1f} B/event)")


if __name__ == "__main__":
    main()
