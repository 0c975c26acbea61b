"""One measured run of a tracer benchmark workload, in a fresh process.

    python tracers_child.py CONFIG WORKLOAD SCALE [--count]

Prints one JSON object on its last stdout line.  run_tracers.py starts this
script once per run, so no tracer state, warm cache or instrumented code object
leaks from one configuration into another.

The timed region is the same for every configuration: start the tool, run the
whole workload (``workloads.<WORKLOAD>.run(SCALE)``), stop the tool.  For
fntrace that region is exactly ``with fntrace.tracing.instance.trace(...) as inst:``
around the workload (instance set-up, registration, the run, close).  Importing
the tool's package and building its objects happen before; reading back what it
recorded happens after, untimed.  ``--count`` also counts what VizTracer kept
(parsing its 1M-entry buffer takes seconds, so run_tracers.py asks for it once
per configuration); everything else is counted on every run.

Peak memory: ``rss_start_kib`` is the process's peak RSS (VmHWM, KiB; see
peak_rss_kib) just before the timed region, after the imports and the tool's set-up;
``rss_kib`` its peak RSS just after it, before anything recorded is read back
(VizTracer's ``parse()`` alone would double it).

hunter and pyftrace write text: into a file in /dev/shm (memory, no disk; the
system's temporary directory where there is none), removed after it has been
counted (lines = events, bytes per event).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import threading
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

from rss import peak_rss_kib  # noqa: E402

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


def text_sink() -> tuple[str, Any]:
    """A file for a tool that writes a text trace: in /dev/shm (RAM) when there is one."""
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    fd, path = tempfile.mkstemp(prefix="bench-trace-", suffix=".txt", dir=where)
    return path, os.fdopen(fd, "w")


def count_text(path: str) -> dict[str, Any]:
    """Lines (one per event for hunter and pyftrace) and bytes of a text trace; removes it."""
    size = os.path.getsize(path)
    lines = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            lines += chunk.count(b"\n")
    os.unlink(path)
    return {"events": lines, "lost": 0, "file_bytes": size,
            "bytes_per_event": size / lines if lines else None}


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
    import fntrace.tracing.instance
    import fntrace.tracing.tracers.function
    import fntrace.tracing.tracers.function_graph  # imported before the timed region, as above

    tracer, options = FNTRACE[name]
    if name.endswith("-record"):
        return record_fntrace(tracer, workload, scale)
    clock, cpu = time.perf_counter, time.process_time
    rss0 = peak_rss_kib()
    c0, t0 = cpu(), clock()
    with fntrace.tracing.instance.trace(tracer, **options) as inst:
        digest = workload.run(scale)
    t1, c1 = clock(), cpu()
    rss1 = peak_rss_kib()
    bufs = list(inst.rb.live.by_tid.values())
    kinds: dict[str, int] = {}
    for buf in bufs:
        for ev in buf.events:
            kinds[ev[2]] = kinds.get(ev[2], 0) + 1
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "digest": digest,
            "rss_start_kib": rss0, "rss_kib": rss1,
            "kept": sum(len(b.events) for b in bufs), "kinds_kept": kinds,
            **ring_stats(bufs, inst.rb.size_kb)}


def ring_stats(bufs: list[Any], size_kb: int) -> dict[str, Any]:
    """fntrace's ring-buffer counters, summed over the threads' buffers.

    ``wraps``: accounted bytes written / the buffers' capacity, i.e. how many
    times over the buffers were filled (overwrite mode keeps the newest).
    """
    written = sum(b.written for b in bufs)
    in_bytes = sum(b.in_bytes for b in bufs)
    capacity = size_kb * 1024 * max(1, len(bufs))
    return {"events": written, "lost": sum(b.overrun + b.dropped for b in bufs),
            "overrun": sum(b.overrun for b in bufs), "dropped": sum(b.dropped for b in bufs),
            "threads": len(bufs), "buffer_kb": size_kb, "accounted_bytes": in_bytes,
            "accounted_bytes_per_event": in_bytes / written if written else None,
            "wraps": in_bytes / capacity}


def record_fntrace(tracer: str, workload: Any, scale: float) -> dict[str, Any]:
    """The timed region of `fntrace record`: the tracer, the writer thread, the file.

    process_time counts the writer thread too, so the ratio is the whole cost.
    """
    import os
    import tempfile

    import fntrace.tracing.instance
    from fntrace.recording.recorder import Recorder, header_for

    inst = fntrace.tracing.instance.Instance("bench")
    inst.write("trace_clock", "mono")
    fd, path = tempfile.mkstemp(suffix=".dat")
    os.close(fd)
    rec = Recorder(inst, path, header_for(inst, ["bench"], {}))  # before tracing starts
    clock, cpu = time.perf_counter, time.process_time
    rss0 = peak_rss_kib()
    c0, t0 = cpu(), clock()
    inst.tracing_on = False  # as record does: on only while the program runs
    inst.write("current_tracer", tracer)
    rec.start()
    inst.tracing_on = True
    digest = workload.run(scale)
    inst.tracing_on = False
    rec.finish()
    t1, c1 = clock(), cpu()
    rss1 = peak_rss_kib()
    size = os.path.getsize(path)
    os.unlink(path)
    bufs = list(inst.rb.live.by_tid.values())
    stats = ring_stats(bufs, inst.rb.size_kb)
    events = stats["events"]
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "digest": digest, **stats,
            "rss_start_kib": rss0, "rss_kib": rss1, "kept": 0,
            "file_bytes": size, "bytes_per_event": size / events if events else None}


def run_profile(workload: Any, scale: float) -> dict[str, Any]:
    """The function profiler (function_profile_enabled = 1), as the kernel's: hit
    count, total time and s^2 per function, no ring buffer.  The timed region:
    enable, run the workload, disable.  Hits are read from the records after."""
    import fntrace.tracing.instance
    import fntrace.tracing.tracers.profile  # imported before the timed region

    inst = fntrace.tracing.instance.Instance("bench")
    clock, cpu = time.perf_counter, time.process_time
    rss0 = peak_rss_kib()
    c0, t0 = cpu(), clock()
    inst.write("function_profile_enabled", "1")
    digest = workload.run(scale)
    inst.write("function_profile_enabled", "0")
    t1, c1 = clock(), cpu()
    rss1 = peak_rss_kib()
    records = inst.profile.records()
    inst.close()
    hits = sum(r[1] for r in records)
    return {"wall_s": t1 - t0, "cpu_s": c1 - c0, "digest": digest, "events": hits,
            "hits": hits, "functions": len(records), "lost": 0,
            "rss_start_kib": rss0, "rss_kib": rss1}


def hunter() -> tuple[Start, Stop, Count]:
    """hunter's usual job: CallPrinter, every Python call and return, args and return values.

    ``profile=True`` (sys.setprofile: call and return events, no line events) with
    ``builtin=False`` (drops the C calls the profile hook also reports), so it
    records the events function_graph records.  CallPrinter prints each call
    with its arguments' reprs and each return with the value's repr.  hunter
    follows new threads itself (threading_support, on by default).
    """
    import hunter as hunter_mod

    path, stream = text_sink()
    action = hunter_mod.CallPrinter(stream=stream, force_colors=False)
    state: dict[str, Any] = {}

    def start() -> None:
        state["tracer"] = hunter_mod.trace(kind_in=("call", "return"), builtin=False,
                                           action=action, profile=True)

    def stop() -> None:
        state["tracer"].stop()
        stream.flush()

    def count(full: bool) -> dict[str, Any]:
        stream.close()
        return count_text(path)

    return start, stop, count


def pyftrace() -> tuple[Start, Stop, Count]:
    """pyftrace's default job (``pyftrace script.py``) on the workload, in process.

    Its CLI runs a script; here the same tracer object is built as its main()
    builds it (get_tracer(verbose=False, show_path=False, report_mode=False),
    sys.monitoring on 3.12+, sys.setprofile before) and started around the
    workload instead of around exec(script): ``tracing_started`` is set as its
    own code sets it on entering the script's <module>.  It prints "Called f
    from line N" and "Returning f-> <str(retval)>" for every call of a Python
    function outside the standard library and its own package.
    """
    from pyftrace.tracer import get_tracer

    path, stream = text_sink()
    tracer = get_tracer(verbose=False, show_path=False, report_mode=False,
                        output_stream=stream)
    tracer.script_name = os.path.abspath(__file__)
    tracer.script_dir = HERE
    tracer.tracing_started = True

    def stop() -> None:
        tracer.cleanup_tracing()
        stream.flush()

    def count(full: bool) -> dict[str, Any]:
        mon = getattr(sys, "monitoring", None)
        if mon is not None:  # 3.12's free_tool_id leaves the events on: silence them
            try:
                mon.set_events(1, 0)
            except ValueError:
                pass
        stream.close()
        return count_text(path)

    return tracer.setup_tracing, stop, count


CONFIGS: dict[str, Setup] = {
    "untraced": untraced,
    "cprofile": cprofile,
    **{name: viztracer(name) for name in VIZTRACER},
    "hunter": hunter,
    "pyftrace": pyftrace,
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
    tables: list[dict[str, int]] = []
    local = threading.local()
    lock = threading.Lock()

    def table() -> dict[str, int]:
        t = local.n = {"entries": 0, "starts": 0, "exits": 0, "c_calls": 0}
        with lock:
            tables.append(t)
        return t

    def prof(frame: Any, event: str, arg: Any) -> None:
        try:
            n = local.n  # one table per thread: no update is lost to a thread switch
        except AttributeError:
            n = table()
        if event == "call":
            n["entries"] += 1
            raw = frame.f_code.co_code
            lasti = frame.f_lasti
            n["starts"] += lasti < 0 or (raw[lasti] == resume and raw[lasti + 1] == 0)
        elif event == "return":
            n["exits"] += 1
        elif event == "c_call":
            n["c_calls"] += 1

    threading.setprofile(prof)  # threads the workload starts
    sys.setprofile(prof)
    digest = workload.run(scale)
    sys.setprofile(None)
    threading.setprofile(None)
    n = {k: sum(t[k] for t in tables) for k in ("entries", "starts", "exits", "c_calls")}
    n["c_calls"] -= 1  # sys.setprofile(None) itself
    return {**n, "threads": len(tables), "digest": digest}


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
    elif config == "fntrace-profile":
        out = {**base, **run_profile(workload, scale)}
    else:
        start, stop, count = CONFIGS[config]()
        clock, cpu = time.perf_counter, time.process_time
        rss0 = peak_rss_kib()
        c0, t0 = cpu(), clock()
        start()
        digest = workload.run(scale)
        stop()
        t1, c1 = clock(), cpu()
        out = {**base, "wall_s": t1 - t0, "cpu_s": c1 - c0, "digest": digest,
               "rss_start_kib": rss0, "rss_kib": peak_rss_kib()}
        out.update(count(full_count))
    sys.stdout.flush()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
