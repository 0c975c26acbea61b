#!/usr/bin/env python3
"""The benchmark suite in one command: fntrace beside cProfile, VizTracer, pyftrace, hunter.

    python3 bench/run.py                 # everything, 5 runs each (~28 minutes, 2 cores)
    python3 bench/run.py --quick         # 2 runs, short scales: every configuration runs
    python3 bench/run.py --only 3.12     # one interpreter (minor versions, several allowed)

It runs the selective campaign (run_selective.py: a filter picking a module that
makes ~0.1% of the calls) and the tracer campaign (run_tracers.py: callheavy,
mixed, threads and wrap traced whole by fntrace's tracers and profiler and by
the peers), on every interpreter found (python3, pyenv's 3.12.* and 3.13.*),
each in per-interpreter venvs under bench/.venvs/ made on first use with the
peers from PyPI.  Every run is a fresh process; configurations alternate
round-robin within each campaign.  It saves the raw data of both campaigns in
bench/results/campaign-<date>.json and writes bench/RESULTS.md: per Python
version one summary table and the targets, then the two campaigns' detailed
tables; hand-written notes below the marker line in RESULTS.md are kept.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from typing import Any

import run_selective
import run_tracers
from run_selective import hand_notes, machine_info

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS_DIR = os.path.join(HERE, "results")
RESULTS_MD = os.path.join(HERE, "RESULTS.md")
NOTES_MARKER = "<!-- Notes below this line are written by hand; bench/run.py keeps them. -->"
# RESULTS.md was run_selective.py's report before this script existed: its notes
# sit below that script's marker until the first run of this one moves them.
OLD_MARKERS = (run_selective.NOTES_MARKER,)

#: Peer columns of the summary: column title -> configuration, per campaign.
PEER_COLUMNS: dict[str, dict[str, str]] = {
    "cProfile": {"selective": "cprofile", "tracers": "cprofile"},
    "VizTracer": {"selective": "viztracer-include", "tracers": "viztracer"},
    "pyftrace": {"tracers": "pyftrace"},
    "hunter": {"selective": "hunter", "tracers": "hunter"},
}
#: fntrace's function tracer / function_graph, for the targets.
TARGET_WORKLOADS = ("callheavy", "mixed", "threads")
#: Growth of peak RSS from the bench run to the 4x longer run still counted as none.
RSS_TOLERANCE_KIB = 1024
#: A ratio to untraced the selective filter must not exceed.
SELECTIVE_TARGET = 1.05


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the campaigns ------------------------------------------------------------------------


def selective_args(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(
        runs=args.runs, scale=0.2 if args.quick else 1.0, small_fraction=0.05,
        only=args.only, configs=None, diagnose=args.diagnose, metric="cpu",
        timeout=args.timeout)


def tracers_args(args: argparse.Namespace, workloads: list[str]) -> argparse.Namespace:
    return argparse.Namespace(
        runs=args.runs, only=args.only, workloads=workloads, configs=None,
        scales=["bench", "small", "long"], bench_scale=None,
        scale_factor=0.25 if args.quick else 1.0, metric="cpu", timeout=args.timeout)


def campaign(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.time()
    wanted = args.workloads or ["selective", *run_tracers.WORKLOADS]
    tracer_workloads = [w for w in wanted if w in run_tracers.WORKLOADS]
    data: dict[str, Any] = {"benchmark": "suite", "selective": None, "tracers": None}
    if "selective" in wanted:
        log("== selective campaign (run_selective.py) ==")
        data["selective"] = run_selective.campaign(selective_args(args))
        log(f"== selective campaign: {data['selective']['wall_seconds']:.0f} s ==")
    if tracer_workloads:
        log("== tracer campaign (run_tracers.py) ==")
        data["tracers"] = run_tracers.campaign(tracers_args(args, tracer_workloads))
        log(f"== tracer campaign: {data['tracers']['wall_seconds']:.0f} s ==")
    data.update({
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {"runs": args.runs, "quick": args.quick, "only": args.only,
                     "workloads": wanted, "diagnose": args.diagnose, "metric": "cpu"},
        "wall_seconds": round(time.time() - t0, 1),
    })
    data["summary"] = summarise(data)
    return data


# -- the summary --------------------------------------------------------------------------


def _interpreters(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """minor -> interpreter info, over both campaigns, in version order."""
    out: dict[str, dict[str, Any]] = {}
    for part in ("selective", "tracers"):
        if data.get(part):
            for minor, entry in data[part]["interpreters"].items():
                out.setdefault(minor, entry["interpreter"])
    return dict(sorted(out.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))))


def _over(ratio: float | None, peer: dict[str, Any] | None) -> float | None:
    if ratio is None or not peer or peer.get("ratio") is None:
        return None
    return float(ratio / peer["ratio"])


def selective_rows(entry: dict[str, Any], small_scale: float) -> list[dict[str, Any]]:
    configs = entry.get("configs", {})
    orc = entry.get("oracle", {})
    out = []
    for name, row in configs.items():
        if name not in run_selective.CONFIGS:
            continue  # the diagnostic variants stay in the detailed table
        scale_key = row["scale_key"]
        calls = orc.get(scale_key, {}).get("entries")
        ratio = row.get("ratio")
        overhead = None
        if ratio is not None and calls and name not in ("untraced", "untraced-small"):
            base = "untraced" if scale_key == "full" else "untraced-small"
            overhead = (row["median_s"] - configs[base]["median_s"]) / calls * 1e9
        lost = None
        if "counts_match" in row:
            lost = max(0, (row["oracle_entries"] or 0) - row["entries"])
        label = "fntrace-selective" if name == "fntrace" else name
        out.append({
            "workload": "selective", "scale_key": scale_key,
            "scale": small_scale if scale_key == "small" else 1.0, "config": label,
            "ratio": ratio, "ns_per_call": overhead,
            "rss_kib": row.get("median_rss_kib"), "bytes_per_event": None,
            "bytes_kind": None, "lost": lost, "lost_text": None if lost is None else f"{lost:,}",
            "over": {col: _over(ratio, configs.get(cfg.get("selective", "")))
                     for col, cfg in PEER_COLUMNS.items()
                     if cfg.get("selective") and cfg["selective"] != name
                     and not name.startswith("untraced")},
        })
    return out


def _lost_text(row: dict[str, Any]) -> tuple[int | None, str]:
    name = row["config"]
    if name in run_tracers.FNTRACE and "rec_lost" in row:
        if "rec_file_bytes" in row or name == "fntrace-profile":
            return row["rec_lost"], f"{row['rec_lost']:,}"
        dropped = row.get("rec_dropped", 0)
        return row["rec_lost"], (f"{row.get('rec_overrun', 0):,} overwritten (ring)"
                                 + (f", {dropped:,} dropped" if dropped else ""))
    if name.startswith("viztracer") and "rec_kept" in row:
        tried = (row.get("py_entries") or 0) + (
            (row.get("c_calls") or 0) if name == "viztracer" else 0)
        if row["rec_kept"] >= row.get("rec_buffer_entries", 1 << 62) and tried:
            return tried - row["rec_kept"], f"~{tried - row['rec_kept']:,} (ring full)"
        return 0, "0"
    if "rec_events" in row:
        exp = row.get("expected_events")
        if exp is not None and row["rec_events"] < exp:
            lost = exp - row["rec_events"]
            return lost, f"{lost:,} (vs oracle)"
        return 0, "0"
    return None, "—"


def tracer_rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    res = entry.get("results", {})
    out = []
    for row in res.values():
        if row["scale_key"] == "full":
            continue
        name = row["config"]
        ratio = row.get("ratio")
        bpe, kind = None, None
        if "rec_file_bytes" in row and row.get("rec_bytes_per_event") is not None:
            bpe, kind = row["rec_bytes_per_event"], ("file" if name in run_tracers.FNTRACE
                                                     else "text")
        elif row.get("rec_accounted_bytes_per_event") is not None:
            bpe, kind = row["rec_accounted_bytes_per_event"], "ring"
        lost, lost_text = _lost_text(row)
        over = {}
        for col, cfg in PEER_COLUMNS.items():
            peer = cfg.get("tracers")
            if not peer or peer == name or name == "untraced":
                continue
            over[col] = _over(ratio, run_tracers.peer_row(res, row["workload"],
                                                          row["scale_key"], peer))
        out.append({
            "workload": row["workload"], "scale_key": row["scale_key"], "scale": row["scale"],
            "config": name, "ratio": ratio, "ns_per_call": row.get("ns_per_call"),
            "rss_kib": row.get("median_rss_kib"), "bytes_per_event": bpe, "bytes_kind": kind,
            "lost": lost, "lost_text": lost_text, "over": over,
            "wraps": row.get("rec_wraps"),
        })
    return out


def _row(rows: list[dict[str, Any]], workload: str, config: str,
         scale_key: str | None = None) -> dict[str, Any] | None:
    for r in rows:
        if r["workload"] == workload and r["config"] == config and (
                scale_key is None or r["scale_key"] == scale_key):
            return r
    return None


def targets(rows: list[dict[str, Any]], tracers_entry: dict[str, Any] | None,
            applies: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(target: str, required: str, measured: str, met: bool | None, by: str) -> None:
        out.append({"target": target, "required": required, "measured": measured,
                    "met": met, "by": by, "applies": applies})

    sel = _row(rows, "selective", "fntrace-selective")
    if sel and sel.get("ratio") is not None:
        r = sel["ratio"]
        add("selective filter (a module making ~0.1% of the calls), `selective`",
            f"<= {SELECTIVE_TARGET:.2f}x untraced", f"{r:.3f}x", r <= SELECTIVE_TARGET,
            f"{100 * (r / SELECTIVE_TARGET - 1):+.1f}% over" if r > SELECTIVE_TARGET
            else f"{100 * (1 - r / SELECTIVE_TARGET):.1f}% under")
    for config, peer, col, what in (
            ("fntrace-function", "cprofile", "cProfile", "function tracer (everything)"),
            ("fntrace-graph", "viztracer", "VizTracer", "function_graph (everything)")):
        for w in TARGET_WORKLOADS:
            mine, theirs = _row(rows, w, config, "bench"), _row(rows, w, peer, "bench")
            if not mine or not theirs or mine.get("ratio") is None or \
                    theirs.get("ratio") is None:
                continue
            q = mine["ratio"] / theirs["ratio"]
            peer_name = "cProfile's" if peer == "cprofile" else "VizTracer's (in memory)"
            add(f"{what}, `{w}`", f"<= {peer_name} ratio ({theirs['ratio']:.2f}x)",
                f"{mine['ratio']:.2f}x", q <= 1.0,
                f"{q:.1f}x {col}'s ratio" if q > 1.0 else f"{q:.2f}x {col}'s ratio")
    if tracers_entry is not None:
        for m in run_tracers.memory_rows(tracers_entry.get("results", {})):
            if m["config"] not in run_tracers.FNTRACE:
                continue
            growth = m["growth_kib"]
            run = m.get("run_long_kib")
            wraps = (f"; ring filled {m['wraps_bench']:.0f}x -> {m['wraps_long']:.0f}x"
                     if m.get("wraps_bench") is not None and m.get("wraps_long") is not None
                     else "")
            add(f"peak memory bounded whatever the run length, `wrap`, {m['config']}",
                f"peak RSS at 4x the run length <= at 1x + {RSS_TOLERANCE_KIB // 1024} MiB",
                f"{m['rss_bench_kib'] / 1024:.1f} -> {m['rss_long_kib'] / 1024:.1f} MiB "
                f"({growth / 1024:+.1f}){wraps}"
                + (f"; the run added {run / 1024:.1f} MiB for a {m['buffer_kb']} KiB "
                   "buffer" if run is not None and m.get("buffer_kb") else ""),
                growth <= RSS_TOLERANCE_KIB,
                f"{(growth - RSS_TOLERANCE_KIB) / 1024:.1f} MiB over" if growth >
                RSS_TOLERANCE_KIB else "no growth")
    return out


def resummarise(data: dict[str, Any]) -> None:
    """Recompute every summary from the raw runs kept in the JSON (for --render)."""
    sel, tr = data.get("selective"), data.get("tracers")
    if sel:
        for entry in sel["interpreters"].values():
            entry["configs"] = run_selective.summarise(entry, list(entry["runs"]))
    if tr:
        for entry in tr["interpreters"].values():
            plan = [tuple(k.split("/")) for k in entry["runs"]]
            entry["results"] = run_tracers.summarise(entry, plan,  # type: ignore[arg-type]
                                                     tr["settings"]["scales"])
    data["summary"] = summarise(data)


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sel, tr = data.get("selective"), data.get("tracers")
    for minor, interp in _interpreters(data).items():
        rows: list[dict[str, Any]] = []
        unavailable: dict[str, str] = {}
        errors: dict[str, int] = {}
        tr_entry = None
        if sel and minor in sel["interpreters"]:
            e = sel["interpreters"][minor]
            rows += selective_rows(e, sel["settings"]["small_scale"])
            unavailable.update({f"selective/{k}": v for k, v in e["unavailable"].items()
                                if "sys.monitoring" not in v})
            errors.update({f"selective/{k}": len(v) for k, v in e["errors"].items()})
        if tr and minor in tr["interpreters"]:
            tr_entry = tr["interpreters"][minor]
            rows += tracer_rows(tr_entry)
            unavailable.update(tr_entry["unavailable"])
            errors.update({k: len(v) for k, v in tr_entry["errors"].items()})
        applies = tuple(interp["tuple"]) >= (3, 12)
        out[minor] = {"interpreter": interp, "rows": rows, "unavailable": unavailable,
                      "errors": errors, "targets": targets(rows, tr_entry, applies)}
    return out


# -- the report ---------------------------------------------------------------------------


def _f(x: Any, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def render_summary(data: dict[str, Any], heading: str = "###") -> str:
    lines: list[str] = []
    for _minor, s in data["summary"].items():
        interp = s["interpreter"]
        backend = ("sys.monitoring backend" if tuple(interp["tuple"]) >= (3, 12)
                   else "sys.setprofile backend; the targets are set for 3.12+, shown here "
                        "for information")
        lines += [f"{heading} Python {interp['version']} ({backend})", "",
                  "| workload | scale | configuration | ratio to untraced | / cProfile | "
                  "/ VizTracer | / pyftrace | / hunter | ns per call | peak RSS MiB | "
                  "bytes / event | events lost |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in s["rows"]:
            over = [_f(r["over"].get(col), ".2f") for col in PEER_COLUMNS]
            bpe = "—"
            if r.get("bytes_per_event") is not None:
                bpe = f"{r['bytes_per_event']:.1f} ({r['bytes_kind']})"
            ratio = _f(r.get("ratio"), ".2f")
            lines.append(
                f"| {r['workload']} | {r['scale_key']} {r['scale']:.4g} | {r['config']} | "
                f"**{ratio}x** | " + " | ".join(over) + f" | {_f(r.get('ns_per_call'), ',.0f')}"
                f" | {_f(None if r.get('rss_kib') is None else r['rss_kib'] / 1024, '.1f')} | "
                f"{bpe} | {r['lost_text'] or '—'} |")
        lines.append("")
        if s["unavailable"]:
            lines += ["Not run: " + "; ".join(f"{k}: {v}" for k, v in s["unavailable"].items())
                      + ".", ""]
        if s["errors"]:
            lines += ["Failed runs (see the JSON): " + ", ".join(
                f"{k} ({n})" for k, n in s["errors"].items()) + ".", ""]
        if s["targets"]:
            lines += ["Targets:", "", "| target | required | measured | verdict |",
                      "|---|---|---|---|"]
            for t in s["targets"]:
                verdict = ("met" if t["met"] else "**missed**") + f" ({t['by']})"
                if not t["applies"]:
                    verdict += ", for information"
                lines.append(f"| {t['target']} | {t['required']} | {t['measured']} | "
                             f"{verdict} |")
            lines.append("")
    return "\n".join(lines)


def _configs_tables(data: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if data.get("selective"):
        lines += ["Selective campaign (`selective` workload, run_selective.py):", "",
                  "| name | what runs |", "|---|---|"]
        for name, (_need, scale_key, desc) in run_selective.CONFIGS.items():
            label = "fntrace-selective" if name == "fntrace" else name
            lines.append(f"| {label} | {desc}" + (" (small scale)" if scale_key == "small"
                                                  else "") + " |")
        lines.append("")
    if data.get("tracers"):
        lines += ["Tracer campaign (run_tracers.py):", "",
                  *run_tracers.configs_table(data["tracers"]), ""]
    return lines


def _peer_versions(data: dict[str, Any]) -> str:
    out = []
    for part in ("tracers", "selective"):
        if data.get(part):
            for minor, e in data[part]["interpreters"].items():
                av = e["venv"]["available"]
                out.append(f"{minor}: " + ", ".join(
                    f"{p} {av.get(p) or 'unavailable'}" for p in run_selective.PEER_PACKAGES))
            break
    return "; ".join(out)


def _hot_path(data: dict[str, Any]) -> str:
    """Which fntrace hot path the children ran, per interpreter (the C one when built)."""
    out = []
    for part in ("tracers", "selective"):
        if data.get(part):
            for minor, e in data[part]["interpreters"].items():
                built = e["venv"]["available"].get("fntrace C hot path")
                out.append(f"{minor}: {'C hot path' if built else 'pure Python'}")
            break
    return "; ".join(out) or "hot path unknown"


def write_results_md(data: dict[str, Any], json_path: str, path: str = RESULTS_MD) -> None:
    notes = hand_notes(path, NOTES_MARKER)
    if not notes:
        for marker in OLD_MARKERS:
            notes = notes or hand_notes(path, marker)
    m = data["machine"]
    pythons = ", ".join(i["version"] for i in _interpreters(data).values())
    sel, tr = data.get("selective"), data.get("tracers")
    scales = []
    if sel:
        scales.append(f"`selective` {sel['settings']['scale']:g} (hunter: small "
                      f"{sel['settings']['small_scale']:g})")
    if tr:
        scales.append(run_tracers.scales_text(tr))
    head = [
        "# Benchmark results: fntrace beside cProfile, VizTracer, pyftrace and hunter",
        "",
        "Generated by `python3 bench/run.py` (see README.md); raw data in "
        f"`bench/results/{os.path.basename(json_path)}` (not committed).",
        "",
        f"- Date: {data['date']}",
        f"- Machine: {m['nproc']} CPUs (`nproc`), {m['cpu']}, {m['platform']}; "
        f"load average at the end {m['loadavg_at_end']}",
        f"- Pythons: {pythons}; fntrace: this work tree at that date, {_hot_path(data)}",
        f"- Peers (PyPI, per-interpreter venvs): {_peer_versions(data)}; cProfile from each "
        "interpreter's standard library",
        f"- Runs: {data['settings']['runs']} per configuration, each a fresh process, "
        "configurations alternating round-robin within each campaign; medians of process "
        f"CPU time. Campaign wall time {data['wall_seconds']:.0f} s.",
        f"- Scales (fractions of each workload as written, ~1-3 s untraced at 1): "
        f"{'; '.join(scales)}. Every ratio divides by the untraced run at the same scale.",
        "",
        "## Summary",
        "",
        "One table per Python version. *ratio to untraced*: median CPU time of the timed "
        "region (start the tool, run the workload, stop the tool) over the untraced median at "
        "the same scale. */ cProfile*, */ VizTracer*, */ pyftrace*, */ hunter*: that ratio "
        "divided by the peer's ratio on the same workload (< 1: costs less than the peer). "
        "VizTracer is its default configuration in memory (on `selective`: "
        "`include_files=[target]`, the same job as the filter); pyftrace and hunter run at "
        "the small scale only, so their column divides by their small-scale ratio. *ns per "
        "call*: (median - untraced median) / the Python function calls the sys.setprofile "
        "oracle counted (every call of the program, traced or not). *peak RSS*: the run's "
        "process peak resident memory (VmHWM; median). *bytes / event*: fntrace in memory: "
        "accounted bytes per event in the ring (64 + text); fntrace-graph-record: bytes of "
        "the trace file per event; pyftrace and hunter: bytes of text per line. *events "
        "lost*: events a tool failed to keep: for fntrace in memory the ring's overwritten "
        "events (overwrite mode keeps the newest 1408 KiB per thread by design), for "
        "VizTracer those past its full 1M-entry ring, for the others the shortfall against "
        "the oracle.",
        "",
        "Where a cell is \"—\", the peer cannot do that job or was not run there: pyftrace "
        "has no filter (it traces every function outside the standard library), so it has no "
        "`selective` row; pyftrace and hunter stream text to a file, so `wrap` (memory "
        "against run length, in memory) does not run them, and at 400-700x a long run would "
        "take minutes; no peer writes a trace file while the program runs as "
        "fntrace-graph-record does (pyftrace and hunter, writing text, are the nearest). On "
        "3.11 cProfile and pyftrace hook sys.setprofile, which sees only the thread that "
        "started them: on `threads` they trace the main thread alone (their ratio is near "
        "1x and their events fall short of the oracle).",
        "",
        render_summary(data),
        "## Configurations",
        "",
        *_configs_tables(data),
    ]
    if sel:
        head += ["## Selective campaign: details", "",
                 "Columns: see bench/README.md, *Reading the table* under *Selective tracing "
                 "on its own*.", "",
                 run_selective.render_tables(sel)]
    if tr:
        head += ["## Tracer campaign: details", "", run_tracers.columns_text("cpu"), "",
                 run_tracers.render_tables(tr)]
    head.append(NOTES_MARKER)
    with open(path, "w") as f:
        f.write("\n".join(head) + (notes if notes else "\n"))


# -- main ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per configuration (default 5)")
    ap.add_argument("--only", nargs="*", help="minor versions to run, e.g. 3.12 3.13")
    ap.add_argument("--workloads", nargs="*",
                    choices=["selective", *run_tracers.WORKLOADS],
                    help="only these workloads (selective: the selective campaign)")
    ap.add_argument("--quick", action="store_true",
                    help="2 runs, short scales (selective 0.2, tracers' bench and long / 4); "
                         "RESULTS.md untouched")
    ap.add_argument("--diagnose", action="store_true",
                    help="also the selective campaign's diagnostic variants (~2 minutes)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per child run")
    ap.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    ap.add_argument("--render", metavar="JSON",
                    help="only rewrite RESULTS.md from a saved campaign-*.json")
    ap.add_argument("--output", metavar="MD", default=RESULTS_MD,
                    help="where --render (or a campaign) writes the report (default "
                         "bench/RESULTS.md)")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            data = json.load(f)
        resummarise(data)  # from the raw runs, with today's rules
        write_results_md(data, args.render, args.output)
        print(f"report: {os.path.relpath(args.output, ROOT)}")
        return
    if args.quick:
        args.runs = 2
    data = campaign(args)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path = os.path.join(RESULTS_DIR, f"campaign-{stamp}{'-quick' if args.quick else ''}"
                             ".json")
    with open(json_path, "w") as f:
        json.dump(data, f, indent=1)
    print(render_summary(data))
    print(f"raw data: {os.path.relpath(json_path, ROOT)}")
    log(f"campaign wall time {data['wall_seconds']:.0f} s")
    if not args.no_write and not args.quick:
        write_results_md(data, json_path, args.output)
        print(f"report: {os.path.relpath(args.output, ROOT)}")


if __name__ == "__main__":
    main()
