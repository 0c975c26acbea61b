"""Patterns that matched no function, and what the user probably meant.

The kernel answers EINVAL to a ``set_ftrace_filter`` pattern that matches no
function.  In Python a module may load after its pattern is written, so a
pattern cannot be refused then; instead, at a point where it is worth asking
(the end of ``fntrace record``/``run``, ``fntrace funcs``, ``fntrace ctl
--check``, :func:`check`), each positive pattern is tried against the
functions loaded *now*, and each that matches none is reported with advice
computed from the modules actually loaded:

* a glob with a dot and no colon is a *qualname* glob: ``black.*`` names
  methods of a class ``black``, not the package.  If it names a loaded module,
  or ``PKG.*`` a loaded package, say so and suggest ``'PKG:*'`` or
  ``'*:mod:PKG.*'``; ``json.loads`` becomes ``'json:loads'``;
* a module glob that names the program run with ``-m`` (which runs as
  ``__main__``) says so;
* modules compiled to machine code (mypyc, Cython, C: a ``.so``/``.pyd`` file)
  have no Python code objects, so nothing in them can be traced: say so;
* otherwise the closest loaded module or function names (difflib).
"""

from __future__ import annotations

import difflib
import importlib.machinery
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from fntrace.core.filter import Filter, FilterLine, parse, parse_line

__all__ = ["Loaded", "advice", "check", "loaded", "patched", "report", "report_unmatched",
           "unmatched"]

_COMPILED = tuple(importlib.machinery.EXTENSION_SUFFIXES)
#: At most this many names in a "did you mean" list.
SUGGESTIONS = 3


@dataclass
class Loaded:
    """What the patterns are tried against: function names and module files."""

    #: ``module -> qualnames`` of the Python functions found.
    functions: dict[str, set[str]]
    #: ``module name -> file`` (None when it has none: builtin, namespace package).
    modules: dict[str, str | None]
    #: The name the program run as ``__main__`` would have as a module (``python -m
    #: NAME``, or a script's file name without ``.py``), and how it was run.
    main_name: str | None = None
    main_how: str = ""
    #: Every function's own name (the qualname's last part).
    short_names: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.short_names = {q.rsplit(".", 1)[-1] for qs in self.functions.values() for q in qs}

    def compiled(self, module: str) -> bool:
        """A module of machine code: no Python code objects to trace."""
        path = self.modules.get(module)
        return bool(path) and str(path).endswith(_COMPILED)


def loaded(names: Iterable[str] = (), only: Callable[[str], bool] | None = None) -> Loaded:
    """A snapshot of this process: every traceable function (plus ``names``,
    ``module:qualname`` strings known otherwise, e.g. patched sites) and module.

    ``only``: the functions of the modules it accepts, not every function (the
    modules are all listed either way).  No Function is left cached by the walk:
    advice is asked once, and the cache is the tracer's, for code it sees run.
    """
    from fntrace.core.symbols import iter_loaded_code

    functions: dict[str, set[str]] = {}
    for fn in iter_loaded_code(keep=False, modules=only):
        functions.setdefault(fn.module, set()).add(fn.qualname)
    for name in names:
        module, _, qualname = name.partition(":")
        if only is None or only(module):
            functions.setdefault(module, set()).add(qualname)
    return _with_modules(functions)


def _with_modules(functions: dict[str, set[str]]) -> Loaded:
    """A Loaded of ``functions`` and every module in sys.modules."""
    modules: dict[str, str | None] = {}
    for mod_name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        modules[mod_name] = path if isinstance(path, str) else None
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    main_name = getattr(spec, "name", None)
    path = getattr(main, "__file__", None)
    how = f"-m {main_name}"
    if not isinstance(main_name, str) and isinstance(path, str) and path.endswith(".py"):
        # A script runs as __main__ too; users often name it by its file's stem.
        main_name, how = os.path.basename(path)[:-3], os.path.basename(path)
    if not isinstance(main_name, str) or main_name == "__main__":
        return Loaded(functions, modules)
    return Loaded(functions, modules, main_name, how)


def patched() -> Loaded:
    """Only the functions patched now (enabled_functions): cheap, so a caller can skip
    the walk over every object in :func:`loaded` when every pattern matches one."""
    from fntrace.core.engine import iter_sites

    functions: dict[str, set[str]] = {}
    for fn, _, _, _ in iter_sites():
        functions.setdefault(fn.module, set()).add(fn.qualname)
    return Loaded(functions, {})


def report_unmatched(groups: Sequence[tuple[str, Sequence[FilterLine]]]) -> list[str]:
    """:func:`report` for several pattern files, ``(what, lines)`` each, computed
    from the patched functions first and from everything loaded only if needed."""
    if not any(lines for _, lines in groups):
        return []
    quick = patched()
    pending = [(what, unmatched(lines, quick)) for what, lines in groups]
    if not any(lines for _, lines in pending):
        return []
    found = loaded(only=_absent_modules_only([ln for _, lines in pending for ln in lines]))
    return [msg for what, lines in pending for msg in report(lines, found, what)]


