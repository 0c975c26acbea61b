"""Live patching: calls of a function continue in a replacement (the kernel's livepatch).

``patch(target, replacement)`` redirects every call of ``target``'s code to
``replacement`` (same arguments; the caller gets its result), for every
function object that runs that code: the module function, every reference to
it (``from m import f``), methods, class and static methods, existing
closures and nested functions.  The redirection is the core's IPMODIFY stub
(fntrace/core/ipmodify.py); this module adds the patch stack on top of it.

Per target code there is exactly one IPMODIFY ops (flags IPMODIFY |
PERMANENT, as the kernel's livepatch ops), whose callback picks the newest
enabled patch of that target's stack.  So patches stack: the newest wins,
removing or disabling it falls back to the one below, and removing the last
unregisters the ops, which puts the exact original code object back
(``f.__code__ is original``).  A target already modified by another IPMODIFY
user (an error injection) refuses the patch with BusyError, and nothing
changes.

``transition=True`` applies a patch per thread, as the kernel's consistency
model does per task: a thread switches to the new version only once no frame
of an older version (the original code or the replacement of a patch below)
is on its own stack.  Until then each of its calls keeps using the version
below (which may itself be in transition).  The check runs at call time on
the calling thread's stack; once a thread has switched it stays switched, so
the walk is paid only until then.  ``Patch.try_complete()`` checks every
thread (``sys._current_frames``), as the kernel's transition work does, and
tells whether every thread has switched.  Unpatching and disabling take effect
at once, with no reverse transition.

Limits (the core's): a closure created *after* the patch by a running
enclosing function runs the original code; async generator functions cannot
be patched.

Instance files (global, like /sys/kernel/livepatch): reading ``livepatch``
lists the patches, oldest first; ``livepatch/<name>/enabled`` (0/1) disables
or enables a patch without removing it; ``livepatch/<name>/transition`` reads
1 while some thread has not switched yet; ``livepatch/<name>/target`` names
the patched function.
"""

from __future__ import annotations

import os
import sys
import threading
import types
from collections.abc import Callable

from fntrace.core import engine, symbols
from fntrace.core.flags import Flags
from fntrace.core.ops import Ops
from fntrace.tracing.inject import function_of as _function_of
from fntrace.tracing.inject import target_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function
    from fntrace.tracing.files import FileTable
    from fntrace.tracing.instance import Instance

__all__ = ["Patch", "patch", "patches", "register_files", "unpatch"]

_lock = threading.RLock()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # another thread may have held it at fork time


os.register_at_fork(after_in_child=_after_fork_in_child)
_targets: dict[int, _Target] = {}  # id(original code) -> its patch stack
_by_name: dict[str, Patch] = {}


def _code_of(obj: Any) -> types.CodeType | None:
    """The code a replacement runs (for the transition's stack check), if it has one."""
    try:
        return _function_of(obj).__code__
    except TypeError:
        return None


def _original_code(func: types.FunctionType) -> types.CodeType:
    """``func``'s original code, also while a stub stands in for it."""
    fn = symbols.cache().get(id(func.__code__))
    code = func.__code__
    return fn.code if fn is not None and engine.is_marked_internal(code) else code


def _name_of(obj: Any) -> str:
    try:
        return target_name(obj)
    except TypeError:
        return repr(obj)


class Patch:
    """One applied patch: ``target``'s calls continue in ``replacement``."""

    def __init__(self, name: str, target: types.FunctionType, code: types.CodeType,
                 replacement: Callable[..., Any], transition: bool) -> None:
        self.name = name
        self.target = target
        self.target_name = target_name(target)
        self.code = code
        self.replacement = replacement
        self.transition = transition
        self.enabled = True
        self.applied = True
        self._switched: set[int] = set()  # thread idents that run this version

    @property
    def replacement_code(self) -> types.CodeType | None:
        return _code_of(self.replacement)

    def set_enabled(self, enabled: bool) -> None:
        with _lock:
            if not self.applied:
                raise ValueError(f"patch {self.name} is not applied")
            if enabled and not self.enabled:
                self._switched = set()  # enabling again is a new transition
            self.enabled = enabled
            _targets[id(self.code)].refresh()

    def try_complete(self) -> bool:
        """Switch every thread with no older version on its stack; True once all have."""
        if not (self.transition and self.enabled and self.applied):
            return True
        with _lock:
            below = _targets[id(self.code)].below(self)
        for tid, frame in sys._current_frames().items():
            if tid not in self._switched and not _on_stack(frame, below):
                self._switched.add(tid)
        alive = {t.ident for t in threading.enumerate()}
        return alive <= self._switched

    def remove(self) -> None:
        unpatch(self)

    def __repr__(self) -> str:
        state = ("enabled" if self.enabled else "disabled") if self.applied else "removed"
        return f"<Patch {self.name} {self.target_name} -> {_name_of(self.replacement)} {state}>"


def _on_stack(frame: types.FrameType | None, codes: frozenset[int]) -> bool:
    while frame is not None:
        if id(frame.f_code) in codes:
            return True
        frame = frame.f_back
    return False


