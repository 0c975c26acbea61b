"""Extra instructions per traced call, counted by valgrind: the deterministic campaign.

    python3 bench/instructions.py [--python PY ...] [--only CONFIG ...] [--quick]

CPU time on this shared 2-core machine varies up to 2x between two identical
runs; the number of instructions a run executes does not (a fixed hash seed,
the same input: the same count to a few hundred instructions).  This script
counts them with valgrind's cachegrind without cache simulation
(``--cache-sim=no``: instruction counting only), and reports per
configuration and per peer the **extra instructions per traced call over the
untraced run**:

    per call = ((T_N - T_0) - (U_N - U_0)) / calls

where T is the traced run, U the untraced one, N the workload's size and 0 the
same script at size 0 (start-up, imports, the tool's set-up and its warm-up
removed), and ``calls`` the Python entries between the two sizes, counted by a
``sys.setprofile`` oracle in a native run.  Each measured process is
``instructions_child.py TOOL WORKLOAD SIZE`` (see there what it runs).

The floor is ``bench/floor/floor.c``, built here into a temporary directory
with the interpreter's headers: PY_START and PY_RETURN callbacks in C that
return None at once, the cost of sys.monitoring's dispatch alone.

Every configuration runs natively once first, at size N: that warms the
bytecode caches (a first run that writes ``.pyc`` files would count the
compiler) and checks that it gives the untraced run's digest and that the tool
saw the calls.  fntrace runs twice, on its C path and with ``FNTRACE_PURE=1``.

Writes ``bench/results/instructions-<python>-<commit>.json`` per interpreter
and rewrites the instruction section of ``bench/RESULTS.md`` (between its
markers, below the hand-written notes' marker, so ``bench/run.py`` keeps it)
from every ``instructions-*-<commit>.json`` of this commit.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD = HERE / "instructions_child.py"
TRIVIAL = HERE / "workloads" / "trivial.py"
FLOOR_SOURCE = HERE / "floor" / "floor.c"
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
BEGIN = "<!-- instructions.py: begin (generated; the text after the end marker is by hand) -->"
END = "<!-- instructions.py: end -->"
DEFAULT_PYTHONS = ("/work/venvs/py3.12/bin/python", "/work/venvs/py3.13/bin/python")
PATHS = ("c", "pure")


class Unavailable(Exception):
    """A configuration that cannot run on this interpreter; the message says why."""


# -- the per-call formula ---------------------------------------------------------


def per_call(traced_n: int, traced_0: int, untraced_n: int, untraced_0: int,
             calls: int) -> float:
    """Extra instructions per call: ((T_N - T_0) - (U_N - U_0)) / calls."""
    if calls <= 0:
        raise ValueError(f"per_call: no calls between the two sizes ({calls})")
    return ((traced_n - traced_0) - (untraced_n - untraced_0)) / calls


def percent_over(traced_n: int, traced_0: int, untraced_n: int, untraced_0: int) -> float:
    """The traced work's extra instructions, in % of the untraced work's."""
    base = untraced_n - untraced_0
    if base <= 0:
        raise ValueError(f"percent_over: the untraced work executed no instructions ({base})")
    return 100.0 * ((traced_n - traced_0) - base) / base


def parse_irefs(log: str) -> int:
    """The ``I refs`` total of one cachegrind log (``I   refs:      1,234,567``)."""
    match = re.search(r"I\s+refs:\s+([\d,]+)", log)
    if match is None:
        raise ValueError("no 'I refs' line in valgrind's output")
    return int(match.group(1).replace(",", ""))


# -- configurations ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    size: float
    quick: float
    unit: str  # what the per-call figure divides by: "call" or "code object"


WORKLOADS = {
    "fib": Workload("fib", 22, 14, "call"),              # fib(22): 57,313 calls
    "objects": Workload("objects", 15, 9, "call"),       # 65,535 calls
    "mixed": Workload("mixed", 0.006, 0.0025, "call"),   # ~53,000 Python entries
    "generated": Workload("generated", 10000, 400, "code object"),
    "sympy": Workload("sympy", 1, 1, "import"),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One row of the table: fntrace's figure (C and pure) beside a peer's."""
    name: str
    label: str
    kind: str  # "per-call", "percent", "process"
    workload: str = ""
    tool: str = ""           # instructions_child.py tool (or "record": fntrace record)
    peer: str = ""           # the peer's tool on the same workload, or another config's name
    peer_label: str = ""
    min_version: tuple[int, int] = (3, 11)


