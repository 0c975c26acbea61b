"""The tracefs file table and tracer registry, and the settings the C recorders cache.

The C recorders (fntrace/_speedups.c) keep their own copies of tracing_on, the
ring buffer's clock and its live buffer set; the properties that change those
(Instance.tracing_on, RingBuffer.clock, RingBuffer.live) must tell them.  Each
test changes one setting, by assignment and by its file, and checks what the
next calls record, on the C path and on the pure-Python one (conftest's
hot_path), where the C path also shows the recorder's own copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pytest

from fntrace.tracing import tracefs, tracers
from fntrace.tracing.files import FileTable
from fntrace.tracing.instance import Instance, trace
from fntrace.tracing.ring_buffer import BufferSet
from fntrace.tracing.tracers import TracerRegistry

pytestmark = pytest.mark.usefixtures("hot_path")

MOD = __name__
LEAF = f"{MOD}:tf_leaf"


def tf_leaf() -> int:
    return 1


def calls_in(text: str) -> list[float]:
    """Timestamps of the tf_leaf entries in a function-tracer text."""
    return [float(ts) for ts in re.findall(rf" (\d+\.\d{{6}}): {re.escape(LEAF)} <-", text)]


def recorders(inst: Instance, hot_path: str) -> list[Any]:
    assert inst.tracer is not None
    recs = inst.tracer.recorders
    assert bool(recs) == (hot_path == "c")  # the C path really is the C recorder's
    return list(recs)


# -- settings the C recorders cache -------------------------------------------------------

@pytest.mark.parametrize("how", ["attribute", "file"])
def test_tracing_on_reaches_the_recorders(hot_path: str, how: str) -> None:
    def set_on(inst: Instance, on: bool) -> None:
        if how == "attribute":
            inst.tracing_on = on
        else:
            inst.write("tracing_on", str(int(on)))

    with trace("function", filter=LEAF) as inst:
        recs = recorders(inst, hot_path)
        tf_leaf()
        set_on(inst, False)
        assert [r.tracing for r in recs] == [False] * len(recs)
        tf_leaf()
        tf_leaf()
        set_on(inst, True)
        assert [r.tracing for r in recs] == [True] * len(recs)
        tf_leaf()
        assert inst.read("tracing_on") == "1\n"
        assert len(calls_in(inst.read("trace"))) == 2


class StepClock:
    """A clock of whole milliseconds from 7 s: each reading one step later."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return 7_000_000_000 + self.n * 1_000_000


def test_clock_assignment_reaches_the_recorders(hot_path: str) -> None:
    with trace("function", filter=LEAF) as inst:
        recorders(inst, hot_path)
        tf_leaf()  # the recorder has read the clock it caches
        clock = StepClock()
        inst.rb.clock = clock
        assert inst.rb.clock is clock and inst.rb.now is clock
        for _ in range(3):
            tf_leaf()
        assert calls_in(inst.read("trace"))[1:] == [7.001, 7.002, 7.003]


def test_trace_clock_file_reaches_the_recorders(hot_path: str) -> None:
    with trace("function", filter=LEAF) as inst:
        recorders(inst, hot_path)
        tf_leaf()
        before = calls_in(inst.read("trace"))
        inst.write("trace_clock", "realtime")  # seconds since 1970, not since boot
        tf_leaf()
        after = calls_in(inst.read("trace"))
    assert len(before) == 1 and before[0] < 1e9
    assert len(after) == 1 and after[0] > 1e9  # the old event was cleared with the clock


@pytest.mark.parametrize("how", ["snapshot file", "attribute"])
def test_new_live_buffers_reach_the_recorders(hot_path: str, how: str) -> None:
    with trace("function", filter=LEAF) as inst:
        recorders(inst, hot_path)
        tf_leaf()
        old = inst.rb.live
        if how == "snapshot file":
            inst.write("snapshot", "1")
        else:
            inst.rb.live = BufferSet(inst.rb.size_kb, inst.rb.overwrite)
        assert inst.rb.live is not old
        tf_leaf()
        tf_leaf()
        assert len(calls_in(inst.read("trace"))) == 2  # written into the new set
        assert old.totals() == (1, 1)                  # and nothing more into the old
        if how == "snapshot file":
            assert len(calls_in(inst.read("snapshot"))) == 1


# -- the file table -----------------------------------------------------------------------

def walk(inst: Instance, path: str = "") -> Iterable[str]:
    for name in inst.listdir(path):
        sub = f"{path}/{name}" if path else name
        try:
            yield from walk(inst, sub)
        except FileNotFoundError:
            yield sub


def test_every_listed_path_is_served_and_every_served_path_listed() -> None:
    with Instance() as inst:
        inst.write("trace_marker", "x")  # per_thread/<tid>/stats
        inst.write("dynamic_events", "f:tf_probe test_tracefs:tf_leaf")
        inst.write("fail_function/inject", LEAF)
        listed = set(walk(inst))
        assert listed == inst.files.names(inst)
        assert {"per_thread", "events", "fail_function", "options"} <= set(inst.listdir())
        for path in listed:
            if path in inst.files.readers:
                assert isinstance(inst.read(path), str)
        assert f"fail_function/{LEAF}/retval" in listed
        assert "events/fprobes/tf_probe/enable" in listed


