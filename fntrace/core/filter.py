"""The ``set_ftrace_filter`` grammar: parsing pattern lines and matching functions.

The kernel's ``set_ftrace_filter`` / ``set_ftrace_notrace`` files take one
pattern per line.  fntrace keeps that grammar, adapted to Python names of the
form ``module:qualname``::

    glob                      plain glob, e.g. ``raw_decode``, ``json*``, ``*.<locals>.*``
    module-glob:qual-glob     full-name glob, e.g. ``json.decoder:JSONDecoder.*``
    !glob                     negation: take matching functions back out
    glob:mod:module-glob      only functions whose module matches ``module-glob``
                              (``PKG.*`` there, and on the module side of a
                              ``module-glob:qual-glob``, also names PKG itself:
                              ``*:mod:json.*`` is the json package, ``json:loads``
                              included)
    glob:traceon[:N]          trigger commands (also traceoff, snapshot,
    glob:stacktrace[:N]       stacktrace, dump, enable_event:sys:ev[:N],
    glob:dump                 disable_event:sys:ev[:N]); these belong to a
                              trace instance, not to a :class:`Filter`

The ``:`` both separates module from qualname and introduces a command, so a
line is read the way the kernel reads it: a known command word in the second
field wins, then one in the third field (after a ``module:qualname`` glob).  A
function literally called ``traceon`` can still be named, e.g. ``m:traceo[n]``.

Everything is parsed and compiled once, when the pattern is written, because
matching runs once per new code object per ops and must stay cheap.  Parsing
a batch is all-or-nothing so that a typo never leaves a half-applied filter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import methodcaller

# typing is imported for the type checker only (see fntrace/core/engine.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, NoReturn

__all__ = [
    "COUNT_COMMANDS",
    "EVENT_COMMANDS",
    "KNOWN_COMMANDS",
    "TRIGGER_COMMANDS",
    "Filter",
    "FilterLine",
    "ModuleBound",
    "join_bounds",
    "parse",
    "parse_line",
]

#: Commands that take an optional positive count (``glob:traceoff:3``).
COUNT_COMMANDS: frozenset[str] = frozenset({"traceon", "traceoff", "snapshot", "stacktrace"})
#: Commands that take ``system:event[:count]``.
EVENT_COMMANDS: frozenset[str] = frozenset({"enable_event", "disable_event"})
#: Every command word the grammar recognises after a glob.
KNOWN_COMMANDS: frozenset[str] = frozenset({"mod", "dump"}) | COUNT_COMMANDS | EVENT_COMMANDS
#: Commands that fire actions when a function is hit; a :class:`Filter` rejects them.
TRIGGER_COMMANDS: frozenset[str] = KNOWN_COMMANDS - {"mod"}

#: A compiled glob: the name -> whether it matches (truthy or falsy, never an exception).
Matcher = Callable[[str], object]
#: The modules a filter can name: (exact module names, module name prefixes).
ModuleBound = tuple[frozenset[str], tuple[str, ...]]

_WILDCARDS = "*?["


class _Malformed(Exception):
    """Internal: carries the reason; the public ValueError adds the offending text."""


def _error(text: str, reason: str) -> ValueError:
    """Build the one error shape every malformed pattern produces.

    The message always quotes the offending (stripped) line so that, in a batch,
    the user can see which line was refused.
    """
    return ValueError(f"malformed filter pattern {text!r}: {reason}")


def _fail(reason: str) -> NoReturn:
    raise _Malformed(reason)


def _unclosed_bracket(glob: str) -> bool:
    """True if ``glob`` has a ``[`` that fnmatch would silently treat as a literal.

    fnmatch does not reject ``[abc`` but matches a literal ``[``, which is
    almost never what was meant; we refuse it instead.  The scan mirrors
    fnmatch's own: an optional ``!`` and a ``]`` directly after ``[`` belong
    to the set.
    """
    i, n = 0, len(glob)
    while i < n:
        if glob[i] != "[":
            i += 1
            continue
        j = i + 1
        if j < n and glob[j] == "!":
            j += 1
        if j < n and glob[j] == "]":
            j += 1
        while j < n and glob[j] != "]":
            j += 1
        if j >= n:
            return True
        i = j + 1
    return False


def _check_simple_glob(glob: str, what: str) -> None:
    """Validate a glob with no ``:`` in it (one side of a name, or a module glob)."""
    if not glob:
        _fail(f"empty {what}")
    if glob.startswith("!"):
        # Names never start with '!', so such a glob could match nothing: most
        # likely a doubled negation or a misplaced one.
        _fail(f"{what} {glob!r} starts with '!' (only one leading '!' negates a line)")
    if _unclosed_bracket(glob):
        _fail(f"unclosed '[' in {what} {glob!r}")


def _check_glob(glob: str) -> None:
    """Validate the function glob of a line (``qual-glob`` or ``module-glob:qual-glob``)."""
    if not glob:
        _fail("empty function glob")
    if any(ch.isspace() for ch in glob):
        _fail(f"whitespace in glob {glob!r}")
    if glob.count(":") > 1:
        _fail(f"more than one ':' in glob {glob!r}")
    if ":" in glob:
        module, qualname = glob.split(":")
        # Checked per side so that a ':' inside "[...]" is refused: ':' is the separator.
        _check_simple_glob(module, "module side of the glob")
        _check_simple_glob(qualname, "qualname side of the glob")
    else:
        _check_simple_glob(glob, "function glob")


def _check_count(param: str, command: str) -> None:
    if not (param.isascii() and param.isdigit()) or int(param) <= 0:
        _fail(f"{command} count {param!r} is not a positive integer")


def _check_params(command: str | None, params: tuple[str, ...]) -> None:
    """Validate a command's parameters; the arity rules are per command."""
    if command is None:
        if params:
            _fail("parameters without a command")
    elif command == "mod":
        if len(params) != 1:
            _fail(f"mod takes exactly one module glob, got {len(params)} parameters")
        if ":" in params[0] or any(ch.isspace() for ch in params[0]):
            _fail(f"bad module glob {params[0]!r}")
        _check_simple_glob(params[0], "module glob")
    elif command in COUNT_COMMANDS:
        if len(params) > 1:
            _fail(f"{command} takes at most one count, got {len(params)} parameters")
        if params:
            _check_count(params[0], command)
    elif command == "dump":
        if params:
            _fail("dump takes no parameters")
    elif command in EVENT_COMMANDS:
        if len(params) not in (2, 3):
            _fail(f"{command} needs system:event[:count], got {len(params)} parameters")
        if not params[0] or not params[1]:
            _fail(f"{command} needs a non-empty system and event")
        if len(params) == 3:
            _check_count(params[2], command)
    else:
        _fail(f"unknown command {command!r}")


def _literal(text: str) -> bool:
    return not any(ch in text for ch in _WILDCARDS)


def _always(name: str) -> bool:
    return True


def _compile(glob: str) -> Matcher:
    """The glob as a test on a whole name, case-sensitive on every OS.

    Most globs are a literal, ``*``, ``prefix*``, ``*suffix`` or ``*part*``: those
    become a string method, which matches in a fraction of a regex's cost and
    needs no ``re`` (whose import is most of ``import fntrace``'s cost when the
    program does not use it).  Any other glob is translated by fnmatch (with no
    IGNORECASE: fnmatch.fnmatch would normcase on Windows) and compiled once.
    """
    if _literal(glob):
        return glob.__eq__
    if glob == "*":
        return _always
    if glob.count("*") == 1 and _literal(glob.replace("*", "")):
        head, tail = glob.split("*")
        if not tail:
            return methodcaller("startswith", head)
        if not head:
            return methodcaller("endswith", tail)
        least = len(head) + len(tail)  # "ab*ba" must not match "aba"
        return lambda name: len(name) >= least and name.startswith(head) and name.endswith(tail)
    if (len(glob) > 2 and glob[0] == "*" and glob[-1] == "*"
            and _literal(glob[1:-1])):
        return methodcaller("__contains__", glob[1:-1])
    import fnmatch
    import re

    return re.compile(fnmatch.translate(glob)).fullmatch


def _compile_module(glob: str) -> Matcher:
    """A module glob, where ``PKG.*`` (PKG without wildcards) also names PKG itself.

    ``*:mod:json.*`` is how one says "the json package", and a package's own
    functions (``json:loads``, its ``__init__``) are part of it; a plain glob
    would leave them out, as it silently did.  ``json*`` still means what it
    says (it also takes ``jsonschema``).
    """
    package = glob[:-2]
    if glob.endswith(".*") and package and _literal(package):
        inside = package + "."
        return lambda name: name == package or name.startswith(inside)
    return _compile(glob)


def join_bounds(bounds: Iterable[ModuleBound | None]) -> ModuleBound | None:
    """The modules any of ``bounds`` names (None when one of them is not known)."""
    exact: set[str] = set()
    prefixes: list[str] = []
    for bound in bounds:
        if bound is None:
            return None
        exact |= bound[0]
        prefixes.extend(p for p in bound[1] if p not in prefixes)
    return (frozenset(exact), tuple(prefixes))


class FilterLine:
    """One parsed pattern line, validated and compiled on construction.

    Validation lives here (not only in :func:`parse_line`) so that every
    FilterLine in existence is well-formed, however it was built; the compiled
    globs (see _compile) are hidden attributes so equality and hashing see only the parsed
    form.  Immutable (a frozen value: filters share their lines).  A plain
    class rather than a dataclass: ``dataclasses`` imports ``inspect`` and
    ``ast``, which ``import fntrace`` would otherwise pay for.
    """

    text: str
    negate: bool
    glob: str
    command: str | None
    params: tuple[str, ...]
    _regex: Matcher
    _module_regex: Matcher | None
    _side_regex: Matcher | None

    def __init__(self, text: str, negate: bool, glob: str, command: str | None = None,
                 params: tuple[str, ...] = ()) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "text", text)
        setattr_(self, "negate", negate)
        setattr_(self, "glob", glob)
        setattr_(self, "command", command)
        setattr_(self, "params", params)
        try:
            _check_glob(glob)
            _check_params(command, params)
        except _Malformed as exc:
            raise _error(text, str(exc)) from None
        module_regex = _compile_module(params[0]) if command == "mod" else None
        if ":" in glob:  # module-glob:qual-glob, each side on its own (neither has ':')
            module_side, qual_side = glob.split(":")
            regex, side = _compile(qual_side), _compile_module(module_side)
        else:
            regex, side = _compile(glob), None
        setattr_(self, "_regex", regex)
        setattr_(self, "_module_regex", module_regex)
        setattr_(self, "_side_regex", side)

    def _key(self) -> tuple[str, bool, str, str | None, tuple[str, ...]]:
        return (self.text, self.negate, self.glob, self.command, self.params)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, FilterLine)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"FilterLine(text={self.text!r}, negate={self.negate!r}, glob={self.glob!r}, "
                f"command={self.command!r}, params={self.params!r})")

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"cannot delete field {name!r}")

    @property
    def count(self) -> int | None:
        """The trigger's count (``traceoff:3`` -> 3), or None when unlimited or not a trigger."""
        if self.command in COUNT_COMMANDS and self.params:
            return int(self.params[0])
        if self.command in EVENT_COMMANDS and len(self.params) == 3:
            return int(self.params[2])
        return None

    def matches(self, module: str, qualname: str) -> bool:
        """Whether this line's glob (and module glob, for ``mod``) names the function.

        A glob with ':' is matched against ``module:qualname``.  One without is
        matched against the bare qualname and against its last part (the
        function's own name), so ``raw_decode`` names
        ``json.decoder:JSONDecoder.raw_decode`` as a bare kernel symbol would;
        it never matches module names, so ``get*`` does not pull in a module
        called ``gettext``.  Use ``json.*:*`` or ``*:mod:json.*`` for modules
        (a module glob ``PKG.*`` also names the package PKG itself).
        """
        if self._module_regex is not None and not self._module_regex(module):
            return False
        regex = self._regex
        if self._side_regex is not None:
            return bool(self._side_regex(module)) and bool(regex(qualname))
        if regex(qualname):
            return True
        dot = qualname.rfind(".")
        return dot >= 0 and bool(regex(qualname[dot + 1:]))

    def module_bound(self) -> ModuleBound | None:
        """The modules this line can name, as (exact names, name prefixes), when its
        module glob says so plainly: ``pkg.mod`` (that one), ``PKG.*`` (PKG and
        what starts ``PKG.``), ``pre*`` (what starts ``pre``).  None when it can
        name a function of any module (no module glob, or one of another shape)."""
        glob = (self.glob.split(":")[0] if ":" in self.glob
                else self.params[0] if self.command == "mod" else None)
        if glob is None:
            return None
        if _literal(glob):
            return (frozenset((glob,)), ())
        package = glob[:-2]
        if glob.endswith(".*") and package and _literal(package):
            return (frozenset((package,)), (package + ".",))
        if glob.endswith("*") and glob.count("*") == 1 and _literal(glob[:-1]):
            return (frozenset(), (glob[:-1],))
        return None

    def never_in(self, module: str) -> bool:
        """True when this line matches no function of ``module``: it names modules
        (``:mod:`` or a ``module-glob:``) and not this one."""
        if self._module_regex is not None and not self._module_regex(module):
            return True
        return self._side_regex is not None and not self._side_regex(module)

    def __str__(self) -> str:
        return self.text


