#!/usr/bin/env python3
"""Where fntrace's time goes on the selective benchmark: cost per traced call.

    python3 bench/diagnose_selective.py [--calls N] [--repeat R]

Runs on each interpreter run_selective.py found a venv for (bench/.venvs/),
3.12+ only.  Every variant runs in a fresh process: a loop in a module that is
not selected calls ``target._bucket`` (a selected function) N times, and the
difference to the untraced loop, divided by N, is the cost of one traced call
(entry + exit).  Variants peel fntrace's path into layers:

* raw-noop:      sys.monitoring, PY_START+PY_RETURN on the selected code only,
                 Python callbacks that do nothing (CPython's dispatch floor)
* raw-record:    the same, callbacks append (code, perf_counter_ns()) (the
                 hand-written recorder, as mon-select in run_selective.py)
* fntrace-entry: fntrace, func callback only, doing nothing
* fntrace-noop:  fntrace, func+ret callbacks doing nothing
* fntrace:       fntrace, func+ret recorder, as in run_selective.py
* *-nogc:         the same with gc.disable(), against untraced-nogc (how much of
                 the cost is extra garbage-collector work caused by allocations)

Then, in one process, the pieces of fntrace's trampoline timed one by one
(``timeit``), to name what the layers cost.  These read fntrace internals and
print n/a where those have changed.

``--floors-311`` instead runs the whole selective workload on 3.11 under the
hooks a pure-Python tracer can use there (CPU time, fresh process each):
a no-op ``sys.setprofile`` function, one doing only a per-code dict lookup
(fntrace's dismissal of unselected code), and ``sys.settrace`` returning a
local tracer (no line events) only for frames of the selected module.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VARIANTS = ("untraced", "raw-noop", "raw-record", "fntrace-entry", "fntrace-noop", "fntrace",
            "untraced-nogc", "raw-record-nogc", "fntrace-noop-nogc", "fntrace-nogc")


def _loop(func: Any, n: int) -> None:
    for _ in range(n):
        func(3.0)


def child(variant: str, n: int) -> dict[str, Any]:
    sys.path[:0] = [ROOT, HERE]
    if variant.endswith("-nogc"):
        import gc

        gc.disable()
        variant = variant[:-len("-nogc")]
    from time import perf_counter_ns

    from workloads.selective import target

    func = target._bucket
    records: list[Any] = []
    put = records.append
    start = stop = None
    if variant.startswith("raw"):
        mon = sys.monitoring  # type: ignore[attr-defined]
        E = mon.events
        tool = next(t for t in (4, 3, 5, 0, 1, 2) if mon.get_tool(t) is None)
        if variant == "raw-noop":
            def on_start(code: Any, offset: int) -> Any:
                return None

            def on_return(code: Any, offset: int, value: Any) -> Any:
                return None
        else:
            def on_start(code: Any, offset: int) -> Any:
                put((code, perf_counter_ns()))

            def on_return(code: Any, offset: int, value: Any) -> Any:
                put((code, perf_counter_ns()))

        def start() -> None:
            mon.use_tool_id(tool, "bench")
            mon.register_callback(tool, E.PY_START, on_start)
            mon.register_callback(tool, E.PY_RETURN, on_return)
            mon.set_local_events(tool, func.__code__, E.PY_START | E.PY_RETURN)

        def stop() -> None:
            mon.set_local_events(tool, func.__code__, 0)
            mon.free_tool_id(tool)
    elif variant.startswith("fntrace"):
        import fntrace
        import fntrace.core.ipmodify  # its import is not what is measured here

        def noop(ip: Any, parent_ip: Any, ops: Any, fregs: Any) -> None:
            pass

        def record(ip: Any, parent_ip: Any, ops: Any, fregs: Any) -> None:
            put((ip, perf_counter_ns()))

        if variant == "fntrace-entry":
            ops = fntrace.Ops(noop, filter=[f"*:mod:{target.__name__}"])
        elif variant == "fntrace-noop":
            ops = fntrace.Ops(noop, ret=noop, filter=[f"*:mod:{target.__name__}"])
        else:
            ops = fntrace.Ops(record, ret=record, filter=[f"*:mod:{target.__name__}"])

        def start() -> None:
            fntrace.register(ops)

        def stop() -> None:
            fntrace.unregister(ops)

    if start is not None:
        start()
    _loop(func, 1000)  # first look and warm-up outside the timed loop
    t0 = time.perf_counter_ns()
    _loop(func, n)
    t1 = time.perf_counter_ns()
    if stop is not None:
        stop()
    return {"ns": t1 - t0, "n": n, "records": len(records)}


def floor_child(hook_name: str) -> dict[str, Any]:
    sys.path[:0] = [ROOT, HERE]
    import workloads.selective as workload

    target_module = workload.TARGET_MODULE
    decided: dict[Any, Any] = {}
    get = decided.get
    dismissed = object()

    def noop(frame: Any, event: str, arg: Any) -> None:
        pass

    def lookup(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            site = get(code)
            if site is None:
                decided[code] = site = dismissed
            if site is dismissed:
                return
        elif event == "return":
            site = get(frame.f_code)
            if site is None or site is dismissed:
                return

    def local(frame: Any, event: str, arg: Any) -> Any:
        return local

    def global_trace(frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        selected = get(code)
        if selected is None:
            decided[code] = selected = frame.f_globals.get("__name__") == target_module
        if selected:
            frame.f_trace_lines = False
            return local
        return None

    install = {"none": lambda h: None, "setprofile-noop": sys.setprofile,
               "setprofile-lookup": sys.setprofile, "settrace-selective": sys.settrace}
    hook = {"none": None, "setprofile-noop": noop, "setprofile-lookup": lookup,
            "settrace-selective": global_trace}[hook_name]
    c0 = time.process_time()
    install[hook_name](hook)
    workload.run(1.0)
    install[hook_name](None)
    return {"cpu_s": time.process_time() - c0}


def floors_311(repeat: int) -> None:
    py = os.path.join(HERE, ".venvs", "py3.11", "bin", "python")
    if not os.path.exists(py):
        raise SystemExit("no bench/.venvs/py3.11: run run_selective.py first")
    hooks = ("none", "setprofile-noop", "setprofile-lookup", "settrace-selective")
    cpu: dict[str, list[float]] = {h: [] for h in hooks}
    for _ in range(repeat):
        for h in hooks:
            r = subprocess.run([py, __file__, "--floor-child", h], capture_output=True,
                               text=True, check=True)
            cpu[h].append(json.loads(r.stdout.strip().splitlines()[-1])["cpu_s"])
    import statistics

    base = statistics.median(cpu["none"])
    print("| hook on 3.11 (whole selective workload) | median CPU s | ratio |")
    print("|---|---:|---:|")
    for h in hooks:
        med = statistics.median(cpu[h])
        print(f"| {h} | {med:.3f} | {med / base:.2f}x |")


def pieces(n: int) -> dict[str, float | None]:
    """ns per operation of the trampoline's pieces (fntrace internals; may be n/a)."""
    sys.path[:0] = [ROOT, HERE]
    import timeit

    out: dict[str, float | None] = {}

    def t(name: str, stmt: str, setup: str) -> None:
        try:
            g: dict[str, Any] = {}
            exec(setup, g)
            timer = timeit.Timer(stmt, globals=g)
            best = min(timer.repeat(5, n))
            base = min(timeit.Timer("pass", globals=g).repeat(5, n))
            out[name] = (best - base) / n * 1e9
        except Exception as exc:  # internals changed
            out[name] = None
            print(f"  {name}: n/a ({exc!r})", file=sys.stderr)

    common = (
        "import sys\n"
        "from time import perf_counter_ns\n"
        "import fntrace\n"
        "from fntrace.core import engine, symbols\n"
        "from fntrace.core.regs import FtraceRegs\n"
        "from workloads.selective import target\n"
        "frame = sys._getframe()\n"
        "fn = symbols.function_for_frame(frame)\n"
        "def noop(ip, parent_ip, ops, fregs): pass\n"
        "buf = []\n"
        "put = buf.append\n"
        "def record(ip, parent_ip, ops, fregs): put((ip, perf_counter_ns()))\n"
        "ops = fntrace.Ops(noop, ret=noop)\n"
        "cache = symbols._cache\n"
        "key = id(frame.f_code)\n"
    )
    t("sys._getframe(1)", "getframe(1)", common + "getframe = sys._getframe\n"
      "def f():\n    return getframe(1)\n")
    t("FtraceRegs(...) construction", "FtraceRegs(fn, frame, 'start', 0, None, None, False)",
      common)
    t("parent lookup: _fn_cache.get(id(code))", "cache.get(id(frame.f_code))", common)
    t("shadow stack: _stack().append + pop", "s = engine._stack(); s.append((frame, (), None));"
      " s.pop()", common)
    t("threading.local attribute read", "engine._tls.stack", common + "engine._stack()\n")
    t("call of a 4-argument no-op callback", "noop(fn, None, ops, None)", common)
    t("recorder callback (append (ip, perf_counter_ns()))", "record(fn, None, ops, None)",
      common)
    t("perf_counter_ns()", "perf_counter_ns()", common)
    t("try/except around a call (no exception)",
      "try:\n    noop(fn, None, ops, None)\nexcept Exception:\n    pass", common)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--pieces", type=int, metavar="N", help=argparse.SUPPRESS)
    ap.add_argument("--floor-child", help=argparse.SUPPRESS)
    ap.add_argument("--floors-311", action="store_true",
                    help="floors of pure-Python hooks on 3.11 (whole workload, ~2 minutes)")
    args = ap.parse_args()
    if args.floor_child:
        print(json.dumps(floor_child(args.floor_child)))
        return
    if args.floors_311:
        floors_311(min(args.repeat, 3))
        return
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    if args.pieces:
        print(json.dumps(pieces(args.pieces)))
        return
    root = os.path.join(HERE, ".venvs")
    venvs = sorted(p for p in (os.listdir(root) if os.path.isdir(root) else [])
                   if p.startswith("py3.") and p[4:].isdigit() and int(p[4:]) >= 12
                   and os.path.exists(os.path.join(root, p, "bin", "python")))
    report: dict[str, Any] = {"date": dt.datetime.now().astimezone().isoformat(
        timespec="seconds"), "calls": args.calls, "interpreters": {}}
    for venv in venvs:
        py = os.path.join(HERE, ".venvs", venv, "bin", "python")
        minor = venv[2:]
        times: dict[str, list[int]] = {v: [] for v in VARIANTS}
        for _ in range(args.repeat):
            for v in VARIANTS:
                r = subprocess.run([py, __file__, "--child", v, str(args.calls)],
                                   capture_output=True, text=True, check=True)
                times[v].append(json.loads(r.stdout.strip().splitlines()[-1])["ns"])
        best = {v: min(ts) for v, ts in times.items()}  # min: the least disturbed run
        per_call = {v: (best[v] - best["untraced-nogc" if v.endswith("nogc") else "untraced"])
                    / args.calls for v in VARIANTS}
        r = subprocess.run([py, __file__, "--pieces", "200000"], capture_output=True,
                           text=True, check=True)
        report["interpreters"][minor] = {"per_traced_call_ns": per_call,
                                         "untraced_ns_per_call": best["untraced"] / args.calls,
                                         "pieces_ns": json.loads(r.stdout.strip()
                                                                 .splitlines()[-1])}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results",
                        f"diagnose-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    minors = list(report["interpreters"])
    print("| cost per traced call (entry + exit), ns | " + " | ".join(minors) + " |")
    print("|---|" + "---:|" * len(minors))
    print("| untraced call of the function itself | " + " | ".join(
        f"{report['interpreters'][m]['untraced_ns_per_call']:.0f}" for m in minors) + " |")
    for v in VARIANTS[1:]:
        if v == "untraced-nogc":
            continue
        print(f"| {v} | " + " | ".join(
            f"{report['interpreters'][m]['per_traced_call_ns'][v]:.0f}" for m in minors) + " |")
    print()
    print("| piece of the trampoline, ns each | " + " | ".join(minors) + " |")
    print("|---|" + "---:|" * len(minors))
    names = list(next(iter(report["interpreters"].values()))["pieces_ns"]) if minors else []
    for name in names:
        cells = []
        for m in minors:
            val = report["interpreters"][m]["pieces_ns"].get(name)
            cells.append("n/a" if val is None else f"{val:.0f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nraw data: {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
