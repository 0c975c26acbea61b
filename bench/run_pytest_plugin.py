#!/usr/bin/env python3
"""Benchmark: the pytest flight recorder on a real project's own test suite.

    python3 bench/run_pytest_plugin.py                       # more-itertools, 5 rounds
    python3 bench/run_pytest_plugin.py --python /work/venvs/py3.12/bin/python \\
        --rounds 5 --tests tests/test_more.py --instructions "tests/test_more.py -k Chunked"

The suite is the sdist of more-itertools from PyPI (``pip download --no-binary
:all:``), unpacked once under bench/.cache/.  Each configuration is one fresh
``python -m pytest`` process over the same tests; the configurations alternate
round after round (the machine is shared and its load drifts, so each round's
ratios compare runs made minutes apart at most) and the medians are reported:

* ``untraced``  the plugin blocked (``-p no:fntrace``): fntrace is never imported
* ``inactive``  the plugin loaded, no ``--fntrace``: what every pytest run pays once
  fntrace is installed
* ``nomatch``   ``--fntrace`` with a filter that matches no function
* ``traced``    ``--fntrace='*:mod:more_itertools.*'`` (arguments and return values on,
  the default)
* ``lean``      the same filter, ``--fntrace-no-args --fntrace-no-retval``
* ``floor``     the same filter, every call of it reaching the recorder and none
  written (bench/pytest_fntrace_floor.py): the dispatch cost no recording option
  can go under

Byte code is cached as in any run: ``PYTHONDONTWRITEBYTECODE`` is dropped from the
children's environment and one unmeasured run of each configuration comes first
(without a cache every run compiles fntrace's ~50 modules, ~150 ms, and pytest
rewrites the test module again).  Times are the child's wall time and its CPU
time (user + system, from ``wait4``), which a loaded machine disturbs less.  ``--instructions`` also
counts instructions (valgrind, /work/shared/tools/instructions) of one run per
configuration over a smaller selection: deterministic where times are not.
Results: a Markdown table on stdout (paste into bench/RESULTS_PYTEST.md).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
PACKAGE = "more-itertools"
VERSION = "11.2.1"
FILTER = "*:mod:more_itertools.*"
#: Measures with tracemalloc what a loop allocates: it sees the trace's ring buffer
#: (bounded, but beyond the test's 256 KiB limit) and fails when traced.
MEMORY_TEST = "test_repeated_zero_cache_peek_has_bounded_memory"  # SeekableTest

CONFIGS: dict[str, list[str]] = {
    "untraced": ["-p", "no:fntrace"],
    "inactive": ["-p", "no:fntrace", "-p", "fntrace.pytest_plugin"],
    "nomatch": ["-p", "no:fntrace", "-p", "fntrace.pytest_plugin",
                "--fntrace=*:mod:no_such_module_anywhere"],
    "traced": ["-p", "no:fntrace", "-p", "fntrace.pytest_plugin", f"--fntrace={FILTER}"],
    "lean": ["-p", "no:fntrace", "-p", "fntrace.pytest_plugin", f"--fntrace={FILTER}",
             "--fntrace-no-args", "--fntrace-no-retval"],
    "floor": ["-p", "no:fntrace", "-p", "fntrace.pytest_plugin", f"--fntrace={FILTER}",
              "-p", "pytest_fntrace_floor"],
}


def suite(python: str) -> Path:
    """The unpacked sdist (downloaded on first use)."""
    target = CACHE / f"more_itertools-{VERSION}"
    if target.is_dir():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                    "-d", str(CACHE), f"{PACKAGE}=={VERSION}"], check=True)
    (sdist,) = CACHE.glob(f"more_itertools-{VERSION}.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(CACHE, filter="data")
    return target


def child_env() -> dict[str, str]:
    """The environment of a measured run: fntrace and the floor plugin importable,
    byte code written and read as in any run."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "bench")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_once(python: str, cwd: Path, tests: list[str], extra: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one pytest process; its exit status must be 0."""
    env = child_env()
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    out = proc.stdout.read() if proc.stdout is not None else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(cmd)}: exit {proc.returncode}\n{out.decode()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def count_instructions(python: str, cwd: Path, selection: str, extra: list[str]) -> int:
    """Instructions of one run, as /work/shared/tools/instructions counts them (valgrind's
    cachegrind, children included), summed here exactly: that script's awk prints
    six significant digits once a count passes 2**31."""
    cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes",
           "--cachegrind-out-file=/dev/null", python, "-m", "pytest", "-q", "-p",
           "no:cacheprovider", *shlex.split(selection), *extra]
    # A fixed hash seed: str hashing, and with it every dict's and set's probing,
    # moves a run's count by tens of millions of instructions from seed to seed.
    out = subprocess.run(cmd, cwd=cwd, env=dict(child_env(), PYTHONHASHSEED="0"),
                         capture_output=True, text=True, check=True)
    counts = re.findall(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if not counts:
        sys.exit(f"{shlex.join(cmd)}: no instruction count\n{out.stderr[-2000:]}")
    return sum(int(n.replace(",", "")) for n in counts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tests", nargs="+", default=["tests/test_more.py"],
                    help="test files inside the sdist (default: tests/test_more.py)")
    ap.add_argument("--skip", action="append", default=[MEMORY_TEST], metavar="NAME",
                    help="a test left out (-k 'not ...'; repeatable; its tracemalloc "
                         f"test, {MEMORY_TEST}, always)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--instructions", metavar="SELECTION",
                    help="also count instructions of one run per configuration over "
                         "SELECTION (pytest arguments, e.g. 'tests/test_more.py -k Chunked')")
    ns = ap.parse_args()
    ns.tests = [*ns.tests, "-k", f"not ({' or '.join(dict.fromkeys(ns.skip))})"]
    cwd = suite(ns.python)
    version = subprocess.run([ns.python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    walls: dict[str, list[float]] = {c: [] for c in ns.configs}
    cpus: dict[str, list[float]] = {c: [] for c in ns.configs}
    for name in ns.configs:  # warm-up: byte code cached, files in the page cache
        run_once(ns.python, cwd, ns.tests, CONFIGS[name])
    for r in range(ns.rounds):
        for name in ns.configs:
            wall, cpu = run_once(ns.python, cwd, ns.tests, CONFIGS[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
            print(f"# round {r + 1} {name}: wall {wall:.2f} s, cpu {cpu:.2f} s",
                  file=sys.stderr, flush=True)
    base = ns.configs[0]
    print(f"Python {version}, {PACKAGE} {VERSION}, tests: {' '.join(ns.tests)}, "
          f"{ns.rounds} rounds, load average at the end {os.getloadavg()[0]:.1f}\n")
    # Each round's ratio compares runs made a minute apart: their median is what the
    # machine's drift disturbs least.
    print("| configuration | wall median (s) | CPU median (s) | wall ratio | CPU ratio "
          "| median of per-round CPU ratios | per-round CPU ratios |")
    print("|---|---|---|---|---|---|---|")
    for name in ns.configs:
        wm, cm = statistics.median(walls[name]), statistics.median(cpus[name])
        ratios = [c / b for c, b in zip(cpus[name], cpus[base], strict=True)]
        per_round = ", ".join(f"{r:.3f}" for r in ratios)
        print(f"| {name} | {wm:.2f} | {cm:.2f} | {wm / statistics.median(walls[base]):.3f}x "
              f"| {cm / statistics.median(cpus[base]):.3f}x | {statistics.median(ratios):.3f}x "
              f"| {per_round} |")
    if ns.instructions:
        print(f"\nInstructions, one run each: `{ns.instructions}`\n")
        print("| configuration | instructions | ratio |")
        print("|---|---|---|")
        counts = {name: count_instructions(ns.python, cwd, ns.instructions, CONFIGS[name])
                  for name in ns.configs}
        for name, n in counts.items():
            print(f"| {name} | {n:,} | {n / counts[base]:.4f}x |")


if __name__ == "__main__":
    main()
