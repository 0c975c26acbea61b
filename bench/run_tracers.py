#!/usr/bin/env python3
"""Benchmark: the function and function_graph tracers beside cProfile and VizTracer.

    python3 bench/run_tracers.py                  # the campaign (~8-10 minutes)
    python3 bench/run_tracers.py --quick          # 2 runs, for development
    python3 bench/run_tracers.py --scales full --configs cprofile viztracer
                                                  # the peers on the workloads as written

Two workloads (bench/workloads/callheavy.py, bench/workloads/mixed.py), each
traced whole.  Every run is a fresh subprocess (tracers_child.py); the
configurations alternate round-robin on every interpreter found (python3 and
pyenv's 3.12.* and 3.13.*), with the peers from the per-interpreter venvs that
run_selective.py makes (bench/.venvs/; the set-up code is imported from it).
Results: bench/results/tracers-*.json and bench/RESULTS_TRACERS.md.  See
bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from run_selective import ensure_venv, find_interpreters, hand_notes, machine_info

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
RESULTS_MD = os.path.join(HERE, "RESULTS_TRACERS.md")
CHILD = os.path.join(HERE, "tracers_child.py")
NOTES_MARKER = "<!-- Notes below this line are written by hand; run_tracers.py keeps them. -->"

# Scales: "full" is each workload as written (~1-2 s untraced); "bench" a fraction of
# it at which the pure-Python tracers (50-200x on the call-heavy workload) fit the
# campaign's time budget.  Every ratio divides by the untraced run at the same scale.
# The campaign runs at bench scale; --scales full runs the fast configurations on the
# workloads as written (the peers' ratios agree within a few % between the two scales).
WORKLOADS: dict[str, dict[str, float]] = {
    "callheavy": {"full": 1.0, "bench": 0.025},  # fib(25) x 160 / x 4
    "mixed": {"full": 1.0, "bench": 0.072},      # 56 rounds / 4 rounds
}

# name -> (package it needs or None, scales it runs at, description)
CONFIGS: dict[str, tuple[str | None, tuple[str, ...], str]] = {
    "untraced": (None, ("full", "bench"), "the workload, no tracer"),
    "fntrace-function": (None, ("bench",),
                         'with fntrace.instance.trace("function"): every Python function, '
                         "ring buffer in memory (default 1408 KiB per thread)"),
    "fntrace-graph": (None, ("bench",), 'trace("function_graph"), in memory, same buffer'),
    "fntrace-graph-args-retval": (None, ("bench",),
                                  'trace("function_graph", funcgraph_args=1, '
                                  "funcgraph_retval=1)"),
    "fntrace-graph-record": (None, ("bench",),
                             "function_graph streaming into a trace file, as `fntrace "
                             "record` does (writer thread and file included, no loss)"),
    "cprofile": (None, ("full", "bench"), "cProfile.Profile().enable()/disable()"),
    "viztracer": ("viztracer", ("full", "bench"),
                  "VizTracer(verbose=0), defaults: C functions too, 1M-entry ring, "
                  "in memory, not saved"),
    "viztracer-py": ("viztracer", ("bench",), "VizTracer, ignore_c_function=True "
                     "(Python functions only, as fntrace)"),
    "viztracer-args": ("viztracer", ("bench",), "VizTracer, ignore_c_function=True, "
                       "log_func_args=True, log_func_retval=True"),
}
FNTRACE = ("fntrace-function", "fntrace-graph", "fntrace-graph-args-retval",
           "fntrace-graph-record")
PEERS = ("cprofile", "viztracer", "viztracer-py", "viztracer-args")
# Configurations whose parsing of what they recorded is slow: counted once (first run).
COUNT_ONCE = ("viztracer", "viztracer-py", "viztracer-args")
FNTRACE_ROOT = ""  # --fntrace-root: measure an fntrace copied elsewhere (a prototype)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_child(venv: dict[str, Any], config: str, workload: str, scale: float, timeout: float,
              count: bool = False) -> dict[str, Any]:
    """One run in a fresh process: the venv's python with -S (see run_selective.run_child)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the child puts this work tree first itself
    env["PYTHONHASHSEED"] = "0"
    env["BENCH_SITE_DIRS"] = os.pathsep.join(venv.get("site_dirs", []))
    if FNTRACE_ROOT:
        env["BENCH_FNTRACE_ROOT"] = FNTRACE_ROOT
    cmd = [venv["python"], "-S", CHILD, config, workload, repr(scale)]
    if count:
        cmd.append("--count")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                           cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"config": config, "error": f"timeout after {timeout:.0f} s"}
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        return {"config": config, "error": (r.stderr or r.stdout).strip()[-800:]}
    try:
        return json.loads(lines[-1])  # type: ignore[no-any-return]
    except ValueError:
        return {"config": config, "error": f"unreadable output: {lines[-1][:200]}"}