def _absent_modules_only(lines: Sequence[FilterLine]) -> Callable[[str], bool] | None:
    """When every line names modules (``F:mod:M``, ``M:F``) of which none is loaded
    (the commonest mistake, and the pytest plugin's filter before its package is
    imported), the walk over every loaded function can keep to the functions of
    those modules: nothing else can match the lines, and their advice (no such
    module, the names close to it) reads the module list only.  Otherwise None
    (the whole walk: the advice may look at any function).  Walking everything
    costs ~70 ms in a large process (a pytest run), at the end of every run."""
    if not lines:
        return None
    modules = _with_modules({})
    for line in lines:
        glob = _module_glob(line)
        if glob is None or _modules_named(glob, modules):
            return None
    return lambda module: not all(line.never_in(module) for line in lines)


def _module_glob(line: FilterLine) -> str | None:
    """The module glob of a line limited to modules, as :func:`advice` reads it."""
    if line.command == "mod":
        return line.params[0]
    if ":" in line.glob:
        return line.glob.split(":")[0]
    return None


def _matches_any(line: FilterLine, found: Loaded) -> bool:
    return any(line.matches(module, q) for module, qs in found.functions.items() for q in qs)


def unmatched(lines: Sequence[FilterLine], found: Loaded) -> list[FilterLine]:
    """The positive pattern lines (not ``!glob``, not triggers) that match no function."""
    return [line for line in lines
            if not line.negate and line.command in (None, "mod")
            and not _matches_any(line, found)]


def _modules_named(glob: str, found: Loaded) -> list[str]:
    """Loaded modules a module glob names (with the ``PKG.*`` rule of the grammar)."""
    probe = parse_line(f"*:mod:{glob}")
    return sorted(m for m in found.modules if probe.matches(m, "f"))


def _quote(items: Iterable[str]) -> str:
    words = [f"'{item}'" for item in items]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _compiled_note(modules: Sequence[str], found: Loaded) -> str:
    """A sentence (with a leading space) when the modules a pattern points at are
    machine code, or nothing."""
    compiled = [m for m in modules if found.compiled(m)]
    if not compiled:
        return ""
    if len(compiled) == len(modules) == 1:
        return (f" Module {compiled[0]} is compiled (mypyc, Cython or C: "
                f"{found.modules[compiled[0]]}): it has no Python functions to trace.")
    more = ", ..." if len(compiled) > SUGGESTIONS else ""
    return (f" {len(compiled)} of the {len(modules)} loaded modules it names are compiled "
            f"(mypyc, Cython or C: {', '.join(compiled[:SUGGESTIONS])}{more}) and have no "
            "Python functions to trace.")


def _main_note(glob: str, found: Loaded) -> str:
    """A sentence (with a leading space) when ``glob`` names the module run as the
    program (``-m NAME`` runs as ``__main__``), or nothing."""
    main = found.main_name
    if main and main not in found.modules and parse_line(f"*:mod:{glob}").matches(main, "f"):
        return (f" {main} runs as the program ({found.main_how or main}): its functions are "
                "'__main__:*'.")
    return ""


def _close(word: str, names: Iterable[str]) -> list[str]:
    return difflib.get_close_matches(word, sorted(set(names)), n=SUGGESTIONS, cutoff=0.6)


def _package_advice(package: str, modules: list[str], found: Loaded) -> str:
    own = [f"{package}:*"] if package in found.modules else []
    return (f"did you mean {_quote([*own, f'*:mod:{package}.*'])}?"
            f"{_compiled_note(modules, found)}{_main_note(package, found)}")


def _module_side(module_glob: str, func_glob: str, line: FilterLine, found: Loaded) -> str:
    """Advice for a pattern limited to modules (``F:mod:M`` or ``M:F``)."""
    modules = _modules_named(module_glob, found)
    if not modules:
        note = _main_note(module_glob, found)
        if note:
            return f"no module '{module_glob}' is loaded.{note}"
        bare = module_glob[:-2] if module_glob.endswith(".*") else module_glob
        close = _close(bare, found.modules)
        hint = f": did you mean module {_quote(close)}?" if close else " (imported yet?)"
        return f"no loaded module matches '{module_glob}'{hint}"
    defined = _defined_elsewhere(modules, func_glob, found)
    if defined:
        # A package re-exports what its submodules define; a function's module is
        # the one that defines it.
        return (f"no function of module {', '.join(modules[:SUGGESTIONS])} matches "
                f"'{func_glob}', but {_quote(defined)} does (a function belongs to the "
                "module that defines it, not to one that re-exports it)")
    with_code = [m for m in modules if found.functions.get(m)]
    note = _compiled_note(modules, found)
    if not with_code:
        return (note or " The modules it names define no Python functions.").lstrip()
    qualnames = {q for m in with_code for q in found.functions[m]}
    close = _close(func_glob, qualnames | {q.rsplit(".", 1)[-1] for q in qualnames})
    if line.command == "mod":
        names = [f"{q}:mod:{line.params[0]}" for q in close]
    elif len(with_code) == 1:
        names = [f"{with_code[0]}:{q}" for q in close]
    else:
        names = [f"{module_glob}:{q}" for q in close]
    more = ", ..." if len(with_code) > SUGGESTIONS else ""
    hint = f": did you mean {_quote(names)}?" if names else "."
    return (f"no function of module {', '.join(with_code[:SUGGESTIONS])}{more} matches "
            f"'{func_glob}'{hint}{note}")


