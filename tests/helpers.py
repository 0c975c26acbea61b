"""Helpers shared by the test files (imported as ``helpers``; tests/ is on sys.path)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import fntrace
from fntrace import Ops


@contextlib.contextmanager
def registered(*ops: Ops) -> Iterator[None]:
    """Register ``ops`` in order; unregister, in reverse, whatever got registered."""
    done: list[Ops] = []
    try:
        for op in ops:
            fntrace.register(op)
            done.append(op)
        yield
    finally:
        for op in reversed(done):
            if op.registered:
                fntrace.unregister(op)