CONFIGS = [
    Config("floor", "sys.monitoring no-op in C (PY_START + PY_RETURN)", "per-call", "fib",
           "", "floor", "floor", (3, 12)),
    Config("function", "function tracer", "per-call", "fib", "fntrace-function",
           "cprofile", "cProfile"),
    Config("graph", "function_graph", "per-call", "fib", "fntrace-graph",
           "viztracer", "VizTracer"),
    Config("args-int", "graph + args + retval, int arguments", "per-call", "fib",
           "fntrace-args", "viztracer-args", "VizTracer args"),
    Config("args-objects", "graph + args + retval, user objects (default `__repr__`)",
           "per-call", "objects", "fntrace-args", "viztracer-args", "VizTracer args"),
    Config("args-mixed", "graph + args + retval, mixed stdlib workload", "per-call", "mixed",
           "fntrace-args", "viztracer-args", "VizTracer args"),
    Config("record", "record to file (graph, `fntrace record`)", "per-call", "fib", "record",
           "=graph", "in-memory graph"),
    Config("first-look", "first look at a code object no filter selects (per code object)",
           "per-call", "generated", "fntrace-nomatch", "mon-disable",
           "Python DISABLE callback", (3, 12)),
    Config("import-sympy", "`import sympy` with one ops registered (filter matches 1 function)",
           "percent", "sympy", "fntrace-sympy-one"),
    Config("import-fntrace", "`import fntrace` over bare `python -c pass`", "process",
           "", "import-fntrace", "import-viztracer", "`import viztracer`"),
    Config("record-trivial", "`fntrace record` of a trivial script (whole process)", "process",
           "", "record-trivial", "viztracer-trivial", "`viztracer` of it"),
]
CONFIG_NAMES = [c.name for c in CONFIGS]

#: The whole-process commands (after the interpreter); TMP is a scratch directory.
PROCESS_COMMANDS = {
    "bare": ["-c", "pass"],
    "import-fntrace": ["-c", "import fntrace"],
    "import-viztracer": ["-c", "import viztracer"],
    "trivial": [str(TRIVIAL)],
    "record-trivial": ["-m", "fntrace", "record", "-o", "{tmp}/trivial.dat", "--",
                       str(TRIVIAL)],
    "viztracer-trivial": ["-m", "viztracer", "--quiet", "-o", "{tmp}/trivial.json",
                          str(TRIVIAL)],
}
FNTRACE_TOOLS = {"fntrace-function", "fntrace-graph", "fntrace-args", "fntrace-nomatch",
                 "fntrace-sympy-one", "record", "import-fntrace", "record-trivial"}


# -- running ------------------------------------------------------------------------


@dataclasses.dataclass
class Interpreter:
    path: str      # the real executable (or a venv's python), never a pyenv shim
    version: tuple[int, int]
    full_version: str
    floor_dir: str | None = None
    floor_reason: str = ""
    missing: dict[str, str] = dataclasses.field(default_factory=dict)  # module -> reason


def describe(python: str) -> Interpreter:
    """The interpreter behind ``python``: a shim is resolved through sys.executable."""
    code = ("import sys, platform; print(sys.executable); "
            "print('%d.%d' % sys.version_info[:2]); print(platform.python_version())")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    path, minor, full = out.stdout.split()
    major_s, minor_s = minor.split(".")
    return Interpreter(path, (int(major_s), int(minor_s)), full)