class _Target:
    """The patch stack of one original code object, served by one IPMODIFY ops."""

    def __init__(self, code: types.CodeType, name: str) -> None:
        self.code = code
        self.stack: list[Patch] = []
        self.active: tuple[Patch, ...] = ()  # enabled patches, oldest first
        self.ops = Ops(self._entry, flags=Flags.IPMODIFY | Flags.PERMANENT, filter=name)

    def refresh(self) -> None:
        self.active = tuple(p for p in self.stack if p.enabled)

    def below(self, patch: Patch) -> frozenset[int]:
        """Ids of the codes of every version older than ``patch`` (the original included)."""
        codes = {id(self.code)}
        for p in self.stack:
            if p is patch:
                break
            code = p.replacement_code
            if code is not None:
                codes.add(id(code))
        return frozenset(codes)

    def choose(self, frame: types.FrameType | None) -> Patch | None:
        """The version the calling thread runs: the newest its transitions allow.

        ``frame`` is the stub's frame; it and its callers are the thread's stack.
        """
        active = self.active
        tid = threading.get_ident()
        for i in range(len(active) - 1, -1, -1):
            p = active[i]
            if not p.transition or tid in p._switched:
                return p
            if not _on_stack(frame, self.below(p)):
                p._switched.add(tid)
                return p
        return None

    def _entry(self, ip: Function, parent: Function | None, ops: Ops,
               fregs: FtraceRegs) -> None:
        if ip.code is not self.code:  # another function of the same name
            return
        chosen = self.choose(fregs.frame)
        if chosen is not None:
            fregs.set_instruction_pointer(chosen.replacement)


def patch(target: Any, replacement: Callable[..., Any], *, transition: bool = False,
          name: str | None = None) -> Patch:
    """Redirect calls of ``target`` to ``replacement``; the newest patch of a target wins.

    ``name`` names the patch in the ``livepatch/`` files (default: the
    replacement's ``module:qualname``, made unique).  BusyError if another
    IPMODIFY user holds the target; nothing changes then.
    """
    func = _function_of(target)
    if not callable(replacement):
        raise TypeError(f"replacement {replacement!r} is not callable")
    code = _original_code(func)
    with _lock:
        if name is None:
            base = _name_of(replacement)
            name, n = base, 1
            while name in _by_name:
                n += 1
                name = f"{base}#{n}"
        elif not name or "/" in name or name in _by_name:
            raise ValueError(f"patch name {name!r} is empty, has a '/' or is taken")
        new = Patch(name, func, code, replacement, transition)
        tgt = _targets.get(id(code))
        if tgt is None:
            tgt = _Target(code, new.target_name)
            engine.register(tgt.ops)  # BusyError: nothing registered
            _targets[id(code)] = tgt
        tgt.stack.append(new)
        tgt.refresh()
        _by_name[name] = new
    return new


def unpatch(p: Patch) -> None:
    """Remove a patch; the one below takes over, or the original code when it was the last."""
    with _lock:
        tgt = _targets.get(id(p.code))
        if not p.applied or tgt is None or p not in tgt.stack:
            raise ValueError(f"{p!r} is not applied")
        tgt.stack.remove(p)
        p.applied = False
        del _by_name[p.name]
        tgt.refresh()
        if not tgt.stack:
            del _targets[id(p.code)]
            engine.unregister(tgt.ops)


def patches() -> list[Patch]:
    """Every applied patch, oldest first."""
    with _lock:
        return list(_by_name.values())


# -- the instance files ---------------------------------------------------------------


class LivepatchFiles:
    """``livepatch``: the list; ``livepatch/<name>/enabled``, ``transition``, ``target``."""

    def names(self, inst: Instance) -> list[str]:
        return [f"{p.name}/{leaf}" for p in patches()
                for leaf in ("enabled", "transition", "target")]

    def read(self, inst: Instance, path: str) -> str | None:
        if path == "":
            return "".join(
                f"{p.name}: {p.target_name} -> {_name_of(p.replacement)} "
                f"enabled={int(p.enabled)}{' transition' if p.transition else ''}\n"
                for p in patches())
        name, _, leaf = path.rpartition("/")
        p = _by_name.get(name)
        if p is None:
            return None
        if leaf == "enabled":
            return f"{int(p.enabled)}\n"
        if leaf == "transition":
            return f"{int(not p.try_complete())}\n"
        if leaf == "target":
            return f"{p.target_name}\n"
        return None

    def write(self, inst: Instance, path: str, text: str, append: bool) -> bool:
        name, _, leaf = path.rpartition("/")
        p = _by_name.get(name)
        if p is None or leaf not in ("enabled", "transition", "target"):
            raise FileNotFoundError(f"{inst.name}: no such file: livepatch/{path}")
        if leaf != "enabled":
            raise PermissionError(f"{inst.name}: livepatch/{path} is read-only")
        value = text.strip()
        if value not in ("0", "1"):
            raise ValueError(f"livepatch/{path}: expected 0 or 1, got {text!r}")
        p.set_enabled(value == "1")
        return True


def register_files(table: FileTable) -> None:
    """Patches belong to the process, not to an instance: closing one undoes nothing."""
    table.directory("livepatch", LivepatchFiles())