def parse_line(text: str) -> FilterLine:
    """Parse one pattern line; raise ValueError quoting ``text`` if it is malformed."""
    line = text.strip()
    try:
        if not line:
            _fail("empty pattern")
        if any(ch.isspace() for ch in line):
            _fail("contains whitespace")
        negate = line.startswith("!")
        body = line[1:] if negate else line
        if not body:
            _fail("'!' with nothing to negate")
        parts = body.split(":")
        if len(parts) >= 2 and parts[1] in KNOWN_COMMANDS:
            glob, command, params = parts[0], parts[1], tuple(parts[2:])
        elif len(parts) >= 3 and parts[2] in KNOWN_COMMANDS:
            glob, command, params = f"{parts[0]}:{parts[1]}", parts[2], tuple(parts[3:])
        elif len(parts) <= 2:
            glob, command, params = body, None, ()
        else:
            known = ", ".join(sorted(KNOWN_COMMANDS))
            _fail(f"unknown command {parts[1]!r} (or {parts[2]!r} after a module:qualname "
                  f"glob); known commands: {known}")
    except _Malformed as exc:
        raise _error(line, str(exc)) from None
    return FilterLine(line, negate, glob, command, params)


def parse(patterns: str | Iterable[str]) -> list[FilterLine]:
    """Parse a batch of pattern lines, all or nothing.

    A string is split on whitespace (as the kernel splits a write); commas are
    not separators, since ``[a,b]`` is a legal set.  Each item of an iterable is
    split the same way, and empty items are skipped.  The first malformed line
    raises ValueError and nothing is returned, so a batch is never half-applied.
    """
    items: Iterable[str] = (patterns,) if isinstance(patterns, str) else patterns
    return [parse_line(word) for item in items for word in item.split()]