def build_floor(python: str, dest: str) -> str:
    """Compile bench/floor/floor.c for ``python`` into ``dest``; returns the module's path.

    Direct ``cc`` with the interpreter's include directory and extension suffix:
    no setuptools, so it builds the same way on every Python.  Raises
    Unavailable (with the reason) without a compiler or the headers.
    """
    code = ("import sysconfig; print(sysconfig.get_paths()['include']); "
            "print(sysconfig.get_config_var('EXT_SUFFIX'))")
    include, suffix = subprocess.run([python, "-c", code], capture_output=True, text=True,
                                     check=True).stdout.split()
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise Unavailable("no C compiler (cc or gcc) on PATH")
    if not os.path.exists(os.path.join(include, "Python.h")):
        raise Unavailable(f"no Python.h in {include}")
    target = os.path.join(dest, "_fntrace_floor" + suffix)
    proc = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-I", include,
                           str(FLOOR_SOURCE), "-o", target], capture_output=True, text=True)
    if proc.returncode != 0:
        raise Unavailable(f"floor.c did not compile: {proc.stderr.strip().splitlines()[-1:]}")
    return target


def environment(pure: bool, floor_dir: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FNTRACE_", "PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONHASHSEED"] = "0"   # the same dict layouts in every run
    env["PYTHONPATH"] = str(ROOT)  # fntrace from this work tree, also for -m fntrace
    if pure:
        env["FNTRACE_PURE"] = "1"
    if floor_dir:
        env["BENCH_FLOOR_DIR"] = floor_dir
    return env


@dataclasses.dataclass(frozen=True)
class Run:
    """One measured process: (tool, workload, size) or a whole-process command."""
    tool: str
    workload: str = ""
    size: float = 0
    pure: bool = False

    def key(self) -> str:
        path = "pure" if self.pure else "c"
        return f"{self.tool}|{self.workload}|{self.size:g}|{path}"


def command(interp: Interpreter, run: Run, tmp: str) -> list[str]:
    if not run.workload:
        return [interp.path] + [a.format(tmp=tmp) for a in PROCESS_COMMANDS[run.tool]]
    child = [str(CHILD), run.tool, run.workload, f"{run.size:g}"]
    if run.tool == "record":  # the whole `fntrace record` around the untraced child
        return [interp.path, "-m", "fntrace", "record", "-o", f"{tmp}/record.dat", "--",
                str(CHILD), "untraced", run.workload, f"{run.size:g}"]
    return [interp.path, *child]


def execute(interp: Interpreter, run: Run, valgrind: bool) -> dict[str, Any]:
    """Run once (under valgrind or not); returns the child's JSON and the instructions."""
    with tempfile.TemporaryDirectory(prefix="bench-instr-") as tmp:
        cmd = command(interp, run, tmp)
        if valgrind:
            cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes",
                   "--cachegrind-out-file=/dev/null", f"--log-file={tmp}/vg.%p", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp,
                              env=environment(run.pure, interp.floor_dir))
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"{' '.join(cmd[-4:])}: exit {proc.returncode}: {tail}")
        result: dict[str, Any] = {}
        lines = proc.stdout.strip().splitlines()
        if run.workload and lines and lines[-1].startswith("{"):
            result = json.loads(lines[-1])
        if valgrind:
            logs = sorted(glob.glob(f"{tmp}/vg.*"))
            result["instructions"] = sum(parse_irefs(Path(p).read_text()) for p in logs)
            result["processes"] = len(logs)
        return result


# -- the campaign -------------------------------------------------------------------


