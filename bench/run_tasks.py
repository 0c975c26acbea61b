"""What asyncio task tracking (options/tasks, fntrace/tracing/tasks.py) adds to function_graph.

    python3 bench/run_tasks.py [--tasks N] [--repeat R] [--instructions]

The workload is coroutine-heavy: N tasks (made by TaskGroup.create_task), each
awaiting ``STEPS`` times and calling a small plain function and a small
coroutine per step, so every task step is a few traced calls: the case where
the per-step notes weigh most.  Three runs of the same workload, interleaved
``R`` times and each timed by its best run (the machine is shared):
untraced, function_graph with ``tasks`` 0, and with ``tasks`` 1.  Printed:
the traced calls per run (counted by function_graph itself), each best time,
the time ratio tasks=1 / tasks=0 and the extra time per traced call.

``--instructions [--seed S] [--no-viztracer]``: the same comparison counted
in instructions by valgrind
(``/work/shared/tools/instructions``, deterministic where times are not):
extra per traced call = ((On_N - On_0) - (Off_N - Off_0)) / calls, where On/Off
are tasks 1/0 and _0 the same process at size 0 (start-up removed).

Beside it, where VizTracer is installed, the peer's own figure for the same
feature: VizTracer (its C tracer, tracing every call: its ``include_files``
keeps nothing of this workload) with ``log_async=True``, which gives each task
its own track, over VizTracer without it, on the same workload, in time and in
instructions (per fntrace's traced call segment; the percentage is the figure
to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

STEPS = 5
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
INSTRUCTIONS = "/work/shared/tools/instructions"


def plain(x: int) -> int:
    return x + 1


async def small(x: int) -> int:
    return plain(x)


async def task_body(i: int) -> int:
    total = 0
    for s in range(STEPS):
        total += await small(i + s)
        await asyncio.sleep(0)
    return total


async def workload(n: int) -> int:
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(task_body(i)) for i in range(n)]
    return sum(t.result() for t in tasks)


def run(n: int, mode: str, count_calls: bool = True) -> tuple[float, int]:
    """(seconds, traced calls) of one run: mode untraced, off (tasks 0) or on
    (``count_calls`` False: 0 calls, and none of the instructions counting them,
    which grow with the number of task notes, in a --instructions child)."""
    if mode == "untraced":
        t0 = time.perf_counter()
        asyncio.run(workload(n))
        return time.perf_counter() - t0, 0
    if mode in VIZ_MODES:
        from viztracer import VizTracer

        # Everything, asyncio's own calls too: its include_files kept nothing of
        # this workload (1.1.1), so the two are compared by what log_async adds.
        tracer = VizTracer(verbose=0, log_async=mode == "viz-async",
                           tracer_entries=4_000_000)
        tracer.start()
        t0 = time.perf_counter()
        asyncio.run(workload(n))
        took = time.perf_counter() - t0
        tracer.stop()
        tracer.clear()
        return took, 0
    import fntrace

    inst = fntrace.trace("function_graph", filter=f"{__name__}:*",
                         tasks=1 if mode == "on" else 0)
    with inst:
        inst.write("buffer_size_kb", "65536")
        t0 = time.perf_counter()
        asyncio.run(workload(n))
        took = time.perf_counter() - t0
        calls = sum(1 for _, ev in inst.rb.live.merged() if ev[2] == "E") if count_calls else 0
    return took, calls


#: VizTracer without and with its per-task tracks (``log_async``).
VIZ_MODES = ("viz", "viz-async")


def has_viztracer() -> bool:
    try:
        import viztracer  # noqa: F401
    except ImportError:
        return False
    return True


def times(n: int, repeat: int) -> None:
    modes = ("untraced", "off", "on") + (VIZ_MODES if has_viztracer() else ())
    best = {m: float("inf") for m in modes}
    calls = 0
    for _ in range(repeat):
        for mode in best:
            took, c = run(n, mode)
            best[mode] = min(best[mode], took)
            calls = c or calls
    print(f"{n} tasks x {STEPS} steps: {calls} traced call segments per run "
          f"(best of {repeat}, interleaved)")
    for mode, took in best.items():
        print(f"  {mode:9s} {took * 1e3:9.1f} ms")
    ratio = best["on"] / best["off"]
    extra = (best["on"] - best["off"]) / calls * 1e9
    print(f"  tasks on / off: {ratio:.3f}  ({extra:+.0f} ns per traced call segment)")
    if "viz" in best:
        print(f"  VizTracer log_async / without: {best['viz-async'] / best['viz']:.3f}")


#: The children's hash seed (--seed): it changes object addresses and string
#: hashes, and so the collisions in the task recorder's caches.
SEED = "0"


def count(mode: str, n: int) -> int:
    # sys.executable as it is, not its realpath: a venv's python resolves to the
    # base interpreter, which lacks the venv's packages (VizTracer).
    out = subprocess.run([INSTRUCTIONS, sys.executable, __file__,
                          "--child", mode, str(n)],
                         env={**os.environ, "PYTHONPATH": ROOT, "PYTHONHASHSEED": SEED},
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def instructions(n: int, viz: bool = True) -> None:
    _, calls = run(n, "on")
    on = count("on", n) - count("on", 0)
    off = count("off", n) - count("off", 0)
    print(f"instructions, {n} tasks: {calls} traced call segments; function_graph "
          f"{off / calls:.0f}/call with tasks 0, {on / calls:.0f}/call with tasks 1 "
          f"(over each run's size 0); task tracking adds {(on - off) / calls:.0f} "
          f"instructions per traced call segment ({(on / off - 1) * 100:.2f}%, "
          f"PYTHONHASHSEED {SEED})")
    if viz and has_viztracer():
        viz = count("viz", n) - count("viz", 0)
        viz_async = count("viz-async", n) - count("viz-async", 0)
        print(f"VizTracer: {viz / calls:.0f}/call without log_async, "
              f"{viz_async / calls:.0f}/call with it; log_async adds "
              f"{(viz_async - viz) / calls:.0f} per call segment "
              f"({(viz_async / viz - 1) * 100:.1f}%)")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        run(int(sys.argv[3]), sys.argv[2], count_calls=False)
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--instructions", action="store_true")
    p.add_argument("--seed", default="0", help="the children's PYTHONHASHSEED (--instructions)")
    p.add_argument("--no-viztracer", action="store_true",
                   help="--instructions without VizTracer's figures")
    ns = p.parse_args()
    if ns.instructions:
        global SEED
        SEED = ns.seed
        instructions(min(ns.tasks, 300), viz=not ns.no_viztracer)
    else:
        times(ns.tasks, ns.repeat)


if __name__ == "__main__":
    main()
