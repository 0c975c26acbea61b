#!/usr/bin/env python3
"""Benchmark: a trace filter selecting a module that makes ~0.1% of the calls.

    python3 bench/run_selective.py            # the full campaign (~10 minutes)
    python3 bench/run_selective.py --quick    # 2 short runs, for development

Each configuration runs in a fresh subprocess (selective_child.py), the
configurations alternating round-robin, on every interpreter found (python3
and pyenv's 3.12.* and 3.13.*).  Peers come from PyPI into per-interpreter
venvs under bench/.venvs/, made here on first use; a peer that does not
install is recorded as unavailable.  Results: bench/results/*.json and
bench/RESULTS_SELECTIVE.md.  The whole suite (this campaign, the tracer
campaign, one summary in bench/RESULTS.md) is bench/run.py, which imports
this module.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENVS = os.path.join(HERE, ".venvs")
RESULTS_DIR = os.path.join(HERE, "results")
RESULTS_MD = os.path.join(HERE, "RESULTS_SELECTIVE.md")  # bench/run.py writes RESULTS.md
CHILD = os.path.join(HERE, "selective_child.py")
NOTES_MARKER = "<!-- Notes below this line are written by hand; run_selective.py keeps them. -->"

# Installed into every venv (ensure_venv); the tracer campaign uses pyftrace too.
PEER_PACKAGES = ("viztracer", "hunter", "pyftrace")

# name -> (needs package, scale key, description).  Scale key "full" is the
# whole program; "small" a shorter run (with its own untraced baseline) for
# tools too slow to run the whole program 5 times per interpreter.
CONFIGS: dict[str, tuple[str | None, str, str]] = {
    "untraced": (None, "full", "the program, no tracer"),
    "fntrace": (None, "full", "fntrace, filter '*:mod:<target>', func+ret recorder"),
    "cprofile": (None, "full", "cProfile, whole program (no filter exists)"),
    "viztracer-include": ("viztracer", "full", "VizTracer include_files=[target file], in memory"),
    "viztracer-all": ("viztracer", "full", "VizTracer whole program, in memory, no save"),
    "untraced-small": (None, "small", "the program at the small scale, no tracer"),
    "hunter": ("hunter", "small", "hunter Q(module=<target>, kind_in=call/return), profile mode"),
}
# Variants that tell where fntrace's time goes; 3.12+ only (on 3.11 every call goes
# through the sys.setprofile hook whatever the filter, see RESULTS.md).
DIAGNOSTICS: dict[str, tuple[str | None, str, str]] = {
    "fntrace-noop": ("monitoring", "full", "fntrace, same filter, callbacks that do nothing"),
    "fntrace-nomatch": ("monitoring", "full", "fntrace, a filter that selects no function"),
    "mon-disable": ("monitoring", "full", "raw sys.monitoring: PY_START -> DISABLE for all code"),
    "mon-disable-unwind": ("monitoring", "full",
                           "mon-disable plus global PY_THROW/PY_UNWIND, as fntrace sets them"),
    "mon-select": ("monitoring", "full",
                   "raw sys.monitoring: same selection and recorder as fntrace, minimal Python"),
}
PEERS = ("cprofile", "viztracer-include", "viztracer-all", "hunter")
# Configurations that trace only the selection: overhead per target call is meaningful.
SELECTIVE = ("fntrace", "fntrace-noop", "mon-select")
TARGET_LABEL = "workloads.selective.target"


# -- interpreters and venvs ---------------------------------------------------------


def _probe(exe: str) -> dict[str, Any] | None:
    code = ("import sys, json; print(json.dumps({'version': sys.version.split()[0], "
            "'full': sys.version, 'executable': sys.executable, "
            "'tuple': list(sys.version_info[:2])}))")
    try:
        out = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=60,
                             check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def find_interpreters(only: list[str] | None) -> list[dict[str, Any]]:
    candidates = []
    which = shutil.which("python3")
    if which:
        candidates.append(which)
    for minor in ("3.12", "3.13"):
        candidates += sorted(glob.glob(f"/root/.pyenv/versions/{minor}.*/bin/python3"))
    found: dict[str, dict[str, Any]] = {}
    for exe in candidates:
        info = _probe(exe)
        if info is None or tuple(info["tuple"]) < (3, 11):
            continue
        minor = "{}.{}".format(*info["tuple"])
        if only and minor not in only:
            continue
        found.setdefault(minor, info)  # first one found of each minor version
    return [found[k] for k in sorted(found, key=lambda v: tuple(map(int, v.split("."))))]


def ensure_venv(interp: dict[str, Any], log: Any) -> dict[str, Any]:
    """A venv for this interpreter with the peers that install; never raises."""
    minor = "{}.{}".format(*interp["tuple"])
    venv = os.path.join(VENVS, f"py{minor}")
    py = os.path.join(venv, "bin", "python")
    available: dict[str, str | None] = {}
    notes: dict[str, str] = {}
    if not os.path.exists(py):
        log(f"[{minor}] creating {os.path.relpath(venv, ROOT)}")
        r = subprocess.run([interp["executable"], "-m", "venv", venv], capture_output=True,
                           text=True)
        if r.returncode != 0:
            notes["venv"] = r.stderr.strip()[-500:]
            py = interp["executable"]
    for pkg in PEER_PACKAGES:
        version = _package_version(py, pkg)
        if version is None and py != interp["executable"]:
            log(f"[{minor}] pip install {pkg}")
            r = subprocess.run([py, "-m", "pip", "install", "--disable-pip-version-check",
                                "-q", pkg], capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                notes[pkg] = (r.stderr or r.stdout).strip()[-500:]
            version = _package_version(py, pkg)
        available[pkg] = version
        if version is None:
            log(f"[{minor}] {pkg}: unavailable")
    available["monitoring"] = "sys.monitoring" if tuple(interp["tuple"]) >= (3, 12) else None
    available["fntrace C hot path"] = _build_speedups(py, minor, log, notes)
    site_dirs = _site_dirs(py)
    return {"python": py, "site_dirs": site_dirs, "available": available,
            "install_notes": notes}


def _build_speedups(py: str, minor: str, log: Any, notes: dict[str, str]) -> str | None:
    """Build fntrace's C extension in the work tree for this interpreter, as
    ``pip install`` does, so the children measure what users run (None: not
    built, the pure-Python path is measured; FNTRACE_PURE=1 asks for that)."""
    if os.environ.get("FNTRACE_PURE", "") not in ("", "0"):
        return None
    if _package_version(py, "setuptools") is None:
        subprocess.run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q",
                        "setuptools"], capture_output=True, text=True, timeout=900)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([py, "setup.py", "-q", "build_ext", "--inplace", "--build-temp", tmp],
                           cwd=ROOT, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        notes["fntrace C hot path"] = (r.stderr or r.stdout).strip()[-500:]
        log(f"[{minor}] fntrace's C extension did not build: the pure-Python path is measured")
        return None
    return "built"


def _site_dirs(py: str) -> list[str]:
    """The venv's site-packages, for children started with -S (see run_child)."""
    code = ("import json, sysconfig; p = sysconfig.get_paths(); "
            "print(json.dumps(sorted({p['purelib'], p['platlib']})))")
    try:
        r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=60,
                           check=True)
        return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return []


