"""Call-heavy recursion: naive Fibonacci, repeated (the tracers' worst case).

Almost all the time is Python function calls of a tiny function: about 39
million calls at scale 1.0 (~1.2 s untraced on a 2-core Xeon, CPython
3.11-3.13), recursion 25 deep.  Every call is one entry and one exit, no
generators, no exceptions, no C calls in the recursion: the per-call cost of
a tracer shows undiluted.  ``run(scale)`` repeats ``fib(25)`` ``round(160 *
scale)`` times and returns a digest of the results.  Below half a repetition
(scale < 1/320, the slow peers' *small* scale) it runs one ``fib`` of a smaller
depth instead, chosen so that the number of calls still scales with ``scale``
(each level down divides the calls by ~1.618).
"""

from __future__ import annotations

import math

__all__ = ["DEPTH", "REPEATS", "fib", "run"]

DEPTH = 25
REPEATS = 160  # at scale 1.0


def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def depth_for(fraction: float, depth: int = DEPTH) -> int:
    """The fib depth whose call count is ``fraction`` of fib(depth)'s (fraction <= 1)."""
    return max(2, depth + round(math.log(fraction) / math.log((1 + 5 ** 0.5) / 2)))


def run(scale: float = 1.0) -> str:
    repeats, depth = round(REPEATS * scale), DEPTH
    if repeats < 1:
        repeats, depth = 1, depth_for(REPEATS * scale)
    total = 0
    for _ in range(repeats):
        total += fib(depth)
    return str(total)