def key(workload: str, scale_key: str, config: str) -> str:
    return f"{workload}/{scale_key}/{config}"


def campaign(args: argparse.Namespace) -> dict[str, Any]:
    t_start = time.time()
    interps = find_interpreters(args.only)
    if not interps:
        raise SystemExit("no interpreter >= 3.11 found")
    fg = os.path.join(FNTRACE_ROOT or ROOT, "fntrace", "tracers", "function_graph.py")
    configs = {n: c for n, c in CONFIGS.items() if not args.configs or n in args.configs
               or n == "untraced"}
    graph_missing = not os.path.exists(fg)
    table: dict[str, Any] = {}
    plans: dict[str, list[tuple[str, str, str]]] = {}
    scales = {w: s for w, s in WORKLOADS.items() if not args.workloads or w in args.workloads}
    if args.bench_scale:
        for w, value in args.bench_scale:
            scales[w] = {**scales[w], "bench": float(value)}
    for interp in interps:
        minor = "{}.{}".format(*interp["tuple"])
        env = ensure_venv(interp, log)
        plan: list[tuple[str, str, str]] = []
        unavailable: dict[str, str] = {}
        for name, (needs, at, _desc) in configs.items():
            if needs is not None and not env["available"].get(needs):
                unavailable[name] = f"{needs} did not install"
                continue
            if graph_missing and name.startswith("fntrace-graph"):
                unavailable[name] = "fntrace/tracers/function_graph.py does not exist yet"
                continue
            for workload in scales:
                for scale_key in at:
                    if scale_key not in args.scales:
                        continue
                    plan.append((workload, scale_key, name))
        plan.sort(key=lambda t: (list(scales).index(t[0]), t[1] != "full",
                                 list(CONFIGS).index(t[2])))
        plans[minor] = plan
        entry: dict[str, Any] = {"interpreter": interp, "venv": env, "unavailable": unavailable,
                                 "runs": {key(*p): [] for p in plan}, "errors": {},
                                 "oracle": {}}
        table[minor] = entry
        # The oracle (sys.setprofile call counter, untimed, bench scale only: it costs
        # ~0.3 µs per call) doubles as the warm-up run (bytecode caches, page cache).
        for workload, s in scales.items():
            res = run_child(env, "oracle", workload, s["bench"], args.timeout)
            entry["oracle"][workload] = res
            if "error" in res:
                log(f"[{minor}] oracle {workload}: ERROR {res['error'][-300:]}")
            else:
                log(f"[{minor}] oracle {workload} x{s['bench']:g}: {res['entries']:,} Python "
                    f"entries, {res['exits']:,} exits, {res['c_calls']:,} C calls")
    for rnd in range(args.runs):
        for interp in interps:
            minor = "{}.{}".format(*interp["tuple"])
            entry = table[minor]
            for workload, scale_key, name in plans[minor]:
                k = key(workload, scale_key, name)
                count = name not in COUNT_ONCE or not entry["runs"][k]
                res = run_child(entry["venv"], name, workload, scales[workload][scale_key],
                                args.timeout, count=count)
                if "error" in res:
                    entry["errors"].setdefault(k, []).append(res["error"])
                    log(f"[{minor}] run {rnd + 1} {k}: ERROR {res['error'][-300:]}")
                    continue
                res["round"] = rnd
                res["seconds"] = res["cpu_s" if args.metric == "cpu" else "wall_s"]
                entry["runs"][k].append(res)
                log(f"[{minor}] run {rnd + 1}/{args.runs} {k:42s} cpu {res['cpu_s']:8.3f} s"
                    f"  wall {res['wall_s']:8.3f} s")
    for minor, entry in table.items():
        entry["results"] = summarise(entry, plans[minor], scales)
    return {
        "benchmark": "tracers",
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {"metric": args.metric, "runs": args.runs, "scales": scales,
                     "fntrace_root": FNTRACE_ROOT or ROOT, "scales_run": args.scales,
                     "configs": {n: c[2] for n, c in configs.items()}},
        "wall_seconds": round(time.time() - t_start, 1),
        "interpreters": table,
    }


