"""Span attributes a user selects: ``KEY=EXPR[:TYPE]`` in the probes' fetcharg grammar.

A span gets the semantic conventions' code attributes by itself; what else it
carries is chosen by the user with the same expressions a ``dynamic_events``
probe fetches (``user=user.id``, ``n=len(items)``, ``$retval``, ``$arg1:str``),
so nothing written in a spec is ever executed, only looked up, and the values
are rendered with the same bounded, safe repr.  The KEY may be dotted
(``app.user.id=user.id``), as OpenTelemetry attribute names usually are;
without ``KEY=`` the fetcharg's own name is used (``$retval`` -> ``retval``).

Values keep their OpenTelemetry type where one fits exactly (bool, a 64-bit
int, float); a str is cut to the repr limit; anything else is its bounded repr.
A fetch that fails becomes ``<error: TypeName>``, as in a probe's event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fntrace.core.flags import Event
from fntrace.tracing.probes.fetch import Failed, fetch_all
from fntrace.tracing.probes.parser import FetchArg, ProbeSpec, SpecError, parse_spec

if TYPE_CHECKING:
    from fntrace.core.regs import FtraceRegs
    from fntrace.tracing.reprs import SafeRepr

__all__ = ["AttrSpec", "otel_value", "parse_attributes", "values"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_INT64 = (-(1 << 63), (1 << 63) - 1)
#: Attributes one instrumentation may select (a span has a bounded attribute count).
MAX_ATTRIBUTES = 32


@dataclass(frozen=True)
class AttrSpec:
    """One selected attribute: its key and the parsed fetcharg."""

    key: str
    arg: FetchArg

    def text(self) -> str:
        kind = f":{self.arg.type}" if self.arg.type else ""
        if self.arg.base == "args":
            return f"$arg*{kind}"
        return f"{self.key}={self.arg.expr}{kind}"


def _split(item: str) -> tuple[str | None, str]:
    """(KEY or None, the rest) of ``KEY=EXPR`` (a dotted KEY is ours, not the grammar's)."""
    m = _KEY.match(item)
    if m is not None and item[m.end():m.end() + 1] == "=":
        return m.group(), item[m.end() + 1:]
    return None, item


def parse_attributes(items: str | list[str] | tuple[str, ...] | None) -> tuple[AttrSpec, ...]:
    """Parse attribute specs (a string is split on whitespace); ValueError if malformed."""
    if items is None:
        return ()
    words = items.split() if isinstance(items, str) else [w for i in items for w in i.split()]
    if len(words) > MAX_ATTRIBUTES:
        raise ValueError(f"otel attributes: {len(words)} given, at most {MAX_ATTRIBUTES}")
    out: list[AttrSpec] = []
    seen: set[str] = set()
    for n, word in enumerate(words):
        key, expr = _split(word)
        # Parsed as the fetcharg of a %return probe (so $retval is allowed), under a
        # placeholder name: the grammar's names are identifiers, our keys may be dotted.
        line = f"f:otel/attr x:x%return a{n}={expr}" if key else f"f:otel/attr x:x%return {expr}"
        try:
            spec = parse_spec(line)
        except SpecError as exc:
            raise ValueError(f"otel attribute {word!r}: {exc.reason}") from None
        assert isinstance(spec, ProbeSpec)
        arg = spec.args[0]
        name = key or ("args" if arg.base == "args" else arg.name)
        if name in seen:
            raise ValueError(f"otel attribute {word!r}: key {name!r} is used twice")
        seen.add(name)
        out.append(AttrSpec(name, arg))
    return tuple(out)


def otel_value(arg: FetchArg, shown: Any, text: str, max_len: int) -> Any:
    """The attribute value of one fetched field (see the module docstring)."""
    if isinstance(shown, Failed) or arg.type in ("repr", "x"):
        return text
    if arg.type == "str":
        s = str(shown)
        return s if len(s) <= max_len else s[:max(max_len - 3, 1)] + "..."
    cls = type(shown)
    if cls is bool or cls is float:
        return shown
    if cls is int:
        return shown if _INT64[0] <= shown <= _INT64[1] else text
    if cls is str:
        return shown if len(shown) <= max_len else shown[:max(max_len - 3, 1)] + "..."
    return text


def _applies(arg: FetchArg, argnames: tuple[str, ...], event: str) -> bool:
    if arg.base == "param":
        return arg.param in argnames
    if arg.base == "arg":
        return arg.index < len(argnames)
    if arg.base == "retval":
        return event != Event.UNWIND
    return True


def values(specs: tuple[AttrSpec, ...], fregs: FtraceRegs, safe_repr: SafeRepr,
           prefix: str = "") -> dict[str, Any]:
    """The attributes of ``specs`` read from the call ``fregs`` describes now.

    An attribute naming a parameter this function lacks, or ``$retval`` of a call
    left by an exception, is left out: one filter often selects functions of
    different signatures.
    """
    out: dict[str, Any] = {}
    names = fregs.function.argnames
    specs = tuple(s for s in specs if _applies(s.arg, names, fregs.event))
    fetched = fetch_all(tuple(s.arg for s in specs), fregs, safe_repr)
    for spec, fields in zip(specs, fetched, strict=True):
        for name, shown, text in fields:
            key = f"{prefix}{name}" if spec.arg.base == "args" else spec.key
            out[key] = otel_value(spec.arg, shown, text, safe_repr.max_len)
    return out
