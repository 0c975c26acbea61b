#!/usr/bin/env python3
"""Where one traced call's time goes in the function (and function_graph) tracer.

    python3 bench/diagnose_tracers.py [--calls N] [--repeat R] [--fntrace-root DIR]

Runs on each interpreter run_selective.py/run_tracers.py made a venv for
(bench/.venvs/), 3.12+ only.  Two measurements:

*Layers* (fresh process per variant, best of R): a loop in this module calls a
one-line function N times while everything is traced; (variant - untraced) / N
is the cost of one traced call.  The variants add fntrace's path a layer at a
time:

* mon-noop:        raw sys.monitoring, global PY_START, a no-op Python callback
                   (CPython's dispatch: the floor of any sys.monitoring tracer)
* mon-lookup:      the same callback doing what fntrace's py_start does before the
                   trampoline (``sites.get(id(code))``, ``sys._getframe(1)``) and
                   calling a no-op 4-argument function in its place
* mon-record:      raw callback appending (code, perf_counter_ns()) to a deque ring
                   (the cheapest pure-Python recorder, for reference)
* engine-noop:     fntrace.register(Ops(no-op)), no filter: backend + trampoline +
                   FtraceRegs + parent lookup + the callback call
* engine-record:   the same, the callback appends (ip, perf_counter_ns()) to a list
* function-nowrap: ``trace("function")`` with a buffer large enough never to wrap
* function:        ``trace("function")``, default buffer, full (steady state: every
                   write overwrites the oldest event)
* graph:           ``trace("function_graph")``, default buffer, full
* graph-args-retval: the same with funcgraph-args and funcgraph-retval
* *-nogc:          the same with gc.disable(), against untraced-nogc: the share of
                   the cost that is garbage-collector work caused by what the path
                   allocates (FtraceRegs, event tuples) and keeps (a full ring)

*Pieces* (one process, ``timeit``, best of 5): every step of the function
tracer's path timed on its own with real fntrace objects, grouped as monitoring
dispatch / backend callback / parent lookup / FtraceRegs / callback call /
option checks / clock / event tuple / ring-buffer write.  They read fntrace
internals and print n/a where those have changed.

``--fntrace-root DIR`` measures the fntrace package found in DIR instead of
this work tree (a prototype copied and edited elsewhere): that is how the gains
in RESULTS_TRACERS.md were measured.
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
VARIANTS = ("untraced", "mon-noop", "mon-lookup", "mon-record", "engine-noop", "engine-record",
            "function-nowrap", "function", "graph", "graph-args-retval",
            "untraced-nogc", "engine-noop-nogc", "function-nogc", "graph-nogc")
WARMUP = 40_000  # more than a default buffer holds (22,528 events of 64 bytes)


def leaf(x: float) -> float:
    return x


def _loop(func: Any, n: int) -> None:
    for _ in range(n):
        func(3.0)


def _fntrace_root() -> str:
    return os.environ.get("BENCH_FNTRACE_ROOT") or ROOT


def child(variant: str, n: int) -> dict[str, Any]:
    sys.path.insert(0, _fntrace_root())
    if variant.endswith("-nogc"):
        import gc

        gc.disable()
        variant = variant[:-len("-nogc")]
    from collections import deque
    from time import perf_counter_ns

    start: Any = None
    stop: Any = None
    count: Any = dict
    if variant.startswith("mon-"):
        mon = sys.monitoring  # type: ignore[attr-defined]
        E = mon.events
        tool = next(t for t in (4, 3, 5, 0, 1, 2) if mon.get_tool(t) is None)
        ring: deque[Any] = deque(maxlen=22_528)
        put = ring.append
        table: dict[int, Any] = {}
        table_get = table.get
        getframe = sys._getframe

        def enter(site: Any, frame: Any, event: str, offset: int) -> None:
            pass

        if variant == "mon-noop":
            def on_start(code: Any, offset: int) -> Any:
                return None
        elif variant == "mon-lookup":
            def on_start(code: Any, offset: int) -> Any:
                site = table_get(id(code))
                enter(site, getframe(1), "start", offset)
                return None
        else:
            def on_start(code: Any, offset: int) -> Any:
                put((code, perf_counter_ns()))
                return None

        def start() -> None:
            mon.use_tool_id(tool, "bench")
            mon.register_callback(tool, E.PY_START, on_start)
            mon.set_events(tool, E.PY_START)

        def stop() -> None:
            mon.set_events(tool, 0)
            mon.register_callback(tool, E.PY_START, None)
            mon.free_tool_id(tool)
    elif variant.startswith("engine-"):
        import fntrace
        import fntrace.core.ipmodify  # its import is not what is measured

        records: list[Any] = []
        rput = records.append

        def noop(ip: Any, parent: Any, ops: Any, fregs: Any) -> None:
            pass

        def record(ip: Any, parent: Any, ops: Any, fregs: Any) -> None:
            rput((ip, perf_counter_ns()))

        ops = fntrace.Ops(noop if variant == "engine-noop" else record)
        start, stop = (lambda: fntrace.register(ops)), (lambda: fntrace.unregister(ops))
    elif variant != "untraced":
        import fntrace.core.ipmodify  # imported before the measured loop
        import fntrace.tracing.instance
        import fntrace.tracing.tracers.function
        import fntrace.tracing.tracers.function_graph

        tracer = "function" if variant.startswith("function") else "function_graph"
        options = {"funcgraph_args": 1, "funcgraph_retval": 1} if "args" in variant else {}
        holder: list[Any] = []

        def start() -> None:
            inst = fntrace.tracing.instance.Instance()
            if variant == "function-nowrap":
                inst.write("buffer_size_kb", str((n + 2 * WARMUP) * 64 // 1024 + 1024))
            for opt, value in options.items():
                inst.write(f"options/{opt.replace('_', '-')}", str(value))
            inst.write("current_tracer", tracer)
            holder.append(inst)

        def stop() -> None:
            holder[0].close()

        def count() -> dict[str, Any]:
            bufs = list(holder[0].rb.live.by_tid.values())
            return {"written": sum(b.written for b in bufs),
                    "overrun": sum(b.overrun for b in bufs)}
    if start is not None:
        start()
    _loop(leaf, WARMUP)  # first look, warm caches, and a full ring buffer
    t0 = time.perf_counter_ns()
    _loop(leaf, n)
    t1 = time.perf_counter_ns()
    if stop is not None:
        stop()
    return {"ns": t1 - t0, "n": n, **count()}


# -- pieces -------------------------------------------------------------------------

_SETUP = """
import sys, threading
from time import perf_counter_ns
import fntrace
import fntrace.tracing.instance
from fntrace.core import engine, symbols
from fntrace.core.regs import FtraceRegs
from fntrace.core.flags import Event
from fntrace.tracing.tracers.function import FunctionTracer, FUNC
from fntrace.tracing.ring_buffer import EVENT_OVERHEAD
from diagnose_tracers import leaf