# -- summary ----------------------------------------------------------------------------


def summarise(entry: dict[str, Any], plan: list[tuple[str, str, str]],
              scales: dict[str, dict[str, float]]) -> dict[str, Any]:
    runs = entry["runs"]
    out: dict[str, Any] = {}
    med = {k: statistics.median(r["seconds"] for r in rs) for k, rs in runs.items() if rs}
    for workload, scale_key, name in plan:
        k = key(workload, scale_key, name)
        if k not in med:
            continue
        rs = runs[k]
        base_key = key(workload, scale_key, "untraced")
        calls = _calls(entry, workload, scale_key)
        oracle = entry["oracle"].get(workload, {})
        row: dict[str, Any] = {
            "workload": workload, "scale_key": scale_key, "config": name,
            "scale": scales[workload][scale_key], "n": len(rs), "median_s": med[k],
            "min_s": min(r["seconds"] for r in rs), "max_s": max(r["seconds"] for r in rs),
            "median_wall_s": statistics.median(r["wall_s"] for r in rs),
            "digest_ok": all(r["digest"] == oracle.get("digest") for r in rs)
            if scale_key == "bench" else len({r["digest"] for r in rs}
                                            | _digests(runs, workload, scale_key)) == 1,
            "py_entries": calls.get("entries"), "c_calls": calls.get("c_calls"),
        }
        if base_key in med:
            base_rs = runs[base_key]
            row["ratio"] = med[k] / med[base_key]
            row["wall_ratio"] = row["median_wall_s"] / statistics.median(
                r["wall_s"] for r in base_rs)
            paired = _paired_ratios(rs, base_rs)
            if paired:
                row["paired_min"], row["paired_max"] = min(paired), max(paired)
            if calls.get("entries") and name != "untraced":
                row["ns_per_call"] = (med[k] - med[base_key]) / calls["entries"] * 1e9
        counted = [r for r in rs if "kept" in r or "events" in r]
        if counted:
            last = counted[0] if name in COUNT_ONCE else counted[-1]
            for field in ("events", "lost", "kept", "overrun", "dropped", "kinds_kept",
                          "buffer_kb", "buffer_entries", "py_calls", "c_calls", "parse_s",
                          "file_bytes", "bytes_per_event"):
                if field in last:
                    row[f"rec_{field}"] = last[field]
            row["events_all_runs_equal"] = len({r.get("events") for r in counted}) == 1
        expected = _expected_events(name, calls)
        if expected is not None:
            row["expected_events"] = expected
        out[k] = row
    for workload in scales:
        for scale_key in ("bench", "full"):
            for fn in FNTRACE:
                frow = out.get(key(workload, scale_key, fn))
                if not frow or "ratio" not in frow:
                    continue
                frow["over_peer"] = {}
                for peer in PEERS:
                    prow = out.get(key(workload, scale_key, peer))
                    if prow and "ratio" in prow:
                        frow["over_peer"][peer] = frow["ratio"] / prow["ratio"]
    return out