def _package_version(py: str, pkg: str) -> str | None:
    code = (f"import importlib.metadata as m, {pkg}; print(m.version({pkg!r}))")
    try:
        r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    out = r.stdout.strip().splitlines()
    return out[-1] if r.returncode == 0 and out else None


# -- running ----------------------------------------------------------------------------


def run_child(venv: dict[str, Any], config: str, scale: float,
              timeout: float) -> dict[str, Any]:
    """One run in a fresh process.

    Started with -S: hunter and manhole install .pth files that import them at
    every interpreter start, which would load hunter into every configuration.
    The child appends the venv's site-packages to sys.path itself, .pth-free.
    """
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the child puts this work tree first itself
    env["PYTHONHASHSEED"] = "0"
    env["BENCH_SITE_DIRS"] = os.pathsep.join(venv.get("site_dirs", []))
    try:
        r = subprocess.run([venv["python"], "-S", CHILD, config, repr(scale)],
                           capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"config": config, "error": f"timeout after {timeout:.0f} s"}
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        return {"config": config, "error": (r.stderr or r.stdout).strip()[-800:]}
    try:
        return json.loads(lines[-1])  # type: ignore[no-any-return]
    except ValueError:
        return {"config": config, "error": f"unreadable output: {lines[-1][:200]}"}


