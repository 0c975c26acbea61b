"""What the registry (engine.py) and IPMODIFY (ipmodify.py) both read.

IPMODIFY redirects calls through stubs that run beside the registry's sites:
its stubs must honour the same global switch, take the same lock while they
patch function objects, and be known as fntrace's own code so that no ops
ever gets a site for them.  That shared state lives here, below both modules,
so that neither imports the other for it (the engine imports ipmodify only
once an IPMODIFY ops registers; ipmodify never imports the engine).
"""

from __future__ import annotations

import types

from fntrace.core.forklock import ForkSafeLock

__all__ = [
    "BusyError",
    "enabled",
    "internal_codes",
    "is_marked_internal",
    "lock",
    "mark_internal",
    "unmark_internal",
]


class BusyError(RuntimeError):
    """The kernel's EBUSY: the request conflicts with what is registered."""


#: The registry lock: every change of ops, sites, filters and IPMODIFY holdings
#: is made under it (reentrant: a callback may register).  forklock.py: a forked
#: child's first use renews it.
lock = ForkSafeLock(reentrant=True)

#: The global switch (the kernel's ``ftrace_enabled`` sysctl): False leaves only
#: PERMANENT ops active.  Written by engine.set_ftrace_enabled under ``lock``,
#: read without it (one module attribute read on the stubs' path).
enabled = True

#: id(code) -> code, for code fntrace generates (stubs and their helpers): never a
#: site.  The value keeps the code alive, so its id is not reused while it is a key.
internal_codes: dict[int, types.CodeType] = {}


def mark_internal(code: types.CodeType) -> None:
    """Code fntrace generates (stubs) is never a site."""
    internal_codes[id(code)] = code


def unmark_internal(code: types.CodeType) -> None:
    """Undo :func:`mark_internal` once that code is no longer in use."""
    if internal_codes.get(id(code)) is code:
        del internal_codes[id(code)]


def is_marked_internal(code: types.CodeType) -> bool:
    return id(code) in internal_codes
