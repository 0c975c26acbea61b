"""fntrace report / dump: numbers on constructed records, output formats, CLI end to end."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import needs_subprocess

from fntrace.analysis.dump import folded_stacks, write_chrome, write_folded
from fntrace.analysis.report import FuncStats, build, fmt_pct, fmt_time, format_diff, format_table
from fntrace.formats.tracefile import Record

ROOT = Path(__file__).resolve().parent.parent


# -- constructing records ---------------------------------------------------------

class Trace:
    """Builds a record stream for one thread: enter/leave with explicit timestamps."""

    def __init__(self, tid: int = 1, pid: int = 100) -> None:
        self.pid, self.tid = pid, tid
        self.records: list[Record] = []
        self.open: list[tuple[str, int]] = []

    def enter(self, func: str, ts: int, event: str = "start", args: str | None = None) -> None:
        self.records.append(Record("entry", self.pid, self.tid, ts, func, None,
                                   len(self.open), event, args, None, None, None))
        self.open.append((func, ts))

    def leave(self, ts: int, event: str = "return", value: str | None = None) -> None:
        func, start = self.open.pop()
        self.records.append(Record("exit", self.pid, self.tid, ts, func, None,
                                   len(self.open), event, None, value, ts - start, None))

    def call(self, func: str, start: int, end: int) -> None:
        self.enter(func, start)
        self.leave(end)

    def marker(self, ts: int, text: str) -> None:
        self.records.append(Record("marker", self.pid, self.tid, ts, "", None,
                                   len(self.open), "", None, None, None, text))


def merged(*traces: Trace) -> list[Record]:
    return sorted((r for t in traces for r in t.records), key=lambda r: r.ts)


def stats(records: list[Record], func: str) -> tuple[int, int, int, int, int, int]:
    st = build(records).tables[None][func]
    return st.calls, st.total, st.self_ns, st.avg, st.min, st.max


def nested() -> Trace:
    t = Trace()
    t.enter("m:main", 0)
    t.enter("m:a", 10)
    t.call("m:b", 15, 20)
    t.leave(30)
    t.call("m:a", 40, 60)
    t.leave(100)
    return t


# -- report numbers ---------------------------------------------------------------

def test_nesting_total_self_avg_min_max() -> None:
    recs = nested().records
    assert stats(recs, "m:main") == (1, 100, 100 - 20 - 20, 100, 100, 100)
    assert stats(recs, "m:a") == (2, 40, 40 - 5, 20, 20, 20)
    assert stats(recs, "m:b") == (1, 5, 5, 5, 5, 5)


def test_recursion_counts_each_calls_inclusive_time() -> None:
    t = Trace()
    t.enter("m:f", 0)
    t.enter("m:f", 10)
    t.call("m:f", 20, 30)
    t.leave(50)
    t.leave(100)
    # totals overlap (100 + 40 + 10) as in uftrace; self times do not (60 + 30 + 10)
    assert stats(t.records, "m:f") == (3, 150, 100, 50, 10, 100)


def test_generator_segments_make_one_call() -> None:
    t = Trace()
    t.enter("m:consumer", 0)
    t.enter("m:gen", 10)
    t.leave(15, "yield", "0")
    t.enter("m:gen", 30, "resume")
    t.call("m:inner", 32, 35)
    t.leave(40, "yield", "1")
    t.enter("m:gen", 60, "resume")
    t.leave(62, "return", "None")
    t.leave(100)
    assert stats(t.records, "m:gen") == (1, 5 + 10 + 2, 5 + 7 + 2, 17, 17, 17)
    assert stats(t.records, "m:consumer") == (1, 100, 100 - 17, 100, 100, 100)


def test_interleaved_generators_join_first_suspended_first_resumed() -> None:
    t = Trace()
    t.enter("m:zipper", 0)
    t.enter("m:g", 10)
    t.leave(12, "yield")          # g1: 2
    t.enter("m:g", 20)
    t.leave(23, "yield")          # g2: 3
    t.enter("m:g", 30, "resume")
    t.leave(35, "return")         # g1: +5 = 7
    t.enter("m:g", 40, "resume")
    t.leave(50, "unwind", "ValueError")  # g2: +10 = 13
    t.leave(100)
    assert stats(t.records, "m:g") == (2, 20, 20, 10, 7, 13)


def test_suspended_and_unfinished_calls() -> None:
    t = Trace()
    t.enter("m:main", 0)
    t.enter("m:g", 10)
    t.leave(14, "yield")  # never resumed: a call of 4 ns so far
    t.enter("m:stuck", 20)  # never returns: counted, no time
    recs = t.records
    assert stats(recs, "m:g") == (1, 4, 4, 4, 4, 4)
    assert stats(recs, "m:stuck") == (1, 0, 0, 0, 0, 0)
    assert build(recs).tables[None]["m:stuck"].timed == 0
    assert stats(recs, "m:main") == (1, 0, 0, 0, 0, 0)


def test_exits_without_entries_tracing_thresh() -> None:
    recs = [Record("exit", 1, 1, 20, "m:b", None, 1, "return", None, None, 5, None),
            Record("exit", 1, 1, 30, "m:b", None, 1, "return", None, None, 7, None),
            Record("exit", 1, 1, 40, "m:a", None, 0, "return", None, None, 35, None)]
    assert stats(recs, "m:a") == (1, 35, 35 - 12, 35, 35, 35)
    assert stats(recs, "m:b") == (2, 12, 12, 6, 5, 7)


def test_threads_separate_or_merged() -> None:
    t1, t2 = Trace(tid=1), Trace(tid=2)
    t1.call("m:w", 0, 10)
    t2.call("m:w", 5, 35)
    t2.call("m:w", 40, 45)
    recs = merged(t1, t2)
    per = build(recs, per_thread=True).tables
    assert set(per) == {(100, 1), (100, 2)}
    assert (per[(100, 1)]["m:w"].calls, per[(100, 1)]["m:w"].total) == (1, 10)
    assert (per[(100, 2)]["m:w"].calls, per[(100, 2)]["m:w"].total) == (2, 35)
    assert stats(recs, "m:w") == (3, 45, 45, 15, 5, 30)


def test_time_units() -> None:
    assert [fmt_time(n) for n in (0, 999, 1000, 1234, 999_999, 1_000_000, 1_234_567,
                                  2_500_000_000, 61_000_000_000)] == [
        "0 ns", "999 ns", "1.000 us", "1.234 us", "999.999 us", "1.000 ms", "1.234 ms",
        "2.500 s", "61.000 s"]
    assert fmt_time(-1500) == "-1.500 us"
    assert [fmt_pct(0, 0), fmt_pct(0, 5), fmt_pct(200, 250), fmt_pct(200, 100)] == [
        "0.00%", "new", "+25.00%", "-50.00%"]


def parse_table(lines: list[str]) -> list[list[str]]:
    """Rows of a report table: the numbers as text (unit kept), the function last."""
    assert set(lines[1].split()) == {"=" * 10, "=" * 20}
    rows = []
    for line in lines[2:]:
        cells = [c for c in line.strip().split("  ") if c]
        rows.append([c.strip() for c in cells])
    return rows


def test_table_columns_and_sorting() -> None:
    recs = nested().records
    table = build(recs).tables[None]
    lines = format_table(table, "total")
    assert lines[0].split() == ["Total", "time", "Self", "time", "Calls", "Average",
                                "Minimum", "Maximum", "Function"]
    assert parse_table(lines) == [
        ["100 ns", "60 ns", "1", "100 ns", "100 ns", "100 ns", "m:main"],
        ["40 ns", "35 ns", "2", "20 ns", "20 ns", "20 ns", "m:a"],
        ["5 ns", "5 ns", "1", "5 ns", "5 ns", "5 ns", "m:b"]]
    widths = {len(line) for line in lines[2:]}
    assert len({line.index("m:") for line in lines[2:]}) == 1, widths  # aligned
    assert [r[-1] for r in parse_table(format_table(table, "calls"))] == ["m:a", "m:b", "m:main"]
    assert [r[-1] for r in parse_table(format_table(table, "name"))] == ["m:a", "m:b", "m:main"]
    assert [r[-1] for r in parse_table(format_table(table, "self"))] == ["m:main", "m:a", "m:b"]
    assert [r[-1] for r in parse_table(format_table(table, "min", limit=2))] == [
        "m:main", "m:a"]


def test_calls_only_trace_says_durations_need_function_graph() -> None:
    recs = [Record("call", 1, 1, ts, f, "m:main", 0, "", None, None, None, None)
            for ts, f in ((1, "m:a"), (2, "m:b"), (3, "m:a"))]
    rep = build(recs)
    assert not rep.has_durations
    lines = format_table(rep.tables[None], "total", has_durations=False)
    assert "function_graph" in lines[0]
    assert parse_table(lines[1:]) == [["2", "m:a"], ["1", "m:b"]]


def test_diff_side_by_side() -> None:
    base = {"m:a": FuncStats(calls=2, total=2000, self_ns=1000, timed=2),
            "m:gone": FuncStats(calls=1, total=500, self_ns=500, timed=1)}
    new = {"m:a": FuncStats(calls=3, total=3000, self_ns=1000, timed=3),
           "m:fresh": FuncStats(calls=4, total=9000, self_ns=8000, timed=4)}
    lines = format_diff(base, new, "total")
    assert lines[0].split()[:5] == ["Total", "base", "Total", "new", "Total"]
    rows = parse_table(lines)
    assert rows == [
        ["-", "9.000 us", "+9.000 us", "new", "-", "8.000 us", "+8.000 us", "new",
         "-", "4", "+4", "new", "m:fresh [new only]"],
        ["2.000 us", "3.000 us", "+1.000 us", "+50.00%", "1.000 us", "1.000 us", "0 ns",
         "+0.00%", "2", "3", "+1", "+50.00%", "m:a"],
        ["500 ns", "-", "-500 ns", "-100.00%", "500 ns", "-", "-500 ns", "-100.00%",
         "1", "-", "-1", "-100.00%", "m:gone [base only]"]]
    assert [r[-1] for r in parse_table(format_diff(base, new, "calls"))] == [
        "m:fresh [new only]", "m:a", "m:gone [base only]"]


# -- chrome -----------------------------------------------------------------------

def chrome(records: list[Record], **kw: Any) -> dict[str, Any]:
    out = io.StringIO()
    write_chrome(records, out, {100: "prog.py (pid 100)"}, {(100, 1): "MainThread"}, **kw)
    doc: dict[str, Any] = json.loads(out.getvalue())
    return doc


def slices(doc: dict[str, Any]) -> dict[tuple[int, int], list[tuple[str, float, float,
                                                                   dict[str, Any]]]]:
    """Per thread: (name, start, end, merged args), checking B/E pair up like a stack."""
    out: dict[tuple[int, int], list[tuple[str, float, float, dict[str, Any]]]] = {}
    stacks: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for ev in doc["traceEvents"]:
        key = (ev["pid"], ev["tid"])
        if ev["ph"] == "B":
            stacks.setdefault(key, []).append(ev)
        elif ev["ph"] == "E":
            begin = stacks[key].pop()
            assert begin["name"] == ev["name"]
            assert ev["ts"] >= begin["ts"]
            out.setdefault(key, []).append(
                (ev["name"], begin["ts"], ev["ts"], {**begin["args"], **ev["args"]}))
        elif ev["ph"] == "X":
            assert ev["dur"] >= 0
            out.setdefault(key, []).append(
                (ev["name"], ev["ts"], ev["ts"] + ev["dur"], ev["args"]))
    assert all(not s for s in stacks.values()), "every B has its E"
    return out


def assert_nested(spans: list[tuple[str, float, float, dict[str, Any]]]) -> None:
    """Any two slices of a thread are disjoint or one contains the other."""
    for _, s1, e1, _ in spans:
        for _, s2, e2, _ in spans:
            assert e1 <= s2 + 1e-9 or e2 <= s1 + 1e-9 or (s1 <= s2 and e2 <= e1) \
                or (s2 <= s1 and e1 <= e2)


def test_chrome_tracks_slices_args_and_nesting() -> None:
    t = Trace(tid=1)
    t.enter("m:main", 1000, args="x='a\"b\\n'")
    t.enter("m:gen", 2000)
    t.leave(2500, "yield", "1")
    t.marker(2600, 'note "quoted"\n\x01')
    t.enter("m:gen", 3000, "resume")
    t.leave(3100, "unwind", "KeyError")
    t.leave(9000, "return", "'\udcff'")
    w = Trace(tid=2)
    w.call("m:work", 1500, 4000)
    doc = chrome(merged(t, w))
    assert doc["displayTimeUnit"] == "ns"
    meta = {(e["name"], e["tid"]): e["args"]["name"] for e in doc["traceEvents"]
            if e["ph"] == "M"}
    assert meta == {("process_name", 0): "prog.py (pid 100)",
                    ("thread_name", 1): "MainThread-1", ("thread_name", 2): "thread-2"}
    sl = slices(doc)
    assert [(n, s, e) for n, s, e, _ in sl[(100, 1)]] == [
        ("m:gen", 1.0, 1.5), ("m:gen", 2.0, 2.1), ("m:main", 0.0, 8.0)]
    assert [(n, s, e) for n, s, e, _ in sl[(100, 2)]] == [("m:work", 0.5, 3.0)]
    args = {(n, s): a for n, s, _, a in sl[(100, 1)]}
    assert args[("m:main", 0.0)] == {"entry": "start", "args": "x='a\"b\\n'",
                                     "exit": "return", "retval": "'\udcff'"}
    assert args[("m:gen", 1.0)] == {"entry": "start", "exit": "yield", "yielded": "1"}
    assert args[("m:gen", 2.0)] == {"entry": "resume", "exit": "unwind", "raised": "KeyError"}
    for spans in sl.values():
        assert_nested(spans)
    instants = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert instants == [{"name": 'note "quoted"\n\x01', "cat": "marker", "ph": "i", "s": "t",
                         "pid": 100, "tid": 1, "ts": 1.6}]


def test_chrome_unfinished_and_orphan_exits() -> None:
    t = Trace()
    t.enter("m:main", 100)
    t.call("m:a", 200, 300)
    t.enter("m:hang", 400)
    orphan = Record("exit", 100, 1, 700, "m:late", None, 5, "return", None, None, 650, None)
    doc = chrome([*t.records, orphan])
    sl = slices(doc)[(100, 1)]
    assert [(n, s, e, a.get("unfinished")) for n, s, e, a in sl] == [
        ("m:a", 0.1, 0.2, None),
        ("m:late", 0.0, 0.6, None),        # began before time zero: clamped to it
        ("m:hang", 0.3, 0.6, True),
        ("m:main", 0.0, 0.6, True)]
    doc = chrome([*t.records, orphan], t0=0)
    name, start, end, _ = slices(doc)[(100, 1)][1]
    assert (name, start, end) == ("m:late", 0.05, pytest.approx(0.7))


# -- folded -----------------------------------------------------------------------

def test_folded_exact() -> None:
    t = nested()
    t.enter("m:main", 200)
    t.call("m:b", 210, 217)
    t.leave(220)
    w = Trace(tid=2)
    w.call("m;odd name", 0, 9)
    out = io.StringIO()
    write_folded(folded_stacks(merged(t, w)), out)
    assert out.getvalue() == ("m:main 73\n"          # 60 + (20 - 7)
                              "m:main;m:a 35\n"
                              "m:main;m:a;m:b 5\n"
                              "m:main;m:b 7\n"
                              "m:odd name 9\n")
    per = folded_stacks(merged(t, w), per_thread=True, thread_names={(100, 1): "Main"})
    assert per == {"Main-1;m:main": 73, "Main-1;m:main;m:a": 35, "Main-1;m:main;m:a;m:b": 5,
                   "Main-1;m:main;m:b": 7, "thread-2;m:odd name": 9}


def test_folded_generator_segments_under_their_callers() -> None:
    t = Trace()
    t.enter("m:loop", 0)
    t.enter("m:gen", 10)
    t.leave(14, "yield")
    t.enter("m:other", 20)
    t.enter("m:gen", 22, "resume")
    t.leave(30, "return")
    t.leave(40)
    t.leave(50)
    assert folded_stacks(t.records) == {"m:loop": 50 - 4 - 20, "m:loop;m:gen": 4,
                                        "m:loop;m:other": 20 - 8, "m:loop;m:other;m:gen": 8}


# -- command line -------------------------------------------------------------------

def fntrace(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fntrace", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, input=stdin)


@needs_subprocess
def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.dat").write_bytes(b"not a trace at all")
    for cmd in (["report"], ["dump", "--chrome", "x.json"]):
        for name in ("missing.dat", "junk.dat"):
            res = fntrace(*cmd, name, cwd=tmp_path)
            assert res.returncode == 1
            assert res.stdout == ""
            assert len(res.stderr.splitlines()) == 1 and name in res.stderr, res.stderr
    assert fntrace("dump", "junk.dat", cwd=tmp_path).returncode == 2


@needs_subprocess
def test_help_has_examples(tmp_path: Path) -> None:
    for cmd in ("report", "dump"):
        res = fntrace(cmd, "--help", cwd=tmp_path)
        assert res.returncode == 0 and "examples:" in res.stdout


PROGRAM = textwrap.dedent("""\
    import sys, threading

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def leaf(i):
        return i * 2

    def worker(k):
        total = 0
        for i in range(k):
            total += leaf(i)
        return total

    def main():
        threads = []
        for k in (3, 4):
            threads.append(threading.Thread(target=worker, args=(k,), name=f"w{k}"))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fib(int(sys.argv[1]))
        for i in range(5):
            leaf(i)

    main()