def campaign(args: argparse.Namespace) -> dict[str, Any]:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t_start = time.time()
    interps = find_interpreters(args.only)
    if not interps:
        raise SystemExit("no interpreter >= 3.11 found")
    scales = {"full": args.scale, "small": args.scale * args.small_fraction}
    table: dict[str, Any] = {}
    plans: dict[str, list[str]] = {}
    for interp in interps:
        minor = "{}.{}".format(*interp["tuple"])
        env = ensure_venv(interp, log)
        configs = dict(CONFIGS)
        if args.diagnose:
            configs.update(DIAGNOSTICS)
        if args.configs:
            configs = {k: v for k, v in configs.items()
                       if k in args.configs or k in ("untraced", "untraced-small")}
            if not any(v[1] == "small" and k != "untraced-small" for k, v in configs.items()):
                configs.pop("untraced-small", None)
        plan, unavailable = [], {}
        for name, (needs, _scale, _desc) in configs.items():
            if needs is not None and not env["available"].get(needs):
                unavailable[name] = ("needs sys.monitoring, 3.12+" if needs == "monitoring"
                                     else f"{needs} did not install")
            else:
                plan.append(name)
        plans[minor] = plan
        table[minor] = {"interpreter": interp, "venv": env, "configs": {},
                        "unavailable": unavailable, "runs": {n: [] for n in plan},
                        "errors": {}}
        # The oracle doubles as the warm-up run (bytecode caches, page cache).
        log(f"[{minor}] oracle: counting calls with sys.setprofile")
        table[minor]["oracle"] = {key: run_child(env, "oracle", s, args.timeout)
                                  for key, s in scales.items()
                                  if any(configs[c][1] == key for c in plan)}
        if args.diagnose and "fntrace" in plan:
            # One extra run with fntrace's internals timed from outside (untimed as a whole).
            table[minor]["fntrace_internals"] = run_child(env, "fntrace-timed", args.scale,
                                                          args.timeout)
        orc = table[minor]["oracle"].get("full", {})
        if "target_starts" in orc:
            log(f"[{minor}] oracle: {orc['starts']} calls, {orc['target_starts']} in "
                f"{TARGET_LABEL} = {100 * orc['target_fraction']:.3f}%")
    for rnd in range(args.runs):
        for interp in interps:
            minor = "{}.{}".format(*interp["tuple"])
            entry = table[minor]
            for name in plans[minor]:
                scale = scales[(CONFIGS | DIAGNOSTICS)[name][1]]
                child_config = "untraced" if name == "untraced-small" else name
                res = run_child(entry["venv"], child_config, scale, args.timeout)
                if "error" in res:
                    entry["errors"].setdefault(name, []).append(res["error"])
                    log(f"[{minor}] run {rnd + 1} {name}: ERROR {res['error'][-300:]}")
                    continue
                res["round"] = rnd
                res["seconds"] = res["cpu_s" if args.metric == "cpu" else "wall_s"]
                entry["runs"][name].append(res)
                log(f"[{minor}] run {rnd + 1}/{args.runs} {name:18s} cpu {res['cpu_s']:8.3f} s"
                    f"  wall {res['wall_s']:8.3f} s")
    for minor, entry in table.items():
        entry["configs"] = summarise(entry, plans[minor])
    return {
        "benchmark": "selective",
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {"metric": args.metric, "runs": args.runs, "scale": args.scale,
                     "small_scale": scales["small"],
                     "diagnose": args.diagnose, "target_module": TARGET_LABEL,
                     "filter": f"*:mod:{TARGET_LABEL}"},
        "wall_seconds": round(time.time() - t_start, 1),
        "interpreters": table,
    }



# -- summary ------------------------------------------------------------------------------