def _digests(runs: dict[str, list[dict[str, Any]]], workload: str, scale_key: str) -> set[str]:
    return {r["digest"] for k, rs in runs.items() if k.startswith(f"{workload}/{scale_key}/")
            for r in rs}


def _calls(entry: dict[str, Any], workload: str, scale_key: str) -> dict[str, Any]:
    """Python function entries and C calls of the workload at this scale.

    Bench scale: the sys.setprofile oracle.  Full scale (too slow to count that
    way): cProfile's call counts from its own runs at full scale, which equal the
    oracle's at bench scale (checked in the report).
    """
    if scale_key == "bench":
        o = entry["oracle"].get(workload, {})
        return {} if "error" in o else {"entries": o.get("entries"), "exits": o.get("exits"),
                                        "c_calls": o.get("c_calls")}
    for r in entry["runs"].get(key(workload, scale_key, "cprofile"), []):
        if "py_calls" in r:
            return {"entries": r["py_calls"], "exits": r["py_calls"],
                    "c_calls": r["c_calls"] - 1, "from": "cprofile"}
    return {}


def _expected_events(name: str, calls: dict[str, Any]) -> int | None:
    if not calls.get("entries"):
        return None
    if name == "fntrace-function":
        return int(calls["entries"])
    if name.startswith("fntrace-graph"):
        return int(calls["entries"]) + int(calls["exits"])
    if name == "cprofile":
        return int(calls["entries"]) + int(calls["c_calls"]) + 1  # + its own disable()
    if name == "viztracer":  # C functions too
        return int(calls["entries"]) + int(calls["c_calls"])
    if name.startswith("viztracer"):
        return int(calls["entries"])
    return None


