#!/usr/bin/env python3
"""Benchmark: fntrace's tracers and profiler beside cProfile, VizTracer, pyftrace, hunter.

    python3 bench/run_tracers.py                  # the campaign (~20 minutes)
    python3 bench/run_tracers.py --quick          # 2 runs, scales / 4, for development
    python3 bench/run_tracers.py --scales full --configs cprofile viztracer
                                                  # the peers on the workloads as written

Four workloads (bench/workloads/: callheavy, mixed, threads, wrap), each
traced whole.  Every run is a fresh subprocess (tracers_child.py); the
configurations alternate round-robin on every interpreter found (python3 and
pyenv's 3.12.* and 3.13.*), with the peers from the per-interpreter venvs that
run_selective.py makes (bench/.venvs/; the set-up code is imported from it).
Results: bench/results/tracers-*.json and bench/RESULTS_TRACERS.md.  The whole
suite with its summary is bench/run.py, which imports this module.  See
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
# campaign's time budget; "small" a smaller one still for the slow peers (hunter and
# pyftrace cost 400-700x on callheavy); "long" 4x bench, for the wrap workload's
# question: does peak memory grow with run length?  Every ratio divides by the
# untraced run at the same scale.  The campaign runs bench, small and long; --scales
# full runs the fast configurations on the workloads as written (the peers' ratios
# agree within a few % between full and bench scale).
WORKLOADS: dict[str, dict[str, float]] = {
    "callheavy": {"full": 1.0, "bench": 0.025, "small": 0.0015},  # fib(25) x 160 / x 4 / fib(22)
    "mixed": {"full": 1.0, "bench": 0.072, "small": 0.0045},      # 56 rounds / 4 / 1/4 round
    "threads": {"full": 1.0, "bench": 1 / 30, "small": 0.002},    # 8 x (120 / 4 / 1/4) items
    "wrap": {"full": 1.0, "bench": 0.0125, "long": 0.05},         # 800k / 10k / 40k requests
}
# The configurations each workload runs (default: all).  threads: the tracers and
# profiler in memory and every peer; wrap: one light and one heavy fntrace tracer and
# the two in-memory peers, at bench and long scale, for peak memory.
WORKLOAD_CONFIGS: dict[str, tuple[str, ...]] = {
    "threads": ("untraced", "fntrace-function", "fntrace-graph", "fntrace-profile",
                "cprofile", "viztracer", "viztracer-py", "pyftrace", "hunter"),
    "wrap": ("untraced", "fntrace-function", "fntrace-graph-args-retval", "cprofile",
             "viztracer"),
}
ALL_SCALES = ("full", "bench", "small", "long")

# name -> (package it needs or None, scales it runs at, description)
CONFIGS: dict[str, tuple[str | None, tuple[str, ...], str]] = {
    "untraced": (None, ALL_SCALES, "the workload, no tracer"),
    "fntrace-function": (None, ("bench", "long"),
                         'with fntrace.tracing.instance.trace("function"): every Python function, '
                         "ring buffer in memory (default 1408 KiB per thread)"),
    "fntrace-graph": (None, ("bench", "long"),
                      'trace("function_graph"), in memory, same buffer'),
    "fntrace-graph-args-retval": (None, ("bench", "long"),
                                  'trace("function_graph", funcgraph_args=1, '
                                  "funcgraph_retval=1)"),
    "fntrace-graph-record": (None, ("bench",),
                             "function_graph streaming into a trace file, as `fntrace "
                             "record` does (writer thread and file included, no loss)"),
    "fntrace-profile": (None, ("bench", "long"),
                        "the function profiler: function_profile_enabled = 1 around the run "
                        "(hits, time, s^2 per function; trace_stat/function0), no tracer"),
    "cprofile": (None, ("full", "bench", "long"), "cProfile.Profile().enable()/disable()"),
    "viztracer": ("viztracer", ("full", "bench", "long"),
                  "VizTracer(verbose=0), defaults: C functions too, 1M-entry ring, "
                  "in memory, not saved"),
    "viztracer-py": ("viztracer", ("bench",), "VizTracer, ignore_c_function=True "
                     "(Python functions only, as fntrace)"),
    "viztracer-args": ("viztracer", ("bench",), "VizTracer, ignore_c_function=True, "
                       "log_func_args=True, log_func_retval=True"),
    "pyftrace": ("pyftrace", ("small",),
                 "pyftrace's default job (`pyftrace script.py`: get_tracer(verbose=False)), "
                 "started around the workload in process; every call and return of a Python "
                 "function outside the standard library, with str(retval), as text into a "
                 "file in /dev/shm; small scale"),
    "hunter": ("hunter", ("small",),
               "hunter.trace(kind_in=(call, return), builtin=False, profile=True, "
               "action=CallPrinter(stream=<file in /dev/shm>)): every Python call with its "
               "arguments and every return with its value, as text; small scale"),
}
FNTRACE = ("fntrace-function", "fntrace-graph", "fntrace-graph-args-retval",
           "fntrace-graph-record", "fntrace-profile")
PEERS = ("cprofile", "viztracer", "viztracer-py", "viztracer-args", "pyftrace", "hunter")
# Peers run at the small scale only: fntrace's ratios are divided by theirs at that scale.
SLOW_PEERS = ("pyftrace", "hunter")
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
    fg = os.path.join(FNTRACE_ROOT or ROOT, "fntrace", "tracing", "tracers", "function_graph.py")
    configs = {n: c for n, c in CONFIGS.items() if not args.configs or n in args.configs
               or n == "untraced"}
    graph_missing = not os.path.exists(fg)
    table: dict[str, Any] = {}
    plans: dict[str, list[tuple[str, str, str]]] = {}
    scales = {w: dict(s) for w, s in WORKLOADS.items()
              if not args.workloads or w in args.workloads}
    factor = getattr(args, "scale_factor", 1.0)
    for sc in scales.values():  # --scale-factor (--quick): shorter bench and long runs
        for k in ("bench", "long"):
            if k in sc:
                sc[k] *= factor
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
                unavailable[name] = "fntrace/tracing/tracers/function_graph.py does not exist yet"
                continue
            for workload in scales:
                allowed = WORKLOAD_CONFIGS.get(workload)
                if allowed is not None and name not in allowed:
                    continue
                for scale_key in at:
                    if scale_key not in args.scales or scale_key not in scales[workload]:
                        continue
                    plan.append((workload, scale_key, name))
        # An untraced baseline only where something traced runs.
        traced = {(w, k) for w, k, n in plan if n != "untraced"}
        plan = [p for p in plan if p[2] != "untraced" or (p[0], p[1]) in traced]
        plan.sort(key=lambda t: (list(scales).index(t[0]), t[1] != "full",
                                 list(CONFIGS).index(t[2])))
        plans[minor] = plan
        entry: dict[str, Any] = {"interpreter": interp, "venv": env, "unavailable": unavailable,
                                 "runs": {key(*p): [] for p in plan}, "errors": {},
                                 "oracle": {}, "oracle_other": {}}
        table[minor] = entry
        # The oracle (sys.setprofile call counter, untimed, bench scale only: it costs
        # ~0.3 µs per call) doubles as the warm-up run (bytecode caches, page cache).
        # Other scales the plan runs at (small, long) get their own count.
        for workload, s in scales.items():
            for scale_key in ("bench", "small", "long"):
                if scale_key not in s or (scale_key != "bench" and not any(
                        p[0] == workload and p[1] == scale_key for p in plan)):
                    continue
                res = run_child(env, "oracle", workload, s[scale_key], args.timeout)
                if scale_key == "bench":
                    entry["oracle"][workload] = res
                else:
                    entry["oracle_other"][key(workload, scale_key, "oracle")] = res
                if "error" in res:
                    log(f"[{minor}] oracle {workload} {scale_key}: ERROR {res['error'][-300:]}")
                else:
                    log(f"[{minor}] oracle {workload} {scale_key} x{s[scale_key]:g}: "
                        f"{res['entries']:,} Python entries, {res['exits']:,} exits, "
                        f"{res['c_calls']:,} C calls")
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
                     "configs": {n: c[2] for n, c in configs.items()},
                     "workload_configs": {w: list(c) for w, c in WORKLOAD_CONFIGS.items()}},
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
        oracle = _oracle(entry, workload, scale_key)
        row: dict[str, Any] = {
            "workload": workload, "scale_key": scale_key, "config": name,
            "scale": scales[workload][scale_key], "n": len(rs), "median_s": med[k],
            "min_s": min(r["seconds"] for r in rs), "max_s": max(r["seconds"] for r in rs),
            "median_wall_s": statistics.median(r["wall_s"] for r in rs),
            "digest_ok": all(r["digest"] == oracle.get("digest") for r in rs)
            if "digest" in oracle else len({r["digest"] for r in rs}
                                           | _digests(runs, workload, scale_key)) == 1,
            "py_entries": calls.get("entries"), "py_starts": calls.get("starts"),
            "c_calls": calls.get("c_calls"),
        }
        rss = [r["rss_kib"] for r in rs if "rss_kib" in r]
        if rss:
            row["median_rss_kib"] = statistics.median(rss)
            row["max_rss_kib"] = max(rss)
            row["median_rss_start_kib"] = statistics.median(
                r["rss_start_kib"] for r in rs if "rss_start_kib" in r)
            # What the timed region added to the peak: the tool's memory while running
            # (the imports and the tool's set-up are in rss_start_kib already).
            row["median_rss_run_kib"] = statistics.median(
                r["rss_kib"] - r["rss_start_kib"] for r in rs if "rss_start_kib" in r)
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
                          "file_bytes", "bytes_per_event", "accounted_bytes_per_event",
                          "wraps", "threads", "hits", "functions"):
                if field in last:
                    row[f"rec_{field}"] = last[field]
            row["events_all_runs_equal"] = len({r.get("events") for r in counted}) == 1
        expected = _expected_events(name, calls)
        if expected is not None:
            row["expected_events"] = expected
        out[k] = row
    for workload in scales:
        for scale_key in ("bench", "full", "long"):
            for fn in FNTRACE:
                frow = out.get(key(workload, scale_key, fn))
                if not frow or "ratio" not in frow:
                    continue
                frow["over_peer"] = {}
                for peer in PEERS:
                    prow = peer_row(out, workload, scale_key, peer)
                    if prow and "ratio" in prow:
                        frow["over_peer"][peer] = frow["ratio"] / prow["ratio"]
    return out


def peer_row(res: dict[str, Any], workload: str, scale_key: str,
             peer: str) -> dict[str, Any] | None:
    """The peer's row to compare with at this scale: the same scale, or for the slow
    peers (run at the small scale only) their small-scale row."""
    row = res.get(key(workload, scale_key, peer))
    if row is None and peer in SLOW_PEERS:
        row = res.get(key(workload, "small", peer))
    return row


def _oracle(entry: dict[str, Any], workload: str, scale_key: str) -> dict[str, Any]:
    if scale_key == "bench":
        o = entry["oracle"].get(workload, {})
    else:
        o = entry.get("oracle_other", {}).get(key(workload, scale_key, "oracle"), {})
    return {} if "error" in o else o


def _digests(runs: dict[str, list[dict[str, Any]]], workload: str, scale_key: str) -> set[str]:
    return {r["digest"] for k, rs in runs.items() if k.startswith(f"{workload}/{scale_key}/")
            for r in rs}


def _calls(entry: dict[str, Any], workload: str, scale_key: str) -> dict[str, Any]:
    """Python function entries and C calls of the workload at this scale.

    Bench scale: the sys.setprofile oracle.  Full scale (too slow to count that
    way): cProfile's call counts from its own runs at full scale, which equal the
    oracle's at bench scale (checked in the report).
    """
    if scale_key != "full":
        o = _oracle(entry, workload, scale_key)
        return {} if not o else {"entries": o.get("entries"), "exits": o.get("exits"),
                                 "starts": o.get("starts"), "c_calls": o.get("c_calls")}
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
    if name == "fntrace-profile":  # hits: calls, not generator resumptions
        return int(calls["starts"]) if calls.get("starts") is not None else None
    if name.startswith("fntrace-graph") or name == "hunter":
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
    if name == "fntrace-profile" and "rec_hits" in row:
        return f"{row['rec_hits']:,} hits in {row['rec_functions']:,} functions / 0"
    if name in FNTRACE and "rec_file_bytes" in row:
        return (f"{row['rec_events']:,} written / {row['rec_lost']:,} lost; file "
                f"{row['rec_file_bytes']:,} B = {row['rec_bytes_per_event']:.2f} B/event")
    if name in FNTRACE and "rec_events" in row:
        wraps = f", ring filled {row['rec_wraps']:.1f}x" if "rec_wraps" in row else ""
        return (f"{row['rec_events']:,} written / {row['rec_lost']:,} overwritten "
                f"({row['rec_kept']:,} kept{wraps})")
    if name == "cprofile" and "rec_events" in row:
        return f"{row['rec_events']:,} counted / 0"
    if name in SLOW_PEERS and "rec_events" in row:
        return (f"{row['rec_events']:,} lines / 0; {row['rec_file_bytes']:,} B = "
                f"{row['rec_bytes_per_event']:.0f} B/event")
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


def _mib(kib: Any) -> str:
    return "—" if kib is None else f"{kib / 1024:.1f}"


def render_tables(data: dict[str, Any]) -> str:
    metric = data["settings"]["metric"]
    scales = data["settings"]["scales"]
    lines: list[str] = []
    for _minor, entry in data["interpreters"].items():
        interp = entry["interpreter"]
        res = entry["results"]
        lines += [f"### Python {interp['version']}", ""]
        for workload, sc in scales.items():
            counts = []
            for scale_key in ("bench", "small", "long"):
                o = _oracle(entry, workload, scale_key)
                if "entries" in o:
                    thr = f", {o['threads']} threads" if o.get("threads", 1) > 1 else ""
                    counts.append(
                        f"{scale_key} scale {sc[scale_key]:.4g}: {o['entries']:,} Python "
                        f"function entries ({o['starts']:,} calls), {o['exits']:,} exits, "
                        f"{o['c_calls']:,} C calls{thr}")
            if counts:
                full = res.get(key(workload, "full", "cprofile"), {})
                lines.append(
                    f"- `{workload}` (sys.setprofile oracle) at " + "; ".join(counts)
                    + (f"; at full scale: {full['py_entries']:,} Python entries, "
                       f"{full['c_calls']:,} C calls (cProfile's count)."
                       if full.get("py_entries") else "."))
        lines += ["", f"| workload | scale | configuration | median {metric} s | ratio to "
                  "untraced | paired ratios (min-max) | wall-time ratio | ns per traced call "
                  "| peak RSS MiB | events recorded / lost | vs oracle |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|:-:|"]
        for row in res.values():
            paired = "—"
            if "paired_min" in row and row["config"] != "untraced":
                paired = f"{row['paired_min']:.2f} to {row['paired_max']:.2f}"
            check = _check(row) + ("" if row["digest_ok"] else " **output differs!**")
            lines.append(
                f"| {row['workload']} | {row['scale_key']} {row['scale']:.4g} | "
                f"{row['config']} | "
                f"{row['median_s']:.3f} | **{_f(row.get('ratio'), '.2f')}x** | {paired} | "
                f"{_f(row.get('wall_ratio'), '.2f')}x | {_f(row.get('ns_per_call'), ',.0f')} | "
                f"{_mib(row.get('median_rss_kib'))} | {_recorded(row)} | {check} |")
        for name, why in entry["unavailable"].items():
            lines.append(f"| all | — | {name} | — | not run: {why} | | | | | | |")
        for k, errs in entry["errors"].items():
            last = errs[0].strip().splitlines()[-1][:120] if errs[0].strip() else "?"
            lines.append(f"| {k} | — | — | — | {len(errs)} run(s) failed: {last} | | | | | | |")
        lines.append("")
        # fntrace over each peer, same workload and scale (the slow peers: small scale).
        present = [p for p in PEERS if any(r["config"] == p for r in res.values())]
        rows = [r for r in res.values() if r.get("over_peer")]
        if rows and present:
            lines += ["fntrace's ratio / the peer's ratio (same workload, same scale; pyftrace "
                      "and hunter: their ratio at the small scale; < 1: fntrace costs less):",
                      "",
                      "| workload | scale | fntrace configuration | " + " | ".join(
                          f"/ {p}" for p in present) + " |",
                      "|---|---|---|" + "---:|" * len(present)]
            for row in rows:
                cells = [_f(row["over_peer"].get(p), ".2f") for p in present]
                lines.append(f"| {row['workload']} | {row['scale_key']} | {row['config']} | "
                             + " | ".join(cells) + " |")
            lines.append("")
        lines += render_memory(res)
    return "\n".join(lines)


def memory_rows(res: dict[str, Any], workload: str = "wrap") -> list[dict[str, Any]]:
    """Peak RSS at bench and long scale per configuration (the wrap workload)."""
    out = []
    base_b = res.get(key(workload, "bench", "untraced"), {}).get("median_rss_kib")
    base_l = res.get(key(workload, "long", "untraced"), {}).get("median_rss_kib")
    for row in res.values():
        if row["workload"] != workload or row["scale_key"] != "bench":
            continue
        long_row = res.get(key(workload, "long", row["config"]))
        if long_row is None or "median_rss_kib" not in row or "median_rss_kib" not in long_row:
            continue
        b, lg = row["median_rss_kib"], long_row["median_rss_kib"]
        out.append({
            "config": row["config"], "bench_scale": row["scale"], "long_scale": long_row["scale"],
            "rss_bench_kib": b, "rss_long_kib": lg, "growth_kib": lg - b,
            "over_untraced_bench_kib": None if base_b is None else b - base_b,
            "over_untraced_long_kib": None if base_l is None else lg - base_l,
            "run_bench_kib": row.get("median_rss_run_kib"),
            "run_long_kib": long_row.get("median_rss_run_kib"),
            "wraps_bench": row.get("rec_wraps"), "wraps_long": long_row.get("rec_wraps"),
            "events_long": long_row.get("rec_events"),
            "buffer_kb": row.get("rec_buffer_kb"),
        })
    return out


def render_memory(res: dict[str, Any]) -> list[str]:
    rows = memory_rows(res)
    if not rows:
        return []
    lines = ["Peak memory against run length (`wrap`; the child's peak RSS, VmHWM, "
             "medians; *growth* = long - bench; *over untraced* = traced - untraced at the "
             "same scale (the tool's import included); *added by the run* = peak after the "
             "timed region - peak before it (the tool imported and set up); *ring filled* = "
             "accounted bytes written / buffer capacity):", "",
             "| configuration | peak RSS MiB, bench | peak RSS MiB, long (4x) | growth MiB | "
             "over untraced MiB (bench / long) | added by the run MiB (bench / long) | "
             "ring filled (bench / long) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        over = (f"{_mib(r['over_untraced_bench_kib'])} / {_mib(r['over_untraced_long_kib'])}"
                if r["config"] != "untraced" else "—")
        run = f"{_mib(r.get('run_bench_kib'))} / {_mib(r.get('run_long_kib'))}"
        wraps = (f"{r['wraps_bench']:.1f}x / {r['wraps_long']:.1f}x"
                 if r.get("wraps_bench") is not None and r.get("wraps_long") is not None
                 else "—")
        lines.append(f"| {r['config']} | {_mib(r['rss_bench_kib'])} | {_mib(r['rss_long_kib'])}"
                     f" | {r['growth_kib'] / 1024:+.1f} | {over} | {run} | {wraps} |")
    lines.append("")
    return lines


def peer_versions(data: dict[str, Any]) -> str:
    out = []
    for minor, e in data["interpreters"].items():
        av = e["venv"]["available"]
        out.append(f"{minor}: " + ", ".join(f"{p} {av.get(p) or 'unavailable'}"
                                            for p in ("viztracer", "pyftrace", "hunter")))
    return "; ".join(out)


def scales_text(data: dict[str, Any]) -> str:
    s = data["settings"]
    run = s.get("scales_run", ["bench"])
    return "; ".join(f"`{w}` " + ", ".join(f"{k} {v:.4g}" for k, v in sc.items() if k in run)
                     for w, sc in s["scales"].items())


def configs_table(data: dict[str, Any]) -> list[str]:
    s = data["settings"]
    only = s.get("workload_configs", {})
    out = ["| name | what runs | workloads |", "|---|---|---|"]
    for n, d in s["configs"].items():
        ws = [w for w in s["scales"] if w not in only or n in only[w]]
        out.append(f"| {n} | {d} | {', '.join(ws)} |")
    return out


def columns_text(metric: str) -> str:
    return (
        f"Columns: *median {metric} s* is the median over the runs of the timed region "
        "(start the tool, run the workload, stop the tool); *ratio* is that median over the "
        "untraced median of the same workload at the same scale; *paired ratios* are "
        "run-by-run ratios to the untraced run of the same round (their spread shows the "
        "noise); *wall-time ratio* the same ratio of wall-clock medians; *ns per traced call* "
        "is (median - untraced median) / the workload's Python function entries (calls and "
        "generator resumptions); *peak RSS* is the child's ru_maxrss at the end of the timed "
        "region (median over the runs; the whole process: interpreter, tool, workload); "
        "*events recorded / lost*: fntrace's ring-buffer counters (entries written, "
        "overwritten by newer ones; what is left in the buffer; how many times over the "
        "buffers were filled), the profiler's hits, cProfile's call counts, VizTracer's "
        "entries in its buffer (counted once per configuration) and, when that 1M-entry ring "
        "was full, the calls it could not keep, the lines pyftrace and hunter wrote; *vs "
        "oracle* compares the events written with what the sys.setprofile oracle counted "
        "(function: one per entry; function_graph and hunter: one per entry and one per exit; "
        "profiler: one hit per call, generator resumptions excluded; cProfile: Python + C "
        "calls + its own `disable()`): `=` or the difference.")


def write_results_md(data: dict[str, Any], json_path: str) -> None:
    notes = hand_notes(RESULTS_MD, NOTES_MARKER)
    m = data["machine"]
    pythons = ", ".join(e["interpreter"]["version"] for e in data["interpreters"].values())
    s = data["settings"]
    head = [
        "# Benchmark results: fntrace's tracers and profiler beside cProfile, VizTracer, "
        "pyftrace and hunter",
        "",
        "Generated by `python3 bench/run_tracers.py` (see README.md); raw data in "
        f"`bench/results/{os.path.basename(json_path)}` (not committed).",
        "",
        f"- Date: {data['date']}",
        f"- Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['platform']}; "
        f"load average at the end {m['loadavg_at_end']}",
        f"- Pythons: {pythons}; fntrace: this work tree at that date",
        f"- Peers (PyPI, per-interpreter venvs): {peer_versions(data)}; cProfile from each "
        "interpreter's standard library",
        f"- Runs: {s['runs']} per configuration, fresh process each, round-robin; medians. "
        f"Scales: {scales_text(data)}. Campaign wall time {data['wall_seconds']:.0f} s.",
        "",
        "Configurations:",
        "",
        *configs_table(data),
        "",
        columns_text(s["metric"]),
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
    ap.add_argument("--scales", nargs="+", choices=ALL_SCALES,
                    default=["bench", "small", "long"],
                    help="bench: the workloads scaled down; small: smaller still, for the slow "
                         "peers; long: 4x bench (wrap); full: as written, ~1-2 s untraced "
                         "(only untraced, cprofile and viztracer run there). Default: bench "
                         "small long")
    ap.add_argument("--bench-scale", nargs=2, action="append", metavar=("WORKLOAD", "SCALE"),
                    help="bench scale of a workload (default: callheavy 0.025, mixed 0.072, "
                         "threads 1/30, wrap 0.0125)")
    ap.add_argument("--scale-factor", type=float, default=1.0,
                    help="multiply every bench and long scale (default 1; --quick: 0.25)")
    ap.add_argument("--quick", action="store_true",
                    help="2 runs, bench and long scales / 4 (development)")
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
        args.runs, args.scale_factor = 2, 0.25
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
