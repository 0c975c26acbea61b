"""Many threads: 8 workers doing call-heavy and mixed work at the same time.

Each worker thread runs ``items`` items; an item is a naive ``fib(20)``
(21,891 calls of a tiny function, as in ``callheavy``) followed by a small
piece of the ``mixed`` program (a few orders through JSON and back, ranked
with key functions, then a short market simulation with generators).  The
workers start together (a barrier) and the GIL interleaves them, so a tracer
sees events of 8 threads arriving in turns, each thread with its own stack:
per-thread buffers, thread-local state and the cost of a tracer's thread
hooks all show.

``run(scale)`` gives each thread ``round(120 * scale)`` items (~1.5 s
untraced at scale 1.0 on a 2-core Xeon, ~27 million Python calls) and
returns a SHA-256 digest of every thread's results in thread order, so a
traced run can be checked against an untraced one.  Below half an item per
thread (the slow peers' *small* scale) each thread runs one item shrunk in
proportion (a smaller fib depth, fewer orders and agents).
"""

from __future__ import annotations

import hashlib
import random
import threading
from typing import Any

from . import callheavy, mixed

__all__ = ["FIB_DEPTH", "ITEMS", "THREADS", "run"]

THREADS = 8
ITEMS = 120  # per thread, at scale 1.0
FIB_DEPTH = 20


def item(tid: int, k: int, size: float = 1.0) -> list[Any]:
    """One item of work for thread ``tid``; ``size`` < 1 shrinks it."""
    depth = FIB_DEPTH if size >= 1.0 else callheavy.depth_for(size, FIB_DEPTH)
    rng = random.Random(tid * 100_003 + k)
    orders = mixed.make_orders(rng, max(2, round(6 * size)))
    back, text = mixed.json_round_trip(orders)
    return [callheavy.fib(depth), hashlib.sha256(text.encode()).hexdigest()[:12],
            mixed.rank(back), mixed.simulate(rng, max(3, round(8 * size)), 24)]


def worker(tid: int, items: int, size: float, barrier: threading.Barrier,
           out: list[str | None]) -> None:
    barrier.wait()
    digest = hashlib.sha256()
    for k in range(items):
        digest.update(repr(item(tid, k, size)).encode())
    out[tid] = digest.hexdigest()


def run(scale: float = 1.0) -> str:
    items, size = round(ITEMS * scale), 1.0
    if items < 1:
        items, size = 1, ITEMS * scale
    out: list[str | None] = [None] * THREADS
    barrier = threading.Barrier(THREADS)
    threads = [threading.Thread(target=worker, args=(tid, items, size, barrier, out),
                                name=f"worker-{tid}") for tid in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if None in out:
        raise RuntimeError("a worker thread failed")
    return hashlib.sha256("".join(o or "" for o in out).encode()).hexdigest()
