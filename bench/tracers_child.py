"""One measured run of a tracer benchmark workload, in a fresh process.

    python tracers_child.py CONFIG WORKLOAD SCALE [--count]

Prints one JSON object on its last stdout line.  run_tracers.py starts this
script once per run, so no tracer state, warm cache or instrumented code object
leaks from one configuration into another.

The timed region is the same for every configuration: start the tool, run the
whole workload (``workloads.<WORKLOAD>.run(SCALE)``), stop the tool.  For
fntrace that region is exactly ``with fntrace.instance.trace(...) as inst:``
around the workload (instance set-up, registration, the run, close).  Importing
the tool's package and building its objects happen before; reading back what it
recorded happens after, untimed.  ``--count`` also counts what VizTracer kept
(parsing its 1M-entry buffer takes seconds, so run_tracers.py asks for it once
per configuration); everything else is counted on every run.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# fntrace from this work tree (or from BENCH_FNTRACE_ROOT: a prototype copied
# elsewhere, run_tracers.py --fntrace-root), then the workloads.
sys.path[:0] = [os.environ.get("BENCH_FNTRACE_ROOT") or ROOT, HERE]
# Started with -S by run_tracers.py (as by run_selective.py): the venv's
# site-packages, without the .pth files that would import hunter everywhere.
sys.path += [p for p in os.environ.get("BENCH_SITE_DIRS", "").split(os.pathsep) if p]

Start = Callable[[], None]
Stop = Callable[[], None]
Count = Callable[[bool], dict[str, Any]]
Setup = Callable[[], tuple[Start, Stop, Count]]

#: fntrace configurations: current_tracer and the options given to trace().
FNTRACE: dict[str, tuple[str, dict[str, Any]]] = {
    "fntrace-function": ("function", {}),
    "fntrace-graph": ("function_graph", {}),
    "fntrace-graph-args-retval": ("function_graph", {"funcgraph_args": 1,
                                                     "funcgraph_retval": 1}),
    # As `fntrace record` does it: the same tracer streaming into a trace file.
    "fntrace-graph-record": ("function_graph", {}),
}
#: VizTracer configurations: keyword arguments beside verbose=0, register_global=False.
VIZTRACER: dict[str, dict[str, Any]] = {
    "viztracer": {},
    "viztracer-py": {"ignore_c_function": True},
    "viztracer-args": {"ignore_c_function": True, "log_func_args": True,
                       "log_func_retval": True},
}


def untraced() -> tuple[Start, Stop, Count]:
    return (lambda: None), (lambda: None), (lambda full: {})


def cprofile() -> tuple[Start, Stop, Count]:
    import cProfile

    prof = cProfile.Profile()

    def count(full: bool) -> dict[str, Any]:
        py = c = 0
        for e in prof.getstats():
            if isinstance(e.code, str):  # a C function ("<built-in method ...>")
                c += e.callcount
            else:
                py += e.callcount
        # Its own disable() is the one C call recorded that the workload did not make.
        return {"events": py + c, "py_calls": py, "c_calls": c, "lost": 0}

    return prof.enable, prof.disable, count


def viztracer(name: str) -> Setup:
    def setup() -> tuple[Start, Stop, Count]:
        from viztracer import VizTracer

        tracer = VizTracer(verbose=0, register_global=False, **VIZTRACER[name])

        def count(full: bool) -> dict[str, Any]:
            out: dict[str, Any] = {"buffer_entries": tracer.tracer_entries}
            if full:
                t = time.perf_counter()
                out["kept"] = tracer.parse()
                out["parse_s"] = time.perf_counter() - t
            return out

        return tracer.start, tracer.stop, count

    return setup


def run_fntrace(name: str, workload: Any, scale: float) -> dict[str, Any]:
    """The timed region for fntrace, written as a user would write it."""
    import fntrace.instance
    import fntrace.tracers.function
    import fntrace.tracers.function_graph  # imported before the timed region, as above

    tracer, options = FNTRACE[name]
    if name.endswith("-record"):
        return record_fntrace(tracer, workload, scale)
    clock, cpu = time.perf_counter, time.process_time
    c0, t0 = cpu(), clock()
    with fntrace.instance.trace(tracer, **options) as inst:
        digest = workload.run(scale)
    t1, c1 = clock(), cpu()
    bufs = list(inst.rb.live.by_tid.values())
    kinds: dict[str, int] = {}
    for buf in bufs:
        for ev in buf.events:
            kinds[ev[2]] = kinds.get(ev[2], 0) + 1
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "digest": digest,
            "events": sum(b.written for b in bufs),
            "lost": sum(b.overrun + b.dropped for b in bufs),
            "overrun": sum(b.overrun for b in bufs), "dropped": sum(b.dropped for b in bufs),
            "kept": sum(len(b.events) for b in bufs), "kinds_kept": kinds,
            "threads": len(bufs), "buffer_kb": inst.rb.size_kb}


def record_fntrace(tracer: str, workload: Any, scale: float) -> dict[str, Any]:
    """The timed region of `fntrace record`: the tracer, the writer thread, the file.

    process_time counts the writer thread too, so the ratio is the whole cost.
    """
    import os
    import tempfile

    import fntrace.instance
    from fntrace.recorder import Recorder, header_for

    inst = fntrace.instance.Instance("bench")
    inst.write("trace_clock", "mono")
    fd, path = tempfile.mkstemp(suffix=".dat")
    os.close(fd)
    rec = Recorder(inst, path, header_for(inst, ["bench"], {}))  # before tracing starts
    clock, cpu = time.perf_counter, time.process_time
    c0, t0 = cpu(), clock()
    inst.tracing_on = False  # as record does: on only while the program runs
    inst.write("current_tracer", tracer)
    rec.start()
    inst.tracing_on = True
    digest = workload.run(scale)
    inst.tracing_on = False
    rec.finish()
    t1, c1 = clock(), cpu()
    size = os.path.getsize(path)
    os.unlink(path)
    bufs = list(inst.rb.live.by_tid.values())
    events = sum(b.written for b in bufs)
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "digest": digest, "events": events,
            "lost": sum(b.overrun + b.dropped for b in bufs),
            "overrun": sum(b.overrun for b in bufs), "dropped": sum(b.dropped for b in bufs),
            "kept": 0, "threads": len(bufs), "buffer_kb": inst.rb.size_kb,
            "file_bytes": size, "bytes_per_event": size / events if events else None}


CONFIGS: dict[str, Setup] = {
    "untraced": untraced,
    "cprofile": cprofile,
    **{name: viztracer(name) for name in VIZTRACER},
}


def oracle(workload: Any, scale: float) -> dict[str, Any]:
    """Count the workload's calls with sys.setprofile (untimed).

    'call' events are Python function entries (starts and generator/coroutine
    resumptions), 'return' events exits (returns, yields, unwinds); 'c_call'
    events calls of C functions.  Starts are told from resumes by the
    instruction at f_lasti (RESUME with oparg 0 opens a function).
    """
    import dis

    resume = dis.opmap["RESUME"]
    n = {"entries": 0, "starts": 0, "exits": 0, "c_calls": 0}

    def prof(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            n["entries"] += 1
            raw = frame.f_code.co_code
            lasti = frame.f_lasti
            n["starts"] += lasti < 0 or (raw[lasti] == resume and raw[lasti + 1] == 0)
        elif event == "return":
            n["exits"] += 1
        elif event == "c_call":
            n["c_calls"] += 1

    sys.setprofile(prof)
    digest = workload.run(scale)
    sys.setprofile(None)
    n["c_calls"] -= 1  # sys.setprofile(None) itself
    return {**n, "digest": digest}


def main() -> None:
    config, workload_name, scale = sys.argv[1], sys.argv[2], float(sys.argv[3])
    full_count = "--count" in sys.argv[4:]
    workload = importlib.import_module(f"workloads.{workload_name}")
    base = {"config": config, "workload": workload_name, "scale": scale,
            "python": sys.version.split()[0], "executable": sys.executable}
    if config == "oracle":
        print(json.dumps({**base, **oracle(workload, scale)}))
        return
    if config in FNTRACE:
        out = {**base, **run_fntrace(config, workload, scale)}
    else:
        start, stop, count = CONFIGS[config]()
        clock, cpu = time.perf_counter, time.process_time
        c0, t0 = cpu(), clock()
        start()
        digest = workload.run(scale)
        stop()
        t1, c1 = clock(), cpu()
        out = {**base, "wall_s": t1 - t0, "cpu_s": c1 - c0, "digest": digest}
        out.update(count(full_count))
    sys.stdout.flush()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
