"""The one event schema (fntrace/core/events.py) against everything that writes,
stores, encodes or renders events: the tracers' ring tuples (both paths), the
trace file's codes, the C extension's constants, the renderers' table, and
replay's streaming."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import FakeThread, event_text

import fntrace.core.accel
from fntrace.analysis.reading import open_files
from fntrace.analysis.replay import Functions, RecordedFunction, event_of, lines
from fntrace.core import events
from fntrace.core.events import BY_TAG, EVENT_OVERHEAD, KINDS
from fntrace.core.flags import Event
from fntrace.formats import tracefile
from fntrace.formats.tracefile import Record, TraceWriter, open_trace
from fntrace.recording.recorder import InstanceText
from fntrace.tracing import ftrace_text
from fntrace.tracing.inject import inject
from fntrace.tracing.instance import Instance

ROOT = Path(__file__).resolve().parent.parent
MOD = __name__


# -- the schema itself ------------------------------------------------------------------

def test_kinds_are_distinct_and_their_records_are_the_files() -> None:
    assert len({k.name for k in KINDS}) == len({k.tag for k in KINDS}) == len(KINDS)
    assert all(len(k.tag) == 1 for k in KINDS)
    for k in KINDS:
        assert k.fields[:3] == ("ts", "size", "kind")
        assert [getattr(k.at, f) for f in k.fields] == list(range(len(k.fields)))
        assert events.RECORD_KINDS[k.code] == k.record
    assert {k.record for k in KINDS} == set(events.RECORD_KINDS)
    assert tracefile.KINDS is events.RECORD_KINDS
    assert tracefile.KIND_CODES is events.RECORD_CODES
    assert tracefile.EVENT_CODES is events.EVENT_CODES
    # the codes fit the record's head byte: 3 bits of kind, then the event
    assert max(events.RECORD_CODES.values()) < 8
    assert (max(events.EVENT_CODES.values()) << 3) < 256


def test_event_names_are_the_flags_events() -> None:
    declared = {v for k, v in vars(Event).items() if k.isupper() and isinstance(v, str)}
    assert set(events.EVENT_NAMES) - {""} == declared
    assert events.EVENT_NAMES[0] == ""


def test_every_kind_has_a_renderer() -> None:
    assert set(ftrace_text.RENDERERS) == {k.name for k in KINDS}


# -- the C extension's constants ---------------------------------------------------------

def c_sources() -> list[Path]:
    """The extension's sources, fntrace/csrc/*.c|h."""
    return sorted((ROOT / "fntrace" / "csrc").glob("*.[ch]"))


_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)\s+(.+?)\s*(?:/\*.*)?$", re.M)


def c_defines() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in c_sources():
        for name, value in _DEFINE.findall(path.read_text()):
            out.setdefault(name, []).append(value.strip())
    return out


def _c_value(text: str) -> int | str:
    text = text.strip("()")
    m = re.fullmatch(r"'(.)'", text)
    if m:
        return m.group(1)
    return int(text.rstrip("uUlL"), 0)


def test_c_constants_are_the_schemas() -> None:
    """Every schema constant is #defined in the C sources, once, with the schema's
    value; and no other #define there restates an event constant."""
    assert c_sources(), "no C source found"
    defines = c_defines()
    for name, value in events.C_CONSTANTS.items():
        assert name in defines, f"{name}: not #defined in the C sources"
        assert [_c_value(v) for v in defines[name]] == [value], name
    prefixes = ("EVENT_", "CALL_", "ENTRY_", "EXIT_", "TASK_", "FILE_KIND_", "FILE_EVENT_")
    strays = [n for n in defines if n.startswith(prefixes) and n not in events.C_CONSTANTS]
    assert strays == []


def test_the_c_sources_have_no_other_event_overhead() -> None:
    """The accounted size is never written as a bare number beside the constant."""
    for path in c_sources():
        text = path.read_text()
        assert not re.search(r"size\s*=\s*64\b", text), path


class _Spy:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def encode_buffers(self, buffers: Any, other: Any, codes: Any, note_prefix: bytes,
                       keys: dict[Any, Any], lz4: bool,
                       ) -> tuple[bytes, int, list[int], None, None, bool]:
        self.calls.append((buffers, other, codes, note_prefix, keys, lz4))
        return b"", 0, [], None, None, False


