"""One measured run of the selective workload, in a fresh process.

    python selective_child.py CONFIG SCALE

Prints one JSON object on its last stdout line.  run_selective.py starts this
script once per run, so no tracer state, warm cache or instrumented code object
leaks from one configuration into another.

The timed region is the same for every configuration: start the tool, run the
whole program (``workloads.selective.run``), stop the tool.  Both wall time
and the process's CPU time of that region are reported.  Building the tool's
objects (and importing it) happens before; reading back what it recorded happens
after, untimed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]  # fntrace from this work tree, then the workloads
# Started with -S by run_selective.py: the venv's site-packages (peers), without
# running the .pth files that would import hunter into every configuration.
sys.path += [p for p in os.environ.get("BENCH_SITE_DIRS", "").split(os.pathsep) if p]

import workloads.selective as workload  # noqa: E402
from rss import peak_rss_kib  # noqa: E402

TARGET_MODULE = workload.TARGET_MODULE
TARGET_FILE = workload.TARGET_FILE
FILTER = f"*:mod:{TARGET_MODULE}"

Start = Callable[[], None]
Stop = Callable[[], None]
Count = Callable[[], dict[str, Any]]
Setup = Callable[[], tuple[Start, Stop, Count]]


# -- configurations -------------------------------------------------------------


def untraced() -> tuple[Start, Stop, Count]:
    return (lambda: None), (lambda: None), dict


def _fntrace_ops(record: bool, patterns: str = FILTER) -> tuple[Any, Count]:
    import fntrace

    entries: list[tuple[Any, int]] = []
    exits: list[tuple[Any, int]] = []
    if record:
        # A realistic minimal recorder: who and when, one tuple per event.
        from time import perf_counter_ns

        put_entry, put_exit = entries.append, exits.append

        def on_entry(ip: Any, parent_ip: Any, ops: Any, fregs: Any) -> None:
            put_entry((ip, perf_counter_ns()))

        def on_exit(ip: Any, parent_ip: Any, ops: Any, fregs: Any) -> None:
            put_exit((ip, perf_counter_ns()))

        ops = fntrace.Ops(on_entry, ret=on_exit, filter=[patterns])
        return ops, lambda: {"entries": len(entries), "exits": len(exits),
                             "nerrors": ops.nerrors}

    def noop_entry(ip: Any, parent_ip: Any, ops: Any, fregs: Any) -> None:
        pass

    def noop_exit(ip: Any, parent_ip: Any, ops: Any, fregs: Any) -> None:
        pass

    ops = fntrace.Ops(noop_entry, ret=noop_exit, filter=[patterns])
    return ops, dict


def _fntrace(record: bool = True, patterns: str = FILTER) -> tuple[Start, Stop, Count]:
    import fntrace

    ops, count = _fntrace_ops(record, patterns)
    return (lambda: fntrace.register(ops)), (lambda: fntrace.unregister(ops)), count


def fntrace_config() -> tuple[Start, Stop, Count]:
    return _fntrace()


def cprofile() -> tuple[Start, Stop, Count]:
    import cProfile

    prof = cProfile.Profile()

    def count() -> dict[str, Any]:
        calls = sum(e.callcount for e in prof.getstats()
                    if not isinstance(e.code, str) and e.code.co_filename == TARGET_FILE)
        return {"entries": calls}

    return prof.enable, prof.disable, count


def _viztracer(include: bool) -> tuple[Start, Stop, Count]:
    from viztracer import VizTracer

    kwargs: dict[str, Any] = {"verbose": 0, "register_global": False}
    if include:
        kwargs["include_files"] = [TARGET_FILE]
    tracer = VizTracer(**kwargs)

    def count() -> dict[str, Any]:
        if not include:
            # 1M-entry ring buffer: it overflows on this program and parsing it
            # costs seconds; nothing to compare with the oracle.
            return {}
        tracer.parse()
        events = tracer.data["traceEvents"]
        calls = sum(1 for e in events if e.get("ph") == "X" and TARGET_FILE in e.get("name", ""))
        return {"entries": calls, "exits": calls}

    return tracer.start, tracer.stop, count


def viztracer_include() -> tuple[Start, Stop, Count]:
    return _viztracer(include=True)


def viztracer_all() -> tuple[Start, Stop, Count]:
    return _viztracer(include=False)


def hunter_config() -> tuple[Start, Stop, Count]:
    import hunter

    counts = {"call": 0, "return": 0}

    def action(event: Any) -> None:
        counts[event.kind] += 1

    holder: list[Any] = []

    def start() -> None:
        # profile=True: hunter's setprofile mode (no line events), its cheaper mode.
        holder.append(hunter.trace(hunter.Q(module=TARGET_MODULE, kind_in=("call", "return")),
                                   action=action, profile=True))

    def stop() -> None:
        holder[0].stop()

    return start, stop, lambda: {"entries": counts["call"], "exits": counts["return"]}


# -- diagnostic variants (where fntrace's time goes) ----------------------------


def fntrace_noop() -> tuple[Start, Stop, Count]:
    """Same selection, callbacks that do nothing: cost of fntrace's own path."""
    return _fntrace(record=False)


