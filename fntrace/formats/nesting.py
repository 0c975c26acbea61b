"""How deeply a JSON text nests, found before any parser recurses into it.

``json.loads`` recurses once per ``[`` or ``{``.  On CPython that ends in a
RecursionError, but where the machine stack is smaller than the recursion
limit allows (WebAssembly builds such as Pyodide) the process dies first.
So text that comes from outside (a trace file's header, a control request) is
measured here first, in one pass without recursion, and refused when it nests
deeper than its reader needs.
"""

from __future__ import annotations

__all__ = ["MAX_DEPTH", "too_deep"]

#: Deeper than any JSON fntrace writes (headers and requests nest 2-3 levels).
MAX_DEPTH = 32


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether brackets outside strings nest deeper than ``limit`` anywhere in ``text``."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False
