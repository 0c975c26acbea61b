"""A trace instance: tracefs as an object.

One instance = one ring buffer, one current tracer, its options and filters.
Each instance registers its own ops with the core, so several instances run
at once with different tracers and filters.  The interface is the kernel's
file names: ``inst.write(path, text, append=False)`` and ``inst.read(path)``;
the CLI and the live control channel speak the same files.  A malformed
write raises ``ValueError`` and changes nothing (the kernel's EINVAL).

Files that cannot mean anything for Python are absent (listed in
docs/tracefs.md): there are no CPUs to mask (``tracing_cpumask``), no IRQs,
no kernel events (``set_event``; ``events/`` holds only the probe events
of ``dynamic_events``, see fntrace/tracing/probes/) and no hardware clocks.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from fntrace.core import engine, forksafe
from fntrace.core.events import EVENT_OVERHEAD, MARKER
from fntrace.core.filter import Filter, FilterLine, parse
from fntrace.core.symbols import available_filter_functions
from fntrace.tracing.reprs import SafeRepr
from fntrace.tracing.ring_buffer import CLOCKS, RingBuffer

if TYPE_CHECKING:
    from fntrace.tracing.tracers.base import Tracer

__all__ = ["OPTIONS", "Instance", "instances", "marker"]

#: options/<name>: default values.  Booleans are 0/1 files; the two repr
#: limits take integers.
OPTIONS: dict[str, int] = {
    "overwrite": 1,
    "print-parent": 1,
    "func-args": 0,
    "func_stack_trace": 0,
    "funcgraph-args": 0,
    "funcgraph-retval": 0,
    "funcgraph-tail": 0,
    "funcgraph-proc": 0,
    "funcgraph-abstime": 0,
    "funcgraph-duration": 1,
    "funcgraph-overhead": 1,
    "markers": 1,
    "graph-time": 1,
    "repr-max-len": 64,
    "repr-max-us": 1000,
}
_INT_OPTIONS = {"repr-max-len", "repr-max-us"}

_registry: weakref.WeakValueDictionary[int, Instance] = weakref.WeakValueDictionary()

#: Directories served by other modules (``fail_function`` by fntrace.tracing.inject,
#: ``livepatch`` by fntrace.tracing.livepatch): name -> object with ``read(inst, rest)``
#: (None: no such file), ``write(inst, rest, text, append)``, ``names(inst)``
#: (file paths under the directory) and ``close(inst)``.
SUBTREES: dict[str, Any] = {}
_next_id = iter(range(1 << 30))


def instances() -> list[Instance]:
    """Every live instance."""
    return list(_registry.values())


def marker(text: str) -> None:
    """Write ``text`` to trace_marker of every live instance."""
    for inst in instances():
        inst.write("trace_marker", text)


def _bool(text: str, what: str) -> bool:
    value = text.strip()
    if value not in ("0", "1"):
        raise ValueError(f"{what}: expected 0 or 1, got {text!r}")
    return value == "1"


#: The largest number an integer file takes: sizes, depths and times all fit
#: well inside the C side's 64-bit fields after their scaling (KiB, ns).
MAX_UINT = 1 << 40


def _uint(text: str, what: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 13 or int(value) > MAX_UINT:
        raise ValueError(f"{what}: expected an integer from 0 to {MAX_UINT}, "
                         f"got {text[:40]!r}")
    return int(value)


def _pids(text: str) -> set[int]:
    out: set[int] = set()
    for word in text.split():
        if not word.isdigit():
            raise ValueError(f"not a thread id: {word!r}")
        out.add(int(word))
    return out


def _renew_lock(inst: Instance) -> None:
    inst.lock = threading.RLock()  # see fntrace/core/forksafe.py


class Instance:
    """One trace instance; see the module docstring."""

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name == "tracing_on":  # the C recorders keep their own copy (no lookup per event)
            tracer = self.__dict__.get("tracer")
            if tracer is not None:
                for rec in tracer.recorders:
                    rec.tracing = value

    def __init__(self, name: str | None = None) -> None:
        self.id = next(_next_id)
        self.name = name or f"instance{self.id}"
        self.rb = RingBuffer()
        self.options: dict[str, int] = dict(OPTIONS)
        self.safe_repr = SafeRepr(OPTIONS["repr-max-len"], OPTIONS["repr-max-us"], self._note)
        self.tracing_on = True
        self.filter_lines: list[FilterLine] = []  # set_ftrace_filter, triggers included
        self.notrace = Filter()
        self.graph_function = Filter()
        self.graph_notrace = Filter()
        self.pids: set[int] = set()
        self.notrace_pids: set[int] = set()
        # Kept beside the sets so the tracers' hot path tests one attribute.
        self.pid_filtered = False
        self.max_graph_depth = 0
        self.tracing_thresh_us = 0
        self.tracer: Tracer | None = None
        self.lock = threading.RLock()
        forksafe.renew_in_child(self, _renew_lock)
        # The profiler and stack tracer stay readable after they are disabled, as in
        # the kernel; enabling the profiler again starts a fresh table.
        self.profile: Any = None   # tracers.profile.FunctionProfiler
        self.profile_on = False
        self.stack: Any = None     # tracers.stack.StackTracer
        self.stack_on = False
        self.triggers: Any = None  # triggers.Triggers while some trigger is set
        from fntrace.tracing.probes import ProbeEvents

        self.probes = ProbeEvents(self)  # dynamic_events, events/GRP/EVENT/*
        _registry[self.id] = self

    # -- filters as the tracers see them ----------------------------------
    @property
    def filter(self) -> Filter:
        """set_ftrace_filter without its trigger lines."""
        return Filter([ln for ln in self.filter_lines if ln.command in (None, "mod")])

    def pid_allowed(self, tid: int) -> bool:
        if tid in self.notrace_pids:
            return False
        return not self.pids or tid in self.pids

    # -- the file interface ------------------------------------------------
    def read(self, path: str) -> str:
        path = path.strip("/")
        handler = self._readers().get(path)
        if handler is None:
            dyn = self._dynamic_read(path)
            if dyn is None:
                if path in self._writers():
                    raise PermissionError(f"{self.name}: {path} is write-only")
                raise FileNotFoundError(f"{self.name}: no such file: {path}")
            return dyn
        return handler()

    def write(self, path: str, text: str, append: bool = False) -> None:
        path = path.strip("/")
        handler = self._writers().get(path)
        if handler is None:
            head, _, rest = path.partition("/")
            if head in SUBTREES:
                with self.lock:
                    SUBTREES[head].write(self, rest, text, append)
                return
            if path.startswith("options/") and path[8:] in self.options:
                self._set_option(path[8:], text)
                return
            if path.startswith("events/"):
                with self.lock:
                    if self.probes.write_file(path, text):
                        return
            if path in self._readers():
                raise PermissionError(f"{self.name}: {path} is read-only")
            raise FileNotFoundError(f"{self.name}: no such file: {path}")
        with self.lock:
            handler(text, append)

    def listdir(self, path: str = "") -> list[str]:
        """Names in a directory of the tree (for ``ls``)."""
        path = path.strip("/")
        names = set(self._readers()) | set(self._writers())
        names |= {f"options/{o}" for o in self.options}
        names |= {f"per_thread/{b.tid}/stats" for b in self.rb.live.buffers()}
        names |= self.probes.files()
        names |= {f"{head}/{n}" for head, tree in SUBTREES.items() for n in tree.names(self)}
        prefix = f"{path}/" if path else ""
        out = set()
        for name in names:
            if name.startswith(prefix):
                out.add(name[len(prefix):].split("/", 1)[0])
        if not out:
            raise FileNotFoundError(f"{self.name}: no such directory: {path}")
        return sorted(out)

    def _readers(self) -> dict[str, Callable[[], str]]:
        from fntrace.tracing import tracers, triggers

        return {
            "current_tracer": lambda: (self.tracer.name if self.tracer else "nop") + "\n",
            "available_tracers": lambda: " ".join(tracers.available()) + "\n",
            "tracing_on": lambda: f"{int(self.tracing_on)}\n",
            "trace": self._read_trace,
            "trace_pipe": self._read_pipe_now,
            "set_ftrace_filter": lambda: _filter_text(self.filter) + triggers.text(self),
            "set_ftrace_notrace": lambda: _filter_text(self.notrace),
            "set_graph_function": lambda: _filter_text(self.graph_function),
            "set_graph_notrace": lambda: _filter_text(self.graph_notrace),
            "set_ftrace_pid": lambda: "".join(f"{p}\n" for p in sorted(self.pids)),
            "set_ftrace_notrace_pid": lambda: "".join(f"{p}\n"
                                                      for p in sorted(self.notrace_pids)),
            "max_graph_depth": lambda: f"{self.max_graph_depth}\n",
            "tracing_thresh": lambda: f"{self.tracing_thresh_us}\n",
            "buffer_size_kb": lambda: f"{self.rb.size_kb}\n",
            "buffer_total_size_kb": lambda: f"{self.rb.total_kb()}\n",
            "trace_options": self._read_trace_options,
            "trace_clock": lambda: " ".join(f"[{c}]" if c == self.rb.clock_name else c
                                            for c in CLOCKS) + "\n",
            "available_filter_functions": lambda: "".join(
                f"{n}\n" for n in available_filter_functions()),
            "enabled_functions": engine.enabled_functions,
            "function_profile_enabled": lambda: f"{int(self.profile_on)}\n",
            "trace_stat/function0": self._read_profile,
            "stack_tracer_enabled": lambda: f"{int(self.stack_on)}\n",
            "stack_max_size": lambda: f"{self.stack.max_size if self.stack else 0}\n",
            "stack_trace": lambda: self.stack.render() if self.stack else "",
            "snapshot": self._read_snapshot,
            "dynamic_events": self.probes.read,
        }

    def _writers(self) -> dict[str, Callable[[str, bool], None]]:
        return {
            "current_tracer": lambda t, a: self.set_tracer(t.strip()),
            "tracing_on": lambda t, a: self._set_tracing_on(_bool(t, "tracing_on")),
            "trace": lambda t, a: self._clear(),
            "trace_marker": lambda t, a: self._marker(t),
            "set_ftrace_filter": self._write_filter,
            "set_ftrace_notrace": lambda t, a: self._set_filter_attr("notrace", t, a),
            "set_graph_function": lambda t, a: self._set_filter_attr("graph_function", t, a),
            "set_graph_notrace": lambda t, a: self._set_filter_attr("graph_notrace", t, a),
            "set_ftrace_pid": lambda t, a: self._set_pids("pids", t, a),
            "set_ftrace_notrace_pid": lambda t, a: self._set_pids("notrace_pids", t, a),
            "max_graph_depth": lambda t, a: self._set_int("max_graph_depth", t),
            "tracing_thresh": lambda t, a: self._set_int("tracing_thresh_us", t),
            "buffer_size_kb": lambda t, a: self.rb.resize(_uint(t, "buffer_size_kb")),
            "trace_options": lambda t, a: self._write_trace_options(t),
            "trace_clock": lambda t, a: self.rb.set_clock(t.strip()),
            "function_profile_enabled": lambda t, a: self._set_profile(
                _bool(t, "function_profile_enabled")),
            "trace_stat/function0": lambda t, a: self._reset_profile(),
            "stack_tracer_enabled": lambda t, a: self._set_stack(
                _bool(t, "stack_tracer_enabled")),
            "stack_max_size": lambda t, a: self._reset_stack(_uint(t, "stack_max_size")),
            "snapshot": lambda t, a: self._write_snapshot(t),
            "dynamic_events": self.probes.write,
        }

    def _dynamic_read(self, path: str) -> str | None:
        head, _, rest = path.partition("/")
        if head in SUBTREES:
            return SUBTREES[head].read(self, rest)  # type: ignore[no-any-return]
        if path.startswith("options/") and path[8:] in self.options:
            return f"{self.options[path[8:]]}\n"
        if path.startswith("events/"):
            return self.probes.read_file(path)
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "per_thread" and parts[2] == "stats":
            for buf in self.rb.live.buffers():
                if str(buf.tid) == parts[1]:
                    return buf.stats()
        return None

    # -- tracer ------------------------------------------------------------
    def set_tracer(self, name: str) -> None:
        from fntrace.tracing import tracers

        cls = tracers.get(name)  # raises ValueError for an unknown tracer
        with self.lock:
            if self.tracer is not None:
                self.tracer.stop()
                self.tracer = None
            if cls is not None:
                tracer = cls(self)
                tracer.start()
                self.tracer = tracer

    def _restart_tracer(self) -> None:
        """Filters changed: the tracer swaps its ops' filters."""
        if self.tracer is not None:
            self.tracer.filters_changed()
        if self.profile_on:
            self.profile.filters_changed()
        if self.stack_on:
            self.stack.filters_changed()

    def _set_tracing_on(self, on: bool) -> None:
        self.tracing_on = on

    def _write_filter(self, text: str, append: bool) -> None:
        """set_ftrace_filter: function lines and trigger lines, as in the kernel.

        A write without append resets the function list (O_TRUNC); triggers
        stay until removed with ``!func:cmd`` and a trigger written again for
        the same glob and command replaces the old one (its count restarts).
        """
        lines = parse(text)
        funcs_new = [ln for ln in lines if ln.command in (None, "mod")]
        Filter(funcs_new)  # validates before anything changes
        trig_add = [ln for ln in lines if ln.command not in (None, "mod") and not ln.negate]
        trig_rm = [ln for ln in lines if ln.command not in (None, "mod") and ln.negate]
        old_funcs = [ln for ln in self.filter_lines if ln.command in (None, "mod")]
        trigs = [ln for ln in self.filter_lines if ln.command not in (None, "mod")]
        funcs = old_funcs + funcs_new if append else funcs_new
        gone = {(ln.glob, ln.command) for ln in trig_rm + trig_add}
        trigs = [ln for ln in trigs if (ln.glob, ln.command) not in gone] + trig_add
        from fntrace.tracing import triggers

        triggers.apply(self, trigs)
        self.filter_lines = funcs + trigs
        self._restart_tracer()

    def _set_filter_attr(self, attr: str, text: str, append: bool) -> None:
        new = Filter(parse(text))
        if append:
            new = getattr(self, attr).extended(new.lines)
        setattr(self, attr, new)
        self._restart_tracer()
        self._fast_refresh()

    def _set_pids(self, attr: str, text: str, append: bool) -> None:
        new = _pids(text)
        if append:
            new |= getattr(self, attr)
        setattr(self, attr, new)
        self.pid_filtered = bool(self.pids or self.notrace_pids)
        self._fast_refresh()

    def _set_int(self, attr: str, text: str) -> None:
        setattr(self, attr, _uint(text, attr))
        self._fast_refresh()

    def _fast_refresh(self) -> None:
        """A setting changed: the C recorders (tracer's, profiler's) may have to step
        aside, or read it (graph-time)."""
        if self.tracer is not None:
            self.tracer.fast_refresh()
        if self.profile_on:
            self.profile.fast_refresh()

    # -- options -----------------------------------------------------------
    def _set_option(self, name: str, text: str) -> None:
        if name in _INT_OPTIONS:
            value = _uint(text, f"options/{name}")
            if value == 0:
                raise ValueError(f"options/{name} must be positive")
        else:
            value = int(_bool(text, f"options/{name}"))
        with self.lock:
            self.options[name] = value
            if name == "overwrite":
                self.rb.set_overwrite(bool(value))
            elif name == "repr-max-len":
                self.safe_repr = SafeRepr(value, self.options["repr-max-us"], self._note)
            elif name == "repr-max-us":
                self.safe_repr = SafeRepr(self.options["repr-max-len"], value, self._note)
            self._fast_refresh()

    def _read_trace_options(self) -> str:
        return "".join(f"{name}\n" if value else f"no{name}\n"
                       for name, value in self.options.items() if name not in _INT_OPTIONS)

    def _write_trace_options(self, text: str) -> None:
        word = text.strip()
        if word in self.options and word not in _INT_OPTIONS:
            self._set_option(word, "1")
        elif word.startswith("no") and word[2:] in self.options and word[2:] not in _INT_OPTIONS:
            self._set_option(word[2:], "0")
        else:
            raise ValueError(f"trace_options: unknown option {word!r}")

    # -- buffer reads -------------------------------------------------------
    def _read_trace(self) -> str:
        from fntrace.tracing import ftrace_text

        return ftrace_text.render_trace(self, self.rb.live)

    def _read_pipe_now(self) -> str:
        from fntrace.tracing import ftrace_text

        return "".join(ftrace_text.render_events(self, self.rb.live.consume()))

    def pipe(self, timeout: float | None = None, poll: float = 0.05) -> Iterator[str]:
        """trace_pipe as a blocking iterator of lines (consumes what it yields).

        Waits for new events, polling every ``poll`` seconds (writers never
        signal readers: a writer must not pay for a reader); stops after
        ``timeout`` seconds without an event, or never when it is None.
        """
        import time

        from fntrace.tracing import ftrace_text

        idle = 0.0
        while True:
            events = self.rb.live.consume()
            if events:
                idle = 0.0
                yield from ftrace_text.render_events(self, events)
                continue
            if timeout is not None and idle >= timeout:
                return
            time.sleep(poll)
            idle += poll

    def _clear(self) -> None:
        self.rb.live.clear()
        if self.tracer is not None:
            self.tracer.reset()

    def _marker(self, text: str) -> None:
        if not self.options["markers"]:
            raise ValueError("trace_marker: writes are disabled (options/markers is 0)")
        text = text.rstrip("\n")
        rb = self.rb
        rb.write((rb.clock(), EVENT_OVERHEAD + len(text), MARKER.tag, text))

    def _note(self, text: str) -> None:
        """A line of fntrace's own in the trace (written whatever options/markers says)."""
        rb = self.rb
        rb.write((rb.clock(), EVENT_OVERHEAD + len(text), MARKER.tag, text))

    def _read_snapshot(self) -> str:
        from fntrace.tracing import ftrace_text

        snap = self.rb.snapshot
        if snap is None:
            return "# Snapshot is not allocated: echo 1 > snapshot to take one\n"
        return ftrace_text.render_trace(self, snap)

    def _write_snapshot(self, text: str) -> None:
        value = text.strip()
        if value == "0":
            self.rb.free_snapshot()
        elif value == "1":
            self.rb.take_snapshot()
        elif value.isdigit():
            self.rb.clear_snapshot()
        else:
            raise ValueError(f"snapshot: expected a number, got {text!r}")

    # -- profiler and stack tracer ------------------------------------------
    def _set_profile(self, on: bool) -> None:
        if on and not self.profile_on:
            from fntrace.tracing.tracers.profile import FunctionProfiler

            prof = FunctionProfiler(self)
            prof.start()
            self.profile, self.profile_on = prof, True
        elif not on and self.profile_on:
            self.profile.stop()
            self.profile_on = False

    def _read_profile(self) -> str:
        return self.profile.render() if self.profile is not None else ""

    def _reset_profile(self) -> None:
        if self.profile is not None:
            self.profile.reset()

    def _set_stack(self, on: bool) -> None:
        if on and not self.stack_on:
            if self.stack is None:
                from fntrace.tracing.tracers.stack import StackTracer

                self.stack = StackTracer(self)
            self.stack.start()
            self.stack_on = True
        elif not on and self.stack_on:
            self.stack.stop()
            self.stack_on = False

    def _reset_stack(self, value: int) -> None:
        if self.stack is not None:
            self.stack.reset(value)

    # -- life ---------------------------------------------------------------
    def close(self) -> None:
        """Stop everything this instance registered; its buffer stays readable."""
        with self.lock:
            if self.tracer is not None:
                self.tracer.stop()  # kept, so `trace` still renders in its format
            self._set_profile(False)
            self._set_stack(False)
            self.probes.close()
            if self.triggers is not None:
                from fntrace.tracing import triggers

                triggers.apply(self, [])
            for tree in SUBTREES.values():
                tree.close(self)
        _registry.pop(self.id, None)

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        tracer = self.tracer.name if self.tracer else "nop"
        return f"<Instance {self.name} tracer={tracer}>"


def _filter_text(filt: Filter) -> str:
    return "".join(f"{ln.text}\n" for ln in filt.lines)


def trace(tracer: str = "function", filter: str | Iterable[str] = (),
          notrace: str | Iterable[str] = (), name: str | None = None,
          **options: int) -> Instance:
    """An instance configured in one call; use as ``with fntrace.trace(...) as inst:``.

    ``options`` are option file names with ``-`` written ``_``
    (``funcgraph_retval=1``).
    """
    inst = Instance(name)
    try:
        for key, value in options.items():
            opt = key.replace("_", "-") if key.replace("_", "-") in OPTIONS else key
            inst.write(f"options/{opt}", str(int(value)))
        filters = [filter] if isinstance(filter, str) else list(filter)
        if filters:
            inst.write("set_ftrace_filter", "\n".join(filters))
        notraces = [notrace] if isinstance(notrace, str) else list(notrace)
        if notraces:
            inst.write("set_ftrace_notrace", "\n".join(notraces))
        inst.write("current_tracer", tracer)
    except BaseException:
        inst.close()
        raise
    return inst
