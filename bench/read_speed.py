"""How fast the readers read a recording: info (footer and --scan), replay, report, dump.

Records a pure-Python workload (``leaf``/``mid`` calls, function_graph) of about
``--calls`` x 6 events, then times each reading command as a user runs it (a
fresh process, output to /dev/null or a file) and prints seconds and events/s.

    python3 bench/read_speed.py --calls 41600        # ~250k events
    python3 bench/read_speed.py --calls 416000       # ~2.5M events (issue 14's size)
"""

from __future__ import annotations

import argparse
import os
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


def fntrace(args: list[str], cwd: str) -> float:
    env = {**os.environ, "PYTHONPATH": ROOT}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fntrace", *args], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=41_600)
    ap.add_argument("--args", action="store_true", help="record --args --retval")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "work.py"), "w") as f:
            f.write(WORK.format(calls=ns.calls))
        extra = ["--args", "--retval"] if ns.args else []
        fntrace(["record", "-t", "function_graph", *extra, "-o", "t.dat", "--", "work.py"], tmp)
        from_footer = subprocess.run(
            [sys.executable, "-m", "fntrace", "info", "t.dat"], cwd=tmp, text=True,
            env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, check=True).stdout
        events = int(next(line.split()[1] for line in from_footer.splitlines()
                          if line.startswith("events:")))
        size = os.path.getsize(os.path.join(tmp, "t.dat"))
        print(f"{events:,} events, {size:,} bytes ({size / events:.2f} B/event)")
        startup = min(fntrace(["--version"], tmp) for _ in range(3))
        print(f"{'fntrace --version (interpreter + import)':44} {startup:8.3f} s")
        runs = [("info (footer)", ["info", "t.dat"]),
                ("info --scan", ["info", "--scan", "t.dat"]),
                ("replay > /dev/null", ["replay", "t.dat"]),
                ("report", ["report", "t.dat"]),
                ("dump --folded", ["dump", "t.dat", "--folded", "out.txt"]),
                ("dump --chrome out.json", ["dump", "t.dat", "--chrome", "out.json"]),
                ("dump --chrome out.json.gz", ["dump", "t.dat", "--chrome", "out.json.gz"])]
        for label, args in runs:
            secs = min(fntrace(args, tmp) for _ in range(1 if "scan" in label or "dump" in label
                                                         or "re" in label else 3))
            rate = "" if label == "info (footer)" else f"{events / secs:12,.0f} events/s"
            print(f"{label:44} {secs:8.3f} s {rate}")
        for name in ("out.json", "out.json.gz"):
            n = os.path.getsize(os.path.join(tmp, name))
            print(f"{name:44} {n:,} bytes ({n / events:.1f} B/event)")


if __name__ == "__main__":
    main()
