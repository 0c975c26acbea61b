"""bench/instructions.py's parts that can be wrong without a benchmark showing it.

The instruction campaign itself is not run here (minutes under valgrind): these
tests pin the per-call formula on fixed numbers, the rows built from counts,
the RESULTS.md section's replacement, the skip reasons, and that the floor
extension builds and really receives PY_START and PY_RETURN.  No timing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


instructions = load("instructions")


def test_per_call_formula_on_fixed_numbers() -> None:
    # traced: 1,000,000 at size 0, 6,000,000 at N; untraced: 900,000 and 2,900,000;
    # 2,000 calls: (5,000,000 - 2,000,000) / 2,000 = 1,500 extra per call.
    assert instructions.per_call(6_000_000, 1_000_000, 2_900_000, 900_000, 2_000) == 1_500.0
    # cheaper than untraced is negative, not clamped
    assert instructions.per_call(100, 0, 300, 0, 100) == -2.0
    with pytest.raises(ValueError, match="no calls"):
        instructions.per_call(1, 0, 1, 0, 0)


def test_percent_over_untraced() -> None:
    assert instructions.percent_over(1_150, 100, 1_100, 100) == 5.0
    with pytest.raises(ValueError, match="no instructions"):
        instructions.percent_over(5, 1, 7, 7)


def test_parse_irefs_reads_cachegrind_total() -> None:
    log = textwrap.dedent("""\
        ==123== Cachegrind, a high-precision tracing profiler
        ==123== Command: python -c pass
        ==123==
        ==123== I   refs:      45,012,345
    """)
    assert instructions.parse_irefs(log) == 45_012_345
    with pytest.raises(ValueError):
        instructions.parse_irefs("==1== Command: x\n")


def counts(values: dict[tuple[str, str, float, bool], int]) -> dict[str, dict[str, int]]:
    return {instructions.Run(t, w, s, p).key(): {"instructions": n}
            for (t, w, s, p), n in values.items()}


def test_rows_from_counts() -> None:
    """The table's figures come from the right runs: C vs pure, peer, record's ratio."""
    n = instructions.WORKLOADS["fib"].size
    runs = counts({
        ("untraced", "fib", 0, False): 1_000, ("untraced", "fib", n, False): 11_000,
        ("fntrace-graph", "fib", 0, False): 5_000, ("fntrace-graph", "fib", n, False): 35_000,
        ("fntrace-graph", "fib", 0, True): 6_000, ("fntrace-graph", "fib", n, True): 106_000,
        ("viztracer", "fib", 0, False): 2_000, ("viztracer", "fib", n, False): 27_000,
        ("record", "fib", 0, False): 9_000, ("record", "fib", n, False): 89_000,
        ("record", "fib", 0, True): 9_000, ("record", "fib", n, True): 209_000,
    })
    oracle = {instructions.Run("untraced", "fib", 0).key(): {"calls": 20, "codes": 3},
              instructions.Run("untraced", "fib", n).key(): {"calls": 120, "codes": 3}}
    data = {"configs": ["graph", "record"], "runs": runs, "oracle": oracle, "skipped": {}}
    rows = {r["config"]: r for r in instructions.figures(data, quick=False)}
    assert set(rows) == {"graph", "record"}
    graph = rows["graph"]
    assert graph["calls"] == 100
    assert graph["untraced_per_call"] == 100.0           # 10,000 / 100
    assert graph["c"] == (30_000 - 10_000) / 100         # 200
    assert graph["pure"] == (100_000 - 10_000) / 100     # 900
    assert graph["peer"] == (25_000 - 10_000) / 100      # 150
    record = rows["record"]
    assert record["c"] == 700.0 and record["pure"] == 1_900.0
    assert (record["peer_c"], record["peer_pure"]) == (200.0, 900.0)
    table = instructions.table({"python": "3.12.1", "commit": "abc1234", "quick": False,
                                "rows": list(rows.values())})
    assert "| function_graph | fib (100 calls) | 200 | 900 | VizTracer | 150 | 100 |" in table
    assert "ratio C 3.50x, pure 2.11x" in table


def test_skips_say_why() -> None:
    old = instructions.Interpreter("/x/python3.11", (3, 11), "3.11.7")
    old.missing["viztracer"] = "viztracer is not installed for /x/python3.11"
    runs, skipped = instructions.needed_runs(old, instructions.CONFIGS, quick=True)
    assert skipped["floor"] == "needs Python 3.12+ (sys.monitoring)"
    assert skipped["first-look"] == "needs Python 3.12+ (sys.monitoring)"
    assert skipped["graph:peer"].startswith("viztracer is not installed")
    tools = {r.tool for r in runs}
    assert "cprofile" in tools and "fntrace-graph" in tools
    assert not tools & {"viztracer", "viztracer-args", "floor", "mon-disable", "import-viztracer"}
    # every measured run of a workload has its size-0 twin
    sized = {(r.tool, r.workload, r.pure) for r in runs if r.workload}
    for tool, workload, pure in sized:
        assert instructions.Run(tool, workload, 0, pure) in runs


def test_section_replaced_between_markers(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# head\n\nnotes\n")
    instructions.write_section(f"{instructions.BEGIN}\nfirst\n{instructions.END}\n", path)
    instructions.write_section(f"{instructions.BEGIN}\nsecond\n{instructions.END}\n", path)
    text = path.read_text()
    assert text.startswith("# head\n\nnotes\n\n")
    assert "second" in text and "first" not in text
    assert text.count(instructions.BEGIN) == 1


needs_monitoring = pytest.mark.skipif(sys.version_info < (3, 12),
                                      reason="the floor uses sys.monitoring (3.12+)")


@needs_monitoring
def test_floor_builds_and_receives_both_events(tmp_path: Path) -> None:
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    try:
        built = instructions.build_floor(sys.executable, str(tmp_path))
    except instructions.Unavailable as exc:
        pytest.skip(str(exc))
    assert os.path.exists(built)
    # In a child: the bench's own floor() set-up registers the no-op callbacks;
    # swapping in the counting twin returns them (register_callback returns the
    # previous callback), and ten calls of f() reach it as 10 starts + 10 returns.
    script = textwrap.dedent("""\
        import sys
        sys.path.insert(0, sys.argv[1])
        import instructions_child as child
        mon = sys.monitoring
        ev = mon.events
        stop = child.floor()()  # puts BENCH_FLOOR_DIR on sys.path
        import _fntrace_floor as floor
        tool = next(t for t in range(6) if mon.get_tool(t) == "bench-floor")
        assert mon.get_events(tool) == ev.PY_START | ev.PY_RETURN, mon.get_events(tool)
        assert mon.register_callback(tool, ev.PY_START, floor.counted) is floor.noop
        assert mon.register_callback(tool, ev.PY_RETURN, floor.counted) is floor.noop
        def f():
            return None
        before = floor.count()
        for _ in range(10):
            f()
        after = floor.count()
        stop()
        assert mon.get_tool(tool) is None
        print(after - before)
    """)
    env = {**os.environ, "BENCH_FLOOR_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script, str(BENCH)], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "20"


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind is not installed")
def test_valgrind_count_of_a_process() -> None:
    """execute() under valgrind returns the summed I refs of a real (tiny) process."""
    interp = instructions.describe(sys.executable)
    got = instructions.execute(interp, instructions.Run("bare"), valgrind=True)
    assert got["processes"] == 1
    assert got["instructions"] > 1_000_000  # an interpreter's start-up, whatever the version
