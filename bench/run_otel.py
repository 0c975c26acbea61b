#!/usr/bin/env python3
"""Benchmark: fntrace.otel's cost, beside no tracing and beside hand-written spans.

    python3 bench/run_otel.py                    # this Python, times and instructions
    python3 bench/run_otel.py --python /work/venvs/py3.12/bin/python --no-instructions

Two questions (issue 19):

* **unselected code**: a program calling small functions (``leaf``, 200k calls)
  while an instrumentation selects another function (never called), against the
  same program with fntrace not even registered.  Target: <= 1.03x.
* **a selected function's span**: ``work(x)`` made a span by
  ``fntrace.otel.instrument`` against the same body wrapped by hand in ``with
  tracer.start_as_current_span(name, attributes=<the same code attributes>)``,
  both through the SDK's TracerProvider with a BatchSpanProcessor whose exporter
  drops the batch (what a service pays in its own threads).  Target: <= 1.2x.

Times: one process per Python, the configurations alternating round after round
(the machine is shared and its load drifts; each round compares runs made
seconds apart), CPU time of the thread (``time.thread_time``), the median of the
per-round ratios.  Instructions (valgrind through /work/shared/tools/instructions;
deterministic where times are not): each configuration run at N calls and at 0,
``per call = ((traced N - traced 0) - (baseline N - baseline 0)) / N``.
Prints Markdown rows (bench/RESULTS.md, section "OpenTelemetry").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOOL = Path("/work/shared/tools/instructions")


# -- the program (run in the child) ------------------------------------------------------

def leaf(x: int) -> int:
    return x + 1


def never_called() -> None:
    pass


def loop_leaf(n: int) -> None:
    for i in range(n):
        leaf(i)


def body(x: int) -> int:
    total = 0
    for i in range(8):
        total += i * x
    return total


def work(x: int) -> int:
    return body(x)


def setup_sdk() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop(), max_queue_size=1 << 16))
    trace.set_tracer_provider(provider)
    return provider


def make_handwritten() -> Callable[[int], int]:
    from opentelemetry import trace

    from fntrace.tracing.otel.spans import code_attributes

    tracer = trace.get_tracer("bench")

    class _Fn:
        module, qualname = __name__, "work"
        filename, lineno = work.__code__.co_filename, work.__code__.co_firstlineno

    attrs = code_attributes(_Fn())  # type: ignore[arg-type]
    name = attrs["code.function.name"]

    def work_by_hand(x: int) -> int:
        with tracer.start_as_current_span(name, attributes=attrs):
            return body(x)

    return work_by_hand


def loop(fn: Callable[[int], int], n: int) -> None:
    for i in range(n):
        fn(i)


def child(config: str, n: int) -> None:
    """One configuration at size n, for the instruction counts."""
    if config in ("spans-fntrace", "spans-hand", "spans-plain"):
        provider = setup_sdk()
        if config == "spans-fntrace":
            import fntrace.otel

            fntrace.otel.instrument(f"{__name__}:work")
            loop(work, n)
        elif config == "spans-hand":
            loop(make_handwritten(), n)
        else:
            loop(work, n)
        provider.force_flush()
        return
    if config == "unselected":
        import fntrace.otel

        fntrace.otel.instrument(f"{__name__}:never_called")
    elif config != "untraced":
        raise SystemExit(f"unknown configuration {config}")
    loop_leaf(n)


def timed(fn: Callable[[], None]) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def times(rounds: int, n_leaf: int, n_span: int) -> dict[str, Any]:
    """All configurations in this process, alternating, for ``rounds`` rounds."""
    import fntrace.otel

    provider = setup_sdk()
    hand = make_handwritten()
    out: dict[str, list[float]] = {k: [] for k in
                                   ("untraced", "unselected", "plain", "hand", "fntrace")}
    for _ in range(rounds):
        out["untraced"].append(timed(lambda: loop_leaf(n_leaf)))
        h = fntrace.otel.instrument(f"{__name__}:never_called")
        out["unselected"].append(timed(lambda: loop_leaf(n_leaf)))
        h.remove()
        out["plain"].append(timed(lambda: loop(work, n_span)))
        out["hand"].append(timed(lambda: loop(hand, n_span)))
        provider.force_flush()
        h = fntrace.otel.instrument(f"{__name__}:work")
        out["fntrace"].append(timed(lambda: loop(work, n_span)))
        h.remove()
        provider.force_flush()
    per = {
        "unselected/untraced": statistics.median(
            u / b for u, b in zip(out["unselected"], out["untraced"], strict=True)),
        "fntrace/hand": statistics.median(
            f / h for f, h in zip(out["fntrace"], out["hand"], strict=True)),
        "hand_us": statistics.median(out["hand"]) / n_span * 1e6,
        "fntrace_us": statistics.median(out["fntrace"]) / n_span * 1e6,
        "plain_us": statistics.median(out["plain"]) / n_span * 1e6,
        "leaf_ns": statistics.median(out["untraced"]) / n_leaf * 1e9,
        "unselected_ns": statistics.median(out["unselected"]) / n_leaf * 1e9,
    }
    return per


# -- the driver ---------------------------------------------------------------------------

def count(python: str, config: str, n: int) -> int:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([str(TOOL), python, __file__, "--child", config, str(n)],
                          env=env, capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def per_call(python: str, config: str, base: str, n: int) -> float:
    t_n, t_0 = count(python, config, n), count(python, config, 0)
    b_n, b_0 = count(python, base, n), count(python, base, 0)
    return ((t_n - t_0) - (b_n - b_0)) / n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--leaf-calls", type=int, default=200_000)
    ap.add_argument("--span-calls", type=int, default=5_000)
    ap.add_argument("--no-instructions", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("CONFIG", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--times", action="store_true", help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.child:
        child(ns.child[0], int(ns.child[1]))
        return 0
    if ns.times:
        print(repr(times(ns.rounds, ns.leaf_calls, ns.span_calls)))
        return 0
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    version = subprocess.run([ns.python, "-c", "import sys, fntrace.core.accel as a; "
                              "print('%d.%d.%d' % sys.version_info[:3], "
                              "'C' if a.speedups else 'pure')"],
                             env=env, capture_output=True, text=True, check=True).stdout.split()
    done = subprocess.run([ns.python, __file__, "--times", "--rounds", str(ns.rounds),
                           "--leaf-calls", str(ns.leaf_calls), "--span-calls",
                           str(ns.span_calls)], env=env, capture_output=True, text=True,
                          check=True)
    t = eval(done.stdout)  # our own child's repr of a dict of floats
    row = (f"| {version[0]} ({version[1]}) | {t['unselected/untraced']:.3f}x "
           f"({t['leaf_ns']:.0f} -> {t['unselected_ns']:.0f} ns a call) | "
           f"{t['fntrace/hand']:.3f}x ({t['hand_us']:.2f} -> {t['fntrace_us']:.2f} us a call; "
           f"bare body {t['plain_us']:.2f} us) |")
    if not ns.no_instructions and TOOL.exists():
        n_leaf, n_span = 20_000, 1_000
        unsel = per_call(ns.python, "unselected", "untraced", n_leaf)
        leaf_base = (count(ns.python, "untraced", n_leaf)
                     - count(ns.python, "untraced", 0)) / n_leaf
        hand = per_call(ns.python, "spans-hand", "spans-plain", n_span)
        fnt = per_call(ns.python, "spans-fntrace", "spans-plain", n_span)
        plain = (count(ns.python, "spans-plain", n_span)
                 - count(ns.python, "spans-plain", 0)) / n_span
        row += (f" {unsel:+.1f} on {leaf_base:.0f} a call "
                f"({(leaf_base + unsel) / leaf_base:.3f}x) |"
                f" span by hand +{hand:.0f}, by fntrace +{fnt:.0f} on a {plain:.0f} body "
                f"({(plain + fnt) / (plain + hand):.3f}x) |")
    print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
