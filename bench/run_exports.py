"""Conversion cost of each export format on a large function_graph recording.

Records a real pure-Python program (the standard library's ``tomllib`` parsing
a generated TOML document, every function traced with function_graph) to about
``--events`` events, then converts the recording to each format as
``fntrace dump`` does and prints, per format: wall time, CPU time, µs per event,
output bytes and bytes per event, beside the trace file itself and the time to
read it alone.  One run each (these are minutes, not microseconds), on
whatever load the machine has: the CPU times are the figures to compare.

    python3 bench/run_exports.py [--events 5000000] [--args] [--keep DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fntrace.analysis.dump import write_chrome  # noqa: E402
from fntrace.analysis.perfetto import write_perfetto  # noqa: E402
from fntrace.analysis.pstats import write_pstats  # noqa: E402
from fntrace.analysis.speedscope import write_speedscope  # noqa: E402
from fntrace.analysis.traceset import open_set  # noqa: E402

WORKLOAD = """\
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    doc = tomllib.load(f)
print(len(doc["item"]), "tables")
"""

#: function_graph events per TOML table below, measured on 3.11 (about 2 x calls).
EVENTS_PER_TABLE = 240


def make_toml(path: Path, tables: int) -> None:
    with open(path, "w") as f:
        for i in range(tables):
            f.write(f'[[item]]\nname = "item {i}"\nprice = {i * 1.25}\nqty = {i % 7}\n'
                    f'tags = ["a{i % 3}", "b{i % 5}"]\nwhen = 2024-01-{1 + i % 28:02d}\n\n')


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(label: str, fn) -> tuple[str, float, float]:  # type: ignore[no-untyped-def]
    w0, c0 = time.perf_counter(), cpu()
    fn()
    return label, time.perf_counter() - w0, cpu() - c0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5_000_000)
    ap.add_argument("--keep", help="write the recording and outputs here (kept)")
    ap.add_argument("--args", action="store_true",
                    help="record arguments and return values too (--args --retval)")
    ns = ap.parse_args()
    work = Path(ns.keep or tempfile.mkdtemp(prefix="fntrace-exports-"))
    work.mkdir(parents=True, exist_ok=True)
    toml, script, dat = work / "big.toml", work / "parse_toml.py", work / "big.dat"
    make_toml(toml, max(ns.events // EVENTS_PER_TABLE, 1))
    script.write_text(WORKLOAD)
    w0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fntrace", "record", "-t", "function_graph",
                    *(["--args", "--retval"] if ns.args else []),
                    "-o", str(dat), "--", str(script), str(toml)], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    print(f"recorded in {time.perf_counter() - w0:.1f} s wall")
    rows = []
    holder: dict[str, object] = {}
    rows.append(measure("read only", lambda: holder.update(n=sum(
        1 for _ in open_set([str(dat)], io.StringIO()).records()))))
    events = int(holder["n"])  # type: ignore[call-overload]
    traces = open_set([str(dat)], io.StringIO())
    procs, threads = traces.process_names(), traces.thread_names()
    outs = {"chrome": work / "big.json", "speedscope": work / "big.speedscope.json",
            "perfetto": work / "big.pftrace", "pstats": work / "big.prof"}

    def chrome() -> None:
        with open(outs["chrome"], "w") as f:
            write_chrome(traces.records(), f, procs, threads)

    def speedscope() -> None:
        with open(outs["speedscope"], "w") as f:
            write_speedscope(traces.records(), f, procs, threads)

    def perfetto() -> None:
        with open(outs["perfetto"], "wb") as f:
            write_perfetto(traces.records(), f, procs, threads)

    def pstats() -> None:
        with open(outs["pstats"], "wb") as f:
            write_pstats(traces.records(), f)

    for label, fn in (("chrome", chrome), ("speedscope", speedscope),
                      ("perfetto", perfetto), ("pstats", pstats)):
        rows.append(measure(label, fn))
    size = dat.stat().st_size
    print(f"\n{events:,} events; trace file {size:,} bytes ({size / events:.2f} B/event); "
          f"Python {sys.version.split()[0]}; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB\n")
    print("| format | wall s | CPU s | CPU µs/event | output bytes | B/event | x trace file |")
    print("|---|---|---|---|---|---|---|")
    for label, wall, cpu_s in rows:
        out = outs.get(label)
        osize = out.stat().st_size if out else 0
        extra = (f"{osize:,} | {osize / events:.2f} | {osize / size:.2f}x" if out
                 else "- | - | -")
        print(f"| {label} | {wall:.1f} | {cpu_s:.1f} | {cpu_s * 1e6 / events:.2f} | {extra} |")
    if not ns.keep:
        for p in (toml, script, dat, *outs.values()):
            p.unlink(missing_ok=True)
        work.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
