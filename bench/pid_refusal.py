"""What a thread the pid filter refuses costs per traced call (bench/RESULTS_PYTEST.md).

    python bench/pid_refusal.py MODE N [--time]

``leaf(i, 1)`` called N times in a loop under function_graph with arguments
and return values (``FNTRACE_BENCH_TRACER=function`` for the function
tracer), in one of four MODEs: ``untraced``; ``floor`` (tracing_on 0: every
call still reaches the recorder, none is written); ``traced``; ``refused``
(``set_ftrace_pid`` names another thread).  A warm-up of 50 calls runs first.

Instructions: run it under ``/work/shared/tools/instructions`` at N and at 0
(with ``PYTHONHASHSEED`` fixed): (count(N) - count(0)) / N is the cost per call,
the untraced one included (subtract ``untraced``'s for the extra).  ``--time``
prints the CPU time per call instead: the minimum of three loops of N calls
in the same process.
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import fntrace  # noqa: E402  (this work tree's, above)


def leaf(a: int, b: int) -> int:
    return a + b


def loop(n: int) -> int:
    s = 0
    for i in range(n):
        s = leaf(i, 1)
    return s


def main() -> None:
    mode, n = sys.argv[1], int(sys.argv[2])
    inst = None
    if mode != "untraced":
        tracer = os.environ.get("FNTRACE_BENCH_TRACER", "function_graph")
        if tracer == "function_graph":
            inst = fntrace.trace(tracer, filter="leaf", funcgraph_args=1, funcgraph_retval=1)
        else:
            inst = fntrace.trace(tracer, filter="leaf")
        if mode == "refused":
            inst.write("set_ftrace_pid", "1")  # pid 1's thread, never this one
        elif mode == "floor":
            inst.write("tracing_on", "0")
        elif mode != "traced":
            raise SystemExit(f"pid_refusal.py: unknown mode {mode!r}")
    loop(50)
    if "--time" in sys.argv[3:]:
        best = min(_timed(n) for _ in range(3))
        print(f"{mode}: {best / n:.1f} ns per call")
    else:
        loop(n)
    if inst is not None:
        inst.write("tracing_on", "0")
        inst.close()


def _timed(n: int) -> int:
    t = time.process_time_ns()
    loop(n)
    return time.process_time_ns() - t


if __name__ == "__main__":
    main()
