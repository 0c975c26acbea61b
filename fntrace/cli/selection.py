"""``--from/--to/--thread``: the slice of a recording every reader can be asked for.

What the readers make of a call crossing the window's edges is
fntrace/analysis/window.py's docstring; here, only the options and their words.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fntrace.analysis.window import Selection

__all__ = ["add_options", "duration", "selected"]

_UNITS = {"s": 10 ** 9, "ms": 10 ** 6, "us": 10 ** 3, "ns": 1}
_TIME = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(s|ms|us|ns)?")
#: A bound far past any recording (about 31 years): larger ones are typos.
_MAX_NS = 10 ** 18

def duration(text: str) -> int:
    """A time from the recording's start, ``1.5s``, ``200ms``, ``30us``, ``500ns`` or
    ``2`` (seconds), as ns."""
    m = _TIME.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (a number with s, ms, us or ns: 1.5s, 200ms)")
    ns = round(float(m.group(1)) * _UNITS[m.group(2) or "s"])
    if ns > _MAX_NS:
        raise argparse.ArgumentTypeError(f"{text!r} is more than 10^9 seconds")
    return ns


def add_options(p: Any, times: str = "what happened") -> None:
    """``--from``, ``--to`` and ``--thread`` on a reader's parser."""
    p.add_argument("--from", "--since", dest="start", type=duration, metavar="TIME",
                   help=f"{times} from TIME after the recording's start (1.5s, 200ms, 30us)")
    p.add_argument("--to", "--until", dest="end", type=duration, metavar="TIME",
                   help=f"{times} up to TIME after the recording's start")
    p.add_argument("--thread", action="append", metavar="TID|NAME",
                   help="only this thread: its tid or its name (repeatable)")


def selected(ns: argparse.Namespace, command: str) -> Selection:
    """The Selection of the parsed options; SystemExit (one line) when --to is
    before --from."""
    from fntrace.analysis.window import Selection

    if ns.start is not None and ns.end is not None and ns.end < ns.start:
        raise SystemExit(f"fntrace {command}: --to is before --from")
    return Selection(ns.start, ns.end, tuple(ns.thread or ()))