def needed_runs(interp: Interpreter, configs: Sequence[Config],
                quick: bool) -> tuple[list[Run], dict[str, str]]:
    """Every process to measure, and why each configuration left out was left out."""
    runs: list[Run] = []
    skipped: dict[str, str] = {}

    def add(*items: Run) -> None:
        for item in items:
            if item not in runs:
                runs.append(item)

    def sized(tool: str, workload: str, pure: bool = False) -> list[Run]:
        wl = WORKLOADS[workload]
        size = wl.quick if quick else wl.size
        return [Run(tool, workload, 0, pure), Run(tool, workload, size, pure)]

    for cfg in configs:
        if interp.version < cfg.min_version:
            skipped[cfg.name] = (f"needs Python {cfg.min_version[0]}.{cfg.min_version[1]}+ "
                                 "(sys.monitoring)")
            continue
        if cfg.name == "floor" and interp.floor_dir is None:
            skipped[cfg.name] = interp.floor_reason
            continue
        if cfg.kind == "process":
            add(Run("bare"), *(Run(cfg.tool, pure=p == "pure") for p in PATHS))
            add(Run("trivial")) if cfg.name == "record-trivial" else None
            if cfg.peer:
                peer_module = "viztracer"
                if peer_module in interp.missing:
                    skipped[cfg.name + ":peer"] = interp.missing[peer_module]
                else:
                    add(Run(cfg.peer))
            continue
        if cfg.workload == "sympy" and "sympy" in interp.missing:
            skipped[cfg.name] = interp.missing["sympy"]
            continue
        add(*sized("untraced", cfg.workload))
        if cfg.tool:
            for p in PATHS:
                add(*sized(cfg.tool, cfg.workload, p == "pure"))
        if cfg.peer.startswith("="):
            continue  # another row of the table: nothing more to run
        if cfg.peer:
            if cfg.peer.startswith("viztracer") and "viztracer" in interp.missing:
                skipped[cfg.name + ":peer"] = interp.missing["viztracer"]
            else:
                add(*sized(cfg.peer, cfg.workload))
    return runs, skipped


def check(interp: Interpreter, run: Run, got: dict[str, Any], untraced: dict[str, Any],
          calls: int) -> None:
    """A measured run must give the untraced digest, and a tracer must see the calls."""
    if run.workload and "digest" in untraced and got.get("digest") != untraced["digest"]:
        raise RuntimeError(f"{run.key()}: digest {got.get('digest')!r}, "
                           f"untraced {untraced['digest']!r}")
    if run.size and "events" in got and got["events"] < calls:
        raise RuntimeError(f"{run.key()}: {got['events']} events for {calls} calls")
    if run.tool == "fntrace-nomatch" and got.get("hits", 0):
        raise RuntimeError(f"{run.key()}: a filter that matches nothing called back")
    if run.tool == "fntrace-sympy-one" and run.size and got.get("enabled") != 1:
        raise RuntimeError(f"{run.key()}: the filter selected {got.get('enabled')} functions, "
                           "not 1")


def probe_modules(interp: Interpreter) -> None:
    for module in ("viztracer", "sympy"):
        proc = subprocess.run([interp.path, "-c", f"import {module}"], capture_output=True,
                              text=True, env=environment(False, None))
        if proc.returncode != 0:
            interp.missing[module] = (f"{module} is not installed for {interp.path} "
                                      f"(pip install {module} there to measure it)")


def campaign(interp: Interpreter, configs: Sequence[Config], quick: bool,
             jobs: int) -> dict[str, Any]:
    probe_modules(interp)
    runs, skipped = needed_runs(interp, configs, quick)
    for name, why in skipped.items():
        print(f"  skipped {name}: {why}", flush=True)
    # Natively first: warm the bytecode caches, count the calls, check the digests.
    native: dict[str, dict[str, Any]] = {}
    oracle: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.workload and run.tool != "untraced" and run.size == 0:
            continue
        native[run.key()] = execute(interp, run, valgrind=False)
        if run.workload and run.tool == "untraced":
            oracle[run.key()] = execute(interp, Run("oracle", run.workload, run.size), False)
    for run in runs:
        if not run.workload or run.size == 0 or run.tool == "untraced":
            continue
        base = Run("untraced", run.workload, run.size)
        calls = calls_between(oracle, run.workload, run.size, "calls")
        check(interp, run, native[run.key()], native[base.key()], calls)
    print(f"  {len(runs)} runs under valgrind ({jobs} at a time)...", flush=True)
    counted: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(execute, interp, run, True): run for run in runs}
        for future in concurrent.futures.as_completed(futures):
            run = futures[future]
            counted[run.key()] = future.result()
            print(f"    {run.key()}: {counted[run.key()]['instructions']:,}", flush=True)
    return {"configs": [c.name for c in configs], "runs": counted, "native": native,
            "oracle": oracle, "skipped": skipped,
            "valgrind_seconds": round(time.monotonic() - started, 1)}