def _defined_elsewhere(modules: Sequence[str], func_glob: str, found: Loaded) -> list[str]:
    """``module:qualname`` of functions matching ``func_glob`` in other modules, those
    under the named packages first (the place a re-exported name is defined)."""
    if func_glob in ("*", "?*"):
        return []
    probe = parse_line(func_glob)
    hits = sorted(f"{m}:{q}" for m, qs in found.functions.items() if m not in modules
                  for q in qs if probe.matches(m, q))
    inside = [h for h in hits if any(h.startswith(f"{m}.") for m in modules)]
    return inside[:SUGGESTIONS] if inside else hits[:SUGGESTIONS]


def advice(line: FilterLine, found: Loaded) -> str:
    """One sentence: why ``line`` probably matched nothing, and what to write instead."""
    glob = line.glob
    if line.command == "mod":
        return _module_side(line.params[0], glob, line, found)
    if ":" in glob:
        module_glob, func_glob = glob.split(":")
        return _module_side(module_glob, func_glob, line, found)
    # A bare glob is a qualname glob; the user may have meant a module.
    if glob.endswith(".*") and _modules_named(glob, found):
        return (f"'{glob}' matches qualnames (Class.method), not modules: "
                f"{_package_advice(glob[:-2], _modules_named(glob, found), found)}")
    if glob in found.modules or ("." in glob and _modules_named(glob, found)):
        return (f"'{glob}' names a module, not a function: "
                f"{_package_advice(glob, _modules_named(glob + '.*', found), found)}")
    bare = glob[:-2] if glob.endswith(".*") else glob
    if _main_note(bare, found):
        return f"'{glob}' matches qualnames (Class.method), not modules.{_main_note(bare, found)}"
    if "." in glob:
        parts = glob.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module, rest = ".".join(parts[:cut]), ".".join(parts[cut:])
            note = _main_note(module, found)
            if note:
                return (f"'{glob}' matches qualnames, not module.function: did you mean "
                        f"'__main__:{rest}'?{note}")
            modules = _modules_named(module, found)
            if modules:
                return (f"'{glob}' matches qualnames, not module.function: did you mean "
                        f"'{module}:{rest}'?{_compiled_note(modules, found)}")
    close = _close(glob, found.short_names)
    if close:
        return f"did you mean {_quote(close)}?"
    return "no loaded function has a name like it (is its module imported yet?)"


def report(lines: Sequence[FilterLine], found: Loaded, what: str) -> list[str]:
    """``what: 'PATTERN' matched no function: ADVICE`` for each unmatched pattern line."""
    return [f"{what} '{line.text}' matched no function: {advice(line, found)}"
            for line in unmatched(lines, found)]


def check(patterns: Filter | Iterable[FilterLine] | str | Iterable[str] | object,
          ) -> list[str]:
    """The patterns of ``patterns`` that match no function loaded now, with advice.

    Takes an :class:`~fntrace.Ops` (its filter and notrace), a :class:`Filter`,
    or pattern text; returns one message per pattern that matches nothing
    (an empty list when every pattern matches something).  Modules imported
    later are not known yet: call it once the program has imported what it
    traces.
    """
    groups: list[tuple[str, Sequence[FilterLine]]] = []
    flt = getattr(patterns, "filter", None)
    notrace = getattr(patterns, "notrace", None)
    if isinstance(flt, Filter) or isinstance(notrace, Filter):
        if isinstance(flt, Filter):
            groups.append(("filter", flt.lines))
        if isinstance(notrace, Filter):
            groups.append(("notrace", notrace.lines))
    elif isinstance(patterns, Filter):
        groups.append(("filter", patterns.lines))
    else:
        items = [patterns] if isinstance(patterns, str) else list(patterns)  # type: ignore[call-overload]
        lines: list[FilterLine] = []
        for item in items:
            lines += [item] if isinstance(item, FilterLine) else parse(str(item))
        groups.append(("filter", lines))
    return report_unmatched(groups)
