"""--from/--to/--thread on the readers, on a trace written event by event (exact outputs).

Thread 1 (MainThread): outer [1000, 9000] calls inner [2000, 3000] and leaf
[5000, 6000], a marker at 5500; thread 2 (w): work [4000, 4500].  The window
2.5us..5.5us cuts inner (running at --from), leaf and outer (running at --to).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from helpers import FakeThread, event_text

from fntrace import cli
from fntrace.analysis.replay import RecordedFunction
from fntrace.analysis.window import Selection, SelectionError, narrow
from fntrace.cli.selection import duration
from fntrace.formats.tracefile import TraceWriter, merged_records, open_trace

MAIN, W = FakeThread(1, "MainThread", 0, "M."), FakeThread(2, "w", 1)
OUTER, INNER, LEAF, WORK = (RecordedFunction(f"m:{n}", 0) for n in ("outer", "inner", "leaf",
                                                                     "work"))


@pytest.fixture
def trace(tmp_path: Path) -> str:
    path = tmp_path / "t.dat"
    writer = TraceWriter(str(path), {"pid": 9, "tracer": "function_graph", "start_ts": 0})
    writer.write_events([
        (MAIN, (1000, 0, "E", OUTER, 0, "a=1", "start")),
        (MAIN, (2000, 0, "E", INNER, 1, None, "start")),
        (MAIN, (3000, 0, "X", INNER, 1, 1000, "return", "2")),
        (W, (4000, 0, "E", WORK, 0, None, "start")),
        (W, (4500, 0, "X", WORK, 0, 500, "return", None)),
        (MAIN, (5000, 0, "E", LEAF, 1, None, "start")),
        (MAIN, (5500, 0, "M", "m")),
        (MAIN, (6000, 0, "X", LEAF, 1, 1000, "return", None)),
        (MAIN, (9000, 0, "X", OUTER, 0, 8000, "return", None)),
    ], event_text)
    writer.finish(10_000)
    return str(path)


def _narrowed(path: str, sel: Selection) -> list[tuple[object, ...]]:
    files = [open_trace(path)]
    return [(r.kind, r.tid, r.ts, r.func or r.text, r.duration)
            for r in narrow(merged_records(files), files, sel)]


def test_window_clips_calls_crossing_its_edges(trace: str) -> None:
    assert _narrowed(trace, Selection(2500, 5500)) == [
        ("exit", 1, 3000, "m:inner", 500),    # running at --from: begins there
        ("entry", 2, 4000, "m:work", None),
        ("exit", 2, 4500, "m:work", 500),
        ("entry", 1, 5000, "m:leaf", None),
        ("marker", 1, 5500, "m", None),       # the edges are inside the window
        ("exit", 1, 5500, "m:leaf", 500),     # running at --to: ends there, innermost first
        ("exit", 1, 5500, "m:outer", 3000),   # running at both edges: the whole window
    ]
    assert _narrowed(trace, Selection(threads=("w",))) == [
        ("entry", 2, 4000, "m:work", None), ("exit", 2, 4500, "m:work", 500)]
    assert _narrowed(trace, Selection(threads=("2",))) == _narrowed(
        trace, Selection(threads=("w",)))
    assert len(_narrowed(trace, Selection())) == 9
    with pytest.raises(SelectionError, match=r"--thread x: no such thread \(threads: "
                                             r"MainThread-1, w-2\)"):
        _narrowed(trace, Selection(threads=("x",)))


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            print(exc.code, file=__import__("sys").stderr)
    out, err = capsys.readouterr()
    return int(code or 0), out, err


def test_report_of_a_window(trace: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["report", trace, "--from", "2.5us", "--to", "5.5us",
                           "-s", "name"], capsys)
    assert (code, err) == (0, "")
    rows = {line.split()[-1]: line.split() for line in out.splitlines()[2:]}
    # total, self, calls of each function: time inside the window only.
    assert {f: (r[0] + r[1], r[2] + r[3], r[4]) for f, r in rows.items()} == {
        "m:inner": ("500ns", "500ns", "1"), "m:leaf": ("500ns", "500ns", "1"),
        "m:outer": ("3.000us", "2.000us", "1"), "m:work": ("500ns", "500ns", "1")}
    code, out, err = _cli(["report", trace, "--thread", "nope"], capsys)
    assert code == 1 and err.startswith("fntrace report: --thread nope: no such thread")


def test_replay_of_a_window_shows_its_events(trace: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["replay", trace, "--from", "2.5us", "--to", "5.5us",
                           "--thread", "MainThread"], capsys)
    assert (code, err) == (0, "")
    body = [line for line in out.splitlines() if not line.startswith("#")]
    assert len(body) == 3, out  # inner's exit (bare), leaf's entry, the marker
    assert "} /* m:inner" in body[0] and "m:leaf() {" in body[1] and "m" in body[2]


@pytest.mark.parametrize("text,ns", [("1.5s", 1_500_000_000), ("2", 2_000_000_000),
                                     ("200ms", 200_000_000), ("30us", 30_000), ("7ns", 7),
                                     (".5ms", 500_000), ("0", 0)])
def test_times(text: str, ns: int) -> None:
    assert duration(text) == ns


@pytest.mark.parametrize("text", ["", "-1s", "1.5m", "s", "1e3", "1_000", "2000000000s"])
def test_bad_times(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_to_before_from(trace: str, capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in (["report"], ["dump", "--folded", "-"], ["replay"]):
        code, _out, err = _cli([*cmd, trace, "--from", "2ms", "--to", "1ms"], capsys)
        assert code != 0 and "--to is before --from" in err, (cmd, err)


def test_dump_folded_of_a_window(trace: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["dump", trace, "--folded", "-", "--from", "2.5us", "--to", "5.5us"],
                          capsys)
    assert (code, err) == (0, "")
    # inner and outer's callers are not in the window: their stacks start at them.
    assert out == "m:inner 500\nm:leaf 500\nm:outer 2000\nm:work 500\n"


def test_chrome_gz_complete_events(trace: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``OUT.json.gz`` is gzip; every call is one ``X`` event with its exact duration
    (no B/E pairs), and a window's cut calls nest inside it."""
    import gzip

    out = tmp_path / "t.json.gz"
    code, _, err = _cli(["dump", trace, "--chrome", str(out)], capsys)
    assert (code, err) == (0, "")
    doc = json.loads(gzip.decompress(out.read_bytes()))
    calls = sorted((e["name"], e["tid"], e["ts"], e["dur"], e["args"].get("args"),
                    e["args"].get("retval")) for e in doc["traceEvents"] if e["ph"] == "X")
    assert calls == [("m:inner", 1, 1.0, 1.0, None, "2"), ("m:leaf", 1, 4.0, 1.0, None, None),
                     ("m:outer", 1, 0.0, 8.0, "a=1", None), ("m:work", 2, 3.0, 0.5, None, None)]
    assert {e["ph"] for e in doc["traceEvents"]} == {"M", "X", "i"}
    code, _, err = _cli(["dump", trace, "--chrome", str(out), "--from", "2.5us", "--to",
                         "5.5us"], capsys)
    doc = json.loads(gzip.decompress(out.read_bytes()))
    calls = sorted((e["name"], e["ts"], e["dur"]) for e in doc["traceEvents"] if e["ph"] == "X")
    # the recording's time axis (ts from its start), each call cut to the window
    assert calls == [("m:inner", 2.5, 0.5), ("m:leaf", 5.0, 0.5), ("m:outer", 2.5, 3.0),
                     ("m:work", 4.0, 0.5)]