def summarise(entry: dict[str, Any], plan: list[str]) -> dict[str, Any]:
    runs = entry["runs"]
    oracle = entry.get("oracle", {})
    base_of = {"full": "untraced", "small": "untraced-small"}
    out: dict[str, Any] = {}
    medians = {n: statistics.median(r["seconds"] for r in runs[n]) for n in plan if runs[n]}
    wall = {n: statistics.median(r["wall_s"] for r in runs[n]) for n in plan if runs[n]}
    for name in plan:
        if name not in medians:
            continue
        scale_key = (CONFIGS | DIAGNOSTICS)[name][1]
        base = base_of[scale_key]
        orc = oracle.get(scale_key, {})
        row: dict[str, Any] = {
            "description": (CONFIGS | DIAGNOSTICS)[name][2],
            "scale_key": scale_key,
            "n": len(runs[name]),
            "median_s": medians[name],
            "min_s": min(r["seconds"] for r in runs[name]),
            "max_s": max(r["seconds"] for r in runs[name]),
            "median_wall_s": wall[name],
            "median_cpu_s": statistics.median(r["cpu_s"] for r in runs[name]),
            "median_start_s": statistics.median(r["start_s"] for r in runs[name]),
            "median_stop_s": statistics.median(r["stop_s"] for r in runs[name]),
            "digest_ok": all(r["digest"] == orc.get("digest") for r in runs[name]),
        }
        rss = [r["rss_kib"] for r in runs[name] if "rss_kib" in r]
        if rss:
            row["median_rss_kib"] = statistics.median(rss)
        if base in medians:
            row["ratio"] = medians[name] / medians[base]
            row["wall_ratio"] = wall[name] / wall[base]
            paired = _paired_ratios(runs[name], runs[base])
            if paired:
                row["paired_ratio_median"] = statistics.median(paired)
                row["paired_ratio_min"] = min(paired)
                row["paired_ratio_max"] = max(paired)
            overhead = medians[name] - medians[base]
            if orc.get("target_starts") and name in SELECTIVE:
                row["ns_per_target_call"] = overhead / orc["target_starts"] * 1e9
            if orc.get("starts"):
                row["ns_per_program_call"] = overhead / orc["starts"] * 1e9
        last = runs[name][-1]
        for key in ("entries", "exits"):
            if key in last:
                row[key] = last[key]
                row[f"{key}_all_runs_equal"] = len({r.get(key) for r in runs[name]}) == 1
        if "entries" in row and orc:
            want = (0, 0) if name == "fntrace-nomatch" else (orc.get("target_entries"),
                                                             orc.get("target_exits"))
            row["oracle_entries"], row["oracle_exits"] = want
            row["counts_match"] = (row["entries"] == want[0]
                                   and row.get("exits", want[1]) == want[1])
        out[name] = row
    fn = out.get("fntrace")
    if fn and "ratio" in fn:
        for peer in PEERS:
            if peer in out and "ratio" in out[peer]:
                out[peer]["fntrace_over_peer"] = fn["ratio"] / out[peer]["ratio"]
    return out