def calls_between(oracle: dict[str, dict[str, Any]], workload: str, size: float,
                  field: str) -> int:
    at_n = oracle[Run("untraced", workload, size).key()][field]
    at_0 = oracle[Run("untraced", workload, 0).key()][field]
    return int(at_n - at_0)


def figures(data: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """The table's rows from one interpreter's counts."""
    runs, oracle = data["runs"], data["oracle"]
    rows: list[dict[str, Any]] = []
    by_name: dict[str, dict[str, Any]] = {}

    def count(tool: str, workload: str = "", size: float = 0, pure: bool = False) -> int | None:
        got = runs.get(Run(tool, workload, size, pure).key())
        return None if got is None else int(got["instructions"])

    for cfg in CONFIGS:
        if cfg.name not in data["configs"]:
            continue
        if cfg.name in data["skipped"]:
            rows.append({"config": cfg.name, "label": cfg.label,
                         "skipped": data["skipped"][cfg.name]})
            continue
        row: dict[str, Any] = {"config": cfg.name, "label": cfg.label, "kind": cfg.kind}
        if cfg.kind == "process":
            bare = count("bare")
            if bare is None:
                continue
            base = count("trivial") if cfg.name == "record-trivial" else bare
            for path in PATHS:
                total = count(cfg.tool, pure=path == "pure")
                if total is not None and base is not None:
                    row[path] = total - bare
                    row[path + "_total"] = total
            peer = count(cfg.peer)
            if peer is not None:
                row["peer"] = peer - bare
                row["peer_total"] = peer
            row["peer_label"] = cfg.peer_label
            row["bare"] = bare
            if base != bare:
                row["base_total"] = base
        else:
            wl = WORKLOADS[cfg.workload]
            size = wl.quick if quick else wl.size
            if Run("untraced", cfg.workload, size).key() not in runs:
                continue
            u_n, u_0 = count("untraced", cfg.workload, size), count("untraced", cfg.workload)
            assert u_n is not None and u_0 is not None
            field = "codes" if wl.unit == "code object" else "calls"
            calls = calls_between(oracle, cfg.workload, size, field)
            row.update({"workload": cfg.workload, "size": size, "unit": wl.unit,
                        "calls": calls, "untraced_per_call": (u_n - u_0) / calls,
                        "untraced_n": u_n, "untraced_0": u_0})

            def figure(tool: str, pure: bool = False, cfg: Config = cfg, size: float = size,
                       calls: int = calls, u_n: int = u_n, u_0: int = u_0) -> float | None:
                t_n = count(tool, cfg.workload, size, pure)
                t_0 = count(tool, cfg.workload, 0, pure)
                if t_n is None or t_0 is None:
                    return None
                if cfg.kind == "percent":
                    return percent_over(t_n, t_0, u_n, u_0)
                return per_call(t_n, t_0, u_n, u_0, calls)

            if cfg.tool:
                for path in PATHS:
                    row[path] = figure(cfg.tool, path == "pure")
            if cfg.peer.startswith("="):
                other = by_name.get(cfg.peer[1:], {})
                row["peer_c"], row["peer_pure"] = other.get("c"), other.get("pure")
            elif cfg.peer:
                row["peer"] = figure(cfg.peer)
            row["peer_label"] = cfg.peer_label
            if cfg.name + ":peer" in data["skipped"]:
                row["peer_skipped"] = data["skipped"][cfg.name + ":peer"]
        by_name[cfg.name] = row
        rows.append(row)
    return rows


# -- output ---------------------------------------------------------------------------


def fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "percent":
        return f"{value:+.1f}%"
    if kind == "process":
        return f"{value / 1e6:,.1f}M"
    return f"{value:,.0f}"


def table(doc: dict[str, Any]) -> str:
    """One interpreter's markdown table."""
    fntrace_at = doc.get("fntrace_commit")
    out = [f"#### Python {doc['python']} (commit {doc['commit']}"
           f"{f', fntrace/ as of {fntrace_at}' if fntrace_at else ''}"
           f"{', quick sizes' if doc['quick'] else ''})", "",
           "| configuration | workload | fntrace C | fntrace pure | peer | peer's figure |"
           " untraced per call |",
           "|---|---|---:|---:|---|---:|---:|"]
    for row in doc["rows"]:
        if "skipped" in row:
            out.append(f"| {row['label']} | — | — | — | skipped: {row['skipped']} | — | — |")
            continue
        kind = row["kind"]
        if row["config"] == "floor":
            out.append(f"| {row['label']} | fib ({row['calls']:,} calls) | — | — | floor | "
                       f"{fmt(row.get('peer'), kind)} | {row['untraced_per_call']:,.0f} |")
            continue
        if kind == "process":
            workload = f"whole process, less `python -c pass` ({fmt(row['bare'], kind)})"
            untraced = "—"
        else:
            unit = row["unit"]
            workload = (f"{row['workload']} ({row['calls']:,} {unit}s)" if kind == "per-call"
                        else f"`import sympy` ({row['untraced_n'] - row['untraced_0']:,} "
                             "instructions untraced)")
            untraced = (f"{row['untraced_per_call']:,.0f}" if kind == "per-call" else "—")
        if "peer_c" in row:
            peer = (f"C {fmt(row['peer_c'], kind)}, pure {fmt(row['peer_pure'], kind)}; "
                    f"ratio C {ratio(row.get('c'), row['peer_c'])}, "
                    f"pure {ratio(row.get('pure'), row['peer_pure'])}")
        elif "peer_skipped" in row:
            peer = f"skipped: {row['peer_skipped']}"
        else:
            peer = fmt(row.get("peer"), kind)
        out.append(f"| {row['label']} | {workload} | {fmt(row.get('c'), kind)} | "
                   f"{fmt(row.get('pure'), kind)} | {row.get('peer_label') or '—'} | {peer} | "
                   f"{untraced} |")
    return "\n".join(out)


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}x"