frame = sys._getframe()
getframe = sys._getframe
code = leaf.__code__
fn = symbols.function_for_code(code, "diagnose_tracers") if hasattr(
    symbols, "function_for_code") else symbols.function_for_frame(frame)
parent = symbols.function_for_frame(frame)
fn_cache = symbols._cache
fn_cache_get = fn_cache.get
sites = {id(code): object()}
sites_get = sites.get
START = Event.START
def noop4(a, b, c, d): pass
def noop_ret(): return None
inst = fntrace.tracing.instance.Instance()
tracer = FunctionTracer(inst)
ops = fntrace.Ops(tracer.entry)
ops._live = True
fregs = FtraceRegs(fn, frame, START, 0, None, None, False)
rb = inst.rb
for i in range(40000):  # fill the buffer: writes take the overwrite path
    rb.write((rb.clock(), EVENT_OVERHEAD, FUNC, fn, parent, None, START))
buf = rb.buffer()
event = (rb.clock(), EVENT_OVERHEAD, FUNC, fn, parent, None, START)
options = inst.options
big = fntrace.tracing.instance.Instance()
big.rb.resize(1 << 22)
bigbuf = big.rb.buffer()
tls = threading.local()
tls.stack = []
class Slotted:
    __slots__ = ("fn", "has_ret", "entry_op", "regs")