def fntrace_nomatch() -> tuple[Start, Stop, Count]:
    """A filter that selects nothing: discovery of every code object, then DISABLE."""
    return _fntrace(record=True, patterns="*:mod:no_such_module_for_bench")


def _mon_tool() -> Any:
    mon = sys.monitoring  # type: ignore[attr-defined]
    for tool in (4, 3, 5, 0, 1, 2):
        if mon.get_tool(tool) is None:
            return mon, tool
    raise RuntimeError("no free sys.monitoring tool id")


def mon_disable() -> tuple[Start, Stop, Count]:
    """Floor of the approach: global PY_START, a callback returning DISABLE for all code."""
    mon, tool = _mon_tool()
    disable = mon.DISABLE

    def py_start(code: Any, offset: int) -> Any:
        return disable

    def start() -> None:
        mon.use_tool_id(tool, "bench")
        mon.register_callback(tool, mon.events.PY_START, py_start)
        mon.set_events(tool, mon.events.PY_START)

    def stop() -> None:
        mon.set_events(tool, 0)
        mon.register_callback(tool, mon.events.PY_START, None)
        mon.free_tool_id(tool)

    return start, stop, dict


def mon_disable_unwind() -> tuple[Start, Stop, Count]:
    """mon-disable plus global PY_THROW and PY_UNWIND (no-op), as fntrace sets them."""
    mon, tool = _mon_tool()
    E = mon.events
    disable = mon.DISABLE

    def py_start(code: Any, offset: int) -> Any:
        return disable

    def py_exc(code: Any, offset: int, exc: BaseException) -> Any:
        return None

    def start() -> None:
        mon.use_tool_id(tool, "bench")
        mon.register_callback(tool, E.PY_START, py_start)
        mon.register_callback(tool, E.PY_THROW, py_exc)
        mon.register_callback(tool, E.PY_UNWIND, py_exc)
        mon.set_events(tool, E.PY_START | E.PY_THROW | E.PY_UNWIND)

    def stop() -> None:
        mon.set_events(tool, 0)
        for ev in (E.PY_START, E.PY_THROW, E.PY_UNWIND):
            mon.register_callback(tool, ev, None)
        mon.free_tool_id(tool)

    return start, stop, dict


def mon_select() -> tuple[Start, Stop, Count]:
    """The same job hand-written on sys.monitoring, as little Python as possible.

    PY_START global; first look decides by the frame's module; DISABLE for the
    rest; PY_RETURN local on the selected code; the same recorder as fntrace's.
    """
    from time import perf_counter_ns

    mon, tool = _mon_tool()
    E = mon.events
    disable = mon.DISABLE
    getframe = sys._getframe
    selected: set[Any] = set()
    entries: list[tuple[Any, int]] = []
    exits: list[tuple[Any, int]] = []
    put_entry, put_exit = entries.append, exits.append

    def py_start(code: Any, offset: int) -> Any:
        if code in selected:
            put_entry((code, perf_counter_ns()))
            return None
        if getframe(1).f_globals.get("__name__") == TARGET_MODULE:
            selected.add(code)
            mon.set_local_events(tool, code, E.PY_RETURN)
            put_entry((code, perf_counter_ns()))
            return None
        return disable

    def py_return(code: Any, offset: int, value: Any) -> Any:
        put_exit((code, perf_counter_ns()))

    def start() -> None:
        mon.use_tool_id(tool, "bench")
        mon.register_callback(tool, E.PY_START, py_start)
        mon.register_callback(tool, E.PY_RETURN, py_return)
        mon.set_events(tool, E.PY_START)

    def stop() -> None:
        mon.set_events(tool, 0)
        for code in selected:
            mon.set_local_events(tool, code, 0)
        mon.register_callback(tool, E.PY_START, None)
        mon.register_callback(tool, E.PY_RETURN, None)
        mon.free_tool_id(tool)

    return start, stop, lambda: {"entries": len(entries), "exits": len(exits)}


