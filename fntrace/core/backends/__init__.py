"""How interpreter events reach the engine: one :class:`Backend` per process.

A backend turns the interpreter's call events into the engine's trampoline
calls (``Site.enter`` and ``exit_call``), and arms or disarms code objects as
sites come and go.  It knows the engine only through the :class:`Registry` it
is given, never by importing it: the engine sits above its backends.

Which backend, and why -- decided here only (:func:`choose`):

* ``sys.monitoring`` (Python 3.12+, ``monitoring.py``): events are armed per
  code object, so code no ops wants gets no event at all after its first call
  (it runs at untraced speed), and fntrace takes a tool id of its own beside
  coverage.py, profilers and debuggers.
* ``sys.setprofile`` (Python 3.11, ``profile.py``): the only hook 3.11 has
  for every call and return; every call of every thread reaches it, and
  untraced code is dismissed with one dict lookup.  What 3.11 cannot tell
  (the exception of an unwinding frame) is listed in docs/design.md.

:func:`status` says the choice in one line, for ``fntrace --version`` and
bug reports, as ``accel.status`` says whether the C hot path runs.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable

# typing is imported for the type checker only: at run time it (with re, contextlib,
# functools' extras) costs more than the whole core, and `import fntrace` should be cheap.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    from fntrace.core.engine import Site
    from fntrace.core.symbols import Function

__all__ = ["Backend", "Registry", "choose", "create", "status"]


if TYPE_CHECKING:
    # What the engine asks of a backend: a Protocol for the type checker only (the
    # backends do not subclass it), so typing is not imported at run time.

    class Backend(Protocol):
        """What the engine asks of a backend (all under the registry lock)."""

        def start(self) -> None:
            """Begin delivering events (the first ops was registered)."""

        def stop(self) -> None:
            """Deliver no event any more (the last ops went)."""

        def patch(self, fn: Function, site: Site, had_ret: bool) -> None:
            """Arm ``fn``'s code for the events ``site`` (its configuration, not
            necessarily ``fn.site`` yet) needs: exits when ``site.has_ret``;
            ``had_ret``: whether its configuration until now had exits."""

        def unpatch(self, code: types.CodeType, had_ret: bool) -> None:
            """``code`` is no site any more (``had_ret``: its configuration had
            exits): disarm it."""

        def rediscover(self, grow: bool) -> None:
            """Sites were recomputed; ``grow``: code already dismissed may be wanted now."""

        def sites_changed(self) -> None:
            """Sites were replaced or removed: drop anything cached from the old ones."""

        def code_gone(self, key: int, had_ret: bool) -> None:
            """The code whose id was ``key``, patched (``had_ret``: with exits), was
            freed (inside its deallocation: no lock, nothing that may run the
            program's code)."""


class Registry:
    """The engine's side, as a backend sees it (given to the backend's constructor).

    ``sites`` is the engine's live dict of patched Functions by id(code) (read,
    never written, by the backend), each with its configuration in ``site``;
    ``discover(code, frame)`` patches code seen for the first time and returns
    its Function, or returns None; ``exit_call`` delivers an exit;
    ``generation()`` changes with every rebuild of the sites, so that a
    decision taken outside the lock ("no site": DISABLE, a cache entry) is
    dropped if a rebuild came in between.  ``refused`` holds one dict, the
    modules none of whose code any ops can select (module name -> True), which
    a backend may refuse by name without calling ``discover``; the engine puts
    a new dict there before each rebuild.  ``allowed`` holds the modules some
    ops can select a function of, as (exact names, prefixes), or None when not
    known: code of any other module may be refused without ``discover``.
    """

    __slots__ = ("allowed", "discover", "exit_call", "generation", "refused", "sites")

    def __init__(self, sites: dict[int, Any], discover: Callable[..., Any],
                 exit_call: Callable[..., None], generation: Callable[[], int],
                 refused: list[dict[str, bool]] | None = None,
                 allowed: list[Any] | None = None) -> None:
        self.sites = sites
        self.discover = discover
        self.exit_call = exit_call
        self.generation = generation
        self.refused = refused if refused is not None else [{}]
        self.allowed = allowed if allowed is not None else [None]


def choose() -> tuple[str, str]:
    """(backend name, why it is the one) for this interpreter."""
    if sys.version_info >= (3, 12):
        return ("sys.monitoring", "per-code events: untraced code runs at full speed "
                                  "after its first call")
    return ("sys.setprofile", "Python 3.11 has no sys.monitoring: every call reaches "
                              "the profile hook")


def create(registry: Registry) -> Backend:
    """A new backend of the kind :func:`choose` names (not started)."""
    if choose()[0] == "sys.monitoring":
        from fntrace.core.backends.monitoring import MonitoringBackend

        return MonitoringBackend(registry)
    from fntrace.core.backends.profile import ProfileBackend

    return ProfileBackend(registry)


def status() -> str:
    """One line: the backend this interpreter uses, and why."""
    name, why = choose()
    return f"backend: {name} ({why})"