site = Slotted()
site.fn, site.has_ret, site.entry_op, site.regs = fn, False, ops, False
"""

# (group, name, statement); timed per execution, minus an empty statement.
PIECES: list[tuple[str, str, str]] = [
    ("backend callback", "sites.get(id(code))", "sites_get(id(code))"),
    ("backend callback", "sys._getframe(1) (inside a function)", "noop_getframe()"),
    ("backend callback", "call of a 4-argument Python function (site.enter)",
     "noop4(site, frame, START, 0)"),
    ("parent lookup", "frame.f_back", "frame.f_back"),
    ("parent lookup", "_fn_cache.get(id(back.f_code))", "fn_cache_get(id(frame.f_code))"),
    ("FtraceRegs", "FtraceRegs(fn, frame, event, offset, None, None, False)",
     "FtraceRegs(fn, frame, START, 0, None, None, False)"),
    ("trampoline checks", "site.entry_op, site.has_ret, op._live",
     "site.entry_op; site.has_ret; ops._live"),
    ("callback call", "try: bound-method call with 4 arguments (a no-op)",
     "try:\n    tracer_noop(fn, parent, ops, fregs)\nexcept Exception:\n    pass"),
    ("option checks", "inst.tracing_on", "inst.tracing_on"),
    ("option checks", "inst.pid_filtered (a property)", "inst.pid_filtered"),
    ("option checks", 'inst.options["func-args"] + ["func_stack_trace"]',
     'options["func-args"]; options["func_stack_trace"]'),
    ("clock", "rb.clock() (time.perf_counter_ns)", "rb.clock()"),
    ("event tuple", "the 7-tuple event", "(1, EVENT_OVERHEAD, FUNC, fn, parent, None, START)"),
    ("ring buffer", "rb.write(event), buffer full (overwrite)", "rb.write(event)"),
    ("ring buffer", "rb.write(event), buffer not full", "big.rb.write(event)"),
    ("ring buffer", "  of which rb.buffer() (threading.local read)", "rb.buffer()"),
    ("ring buffer", "  of which ThreadBuffer.write, full", "buf.write(event)"),
    ("ring buffer", "  of which ThreadBuffer.write, not full", "bigbuf.write(event)"),
    ("whole", "FunctionTracer.entry(...) (buffer full)", "tracer.entry(fn, parent, ops, fregs)"),
    ("whole", "_enter_one(site, frame, ...) with FunctionTracer.entry (buffer full)",
     "engine._enter_one(site, frame, START, 0)"),
]
_EXTRA_SETUP = """
def noop_getframe():
    return getframe(1)
class _T:
    def noop(self, ip, parent, ops, fregs): pass