def test_the_c_encoder_is_passed_the_schemas_codes(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    spy = _Spy()
    monkeypatch.setattr(fntrace.core.accel, "speedups", spy)
    inst = Instance()
    try:
        inst.write("trace_marker", "hello")
        inst.rb.buffer()  # this thread's buffer (the marker made it already)
        writer = TraceWriter(str(tmp_path / "t.dat"), {})
        writer.take(inst.rb.live, InstanceText(inst))
        writer.close()
        ((_, other, codes, note_prefix, keys, lz4),) = spy.calls
        assert lz4 is (writer.compression == "lz4")  # compressed by the encoder
        assert keys is writer.function_keys  # the writer's, kept from chunk to chunk
        assert codes is events.EVENT_CODES
        assert note_prefix == events.TASK_PREFIX.encode()  # the notes' prefix, as stored
        buf = inst.rb.live.buffers()[0]
        # what Python gives the C encoder for kinds it does not store field by field
        assert other(buf, (5, 64, events.MARKER.tag, "m")) == (events.MARKER.code, "m")
        lines_ = ("a:f (x.py:1)", "a:<module> (x.py:3)")
        assert other(buf, (5, 64, events.STACK.tag, lines_)) == (
            events.TEXT.code, event_text(buf, (5, 64, events.STACK.tag, lines_)).rstrip("\n"))
    finally:
        inst.close()


# -- every writer's tuples, on both paths -------------------------------------------------

def sc_leaf(x: int) -> int:
    return x + 1


def sc_gen() -> Iterator[int]:
    yield sc_leaf(1)


def sc_fail(x: int) -> int:
    return x


def sc_main() -> None:
    sc_leaf(2)
    list(sc_gen())
    try:
        sc_fail(3)
    except KeyError:
        pass


def _size(kind: events.EventKind[Any], ev: tuple[Any, ...]) -> int:
    """The accounted size: the overhead, plus the length of every text field."""
    if kind is events.STACK:
        return EVENT_OVERHEAD + sum(len(s) for s in ev[events.STACK.at.lines])
    return EVENT_OVERHEAD + sum(len(ev[i]) for i, f in enumerate(kind.fields)
                                if f in ("args", "value", "text") and ev[i] is not None)


def _check(ev: tuple[Any, ...]) -> events.EventKind[Any]:
    kind = BY_TAG[ev[2]]
    assert len(ev) == len(kind.fields), ev
    assert isinstance(ev[kind.at.ts], int)
    assert ev[kind.at.size] == _size(kind, ev), ev
    for name in ("ip", "fn", "parent"):
        if name in kind.fields and ev[kind.fields.index(name)] is not None:
            assert hasattr(ev[kind.fields.index(name)], "name")
    if "event" in kind.fields:
        assert ev[kind.fields.index("event")] in events.EVENT_CODES
    return kind


@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_every_writer_writes_the_schemas_tuples(hot_path: str, tracer: str) -> None:
    inst = Instance()
    injection = inject(sc_fail, raise_=KeyError)
    try:
        if tracer == "function":
            inst.write("options/func-args", "1")
            inst.write("options/func_stack_trace", "1")
        else:
            inst.write("options/funcgraph-retval", "1")
        inst.write("set_ftrace_filter", f"{MOD}:sc_*")
        inst.write("dynamic_events", f"f:grp/probe {MOD}:sc_leaf x=$arg1")
        inst.write("events/grp/probe/enable", "1")
        inst.write("current_tracer", tracer)
        inst.write("trace_marker", "mark")
        sc_main()
        inst.write("tracing_on", "0")
        inst.write("events/grp/probe/enable", "0")
        seen = {_check(ev).name for buf in inst.rb.live.buffers() for ev in buf.events}
    finally:
        injection.remove()
        inst.close()
    tracer_kinds = {"call", "stack"} if tracer == "function" else {"entry", "exit"}
    assert seen == tracer_kinds | {"marker", "probe", "fail"}


# -- file records back to ring events -----------------------------------------------------

def test_event_of_puts_each_record_field_where_the_schema_says() -> None:
    funcs = Functions()
    c = event_of(Record("call", 1, 2, 10, "m:f", "m:g", 0, "resume", "a=1", None, None, None,
                        0x20), funcs)
    at = events.CALL.at
    assert (c[at.ts], c[at.kind], c[at.ip].name, c[at.ip].code.co_flags, c[at.parent].name,
            c[at.args], c[at.event]) == (10, "F", "m:f", 0x20, "m:g", "a=1", "resume")
    e = event_of(Record("entry", 1, 2, 11, "m:f", None, 3, "start", None, None, None, None,
                        0), funcs)
    assert (e[events.ENTRY.at.fn] is c[at.ip]) is False  # other flags: another function
    assert (e[events.ENTRY.at.depth], e[events.ENTRY.at.event]) == (3, "start")
    x = event_of(Record("exit", 1, 2, 12, "m:f", None, 3, "unwind", None, "KeyError", 7, None,
                        0), funcs)
    xa = events.EXIT.at
    assert x[xa.fn] is e[events.ENTRY.at.fn]
    assert (x[xa.depth], x[xa.duration], x[xa.event], x[xa.value]) == (3, 7, "unwind",
                                                                        "KeyError")
    m = event_of(Record("marker", 1, 2, 13, "", None, 0, "", None, None, None, "hi"), funcs)
    t = event_of(Record("text", 1, 2, 14, "", None, 0, "", None, None, None, "line"), funcs)
    assert m[events.MARKER.at.text] == "hi" and m[2] == events.MARKER.tag
    assert t[events.TEXT.at.text] == "line" and t[2] == events.TEXT.tag
    for ev in (c, e, x, m, t):
        assert len(ev) == len(BY_TAG[ev[2]].fields)


# -- replay streams ------------------------------------------------------------------------

def _graph_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "g.dat"
    main = FakeThread(7, "MainThread", 0, "M.")
    f = RecordedFunction("m:f", 0)
    pairs = []
    for i in range(n):
        pairs.append((main, (100 * i, 0, "E", f, 0, None, "start")))
        pairs.append((main, (100 * i + 50, 0, "X", f, 0, 50, "return", None)))
    writer = TraceWriter(str(path), {"pid": 1, "tracer": "function_graph"})
    writer.write_events(pairs, event_text)
    writer.finish(100 * n)
    return path


class Exhausted(Exception):
    pass


def _limited(records: Iterator[Record], n: int, taken: list[int]) -> Iterator[Record]:
    for rec in records:
        if taken[0] == n:
            raise Exhausted
        taken[0] += 1
        yield rec


@pytest.mark.parametrize("tracer", ["function", "function_graph"])
def test_replay_writes_lines_before_it_has_read_every_record(tmp_path: Path,
                                                             tracer: str) -> None:
    path = _graph_file(tmp_path, 1000)
    if tracer == "function":  # the same calls as the function tracer writes them
        tf = open_trace(str(path))
        f = RecordedFunction("m:f", 0)
        main = FakeThread(7, "MainThread", 0, "M.")
        writer = TraceWriter(str(tmp_path / "f.dat"), {"pid": 1, "tracer": "function"})
        writer.write_events([(main, (r.ts, 0, "F", f, None, None, "start"))
                             for r in tf.records() if r.kind == "entry"], event_text)
        writer.finish(0)
        path = tmp_path / "f.dat"
    tf = open_trace(str(path))
    taken = [0]
    out = lines([tf], _limited(tf.records(), 5, taken), tf.events)
    head = next(out)
    assert head.startswith(f"# tracer: {tracer}\n") and taken[0] == 0
    first = next(out)
    assert "m:f()" in first if tracer == "function_graph" else "m:f" in first
    # a graph leaf needs its exit (the next record); a function line, its one record
    assert taken[0] == (2 if tracer == "function_graph" else 1)
    next(out)
    with pytest.raises(Exhausted):
        list(out)
    full = "".join(lines([tf], tf.records(), tf.events))
    assert full.count("\n") > 1000


def test_replay_labels_each_line_with_its_events_pid(tmp_path: Path) -> None:
    """Several processes: each line carries the pid of the process that wrote it,
    a stack trace's continuation lines too."""
    f = RecordedFunction("m:f", 0)
    for pid, name in ((1000, "t.dat"), (22, "t.dat.22")):
        thread = FakeThread(pid + 1, "MainThread", 0, "M.")
        writer = TraceWriter(str(tmp_path / name), {"pid": pid, "tracer": "function"})
        writer.write_events([
            (thread, (pid * 10, 0, "F", f, None, None, "start")),
            (thread, (pid * 10 + 1, 0, "K", ("m:f (x.py:1)", "m:<module> (x.py:2)"))),
        ], event_text)
        writer.finish(0)
    files = open_files(str(tmp_path / "t.dat"), "replay")
    text = "".join(lines(files, tracefile.merged_records(files), 4))
    body = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert [ln[:5] for ln in body] == ["  22 "] * 4 + ["1000 "] * 4
    assert body[2].endswith("=> m:f (x.py:1)") and body[6].endswith("=> m:f (x.py:1)")
    assert text.startswith("#      tracer: function\n#\n"
                           "#      entries-in-buffer/entries-written: 4/4")


def test_a_layout_whose_indexes_skip_is_refused() -> None:
    class Gap(events.Layout):
        a = 3
        b = 5

    with pytest.raises(TypeError, match=r"not 0\.\.n-1"):
        Gap.fields()
