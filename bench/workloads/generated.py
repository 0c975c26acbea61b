"""Many distinct code objects, each called once: the cost of a tracer's first look.

``run(n)`` writes one module source defining ``n`` small functions
(``def f17(x): return x + 17``) into a temporary directory, imports it as a
module of its own (in ``sys.modules``, its file on disk, as real code is) and
calls every function once, so a tracer meets ``n`` code objects it has never
seen (plus the module's body): with a filter that selects none of them, what
it costs is its first look at each code object and whatever it does to stop
being called for it (``sys.monitoring.DISABLE`` on 3.12+).  Writing, compiling
and importing cost the untraced run as much, so they drop out of the
difference; importlib's own functions are met by the warm-up (``run(1)``,
another module name) before.  ``run(0)`` does nothing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile

__all__ = ["MODULE", "run"]

#: The generated modules' name prefix (no filter of the bench names it).
MODULE = "bench_generated_functions"


def run(n: int) -> str:
    if n <= 0:
        return "0"
    lines = []
    for i in range(n):  # a loop, not a generator: no Python entries but the functions'
        lines.append(f"def f{i}(x):\n    return x + {i}\n")
    name = f"{MODULE}_{n}"
    with tempfile.TemporaryDirectory(prefix="bench-generated-") as tmp:
        path = os.path.join(tmp, name + ".py")
        with open(path, "w") as out:
            out.write("".join(lines))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # no .pyc: every run compiles the same way
        saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        try:
            spec.loader.exec_module(module)
        finally:
            sys.dont_write_bytecode = saved
    namespace = vars(module)
    total = 0
    for i in range(n):
        total += namespace[f"f{i}"](1)
    return str(total)
