"""fntrace on a Python that lacks native thread ids, threads or Unix sockets.

WebAssembly builds (Pyodide, the 3.14 leg of CI) have none of them.  The tracers
need none: thread ids fall back to ``threading.get_ident``, a recording drains
its buffers without a writer thread, and live control says why it cannot start.
Each test takes the capability away here too, so it runs on every platform.
"""

from __future__ import annotations

import _thread
import importlib.util
import os
import socket
import threading
from pathlib import Path
from typing import NoReturn

import pytest

from fntrace.control import ControlError, current, listen
from fntrace.control.client import connect
from fntrace.core import oscaps
from fntrace.formats.tracefile import open_trace
from fntrace.recording.recorder import Recorder, header_for
from fntrace.tracing.instance import Instance


def _fresh_oscaps() -> object:
    """oscaps as it loads now (it decides at import, so a copy is loaded)."""
    spec = importlib.util.spec_from_file_location("oscaps_probe", oscaps.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_thread_ids_are_native_where_the_os_has_them() -> None:
    if not hasattr(threading, "get_native_id"):
        pytest.skip("no native thread ids here")
    assert oscaps.native_id() == threading.get_native_id()
    assert oscaps.thread_native_id(threading.current_thread()) == threading.get_native_id()


def test_thread_ids_fall_back_to_idents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(threading, "get_native_id", raising=False)
    caps = _fresh_oscaps()
    me = threading.get_ident()
    assert caps.native_id() == me  # type: ignore[attr-defined]
    assert caps.thread_native_id(threading.current_thread()) == me  # type: ignore[attr-defined]
    assert caps.thread_native_id(threading.Thread(target=print)) is None  # type: ignore[attr-defined]


def pl_leaf(n: int) -> int:
    return n + 1


def _no_threads(*args: object) -> NoReturn:
    raise RuntimeError("can't start new thread")


def test_recording_without_a_writer_thread_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.dat"
    inst = Instance("platform-record")
    try:
        inst.write("current_tracer", "function")
        inst.write("set_ftrace_filter", f"{__name__}:pl_leaf")
        inst.write("buffer_size_kb", "4")  # fills several times: drained when full
        monkeypatch.setattr(_thread, "start_new_thread", _no_threads)
        rec = Recorder(inst, str(path), header_for(inst, ["prog"], {}))
        rec.start()
    except BaseException:
        inst.close()
        raise
    assert rec.thread_done is None  # no writer thread: drained when full and at finish
    total = sum(pl_leaf(i) for i in range(3000))
    rec.finish()
    assert total == sum(range(1, 3001))
    calls = [r for r in open_trace(str(path)).records() if r.func.endswith(":pl_leaf")]
    assert len(calls) == 3000


def test_live_control_says_it_needs_unix_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(socket, "AF_UNIX", raising=False)
    with pytest.raises(OSError, match="fntrace control needs Unix domain sockets"):
        listen()
    assert current() is None
    with pytest.raises(ControlError, match="fntrace control needs Unix domain sockets"):
        connect(os.getpid())
