"""One measured process of bench/instructions.py: a tool around a workload at one size.

    python instructions_child.py TOOL WORKLOAD SIZE

The process imports the workload and sets the tool up, then runs the
*region*: start the tool, run the workload's warm-up, run the workload at
SIZE, stop the tool.  Everything outside the region, and the region at size
0, is the same at every size, so the instruction count of a run at size N
minus that of the run at size 0 is what the N-sized work cost, start-up and
set-up removed (instructions.py does that subtraction).  The warm-up is a
small run of the same workload inside the region at every size: the tool's
first look at each code object it meets (and caches such as ``re``'s) falls
in both runs and drops out, so the difference is the steady per-call cost.
(The ``generated`` workload's warm-up imports a module of one function: its
N new code objects and their first looks are what it measures.)

The last line printed is JSON: the workload's digest (every run must give the
untraced digest) and the tool's own counts where it has them (fntrace's ring
``entries`` + ``overrun``, the oracle's calls and code objects).  Run under
valgrind the same way, so the counts can be checked there too.

fntrace is imported from this work tree through its public API only
(``fntrace.trace``, ``fntrace.Ops``, ``fntrace.register``); ``FNTRACE_PURE=1``
in the environment selects its pure-Python path.  The floor needs
``BENCH_FLOOR_DIR``: the directory where instructions.py built
``bench/floor/floor.c``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [ROOT, HERE]

Stop = Callable[[], dict[str, Any]]
Start = Callable[[], Stop]

#: A filter that selects no function (for the first look).
NO_MATCH = "*:mod:no_such_module_for_bench"
#: A filter that selects exactly one function of sympy (checked by instructions.py).
SYMPY_ONE = "sympy.core.sympify:sympify"


# -- workloads: run(size) and a warm-up ------------------------------------------


def fib_run(depth: int) -> str:
    from workloads.callheavy import fib  # imported before the region (load())

    return str(fib(depth)) if depth > 0 else "0"


def mixed_run(scale: float) -> str:
    from workloads import mixed  # imported before the region (load())

    return mixed.run(scale) if scale > 0 else "0"


def sympy_run(size: float) -> str:
    if size > 0:
        import sympy

        return str(sympy.__version__)
    return "0"


def _module_run(module: str) -> Callable[[float], str]:
    return lambda size: importlib.import_module(module).run(int(size))


#: workload -> (its modules, imported before the region; run(size); the warm-up's size)
WORKLOADS: dict[str, tuple[tuple[str, ...], Callable[[Any], str], float]] = {
    "fib": (("workloads.callheavy",), lambda size: fib_run(int(size)), 5),
    "objects": (("workloads.objects",), _module_run("workloads.objects"), 2),
    "mixed": (("workloads.mixed",), mixed_run, 0.002),
    "generated": (("workloads.generated",), _module_run("workloads.generated"), 1),
    "sympy": ((), sympy_run, 0),
}


# -- tools: set up outside the region, start() and stop() inside -----------------


def untraced() -> Start:
    return lambda: (lambda: {})


def _monitoring(name: str, callbacks: dict[int, Any], events: int) -> Start:
    mon = sys.monitoring  # type: ignore[attr-defined]
    tool = next(t for t in (4, 3, 5, 0, 1, 2) if mon.get_tool(t) is None)

    def start() -> Stop:
        mon.use_tool_id(tool, name)
        for event, callback in callbacks.items():
            mon.register_callback(tool, event, callback)
        mon.set_events(tool, events)

        def stop() -> dict[str, Any]:
            mon.set_events(tool, 0)
            mon.free_tool_id(tool)
            return {}
        return stop
    return start


def floor() -> Start:
    """PY_START and PY_RETURN to a C callback that returns None at once."""
    sys.path.insert(0, os.environ["BENCH_FLOOR_DIR"])
    import _fntrace_floor  # type: ignore[import-not-found]

    ev = sys.monitoring.events  # type: ignore[attr-defined]
    return _monitoring("bench-floor", {ev.PY_START: _fntrace_floor.noop,
                                       ev.PY_RETURN: _fntrace_floor.noop},
                       ev.PY_START | ev.PY_RETURN)


def mon_disable() -> Start:
    """PY_START to a Python callback that returns DISABLE: a first look that looks at nothing."""
    mon = sys.monitoring  # type: ignore[attr-defined]
    disable = mon.DISABLE

    def on_start(code: Any, offset: int) -> Any:
        return disable

    return _monitoring("bench-disable", {mon.events.PY_START: on_start}, mon.events.PY_START)


def _fntrace_stats(inst: Any) -> dict[str, Any]:
    """entries + overrun of this thread's ring (the events written), from its stats file."""
    text = inst.read(f"per_thread/{threading.get_native_id()}/stats")
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return {"events": int(fields["entries"]) + int(fields["overrun"])}


