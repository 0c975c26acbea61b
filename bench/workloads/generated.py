"""Many distinct code objects, each called once: the cost of a tracer's first look.

``run(n)`` compiles one module source defining ``n`` small functions
(``def f17(x): return x + 17``), executes it in a fresh namespace and calls
every function once, so a tracer meets ``n`` code objects it has never seen
(plus the generated module's own): with a filter that selects none of them,
what it costs is its first look at each code object and whatever it does to
stop being called for it (``sys.monitoring.DISABLE`` on 3.12+).  The
compilation costs the untraced run as much, so it drops out of the
difference.  ``run(0)`` does nothing.
"""

from __future__ import annotations

__all__ = ["MODULE", "run"]

#: The generated functions' module name (no filter of the bench names it).
MODULE = "bench_generated_functions"


def run(n: int) -> str:
    if n <= 0:
        return "0"
    lines = []
    for i in range(n):  # a loop, not a generator: no Python entries but the functions'
        lines.append(f"def f{i}(x):\n    return x + {i}\n")
    source = "".join(lines)
    namespace: dict[str, object] = {"__name__": MODULE}
    exec(compile(source, f"<{MODULE}>", "exec"), namespace)
    total = 0
    for i in range(n):
        total += namespace[f"f{i}"](1)  # type: ignore[operator]
    return str(total)