SECTION_TEXT = """\
## Instructions per traced call (valgrind): `bench/instructions.py`

Each figure is the **extra instructions per traced call over the untraced
run**, ((T_N - T_0) - (U_N - U_0)) / calls: T traced, U untraced, N the
workload's size, 0 the same script at size 0 (start-up, imports, the tool's
set-up and a warm-up removed), calls the Python entries in between (a
`sys.setprofile` oracle). Counted by valgrind's cachegrind with
`--cache-sim=no`, `PYTHONHASHSEED=0`. *fntrace C* is the default C hot path,
*pure* `FNTRACE_PURE=1`; peers run once per interpreter. The floor is a C
extension (`bench/floor/floor.c`, built by the script) whose PY_START and
PY_RETURN callbacks return None at once: CPython's dispatch of the two
events, under which no sys.monitoring tracer can go. Workloads: *fib* recursive
Fibonacci (`workloads/callheavy.py`), *objects* a tree walk whose arguments and
return values are user objects with the default `__repr__`
(`workloads/objects.py`), *mixed* the stdlib program of the time campaign
(`workloads/mixed.py`), *generated* distinct generated functions called once
each, under one ops whose filter selects none (`workloads/generated.py`; per
code object). *record* runs the child under `python -m fntrace record`
(function_graph into a file, writer thread included). The whole-process rows
count everything the process executes, less bare `python -c pass`.

Why instructions beside seconds: the instruction count of a run is
deterministic (the same count to within a few hundred instructions run after
run), while CPU time of one identical run on this shared 2-core machine
varies up to 2x. Instructions do not see what costs time without costing
instructions: a clock read (`clock_gettime` through the vDSO is a few dozen
instructions but tens of cycles, more under a hypervisor), cache and TLB
misses (a large ring or buffer written once per call), and branch
mispredictions. Where the two campaigns disagree, that is where to look.
"""


