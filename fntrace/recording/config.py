"""What a recording is asked to do: :class:`RecordConfig`, the one list of record's options.

``fntrace record`` and ``fntrace run`` (fntrace/cli/record.py, cli/run.py) parse
their command line into a RecordConfig; the recording side (record.py,
follow.py) reads nothing else, so it never sees argparse and can be driven
from Python as well.  The fields are declared here once: which of them go
into the trace file's header, and which a ``--follow`` child inherits through
the environment (:meth:`RecordConfig.to_json` / :meth:`RecordConfig.from_json`),
are marked on the fields themselves.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RecordConfig"]

#: Field metadata: written into the header's "options" (in declaration order).
HEADER = "header"
#: Field metadata: a followed child records with the parent's value.
INHERITED = "inherited"


def _opt(default: Any, header: bool = True, inherited: bool = True) -> Any:
    return field(default=default, metadata={HEADER: header, INHERITED: inherited})


@dataclass(frozen=True)
class RecordConfig:
    """Every option of record and run, typed, with the command line's defaults.

    Repeatable options are tuples (empty when not given).  ``tracer`` None is
    run's "choose from the other options" (function, or nop with ``live``
    alone).  ``module`` and ``argv`` are the program (``argv[0]`` its script
    unless ``module`` is given, as ``python -m``).
    """

    tracer: str | None = _opt("function_graph")
    filter: tuple[str, ...] = _opt(())
    notrace: tuple[str, ...] = _opt(())
    graph_function: tuple[str, ...] = _opt(())
    graph_notrace: tuple[str, ...] = _opt(())
    max_depth: int | None = _opt(None)
    thresh: int | None = _opt(None)
    args: bool = _opt(False)
    retval: bool = _opt(False)
    buffer_size: int | None = _opt(None)
    no_overwrite: bool = _opt(False)
    trigger: tuple[str, ...] = _opt(())
    # The parent's own threads: a child's thread ids are others.
    thread: tuple[int, ...] = _opt((), inherited=False)
    clock: str = _opt("mono")
    follow: bool = _opt(False, inherited=False)
    # Newer than the fields above: last, so the header's keys keep their order.
    repr_call: bool = _opt(False)
    tasks: bool = _opt(False)  # options/tasks: asyncio task notes (tracing/tasks.py)
    # The event chunks' compression (tracefile.compressor: None is lz4 where the C
    # extension is on, else zlib); each chunk says its own, so not in the header.
    compress: str | None = _opt(None, header=False)
    # Serving fntrace ctl and injecting failures belong to the parent's process.
    live: bool = _opt(False, header=False, inherited=False)
    inject: tuple[str, ...] = _opt((), header=False, inherited=False)
    # OpenTelemetry spans (docs/otel.md): the parent's process only, as --inject.
    otel: tuple[str, ...] = _opt((), header=False, inherited=False)
    output: str | None = _opt("fntrace.dat", header=False, inherited=False)
    module: str | None = _opt(None, header=False, inherited=False)
    argv: tuple[str, ...] = _opt((), header=False, inherited=False)

    def header_options(self) -> dict[str, Any]:
        """The options as the trace file's header records them (a repeatable option
        not given is null, as it always was)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.metadata[HEADER]:
                value = getattr(self, f.name)
                out[f.name] = (list(value) or None) if isinstance(value, tuple) else value
        return out

    def for_child(self, output: str) -> RecordConfig:
        """A followed child's configuration: the inherited options, following, into
        ``output`` (the child adds ``.<pid>``)."""
        kept = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata[INHERITED]}
        return RecordConfig(**kept, follow=True, output=output)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RecordConfig:
        """The configuration :meth:`to_json` wrote (unknown keys are an error)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a record configuration is a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"unknown record option {key!r}")
            values[key] = tuple(value) if isinstance(value, list) else value
        return cls(**values)