def _paired_ratios(runs: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[float]:
    by_round = {r["round"]: r["seconds"] for r in base}
    return [r["seconds"] / by_round[r["round"]] for r in runs if r["round"] in by_round]


def machine_info() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {"nproc": os.cpu_count(), "cpu": cpu, "platform": platform.platform(),
            "loadavg_at_end": [round(x, 2) for x in load]}


# -- report -------------------------------------------------------------------------------


def _fmt(x: Any, spec: str, missing: str = "—") -> str:
    return missing if x is None else format(x, spec)


def render_tables(data: dict[str, Any]) -> str:
    metric = data["settings"]["metric"]
    lines: list[str] = []
    for _minor, entry in data["interpreters"].items():
        interp = entry["interpreter"]
        orc = entry.get("oracle", {}).get("full", {})
        small = entry.get("oracle", {}).get("small", {})
        lines.append(f"### Python {interp['version']}")
        lines.append("")
        if "starts" in orc:
            lines.append(
                f"Oracle (sys.setprofile): {orc['starts']:,} Python function calls, "
                f"{orc['target_starts']:,} of them in `{TARGET_LABEL}` "
                f"= **{100 * orc['target_fraction']:.3f}%**"
                + (f"; small scale: {small['starts']:,} calls, {small['target_starts']:,} "
                   f"in the target." if "starts" in small else "."))
            lines.append("")
        lines.append(f"| configuration | median {metric} s | ratio to untraced | paired ratios "
                     "(min-max) | wall-time ratio | fntrace / peer | overhead ns per target "
                     "call | overhead ns per program call | target calls recorded "
                     "(entries / exits) | oracle | equal |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|")
        for name, row in entry["configs"].items():
            scale_note = " (small scale)" if row["scale_key"] == "small" else ""
            rec = "—"
            if "entries" in row:
                rec = f"{row['entries']:,}" + (f" / {row['exits']:,}" if "exits" in row else "")
            orc_txt, eq = "—", ""
            if "oracle_entries" in row:
                orc_txt = f"{row['oracle_entries']:,} / {row['oracle_exits']:,}"
                eq = "yes" if row["counts_match"] else "**no**"
            if not row["digest_ok"]:
                eq += " (output differs!)"
            paired = "—"
            if "paired_ratio_min" in row and not name.startswith("untraced"):
                paired = f"{row['paired_ratio_min']:.3f} to {row['paired_ratio_max']:.3f}"
            lines.append(
                f"| {name}{scale_note} | {row['median_s']:.3f} | "
                f"**{_fmt(row.get('ratio'), '.3f')}x** | {paired} | "
                f"{_fmt(row.get('wall_ratio'), '.3f')}x | "
                f"{_fmt(row.get('fntrace_over_peer'), '.2f')} | "
                f"{_fmt(row.get('ns_per_target_call'), ',.0f')} | "
                f"{_fmt(row.get('ns_per_program_call'), ',.1f')} | {rec} | {orc_txt} | {eq} |")
        diag_skipped = []
        for name, why in entry["unavailable"].items():
            if "sys.monitoring" in why:
                diag_skipped.append(name)
                continue
            lines.append(f"| {name} | — | not run: {why} | | | | | | | | |")
        for name, errs in entry["errors"].items():
            last = errs[0].strip().splitlines()[-1][:120] if errs[0].strip() else "?"
            lines.append(f"| {name} | — | {len(errs)} run(s) failed: {last} | | | | | | | | |")
        lines.append("")
        if diag_skipped:
            lines.append(f"Not run on this interpreter (they need sys.monitoring, 3.12+): "
                         f"{', '.join(diag_skipped)}.")
            lines.append("")
        fn = entry["configs"].get("fntrace")
        if fn and "ratio" in fn:
            lines.append(f"fntrace: register() {1e3 * fn['median_start_s']:.1f} ms, "
                         f"unregister() {1e3 * fn['median_stop_s']:.2f} ms (medians, wall, "
                         f"inside the timed region).")
        internals = entry.get("fntrace_internals")
        if internals and "discover_n" in internals:
            lines.append(
                f"fntrace internals (one extra run, timed from outside): first look "
                f"(engine.discover) {internals['discover_n']} code objects in "
                f"{internals['discover_ns'] / 1e6:.2f} ms "
                f"({internals['discover_ns'] / max(1, internals['discover_n']) / 1e3:.1f} µs "
                f"each), {internals['discover_sites']} became sites; backend.rediscover "
                f"(restart_events on 3.12+) {internals['rediscover_n']}x in "
                f"{internals['rediscover_ns'] / 1e6:.3f} ms.")
        lines.append("")
    return "\n".join(lines)


def hand_notes(path: str, marker: str) -> str:
    """The hand-written part of a results file (after ``marker``), kept across runs."""
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        old = f.read()
    return old.split(marker, 1)[1] if marker in old else ""


def write_results_md(data: dict[str, Any], json_path: str) -> None:
    notes = hand_notes(RESULTS_MD, NOTES_MARKER)
    m = data["machine"]
    pythons = ", ".join(e["interpreter"]["version"] for e in data["interpreters"].values())
    peers = []
    for minor, e in data["interpreters"].items():
        av = e["venv"]["available"]
        peers.append(f"{minor}: " + ", ".join(f"{k} {v or 'unavailable'}" for k, v in av.items()
                                              if k != "monitoring"))
    s = data["settings"]
    head = [
        "# Benchmark results: selective tracing (filter selects ~0.1% of calls)",
        "",
        "Generated by `python3 bench/run_selective.py` alone (see README.md; "
        "`python3 bench/run.py` runs this campaign too and writes RESULTS.md); raw data in "
        f"`bench/results/{os.path.basename(json_path)}` (not committed).",
        "",
        f"- Date: {data['date']}",
        f"- Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['platform']}; "
        f"load average at the end {m['loadavg_at_end']}",
        f"- Pythons: {pythons}",
        f"- Peers (PyPI, per-interpreter venvs): {'; '.join(peers)}",
        f"- Runs: {s['runs']} per configuration, fresh process each, round-robin; medians. "
        f"Workload scale {s['scale']} (small scale {s['small_scale']:g} for hunter, with its "
        f"own untraced baseline). Campaign wall time {data['wall_seconds']:.0f} s.",
        f"- Filter: `{s['filter']}`.",
        "- Target: at most **1.05x** untraced on 3.12 and 3.13.",
        "",
        f"Columns: *median {s['metric']} s* is the median over the runs of the timed region "
        "(start tool, run program, stop tool) — raw data only; *ratio* is that median over "
        "the untraced median at the same scale; *paired ratios* are run-by-run ratios to the "
        "untraced run of the same round (their spread shows the noise); *wall-time ratio* the "
        "same ratio of wall-clock medians; *fntrace / peer* is fntrace's ratio over the "
        "peer's; *overhead ns per target call* is (median - untraced median) / calls the "
        "oracle counted in the target module, for the configurations that trace only that "
        "module; *per program call* divides by all the program's calls instead; "
        "*entries / exits* are the target module's calls each tool recorded, *oracle* what "
        "sys.setprofile counted (they must be equal).",
        "",
        "## Results",
        "",
        render_tables(data),
        NOTES_MARKER,
    ]
    with open(RESULTS_MD, "w") as f:
        f.write("\n".join(head) + (notes if notes else "\n"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per configuration (default 5)")
    ap.add_argument("--scale", type=float, default=1.0, help="workload scale (default 1.0)")
    ap.add_argument("--small-fraction", type=float, default=0.05,
                    help="scale of the 'small' runs relative to --scale (hunter; default 0.05)")
    ap.add_argument("--only", nargs="*", help="minor versions to run, e.g. 3.12 3.13")
    ap.add_argument("--configs", nargs="*", help="only these configurations (plus baselines)")
    ap.add_argument("--no-diagnose", dest="diagnose", action="store_false",
                    help="skip the variants that break fntrace's cost down")
    ap.add_argument("--quick", action="store_true", help="2 runs at scale 0.2 (development)")
    ap.add_argument("--metric", choices=("cpu", "wall"), default="cpu",
                    help="what the medians and ratios use: the timed region's process CPU time "
                         "(default; robust to other load on a shared machine) or wall time")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per child run")
    ap.add_argument("--no-write", action="store_true", help="do not write RESULTS_SELECTIVE.md")
    ap.add_argument("--render", metavar="JSON",
                    help="only rewrite RESULTS_SELECTIVE.md from saved raw data")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            write_results_md(json.load(f), args.render)
        print(f"report: {os.path.relpath(RESULTS_MD, ROOT)}")
        return
    if args.quick:
        args.runs, args.scale = 2, 0.2
    data = campaign(args)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = os.path.join(RESULTS_DIR, f"selective-{stamp}.json")
    with open(json_path, "w") as f:
        json.dump(data, f, indent=1)
    print(render_tables(data))
    print(f"raw data: {os.path.relpath(json_path, ROOT)}")
    if not args.no_write and not args.quick:
        write_results_md(data, json_path)
        print(f"report: {os.path.relpath(RESULTS_MD, ROOT)}")


if __name__ == "__main__":
    main()