def test_the_table_is_built_once_for_every_instance() -> None:
    with Instance() as a, Instance() as b:
        assert a.files is b.files is tracefs.TABLE
    fresh = tracefs.build()
    assert sorted(fresh.readers) == sorted(tracefs.TABLE.readers)
    assert sorted(fresh.writers) == sorted(tracefs.TABLE.writers)
    assert list(fresh.directories) == list(tracefs.TABLE.directories)
    assert len(fresh.closers) == len(tracefs.TABLE.closers)


def test_a_path_registered_twice_is_refused() -> None:
    table = FileTable()
    table.file("trace", lambda inst: "")
    with pytest.raises(ValueError, match="registered twice"):
        table.file("trace", write=lambda inst, text, append: None)

    class Empty:
        def names(self, inst: Instance) -> list[str]:
            return []

        def read(self, inst: Instance, path: str) -> str | None:
            return None

        def write(self, inst: Instance, path: str, text: str, append: bool) -> bool:
            return False

    table.directory("options", Empty())
    with pytest.raises(ValueError, match="registered twice"):
        table.file("options/overwrite", lambda inst: "")
    with pytest.raises(ValueError, match="registered twice"):
        table.directory("options", Empty())
    table.file("trace_stat/function0", lambda inst: "")
    with pytest.raises(ValueError, match="holds files registered before it"):
        table.directory("trace_stat", Empty())
    with pytest.raises(ValueError, match="neither a reader nor a writer"):
        table.file("nothing")


# -- the tracer plugins -------------------------------------------------------------------

def test_tracers_are_the_registered_plugins() -> None:
    assert tracers.available() == ["nop", "function", "function_graph"]
    assert tracers.get("nop") is None
    with Instance() as inst:
        assert inst.read("available_tracers") == "nop function function_graph\n"
        for name in ("function", "function_graph"):
            inst.write("current_tracer", name)
            assert inst.tracer is not None and inst.tracer.name == name
            assert inst.read("current_tracer") == f"{name}\n"
    with pytest.raises(ValueError, match="unknown tracer 'nope'; available: nop function"):
        tracers.get("nope")


def test_a_tracer_registered_twice_is_refused() -> None:
    registry = TracerRegistry()
    for plugin in tracers.PLUGINS:
        plugin(registry)
    assert registry.names() == tracers.available()
    with pytest.raises(ValueError, match="'function' is registered twice"):
        tracers.PLUGINS[0](registry)


class _Served:
    """A feature's directory for the Deferred tests: one file, ``x``."""

    def __init__(self) -> None:
        self.written: list[str] = []

    def names(self, inst: Instance) -> list[str]:
        return ["x"]

    def read(self, inst: Instance, path: str) -> str | None:
        return "".join(self.written) if path == "x" else None

    def write(self, inst: Instance, path: str, text: str, append: bool) -> bool:
        self.written.append(text)
        return path == "x"


def test_a_deferred_feature_is_registered_when_first_used() -> None:
    calls: list[str] = []
    served = _Served()

    def register(table: FileTable) -> None:
        calls.append("register")
        table.directory("feat", served)
        table.on_close(lambda inst: calls.append(f"close {inst.name}"))

    table = FileTable()
    tracefs.Deferred("feat", "test_tracefs_no_such_module", register)(table)
    assert list(table.directories) == ["feat"] and calls == []
    with Instance() as inst:
        for closer in table.closers:  # its module never loaded: nothing to close, no load
            closer(inst)
        assert calls == []
        assert table.names(inst) == {"feat/x"} and calls == ["register"]
        assert table.directories["feat"].write(inst, "x", "1", False)
        assert table.directories["feat"].read(inst, "x") == "1"
        assert table.directories["feat"].read(inst, "y") is None
        for closer in table.closers:
            closer(inst)
        assert calls == ["register", f"close {inst.name}"]  # registered once


def test_a_deferred_feature_declaring_more_than_its_directory_is_refused() -> None:
    def register(table: FileTable) -> None:
        table.directory("feat", _Served())
        table.file("other", lambda inst: "")

    table = FileTable()
    tracefs.Deferred("feat", "test_tracefs_no_such_module", register)(table)
    with Instance() as inst, pytest.raises(ValueError, match="declares more than feat/"):
        table.names(inst)


def test_the_deferred_features_close_what_they_hold() -> None:
    # Closing an instance removes its fail_function/ injection through the deferred hook.
    with Instance() as inst:
        inst.write("fail_function/inject", LEAF)
        inst.write("fail_function/probability", "100")
        inst.write("fail_function/times", "-1")
        inst.write(f"fail_function/{LEAF}/retval", "-7")
        assert tf_leaf() == -7
    assert tf_leaf() == 1