def _paired_ratios(runs: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[float]:
    by_round = {r["round"]: r["seconds"] for r in base}
    return [r["seconds"] / by_round[r["round"]] for r in runs if r["round"] in by_round]


# -- report -------------------------------------------------------------------------------


def _f(x: Any, spec: str, missing: str = "—") -> str:
    return missing if x is None else format(x, spec)


def _recorded(row: dict[str, Any]) -> str:
    """Events recorded / lost, as each tool can tell them."""
    name = row["config"]
    if name in FNTRACE and "rec_file_bytes" in row:
        return (f"{row['rec_events']:,} written / {row['rec_lost']:,} lost; file "
                f"{row['rec_file_bytes']:,} B = {row['rec_bytes_per_event']:.2f} B/event")
    if name in FNTRACE and "rec_events" in row:
        return (f"{row['rec_events']:,} written / {row['rec_lost']:,} overwritten "
                f"({row['rec_kept']:,} kept)")
    if name == "cprofile" and "rec_events" in row:
        return f"{row['rec_events']:,} counted / 0"
    if name.startswith("viztracer") and "rec_kept" in row:
        tried = (row.get("py_entries") or 0) + (
            (row.get("c_calls") or 0) if name == "viztracer" else 0)
        full = row["rec_kept"] >= row.get("rec_buffer_entries", 1 << 62)
        lost = f"~{tried - row['rec_kept']:,}" if full and tried else "0"
        return f"{row['rec_kept']:,} kept / {lost}"
    return "—"


def _check(row: dict[str, Any]) -> str:
    exp, got = row.get("expected_events"), row.get("rec_events", row.get("rec_kept"))
    if exp is None or got is None:
        return ""
    if got == row.get("rec_buffer_entries"):
        return "ring full"
    diff = got - exp
    return "=" if diff == 0 else f"{diff:+,}"


def render_tables(data: dict[str, Any]) -> str:
    metric = data["settings"]["metric"]
    scales = data["settings"]["scales"]
    lines: list[str] = []
    for _minor, entry in data["interpreters"].items():
        interp = entry["interpreter"]
        res = entry["results"]
        lines += [f"### Python {interp['version']}", ""]
        for workload, sc in scales.items():
            o = entry["oracle"].get(workload, {})
            if "entries" in o:
                full = res.get(key(workload, "full", "cprofile"), {})
                lines.append(
                    f"- `{workload}` at bench scale {sc['bench']:g}: {o['entries']:,} Python "
                    f"function entries ({o['starts']:,} calls), {o['exits']:,} exits, "
                    f"{o['c_calls']:,} C calls (sys.setprofile oracle)"
                    + (f"; at full scale: {full['py_entries']:,} Python entries, "
                       f"{full['c_calls']:,} C calls (cProfile's count)."
                       if full.get("py_entries") else "."))
        lines += ["", f"| workload | scale | configuration | median {metric} s | ratio to "
                  "untraced | paired ratios (min-max) | wall-time ratio | ns per traced call "
                  "| events recorded / lost | vs oracle |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|:-:|"]
        for row in res.values():
            paired = "—"
            if "paired_min" in row and row["config"] != "untraced":
                paired = f"{row['paired_min']:.2f} to {row['paired_max']:.2f}"
            check = _check(row) + ("" if row["digest_ok"] else " **output differs!**")
            lines.append(
                f"| {row['workload']} | {row['scale_key']} {row['scale']:g} | {row['config']} | "
                f"{row['median_s']:.3f} | **{_f(row.get('ratio'), '.2f')}x** | {paired} | "
                f"{_f(row.get('wall_ratio'), '.2f')}x | {_f(row.get('ns_per_call'), ',.0f')} | "
                f"{_recorded(row)} | {check} |")
        for name, why in entry["unavailable"].items():
            lines.append(f"| all | — | {name} | — | not run: {why} | | | | | |")
        for k, errs in entry["errors"].items():
            last = errs[0].strip().splitlines()[-1][:120] if errs[0].strip() else "?"
            lines.append(f"| {k} | — | — | — | {len(errs)} run(s) failed: {last} | | | | | |")
        lines.append("")
        # fntrace over each peer, same workload and scale.
        present = [p for p in PEERS if any(r["config"] == p for r in res.values())]
        rows = [r for r in res.values() if r.get("over_peer")]
        if rows and present:
            lines += ["fntrace's ratio / the peer's ratio (same workload, same scale; < 1: "
                      "fntrace costs less):", "",
                      "| workload | fntrace configuration | " + " | ".join(
                          f"/ {p}" for p in present) + " |",
                      "|---|---|" + "---:|" * len(present)]
            for row in rows:
                cells = [_f(row["over_peer"].get(p), ".1f") for p in present]
                lines.append(f"| {row['workload']} | {row['config']} | " + " | ".join(cells)
                             + " |")
            lines.append("")
    return "\n".join(lines)


def write_results_md(data: dict[str, Any], json_path: str) -> None:
    notes = hand_notes(RESULTS_MD, NOTES_MARKER)
    m = data["machine"]
    pythons = ", ".join(e["interpreter"]["version"] for e in data["interpreters"].values())
    peers = []
    for minor, e in data["interpreters"].items():
        v = e["venv"]["available"].get("viztracer")
        peers.append(f"{minor}: viztracer {v or 'unavailable'}")
    s = data["settings"]
    run = s.get("scales_run", ["bench"])
    scale_txt = "; ".join(f"`{w}` " + ", ".join(f"{k} {v:g}" for k, v in sc.items() if k in run)
                          for w, sc in s["scales"].items())
    head = [
        "# Benchmark results: the function and function_graph tracers beside cProfile and "
        "VizTracer",
        "",
        "Generated by `python3 bench/run_tracers.py` (see README.md); raw data in "
        f"`bench/results/{os.path.basename(json_path)}` (not committed).",
        "",
        f"- Date: {data['date']}",
        f"- Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['platform']}; "
        f"load average at the end {m['loadavg_at_end']}",
        f"- Pythons: {pythons}; fntrace: this work tree at that date",
        f"- Peers (PyPI, per-interpreter venvs): {'; '.join(peers)}; cProfile from each "
        "interpreter's standard library",
        f"- Runs: {s['runs']} per configuration, fresh process each, round-robin; medians. "
        f"Scales: {scale_txt}. Campaign wall time {data['wall_seconds']:.0f} s.",
        "",
        "Configurations:",
        "",
        "| name | what runs |",
        "|---|---|",
        *[f"| {n} | {d} |" for n, d in s["configs"].items()],
        "",
        f"Columns: *median {s['metric']} s* is the median over the runs of the timed region "
        "(start the tool, run the workload, stop the tool); *ratio* is that median over the "
        "untraced median of the same workload at the same scale; *paired ratios* are "
        "run-by-run ratios to the untraced run of the same round (their spread shows the "
        "noise); *wall-time ratio* the same ratio of wall-clock medians; *ns per traced call* "
        "is (median - untraced median) / the workload's Python function entries (calls and "
        "generator resumptions); *events recorded / lost*: fntrace's ring-buffer counters "
        "(entries written, overwritten by newer ones; what is left in the buffer), cProfile's "
        "call counts, VizTracer's entries in its buffer (counted once per configuration) and, "
        "when that 1M-entry ring was full, the calls it could not keep; *vs oracle* compares "
        "the events written with what the sys.setprofile oracle counted (function: one per "
        "entry; function_graph: one per entry and one per exit; cProfile: Python + C calls "
        "+ its own `disable()`): `=` or the difference.",
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
    ap.add_argument("--only", nargs="*", help="minor versions to run, e.g. 3.12 3.13")
    ap.add_argument("--workloads", nargs="*", choices=list(WORKLOADS),
                    help="only these workloads")
    ap.add_argument("--configs", nargs="*", choices=list(CONFIGS),
                    help="only these configurations (untraced is always kept)")
    ap.add_argument("--scales", nargs="+", choices=("bench", "full"), default=["bench"],
                    help="bench: the workloads scaled down (default); full: as written, "
                         "~1-2 s untraced (only untraced, cprofile and viztracer run there)")
    ap.add_argument("--bench-scale", nargs=2, action="append", metavar=("WORKLOAD", "SCALE"),
                    help="bench scale of a workload (default: callheavy 0.025, mixed 0.072)")
    ap.add_argument("--quick", action="store_true", help="2 runs (development)")
    ap.add_argument("--metric", choices=("cpu", "wall"), default="cpu",
                    help="what the medians and ratios use: the timed region's process CPU time "
                         "(default; robust to other load on a shared machine) or wall time")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per child run")
    ap.add_argument("--fntrace-root", metavar="DIR",
                    help="measure the fntrace package in DIR (a prototype copied elsewhere) "
                         "instead of this work tree; RESULTS_TRACERS.md is not written")
    ap.add_argument("--no-write", action="store_true", help="do not write RESULTS_TRACERS.md")
    ap.add_argument("--render", metavar="JSON",
                    help="only rewrite RESULTS_TRACERS.md from saved raw data")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            write_results_md(json.load(f), args.render)
        print(f"report: {os.path.relpath(RESULTS_MD, ROOT)}")
        return
    if args.quick:
        args.runs = 2
    if args.fntrace_root:
        global FNTRACE_ROOT
        FNTRACE_ROOT = os.path.abspath(args.fntrace_root)
        args.no_write = True
    data = campaign(args)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = os.path.join(RESULTS_DIR, f"tracers-{stamp}"
                             f"{'-proto' if FNTRACE_ROOT else ''}.json")
    with open(json_path, "w") as f:
        json.dump(data, f, indent=1)
    print(render_tables(data))
    print(f"raw data: {os.path.relpath(json_path, ROOT)}")
    if not args.no_write and not args.quick:
        write_results_md(data, json_path)
        print(f"report: {os.path.relpath(RESULTS_MD, ROOT)}")


if __name__ == "__main__":
    main()