""")


def fib_calls(n: int) -> int:
    return 1 if n < 2 else 1 + fib_calls(n - 1) + fib_calls(n - 2)


def report_rows(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    return {r[-1]: r for r in parse_table(lines)}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rec")
    (d / "prog.py").write_text(PROGRAM)
    res = fntrace("record", "-t", "function_graph", "--args", "--retval", "-F", "__main__:*",
                  "--", "prog.py", "7", cwd=d)
    assert res.returncode == 0, res.stderr
    return d


@needs_subprocess
def test_e2e_report_call_counts_match_oracle(recorded: Path) -> None:
    res = fntrace("report", "-s", "name", cwd=recorded)
    assert res.returncode == 0, res.stderr
    rows = report_rows(res.stdout)
    calls = {name: int(r[2]) for name, r in rows.items()}
    assert calls == {"__main__:<module>": 1, "__main__:main": 1, "__main__:fib": fib_calls(7),
                     "__main__:worker": 2, "__main__:leaf": 3 + 4 + 5}
    res = fntrace("report", "--threads", "-s", "calls", cwd=recorded)
    sections = res.stdout.split("\n\n")
    assert sorted(s.splitlines()[0].split()[2][:2] for s in sections) == ["Ma", "w3", "w4"]
    res = fntrace("report", "--diff", "fntrace.dat", "--wide", cwd=recorded)
    assert res.returncode == 0
    diff_rows = parse_table(res.stdout.splitlines()[3:])
    assert {r[-1] for r in diff_rows} == set(rows)
    assert {(r[2], r[3], r[10]) for r in diff_rows} == {("0 ns", "+0.00%", "0")}


@needs_subprocess
def test_e2e_chrome_and_folded(recorded: Path) -> None:
    res = fntrace("dump", "--chrome", "out.json", "--folded", "out.txt", "--threads",
                  cwd=recorded)
    assert res.returncode == 0, res.stderr
    doc = json.loads((recorded / "out.json").read_text())
    names = {e["args"]["name"].rsplit("-", 1)[0] for e in doc["traceEvents"]
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {"MainThread", "w3", "w4"}
    sl = slices(doc)
    fibs = [a for spans in sl.values() for n, _, _, a in spans if n == "__main__:fib"]
    assert len(fibs) == fib_calls(7)
    assert {"args", "retval"} <= fibs[0].keys()
    for spans in sl.values():
        assert_nested(spans)
    assert min(e["ts"] for e in doc["traceEvents"] if "ts" in e) == 0
    folded = (recorded / "out.txt").read_text().splitlines()
    stacks = {line.rsplit(" ", 1)[0] for line in folded}
    assert any(s.startswith("w3-") and s.endswith(";__main__:worker;__main__:leaf")
               for s in stacks)
    assert any(s.startswith("MainThread-") and s.endswith(
        "__main__:<module>;__main__:main;__main__:fib;__main__:fib") for s in stacks)


GENERATORS = textwrap.dedent("""\
    def gen(k):
        for i in range(k):
            yield i

    def main():
        return sum(gen(3)) + sum(gen(5))

    main()
""")


@needs_subprocess
def test_e2e_generator_resumptions_are_not_calls(tmp_path: Path) -> None:
    (tmp_path / "g.py").write_text(GENERATORS)
    res = fntrace("record", "-F", "__main__:*", "--", "g.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = report_rows(fntrace("report", cwd=tmp_path).stdout)
    assert int(rows["__main__:gen"][2]) == 2


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal() -> None:
    from fntrace.analysis.reading import progress

    tty, pipe = _Tty(), io.StringIO()
    assert list(progress(range(5), "fntrace report", tty, every=2)) == [0, 1, 2, 3, 4]
    assert list(progress(range(5), "fntrace report", pipe, every=2)) == [0, 1, 2, 3, 4]
    assert pipe.getvalue() == ""
    shown = tty.getvalue()
    assert "\rfntrace report: 2 records" in shown and "\rfntrace report: 4 records" in shown
    assert shown.endswith("\r")  # the line is cleared at the end