tracer_noop = _T().noop
"""


def pieces(n: int) -> dict[str, float | None]:
    sys.path[:0] = [_fntrace_root(), HERE]
    import timeit

    g: dict[str, Any] = {}
    try:
        exec(_SETUP + _EXTRA_SETUP, g)
    except Exception as exc:  # internals changed
        print(f"pieces: set-up failed: {exc!r}", file=sys.stderr)
        return {name: None for _, name, _ in PIECES}
    base = min(timeit.Timer("pass", globals=g).repeat(5, n))
    out: dict[str, float | None] = {}
    for _group, name, stmt in PIECES:
        try:
            best = min(timeit.Timer(stmt, globals=g).repeat(5, n))
            out[name] = (best - base) / n * 1e9
        except Exception as exc:
            out[name] = None
            print(f"  {name}: n/a ({exc!r})", file=sys.stderr)
    return out


# -- driver ----------------------------------------------------------------------------


def _venvs() -> list[tuple[str, str]]:
    root = os.path.join(HERE, ".venvs")
    out = []
    for name in sorted(os.listdir(root) if os.path.isdir(root) else []):
        py = os.path.join(root, name, "bin", "python")
        if name.startswith("py3.") and name[4:].isdigit() and int(name[4:]) >= 12 \
                and os.path.exists(py):
            out.append((name[2:], py))
    return out


def _run(py: str, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    r = subprocess.run([py, "-S", __file__, *args], capture_output=True, text=True, env=env,
                       cwd=HERE)
    if r.returncode != 0:
        raise RuntimeError(f"{args}: {r.stderr.strip()[-800:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", nargs="*", help="minor versions, e.g. 3.12")
    ap.add_argument("--variants", nargs="*", choices=VARIANTS, help="only these layers")
    ap.add_argument("--no-pieces", dest="pieces", action="store_false")
    ap.add_argument("--fntrace-root", help="directory holding the fntrace package to measure")
    ap.add_argument("--label", default="", help="a name for this measurement in the JSON")
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--pieces-child", type=int, metavar="N", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    if args.pieces_child:
        print(json.dumps(pieces(args.pieces_child)))
        return
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONHASHSEED"] = "0"
    if args.fntrace_root:
        env["BENCH_FNTRACE_ROOT"] = os.path.abspath(args.fntrace_root)
    variants = ["untraced"] + [v for v in (args.variants or VARIANTS) if v != "untraced"]
    report: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "calls": args.calls, "repeat": args.repeat, "label": args.label,
        "fntrace_root": os.path.abspath(args.fntrace_root or ROOT), "interpreters": {}}
    for minor, py in _venvs():
        if args.only and minor not in args.only:
            continue
        times: dict[str, list[int]] = {v: [] for v in variants}
        extra: dict[str, Any] = {}
        for _ in range(args.repeat):
            for v in variants:  # round-robin
                res = _run(py, ["--child", v, str(args.calls)], env)
                times[v].append(res["ns"])
                extra[v] = {k: res[k] for k in res if k not in ("ns", "n")}
        best = {v: min(ts) for v, ts in times.items()}  # min: the least disturbed run
        per_call = {v: (best[v] - best["untraced-nogc" if v.endswith("-nogc")
                                        and "untraced-nogc" in best else "untraced"])
                    / args.calls for v in variants}
        entry: dict[str, Any] = {"per_traced_call_ns": per_call,
                                 "untraced_ns_per_call": best["untraced"] / args.calls,
                                 "counters": extra}
        if args.pieces:
            entry["pieces_ns"] = _run(py, ["--pieces-child", "200000"], env)
        report["interpreters"][minor] = entry
        print(f"[{minor}] done", file=sys.stderr)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", "diagnose-tracers-"
                        f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    minors = list(report["interpreters"])
    print("| cost per traced call, ns | " + " | ".join(minors) + " |")
    print("|---|" + "---:|" * len(minors))
    print("| untraced call of the one-line function itself | " + " | ".join(
        f"{report['interpreters'][m]['untraced_ns_per_call']:.0f}" for m in minors) + " |")
    for v in variants[1:]:
        if v == "untraced-nogc":
            continue
        print(f"| {v} | " + " | ".join(
            f"{report['interpreters'][m]['per_traced_call_ns'][v]:,.0f}" for m in minors) + " |")
    if args.pieces and minors:
        print()
        print("| group | piece, ns each | " + " | ".join(minors) + " |")
        print("|---|---|" + "---:|" * len(minors))
        for group, name, _ in PIECES:
            cells = []
            for m in minors:
                val = report["interpreters"][m]["pieces_ns"].get(name)
                cells.append("n/a" if val is None else f"{val:.0f}")
            print(f"| {group} | {name} | " + " | ".join(cells) + " |")
    print(f"\nraw data: {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
