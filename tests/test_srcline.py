"""Source locations: each traced function's file and first line, from the
recording (both hot paths, both encoders) through the trace file to
``replay --srcline``, ``report --srcline`` and every export; and version-1
files (no locations) still read exactly as the version-1 reader read them.

The oracle for a location is the program the test writes: its functions'
``def`` lines are known, and so is the path of each file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import needs_subprocess

from fntrace.formats.tracefile import VERSION, Record, open_trace

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"

# -- the program: its functions and the lines they start on ---------------------------
HELPER = '''\
def twice(x):
    return x * 2
'''
PROGRAM = '''\
import sys

from helpermod import twice


class Box:
    def get(self, n):
        return twice(n)


def gen(n):
    box = Box()
    for i in range(n):
        yield box.get(i)


def main():
    sys.stdout.write(f"{sum(gen(3))}\\n")


main()
'''
#: name -> (file, first line): the oracle, from the text above.
WHERE = {
    "__main__:<module>": ("prog.py", 1),
    "helpermod:<module>": ("helpermod.py", 1),
    "__main__:Box": ("prog.py", 6),
    "__main__:Box.get": ("prog.py", 7),
    "__main__:gen": ("prog.py", 11),
    "__main__:main": ("prog.py", 17),
    "helpermod:twice": ("helpermod.py", 1),
}


def fntrace(*args: str, cwd: Path, pure: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FNTRACE_PURE", None)
    if pure:
        env["FNTRACE_PURE"] = "1"
    return subprocess.run([sys.executable, "-m", "fntrace", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def record(tmp: Path, tracer: str, pure: bool) -> Path:
    (tmp / "prog.py").write_text(PROGRAM)
    (tmp / "helpermod.py").write_text(HELPER)
    res = fntrace("record", "-o", "t.dat", "-t", tracer, "-F", "__main__:*",
                  "-F", "helpermod:*", "prog.py", cwd=tmp, pure=pure)
    assert res.returncode == 0 and res.stdout == "6\n", res.stderr
    return tmp / "t.dat"


def where(tmp: Path, name: str) -> tuple[str, int]:
    file, line = WHERE[name]
    return str(tmp / file), line


_RECORDED: dict[tuple[str, str], Path] = {}


def recorded(tracer: str, path: str, factory: pytest.TempPathFactory) -> Path:
    """The program recorded with ``tracer`` through the C or the pure hot path
    (each once per session)."""
    key = (tracer, path)
    if key not in _RECORDED:
        _RECORDED[key] = record(factory.mktemp(tracer), tracer, path == "pure")
    return _RECORDED[key]


@pytest.fixture(params=["c", "pure"])
def graph(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recorded("function_graph", request.param, tmp_path_factory)


@pytest.fixture(params=["c", "pure"])
def flat(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recorded("function", request.param, tmp_path_factory)


@pytest.fixture(params=[(t, p) for t in ("function_graph", "function") for p in ("c", "pure")],
                ids=lambda tp: f"{tp[0]}-{tp[1]}")
def either(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[str, Path]:
    tracer, path = request.param
    return tracer, recorded(tracer, path, tmp_path_factory)


# -- the file -------------------------------------------------------------------------

@needs_subprocess
def test_function_graph_records_carry_their_location(graph: Path) -> None:
    tf = open_trace(str(graph))
    assert tf.version == VERSION == 4 and tf.problems == []
    recs = list(tf.records())
    assert {r.func for r in recs} == set(WHERE)
    for r in recs:
        assert (r.src_file, r.src_line) == where(graph.parent, r.func), r
    # the two modules, the class body and main once; get/twice 3 times; gen 4 (3 yields
    # and its end): every entry and exit located.
    assert sum(r.kind == "entry" for r in recs) == sum(r.kind == "exit" for r in recs) == 14


@needs_subprocess
def test_function_tracer_records_carry_their_location(flat: Path) -> None:
    recs = list(open_trace(str(flat)).records())
    assert [r.func for r in recs if r.func == "helpermod:twice"] == ["helpermod:twice"] * 3
    for r in recs:
        assert r.kind == "call"
        assert (r.src_file, r.src_line) == where(flat.parent, r.func), r


# -- version 1 ------------------------------------------------------------------------

V1_FIELDS = {f.name for f in dataclasses.fields(Record)} - {"src_file", "src_line"}


@pytest.mark.parametrize("name", ["v1_graph", "v1_function"])
def test_version_1_file_reads_as_the_version_1_reader_read_it(name: str) -> None:
    tf = open_trace(str(DATA / f"{name}.dat"))
    want = json.loads((DATA / f"{name}.json").read_text())
    assert tf.version == 1
    assert tf.header == want["header"] and tf.footer == want["footer"]
    assert tf.problems == want["problems"] == []
    assert [dataclasses.asdict(t) for t in tf.threads.values()] == want["threads"]
    recs = list(tf.records())
    assert [{k: v for k, v in dataclasses.asdict(r).items() if k in V1_FIELDS}
            for r in recs] == want["records"]
    assert all(r.src_file is None and r.src_line == 0 for r in recs)


@needs_subprocess
@pytest.mark.parametrize("name", ["v1_graph", "v1_function"])
def test_version_1_file_replays_the_same_text(name: str, tmp_path: Path) -> None:
    res = fntrace("replay", str(DATA / f"{name}.dat"), cwd=tmp_path)
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout == (DATA / f"{name}.replay.txt").read_text()


# -- replay --srcline -----------------------------------------------------------------

def _body(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


@needs_subprocess
def test_replay_srcline_function_graph(graph: Path) -> None:
    tmp = graph.parent
    plain = fntrace("replay", str(graph), cwd=tmp)
    res = fntrace("replay", "--srcline", str(graph), cwd=tmp)
    assert res.returncode == plain.returncode == 0 and res.stderr == ""
    lines, bare = _body(res.stdout), _body(plain.stdout)
    assert len(lines) == len(bare)
    located = 0
    for line, base in zip(lines, bare, strict=True):
        if base.rstrip().endswith("{") or ");" in base:   # an entry or a leaf: names a call
            name = base.split("|", 1)[1].split("(", 1)[0].strip()
            file, lineno = where(tmp, name)
            assert line == f"{base} /* {file}:{lineno} */"
            located += 1
        else:   # a closing brace: the entry's line said where
            assert line == base
    # every call's first line: <module>s, Box, main once, get/twice 3, gen 4 runs
    assert located == 14


@needs_subprocess
def test_replay_srcline_function_tracer(flat: Path) -> None:
    tmp = flat.parent
    plain = _body(fntrace("replay", str(flat), cwd=tmp).stdout)
    res = fntrace("replay", "--srcline", str(flat), cwd=tmp)
    assert res.returncode == 0 and res.stderr == ""
    lines = _body(res.stdout)
    assert len(lines) == len(plain) == 14
    for line, base in zip(lines, plain, strict=True):
        name = base.split(": ", 1)[1].split(" <-")[0]
        file, lineno = where(tmp, name)
        assert line == f"{base} /* {file}:{lineno} */"


@needs_subprocess
def test_replay_srcline_of_a_version_1_file_is_the_plain_text(tmp_path: Path) -> None:
    res = fntrace("replay", "--srcline", str(DATA / "v1_graph.dat"), cwd=tmp_path)
    assert res.returncode == 0
    assert res.stdout == (DATA / "v1_graph.replay.txt").read_text()


# -- report --srcline -----------------------------------------------------------------

@needs_subprocess
@pytest.mark.parametrize("extra", [(), ("--threads",), ("-s", "name")])
def test_report_srcline(graph: Path, extra: tuple[str, ...]) -> None:
    tmp = graph.parent
    plain = fntrace("report", *extra, str(graph), cwd=tmp)
    res = fntrace("report", "--srcline", *extra, str(graph), cwd=tmp)
    assert res.returncode == plain.returncode == 0
    want = plain.stdout.replace("  Function\n", "  Function [Source]\n")
    for name in WHERE:
        file, line = where(tmp, name)
        want = want.replace(f"  {name}\n", f"  {name} [{file}:{line}]\n")
    assert res.stdout == want
    # every row of every table was given its place (not one left as in the plain text)
    rows = [ln for ln in res.stdout.splitlines()
            if ln and not ln.startswith(("#", "  =")) and "Function" not in ln]
    assert rows and all(ln.endswith("]") for ln in rows)
    assert len(rows) == len(WHERE) * res.stdout.count("Function [Source]")


@needs_subprocess
def test_report_srcline_calls_only_and_diff(flat: Path, graph: Path) -> None:
    tmp = flat.parent
    res = fntrace("report", "--srcline", str(flat), cwd=tmp)
    assert res.returncode == 0
    rows = res.stdout.splitlines()[3:]
    assert sorted(rows) == sorted(
        f"  {calls:>10}  {name} [{where(tmp, name)[0]}:{where(tmp, name)[1]}]"
        for name, calls in (("__main__:gen", 4), ("__main__:Box.get", 3),
                            ("helpermod:twice", 3), ("__main__:<module>", 1),
                            ("helpermod:<module>", 1), ("__main__:Box", 1),
                            ("__main__:main", 1)))
    diff = fntrace("report", "--srcline", "--wide", str(flat), "--diff", str(graph), cwd=tmp)
    assert diff.returncode == 0
    # The runs are of the same program in different folders: each name shows both places.
    line = next(ln for ln in diff.stdout.splitlines() if "helpermod:twice" in ln)
    assert line.endswith(f"helpermod:twice [{where(tmp, 'helpermod:twice')[0]}:1, "
                         f"{where(graph.parent, 'helpermod:twice')[0]}:1]")


# -- exports --------------------------------------------------------------------------

def dump(dat: Path, *args: str) -> None:
    res = fntrace("dump", str(dat), *args, cwd=dat.parent)
    assert res.returncode == 0 and res.stderr == "", res.stderr


@needs_subprocess
def test_chrome_args_carry_file_and_line(either: tuple[str, Path]) -> None:
    tracer, dat = either
    out = dat.parent / "t.json"
    dump(dat, "--chrome", str(out))
    events = json.loads(out.read_text())["traceEvents"]
    named = [e for e in events if e.get("cat") in ("function", "call")]
    # a call is a complete X event (function_graph), an instant (function tracer)
    assert len(named) == 14 and {e["ph"] for e in named} == ({"X"} if tracer == "function_graph"
                                                             else {"i"})
    for e in named:
        file, line = where(dat.parent, e["name"])
        assert (e["args"]["file"], e["args"]["line"]) == (file, line), e


@needs_subprocess
def test_speedscope_frames_carry_file_and_line(either: tuple[str, Path]) -> None:
    _, dat = either
    out = dat.parent / "t.speedscope.json"
    dump(dat, "--speedscope", str(out))
    doc = json.loads(out.read_text())
    from test_exports import validate
    validate(doc)
    frames = doc["shared"]["frames"]
    assert {f["name"] for f in frames} >= set(WHERE)
    for f in frames:
        if f["name"] in WHERE:
            file, line = where(dat.parent, f["name"])
            assert f == {"name": f["name"], "file": file, "line": line}
        else:
            # the function tracer's caller of helpermod's import, not traced itself:
            # a parent is a name in the file, its location is not kept
            assert f == {"name": "importlib._bootstrap:_call_with_frames_removed"}


@needs_subprocess
def test_perfetto_source_locations(either: tuple[str, Path]) -> None:
    from test_exports import decode_perfetto
    _, dat = either
    out = dat.parent / "t.pftrace"
    dump(dat, "--perfetto", str(out))
    places: dict[int, dict[int, tuple[str, str, int]]] = {}   # seq -> iid -> location
    names: dict[int, dict[int, str]] = {}
    seen = 0
    for p in decode_perfetto(out.read_bytes()):
        seq = p.trusted_packet_sequence_id
        if p.HasField("interned_data"):
            for n in p.interned_data.event_names:
                names.setdefault(seq, {})[n.iid] = n.name
            for loc in p.interned_data.source_locations:
                places.setdefault(seq, {})[loc.iid] = (loc.file_name, loc.function_name,
                                                       loc.line_number)
        if not p.HasField("track_event"):
            continue
        ev = p.track_event
        if ev.type in (ev.TYPE_SLICE_BEGIN, ev.TYPE_INSTANT) and ev.HasField("name_iid"):
            name = names[seq][ev.name_iid]
            assert ev.HasField("source_location_iid"), name
            file, line = where(dat.parent, name)
            assert places[seq][ev.source_location_iid] == (file, name, line)
            seen += 1
        else:
            assert not ev.HasField("source_location_iid")
    assert seen == 14
    # interned: one location per function per sequence (one thread here)
    assert sorted(v[1] for v in places[1].values()) == sorted(WHERE)


@needs_subprocess
def test_pstats_keys_are_file_line_name(either: tuple[str, Path]) -> None:
    import pstats
    _, dat = either
    out = dat.parent / "t.prof"
    dump(dat, "--pstats", str(out))
    stats = pstats.Stats(str(out)).stats  # type: ignore[attr-defined]
    want = {(*where(dat.parent, name), name) for name in WHERE}
    assert set(stats) == want
    twice = stats[(*where(dat.parent, "helpermod:twice"), "helpermod:twice")]
    assert twice[1] == 3
    assert set(twice[4]) == {(*where(dat.parent, "__main__:Box.get"), "__main__:Box.get")}


@needs_subprocess
def test_exports_of_a_version_1_file_have_no_locations(tmp_path: Path) -> None:
    dat = tmp_path / "v1.dat"
    dat.write_bytes((DATA / "v1_graph.dat").read_bytes())
    dump(dat, "--chrome", str(tmp_path / "c.json"), "--speedscope", str(tmp_path / "s.json"),
         "--pstats", str(tmp_path / "p.prof"))
    assert "file" not in (tmp_path / "c.json").read_text()
    frames = json.loads((tmp_path / "s.json").read_text())["shared"]["frames"]
    assert frames and all(set(f) == {"name"} for f in frames)
    import pstats
    stats = pstats.Stats(str(tmp_path / "p.prof")).stats  # type: ignore[attr-defined]
    assert stats and all(key[:2] == ("~", 0) for key in stats)