def fntrace_tracer(tracer: str, **options: int) -> Callable[[], Start]:
    def setup() -> Start:
        import fntrace

        def start() -> Stop:
            inst = fntrace.trace(tracer, **options)

            def stop() -> dict[str, Any]:
                inst.write("tracing_on", "0")
                stats = _fntrace_stats(inst)
                inst.close()
                return stats
            return stop
        return start
    return setup


def fntrace_ops(pattern: str) -> Callable[[], Start]:
    """One ops with a filter, a callback that only counts."""
    def setup() -> Start:
        import fntrace

        hits = [0]

        def on_entry(ip: Any, parent_ip: Any, ops: Any, fregs: Any) -> None:
            hits[0] += 1

        ops = fntrace.Ops(on_entry, filter=pattern)

        def start() -> Stop:
            fntrace.register(ops)

            def stop() -> dict[str, Any]:
                enabled = len(fntrace.enabled_functions().splitlines())
                fntrace.unregister(ops)
                return {"hits": hits[0], "nerrors": ops.nerrors, "enabled": enabled}
            return stop
        return start
    return setup


def cprofile() -> Start:
    import cProfile

    def start() -> Stop:
        prof = cProfile.Profile()
        prof.enable()

        def stop() -> dict[str, Any]:
            prof.disable()
            return {}
        return stop
    return start


def viztracer(args: bool) -> Callable[[], Start]:
    def setup() -> Start:
        from viztracer import VizTracer

        def start() -> Stop:
            tracer = VizTracer(verbose=0, register_global=False,
                               log_func_args=args, log_func_retval=args)
            tracer.start()

            def stop() -> dict[str, Any]:
                tracer.stop()
                return {}
            return stop
        return start
    return setup


def oracle() -> Start:
    """Counts Python entries ('call' events of sys.setprofile) and distinct code objects."""
    counts = {"calls": 0}
    codes: set[int] = set()
    keep: list[Any] = []  # the code objects, so that no id is reused

    def prof(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            counts["calls"] += 1
            code = frame.f_code
            if id(code) not in codes:
                codes.add(id(code))
                keep.append(code)

    def start() -> Stop:
        sys.setprofile(prof)

        def stop() -> dict[str, Any]:
            sys.setprofile(None)
            return {"calls": counts["calls"], "codes": len(codes)}
        return stop
    return start


TOOLS: dict[str, Callable[[], Start]] = {
    "untraced": untraced,
    "oracle": oracle,
    "floor": floor,
    "mon-disable": mon_disable,
    "fntrace-function": fntrace_tracer("function"),
    "fntrace-graph": fntrace_tracer("function_graph"),
    "fntrace-args": fntrace_tracer("function_graph", funcgraph_args=1, funcgraph_retval=1),
    "fntrace-nomatch": fntrace_ops(NO_MATCH),
    "fntrace-sympy-one": fntrace_ops(SYMPY_ONE),
    "cprofile": cprofile,
    "viztracer": viztracer(False),
    "viztracer-args": viztracer(True),
}


def main() -> None:
    tool, workload, size_text = sys.argv[1:4]
    modules, run, warm = WORKLOADS[workload]
    for module in modules:
        importlib.import_module(module)
    size = float(size_text)
    start = TOOLS[tool]()
    stop = start()
    if warm:
        run(warm)
    digest = run(size)
    counts = stop()
    print(json.dumps({"digest": digest, **counts}))


if __name__ == "__main__":
    main()
