"""Call-heavy recursion: naive Fibonacci, repeated (the tracers' worst case).

Almost all the time is Python function calls of a tiny function: about 39
million calls at scale 1.0 (~1.2 s untraced on a 2-core Xeon, CPython
3.11-3.13), recursion 25 deep.  Every call is one entry and one exit, no
generators, no exceptions, no C calls in the recursion: the per-call cost of
a tracer shows undiluted.  ``run(scale)`` repeats ``fib(25)`` ``round(160 *
scale)`` times (at least once) and returns a digest of the results.
"""

from __future__ import annotations

__all__ = ["DEPTH", "REPEATS", "fib", "run"]

DEPTH = 25
REPEATS = 160  # at scale 1.0


def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def run(scale: float = 1.0) -> str:
    total = 0
    for _ in range(max(1, round(REPEATS * scale))):
        total += fib(DEPTH)
    return str(total)
