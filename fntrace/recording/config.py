"""What a recording is asked to do: :class:`RecordConfig`, the one list of record's options.

``fntrace record`` and ``fntrace run`` (fntrace/cli/record.py, cli/run.py) parse
their command line into a RecordConfig; the recording side (record.py,
follow.py) reads nothing else, so it never sees argparse and can be driven
from Python as well.  The fields are declared here once: which of them go
into the trace file's header, and which a ``--follow`` child inherits through
the environment (:meth:`RecordConfig.to_json` / :meth:`RecordConfig.from_json`),
are listed here too (NOT_IN_HEADER, NOT_INHERITED).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NOT_INHERITED", "NOT_IN_HEADER", "RecordConfig"]

#: The fields not written into the header's "options" (every other is, in
#: declaration order): serving fntrace ctl, injecting failures, spans and the
#: program belong to this run, not to what the file's events mean.
NOT_IN_HEADER = frozenset({"compress", "live", "inject", "otel", "output", "module", "argv"})
#: The fields a followed child does not take from its parent: the parent's own
#: threads (a child's thread ids are others), following (the child's is set
#: anyway), and what belongs to the parent's process.
NOT_INHERITED = (NOT_IN_HEADER - {"compress"}) | {"thread", "follow"}


class RecordConfig:
    """Every option of record and run, typed, with the command line's defaults.

    Repeatable options are tuples (empty when not given).  ``tracer`` None is
    run's "choose from the other options" (function, or nop with ``live``
    alone).  ``module`` and ``argv`` are the program (``argv[0]`` its script
    unless ``module`` is given, as ``python -m``).

    Immutable, compared and shown by its fields, as a frozen dataclass would be,
    but a plain class: ``dataclasses`` imports ``inspect`` (with ast, dis and
    tokenize), which would be most of ``fntrace record``'s start-up before the
    program runs.  The fields and their defaults are :meth:`__init__`'s
    keyword-only parameters, in the order of the header's keys; the slots and
    the annotations repeat the names for the type checker, and the module
    checks on import that the slots say the same, in the same order.
    """

    #: The field names, in declaration order (filled below, from __init__).
    FIELDS: tuple[str, ...] = ()
    # In the fields' order, which the header keeps (not sorted).
    __slots__ = ("tracer", "filter", "notrace", "graph_function", "graph_notrace",  # noqa: RUF023
                 "max_depth", "thresh", "args", "retval", "buffer_size", "no_overwrite",
                 "trigger", "thread", "clock", "follow", "repr_call", "tasks", "compress",
                 "live", "inject", "otel", "output", "module", "argv")

    tracer: str | None
    filter: tuple[str, ...]
    notrace: tuple[str, ...]
    graph_function: tuple[str, ...]
    graph_notrace: tuple[str, ...]
    max_depth: int | None
    thresh: int | None
    args: bool
    retval: bool
    buffer_size: int | None
    no_overwrite: bool
    trigger: tuple[str, ...]
    thread: tuple[int, ...]
    clock: str
    follow: bool
    repr_call: bool
    tasks: bool
    compress: str | None
    live: bool
    inject: tuple[str, ...]
    otel: tuple[str, ...]
    output: str | None
    module: str | None
    argv: tuple[str, ...]

    def __init__(self, *, tracer: str | None = "function_graph", filter: tuple[str, ...] = (),
                 notrace: tuple[str, ...] = (), graph_function: tuple[str, ...] = (),
                 graph_notrace: tuple[str, ...] = (), max_depth: int | None = None,
                 thresh: int | None = None, args: bool = False, retval: bool = False,
                 buffer_size: int | None = None, no_overwrite: bool = False,
                 trigger: tuple[str, ...] = (), thread: tuple[int, ...] = (),
                 clock: str = "mono", follow: bool = False,
                 # Newer than the fields above: last, so the header's keys keep their order.
                 repr_call: bool = False,
                 tasks: bool = False,  # options/tasks: asyncio task notes (tracing/tasks.py)
                 # The event chunks' compression (tracefile.compressor: None is lz4
                 # where the C extension is on, else zlib); each chunk says its own,
                 # so not in the header, and a followed child compresses the same.
                 compress: str | None = None,
                 live: bool = False, inject: tuple[str, ...] = (),
                 otel: tuple[str, ...] = (),  # OpenTelemetry spans (docs/otel.md)
                 output: str | None = "fntrace.dat", module: str | None = None,
                 argv: tuple[str, ...] = ()) -> None:
        values = locals()
        for name in self.FIELDS:
            object.__setattr__(self, name, values[name])

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each field's default, in declaration order."""
        return dict(cls.__init__.__kwdefaults__ or {})

    def values(self) -> dict[str, Any]:
        """Each field's value, in declaration order."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def replace(self, **changes: Any) -> RecordConfig:
        """A copy with ``changes`` (field names; an unknown one is a TypeError)."""
        return RecordConfig(**{**self.values(), **changes})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"RecordConfig is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"RecordConfig is immutable: cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordConfig):
            return NotImplemented
        return self.values() == other.values()

    def __hash__(self) -> int:
        return hash(tuple(self.values().values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.values().items())
        return f"RecordConfig({fields})"

    def header_options(self) -> dict[str, Any]:
        """The options as the trace file's header records them (a repeatable option
        not given is null, as it always was)."""
        out: dict[str, Any] = {}
        for name, value in self.values().items():
            if name not in NOT_IN_HEADER:
                out[name] = (list(value) or None) if isinstance(value, tuple) else value
        return out

    def for_child(self, output: str) -> RecordConfig:
        """A followed child's configuration: the inherited options, following, into
        ``output`` (the child adds ``.<pid>``)."""
        kept = {name: value for name, value in self.values().items()
                if name not in NOT_INHERITED}
        return RecordConfig(**kept, follow=True, output=output)

    def to_json(self) -> str:
        import json  # only --follow passes a configuration on

        return json.dumps(self.values())

    @classmethod
    def from_json(cls, text: str) -> RecordConfig:
        """The configuration :meth:`to_json` wrote (unknown keys are an error)."""
        import json

        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a record configuration is a JSON object")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key not in cls.__slots__:
                raise ValueError(f"unknown record option {key!r}")
            values[key] = tuple(value) if isinstance(value, list) else value
        return cls(**values)


RecordConfig.FIELDS = tuple(RecordConfig.defaults())
if RecordConfig.FIELDS != RecordConfig.__slots__:
    raise AssertionError("RecordConfig's slots are not its fields in order")
