"""Memory per patched site: what fntrace keeps for each function it instruments.

    python3 bench/site_memory.py [--python PY ...] [-n N]

Each configuration runs in a fresh interpreter: a generated module of ``N``
distinct functions (``def f17(x): return x + 17``, imported from a file as
real code is) is imported and every function called once untraced (the
interpreter's own first-call work, quickening, is done before measuring).
Then, with ``tracemalloc`` on (it counts every PyMem/PyObject allocation: the
interpreter's and the C extension's alike), one ops selecting the whole module
is registered and every function called once more, which makes each one a
patched site; after ``gc.collect()`` the memory held beyond the untraced
baseline is read, at ``N`` and at ``2N`` functions: the difference divided by
``N`` is the slope (what does not grow with the sites drops out).  Dicts and
sets grow by steps, so one slope depends on where ``N`` falls between two
resizes (on 3.12, 2,000 to 12,000 functions gave slopes from 394 to 571 bytes
on the same code): the figure is the mean of the slopes at four ``N`` spread
over one doubling (``N``, ``N`` x 2^(1/4), x 2^(1/2), x 2^(3/4)), which
averages the steps out.  Events are not sites: the tracer
configuration empties its ring before the count.  Unregistering must give the
memory back: the row's last column is what is left per function after
``unregister`` (0 is the goal, issue 11's item 4).

The peer is the interpreter's own per-code state: ``sys.monitoring``
(3.12+) with PY_START and PY_RETURN set locally on each code object and a
Python callback that returns None, the least a sys.monitoring tracer can keep.

Configurations: *ops* a Python callback ops (``fntrace.Ops``, entry and
exit), *function* the function tracer (C recorder), *graph* function_graph,
on fntrace's C path and with ``FNTRACE_PURE=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_PYTHONS = (sys.executable, "/work/venvs/py3.12/bin/python",
                   "/work/venvs/py3.13/bin/python")
CONFIGS = ("monitoring", "ops", "function", "graph")

CHILD = r'''
import gc, importlib.util, json, os, sys, tempfile, tracemalloc
config, n = sys.argv[1], int(sys.argv[2])
name = "bench_site_memory"
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, name + ".py")
    with open(path, "w") as out:
        out.write("".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(n)))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.dont_write_bytecode = True
    spec.loader.exec_module(module)
funcs = [getattr(module, f"f{i}") for i in range(n)]
for f in funcs:
    f(1)
if config != "monitoring":
    import fntrace
    from fntrace.tracing.instance import trace
gc.collect()
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
if config == "monitoring":
    mon = sys.monitoring
    tool = 4
    mon.use_tool_id(tool, "bench")
    def cb(*args):
        return None
    mon.register_callback(tool, mon.events.PY_START, cb)
    mon.register_callback(tool, mon.events.PY_RETURN, cb)
    for f in funcs:
        mon.set_local_events(tool, f.__code__, mon.events.PY_START | mon.events.PY_RETURN)
    for f in funcs:
        f(1)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    for f in funcs:
        mon.set_local_events(tool, f.__code__, 0)
    mon.register_callback(tool, mon.events.PY_START, None)
    mon.register_callback(tool, mon.events.PY_RETURN, None)
    mon.free_tool_id(tool)
elif config == "ops":
    def entry(ip, parent_ip, ops, fregs):
        return None
    ops = fntrace.Ops(entry, ret=entry, filter=[f"{name}:*"])
    fntrace.register(ops)
    for f in funcs:
        f(1)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    fntrace.unregister(ops)
else:
    inst = trace("function" if config == "function" else "function_graph",
                 filter=f"{name}:*")
    for f in funcs:
        f(1)
    inst.write("tracing_on", "0")
    inst.write("trace", "")  # the events go: what is left is the sites'
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    inst.close()
gc.collect()
after = tracemalloc.get_traced_memory()[0] - base
print(json.dumps({"held": held, "after": after, "n": n}))
'''


def run_child(python: str, config: str, n: int, pure: bool) -> dict[str, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")
    env.pop("FNTRACE_PURE", None)
    if pure:
        env["FNTRACE_PURE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([python, "-c", CHILD, config, str(n)], env=env, cwd=tmp,
                             capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{python} {config}: {out.stderr.strip().splitlines()[-1:]}")
    got: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return got


def slope(python: str, config: str, n: int, pure: bool) -> dict[str, float]:
    """Per function: the slope between n and 2n functions, so what does not grow
    with the number of sites (the ring's first allocation, tables' minimum
    sizes) drops out."""
    one, two = (run_child(python, config, k, pure) for k in (n, 2 * n))
    return {"per_site": (two["held"] - one["held"]) / n,
            "after": (two["after"] - one["after"]) / n}


def measure(python: str, config: str, n: int, pure: bool) -> dict[str, float]:
    """The mean of the slopes at four sizes spread over one doubling from n (see
    the module's docstring), and the slopes themselves."""
    sizes = [round(n * 2 ** (k / 4)) for k in range(4)]
    got = [slope(python, config, k, pure) for k in sizes]
    return {"per_site": sum(g["per_site"] for g in got) / len(got),
            "after": sum(g["after"] for g in got) / len(got),
            "low": min(g["per_site"] for g in got), "high": max(g["per_site"] for g in got)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--python", nargs="+", default=[p for p in DEFAULT_PYTHONS
                                                        if os.path.exists(p)])
    parser.add_argument("-n", type=int, default=4000,
                        help="functions at the first of the four sizes (default 4000)")
    args = parser.parse_args()
    print("| Python | configuration | path | bytes per patched site (mean) | "
          "lowest and highest slope | bytes per function after unregister |")
    print("|---|---|---|---:|---:|---:|")
    for python in args.python:
        version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        for config in CONFIGS:
            if config == "monitoring" and tuple(map(int, version.split(".")[:2])) < (3, 12):
                continue
            paths = ("-",) if config == "monitoring" else ("C", "pure")
            for path in paths:
                got = measure(python, config, args.n, pure=path == "pure")
                print(f"| {version} | {config} | {path} | {got['per_site']:,.0f} | "
                      f"{got['low']:,.0f}-{got['high']:,.0f} | {got['after']:,.0f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