def fntrace_timed() -> tuple[Start, Stop, Count]:
    """fntrace as configured in 'fntrace', with its internals timed from outside.

    Wraps engine.discover (first look at each code object), the backend's
    rediscover (restart_events) and the two trampolines (entry and exit).
    Monkeypatching happens in this process only; fntrace's files are untouched.
    The wrappers add their own cost, so only the shares are meaningful.
    """
    from time import perf_counter_ns

    from fntrace.core import engine

    stats = {"discover_ns": 0, "discover_n": 0, "discover_sites": 0,
             "rediscover_ns": 0, "rediscover_n": 0}
    real_discover = engine.discover

    def discover(code: Any, frame: Any) -> Any:
        t = perf_counter_ns()
        site = real_discover(code, frame)
        stats["discover_ns"] += perf_counter_ns() - t
        stats["discover_n"] += 1
        stats["discover_sites"] += site is not None
        return site

    engine.discover = discover
    if sys.version_info >= (3, 12):
        from fntrace.core.backends import monitoring as backend_mod

        cls: Any = backend_mod.MonitoringBackend
    else:
        from fntrace.core.backends import profile as backend_mod

        cls = backend_mod.ProfileBackend  # type: ignore[assignment]
    real_rediscover = cls.rediscover

    def rediscover(self: Any, *args: Any) -> None:
        t = perf_counter_ns()
        real_rediscover(self, *args)
        stats["rediscover_ns"] += perf_counter_ns() - t
        stats["rediscover_n"] += 1

    cls.rediscover = rediscover  # type: ignore[method-assign,assignment]
    start, stop, count = _fntrace()

    def count_all() -> dict[str, Any]:
        out = count()
        out.update(stats)
        from fntrace.core import symbols

        out["functions_named"] = len(symbols._cache)
        return out

    return start, stop, count_all


CONFIGS: dict[str, Setup] = {
    "untraced": untraced,
    "fntrace": fntrace_config,
    "cprofile": cprofile,
    "viztracer-include": viztracer_include,
    "viztracer-all": viztracer_all,
    "hunter": hunter_config,
    "fntrace-noop": fntrace_noop,
    "fntrace-nomatch": fntrace_nomatch,
    "fntrace-timed": fntrace_timed,
    "mon-disable": mon_disable,
    "mon-disable-unwind": mon_disable_unwind,
    "mon-select": mon_select,
}


# -- the oracle -----------------------------------------------------------------


def oracle(scale: float) -> dict[str, Any]:
    """Count every Python function call with sys.setprofile (untimed).

    'call' events are entries (a function start, or a generator resuming);
    'return' events are exits.  Starts are told from resumes by the
    instruction at f_lasti (RESUME with oparg 0 opens a function).
    """
    import dis

    resume = dis.opmap["RESUME"]
    per_module: dict[str, int] = {}
    totals: dict[str, Any] = {"entries": 0, "starts": 0, "target_entries": 0, "target_starts": 0,
              "target_exits": 0}

    def prof(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            raw = code.co_code
            lasti = frame.f_lasti
            is_start = lasti < 0 or (raw[lasti] == resume and raw[lasti + 1] == 0)
            mod = frame.f_globals.get("__name__", "?")
            totals["entries"] += 1
            if is_start:
                totals["starts"] += 1
                per_module[mod] = per_module.get(mod, 0) + 1
            if mod == TARGET_MODULE:
                totals["target_entries"] += 1
                totals["target_starts"] += is_start
        elif event == "return" and frame.f_globals.get("__name__") == TARGET_MODULE:
            totals["target_exits"] += 1

    sys.setprofile(prof)
    digest = workload.run(scale)
    sys.setprofile(None)
    totals["per_module_starts"] = dict(sorted(per_module.items(), key=lambda kv: -kv[1]))
    totals["target_fraction"] = totals["target_starts"] / max(1, totals["starts"])
    totals["digest"] = digest
    return totals


def main() -> None:
    config, scale = sys.argv[1], float(sys.argv[2])
    base = {"config": config, "scale": scale, "python": sys.version.split()[0],
            "executable": sys.executable}
    if config == "oracle":
        print(json.dumps({**base, **oracle(scale)}))
        return
    start, stop, count = CONFIGS[config]()
    clock, cpu = time.perf_counter, time.process_time
    rss0 = peak_rss_kib()
    c0, t0 = cpu(), clock()
    start()
    t1 = clock()
    digest = workload.run(scale)
    t2 = clock()
    stop()
    t3, c3 = clock(), cpu()
    # Peak RSS (KiB) before and after the timed region, as tracers_child.py.
    rss1 = peak_rss_kib()
    out = {**base, "wall_s": t3 - t0, "cpu_s": c3 - c0, "start_s": t1 - t0, "run_s": t2 - t1,
           "stop_s": t3 - t2, "digest": digest, "rss_start_kib": rss0, "rss_kib": rss1}
    out.update(count())
    sys.stdout.flush()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