class Filter:
    """Immutable, compiled rule list; swapped whole into an ops (never mutated).

    Immutability is what makes the swap safe: a tracer thread may be reading
    the old Filter while a writer builds the new one, and no lock is needed.
    Rules are evaluated in order and the last matching rule decides, so
    ``a*`` then ``!ab`` means "a* except ab".
    """

    __slots__ = ("_has_positive", "_reversed", "lines")

    EMPTY: ClassVar[Filter]

    lines: tuple[FilterLine, ...]
    _has_positive: bool
    _reversed: tuple[FilterLine, ...]

    def __init__(self, lines: Sequence[FilterLine] = ()) -> None:
        rules = tuple(lines)
        for rule in rules:
            if rule.command is not None and rule.command != "mod":
                raise ValueError(f"filter pattern {rule.text!r}: trigger commands belong to a "
                                 f"trace instance, not to a function filter")
        object.__setattr__(self, "lines", rules)
        object.__setattr__(self, "_has_positive", any(not r.negate for r in rules))
        # The last matching rule decides, so scanning backwards can stop at the first hit.
        object.__setattr__(self, "_reversed", rules[::-1])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Filter is immutable; build a new one (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Filter is immutable (cannot delete {name!r})")

    def __reduce__(self) -> tuple[type[Filter], tuple[tuple[FilterLine, ...]]]:
        # copy/pickle would otherwise restore slots through the blocked __setattr__.
        return (Filter, (self.lines,))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Filter):
            return NotImplemented
        return self.lines == other.lines

    def __hash__(self) -> int:
        return hash(self.lines)

    def __repr__(self) -> str:
        return f"Filter({[r.text for r in self.lines]!r})"

    @property
    def is_empty(self) -> bool:
        """True when no rule is positive (non-negated).

        Note that a filter holding only negations (``!foo``) is "empty" in this
        sense yet does not select everything: :meth:`selects` still excludes foo.
        """
        return not self._has_positive

    def selects(self, module: str, qualname: str) -> bool:
        """Whether the function is traced under this filter (set_ftrace_filter).

        With no positive rule everything starts selected, so ``!foo`` alone means
        "all but foo"; otherwise nothing starts selected.  The last matching rule
        decides.  A pure predicate, so it also applies to modules loaded later.
        """
        for rule in self._reversed:
            if rule.matches(module, qualname):
                return not rule.negate
        return not self._has_positive

    def selects_nothing_in(self, module: str) -> bool:
        """True when :meth:`selects` is false for every function of ``module``:
        every positive rule names modules (``:mod:``, ``module-glob:qual-glob``)
        and none of them this one.  False when unsure.  A first look refuses a
        whole module on it, so that its other code objects cost no Python."""
        if not self._has_positive:
            return False
        for rule in self.lines:
            if rule.negate:
                continue
            if not rule.never_in(module):
                return False
        return True

    def module_bound(self) -> ModuleBound | None:
        """Every module :meth:`selects` can pick a function of, as (exact names,
        name prefixes); None when that is not known from the rules alone (a
        rule that names functions in any module, or no positive rule: then
        everything not negated is selected).  The C first look refuses other
        modules' code with it, without calling Python."""
        if not self._has_positive:
            return None
        return join_bounds(rule.module_bound() for rule in self.lines if not rule.negate)

    def excludes(self, module: str, qualname: str) -> bool:
        """Whether the function is in this notrace set (set_ftrace_notrace).

        Nothing starts excluded; the last matching rule decides, so ``a*`` then
        ``!ab`` excludes a* but not ab.
        """
        for rule in self._reversed:
            if rule.matches(module, qualname):
                return not rule.negate
        return False

    def extended(self, lines: Sequence[FilterLine]) -> Filter:
        """A new Filter with ``lines`` appended (the kernel's ``>>`` append mode)."""
        return Filter(self.lines + tuple(lines))

    def text(self) -> str:
        """The content as the kernel file shows it: one original line per rule."""
        return "\n".join(rule.text for rule in self.lines)


Filter.EMPTY = Filter()