def render_section(docs: Iterable[dict[str, Any]]) -> str:
    parts = [BEGIN, SECTION_TEXT]
    for doc in docs:
        parts.append(table(doc))
        parts.append(f"\n{doc['valgrind']}, {doc['date']}; {doc['runs_measured']} processes "
                     f"under valgrind in {doc['valgrind_seconds']:.0f} s "
                     f"(whole run {doc['seconds']:.0f} s).\n")
    parts.append(END)
    return "\n".join(parts) + "\n"


def write_section(section: str, path: Path = RESULTS_MD) -> None:
    """Replace the section between the markers, or append it; the rest stays as it is."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def git_commit(path: str = "") -> str:
    """HEAD's short hash, or that of the last commit that changed ``path``."""
    cmd = ["git", "log", "-1", "--format=%h", "--", path] if path else [
        "git", "rev-parse", "--short", "HEAD"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip() or "unknown"


def valgrind_version() -> str:
    if not shutil.which("valgrind"):
        raise SystemExit("instructions.py: valgrind is not installed (apt-get install valgrind)")
    return subprocess.run(["valgrind", "--version"], capture_output=True,
                          text=True).stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", action="append", metavar="PY",
                    help="interpreter to measure (repeatable; default: "
                         + ", ".join(DEFAULT_PYTHONS) + ")")
    ap.add_argument("--only", action="append", metavar="CONFIG", choices=CONFIG_NAMES,
                    help="only this configuration (repeatable): " + ", ".join(CONFIG_NAMES))
    ap.add_argument("--quick", action="store_true",
                    help="small sizes (a smoke run); RESULTS.md untouched")
    ap.add_argument("--jobs", type=int, default=2, help="valgrind processes at a time")
    ap.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    ap.add_argument("--render", nargs="+", metavar="JSON",
                    help="rewrite RESULTS.md's section from saved results, run nothing")
    ns = ap.parse_args(argv)
    if ns.render:
        docs = [json.loads(Path(p).read_text()) for p in ns.render]
        section = render_section(docs)
        print(section)
        write_section(section)
        return 0
    vg = valgrind_version()
    configs = [c for c in CONFIGS if not ns.only or c.name in ns.only]
    commit = git_commit()
    fntrace_commit = git_commit("fntrace")
    RESULTS_DIR.mkdir(exist_ok=True)
    written: list[Path] = []
    for python in ns.python or DEFAULT_PYTHONS:
        started = time.monotonic()
        interp = describe(python)
        print(f"Python {interp.full_version} ({interp.path}):", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-floor-") as floor_tmp:
            if interp.version >= (3, 12) and any(c.name == "floor" for c in configs):
                try:
                    build_floor(interp.path, floor_tmp)
                    interp.floor_dir = floor_tmp
                except Unavailable as exc:
                    interp.floor_reason = str(exc)
            data = campaign(interp, configs, ns.quick, ns.jobs)
        doc = {"python": interp.full_version, "executable": interp.path, "commit": commit,
               "fntrace_commit": fntrace_commit,
               "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "valgrind": vg, "quick": ns.quick, "sizes": {
                   k: (w.quick if ns.quick else w.size) for k, w in WORKLOADS.items()},
               "runs_measured": len(data["runs"]), "valgrind_seconds": data["valgrind_seconds"],
               "seconds": round(time.monotonic() - started, 1), **data}
        doc["rows"] = figures(data, ns.quick)
        print(table(doc), flush=True)
        suffix = "-quick" if ns.quick else ""
        out = RESULTS_DIR / f"instructions-{interp.full_version}-{commit}{suffix}.json"
        out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        written.append(out)
        print(f"  wrote {out.relative_to(ROOT)} ({doc['seconds']:.0f} s)", flush=True)
    if not ns.quick and not ns.no_write:
        docs = [json.loads(p.read_text()) for p in
                sorted(RESULTS_DIR.glob(f"instructions-*-{commit}.json"))]
        write_section(render_section(docs))
        print(f"rewrote the instruction section of {RESULTS_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
