"""The fprobe event grammar of ``dynamic_events``, parsed without eval.

``f[:[GRP/][EVENT]] FUNC[%return] [FETCHARGS]`` defines an event, ``-:[GRP/]EVENT``
removes one.  FUNC is a ``module:qualname`` glob (as in set_ftrace_filter).
A fetcharg is ``[NAME=]EXPR[:TYPE]`` where EXPR is a parameter name, ``$argN``
(1-based), ``$arg*`` (every parameter), ``$retval`` (exit events only),
``$stack`` (the caller chain), or a parameter / ``$argN`` / ``$retval``
followed by ``.attr`` and ``[literal]`` accesses, optionally inside
``len(...)``.  Item keys are literals (str or int) only: the spec is parsed
into a list of steps here and evaluated by :mod:`fntrace.tracing.probes.fetch`, so no
code written in a spec ever runs.

Every error is a :class:`SpecError` (a ValueError) carrying the 0-based
column of the offending character, so a caller can point at it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fntrace.core.filter import FilterLine

__all__ = ["DEFAULT_GROUP", "TYPES", "FetchArg", "ProbeSpec", "RemoveSpec", "SpecError",
           "Step", "parse_spec"]

DEFAULT_GROUP = "fprobes"
#: :TYPE suffixes: str() text, repr() text, hexadecimal integer, len().
TYPES = ("str", "repr", "x", "len")
MAX_ARGS = 128
#: Limits on one definition, so a hostile line is a SpecError with its column,
#: never a RecursionError or a slow parse (docs/tracefs.md, dynamic_events).
MAX_LINE = 16384       # characters in one definition
MAX_NESTING = 32       # len(...) nested in one fetcharg
MAX_STEPS = 64         # .attr and [key] accesses in one fetcharg
MAX_KEY_DIGITS = 20    # an integer item key
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT = re.compile(r"-?[0-9]+")


class SpecError(ValueError):
    """A malformed spec; ``column`` is the 0-based position of the error in ``line``."""

    def __init__(self, line: str, column: int, reason: str,
                 what: str = "dynamic_events") -> None:
        self.line = line
        self.column = column
        self.reason = reason
        # A long line is shown as the 120 characters around the column; a reason
        # quoting a long word is cut.
        if len(reason) > 160:
            reason = reason[:157] + "..."
        start = max(0, column - 60)
        shown = line[start:column + 60]
        head = "..." if start else ""
        tail = "..." if column + 60 < len(line) else ""
        super().__init__(f"{what}: {reason} (column {column})\n  {head}{shown}{tail}\n"
                         f"  {' ' * (len(head) + column - start)}^")


@dataclass(frozen=True)
class Step:
    """One access: ``attr`` (getattr, arg = name), ``item`` (obj[arg]) or ``len``."""

    op: str
    arg: str | int | None = None


@dataclass(frozen=True)
class FetchArg:
    """One fetcharg: where its value starts, the accesses applied, its type.

    ``base`` is ``param`` (``param`` holds the name), ``arg`` (``index``,
    0-based), ``args`` ($arg*), ``retval`` or ``stack``.  ``at_exit`` is true
    for what only exists at exit ($retval, $stack); everything else of a
    %return event is captured at entry.
    """

    name: str
    base: str
    param: str | None
    index: int
    steps: tuple[Step, ...]
    type: str | None
    expr: str

    @property
    def at_exit(self) -> bool:
        return self.base in ("retval", "stack")

    def text(self) -> str:
        tail = f":{self.type}" if self.type else ""
        if self.base == "args":
            return f"$arg*{tail}"
        return f"{self.name}={self.expr}{tail}"


@dataclass(frozen=True)
class ProbeSpec:
    """A parsed definition; ``text()`` is its normalized form (read back from the file)."""

    group: str
    event: str
    func: FilterLine
    is_return: bool
    args: tuple[FetchArg, ...]
    name_column: int

    def text(self) -> str:
        func = self.func.glob + ("%return" if self.is_return else "")
        args = "".join(f" {a.text()}" for a in self.args)
        return f"f:{self.group}/{self.event} {func}{args}"


@dataclass(frozen=True)
class RemoveSpec:
    group: str
    event: str
    name_column: int


def _words(line: str) -> list[tuple[int, str]]:
    """Whitespace-separated words with their columns; quotes keep spaces inside a word."""
    out: list[tuple[int, str]] = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        start = i
        while i < n and not line[i].isspace():
            if line[i] in "'\"":
                i = _end_of_string(line, i) + 1
            else:
                i += 1
        out.append((start, line[start:i]))
    return out


def _end_of_string(line: str, i: int) -> int:
    """Index of the quote closing the string literal opened at ``i``."""
    quote = line[i]
    j = i + 1
    while j < len(line):
        if line[j] == "\\":
            j += 2
            continue
        if line[j] == quote:
            return j
        j += 1
    raise SpecError(line, i, "unterminated string")


def _string_value(line: str, start: int, end: int) -> str:
    """The text of the literal line[start..end] (quotes included); only \\\\ and \\q escapes."""
    body = line[start + 1:end]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in ("\\", "'", '"'):
                raise SpecError(line, start + 1 + i, "unsupported escape in string")
            out.append(nxt)
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _name(line: str, col: int, text: str, what: str) -> str:
    if _IDENT.fullmatch(text) is None:
        raise SpecError(line, col, f"bad {what} name {text!r}")
    return text


def _sanitize(qualname_part: str) -> str:
    out = re.sub(r"[^A-Za-z0-9_]", "_", qualname_part)
    return f"_{out}" if out[:1].isdigit() else out


class _ExprParser:
    """Recursive descent over one fetcharg word; positions are columns in ``line``."""

    def __init__(self, line: str, start: int, end: int) -> None:
        self.line = line
        self.pos = start
        self.end = end

    def fail(self, reason: str, col: int | None = None) -> SpecError:
        return SpecError(self.line, self.pos if col is None else col, reason)

    def peek(self) -> str:
        return self.line[self.pos] if self.pos < self.end else ""

    def ident(self, what: str) -> str:
        m = _IDENT.match(self.line, self.pos, self.end)
        if m is None:
            raise self.fail(f"expected {what}")
        self.pos = m.end()
        return m.group()

    def expr(self, nesting: int = 0) -> tuple[str, str | None, int, list[Step], str]:
        """(base, param, index, steps, normalized text)."""
        line = self.line
        if line.startswith("len(", self.pos) and self.pos + 4 <= self.end:
            if nesting >= MAX_NESTING:
                raise self.fail(f"len() nested deeper than {MAX_NESTING}")
            self.pos += 4
            base, param, index, inner, text = self.expr(nesting + 1)
            if base == "args":
                raise self.fail("$arg* cannot be inside len()")
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.pos += 1
            return base, param, index, [*inner, Step("len")], f"len({text})"
        col = self.pos
        if self.peek() == "$":
            self.pos += 1
            word = self.ident("$argN, $arg*, $retval or $stack") if self.peek() != "*" else ""
            if word == "arg" and self.peek() == "*":
                self.pos += 1
                return "args", None, 0, [], "$arg*"
            if word == "retval":
                base, param, index, text = "retval", None, 0, "$retval"
            elif word == "stack":
                base, param, index, text = "stack", None, 0, "$stack"
            elif re.fullmatch(r"arg[1-9][0-9]{0,8}", word):
                base, param, index, text = "arg", None, int(word[3:]) - 1, f"${word}"
            else:
                raise self.fail(f"unknown variable ${word}", col)
        else:
            param = self.ident("a parameter name, $argN, $arg*, $retval, $stack or len(...)")
            base, index, text = "param", 0, param
        steps: list[Step] = []
        while self.peek() in (".", "["):
            if len(steps) >= MAX_STEPS:
                raise self.fail(f"more than {MAX_STEPS} attribute and item accesses")
            if base == "stack":
                raise self.fail("$stack takes no attribute or item access")
            if self.peek() == ".":
                self.pos += 1
                attr = self.ident("an attribute name")
                steps.append(Step("attr", attr))
                text += f".{attr}"
            else:
                self.pos += 1
                key = self.literal()
                if self.peek() != "]":
                    raise self.fail("expected ']'")
                self.pos += 1
                steps.append(Step("item", key))
                text += f"[{key!r}]"
        return base, param, index, steps, text

    def literal(self) -> str | int:
        ch = self.peek()
        if ch in ("'", '"'):
            close = _end_of_string(self.line, self.pos)
            if close >= self.end:
                raise self.fail("unterminated string")
            value = _string_value(self.line, self.pos, close)
            self.pos = close + 1
            return value
        m = _INT.match(self.line, self.pos, self.end)
        if m is None:
            raise self.fail("item keys are string or integer literals")
        if len(m.group().lstrip("-")) > MAX_KEY_DIGITS:
            raise self.fail(f"an integer key of more than {MAX_KEY_DIGITS} digits")
        self.pos = m.end()
        return int(m.group())


def _fetcharg(line: str, col: int, word: str, position: int, is_return: bool) -> FetchArg:
    end = col + len(word)
    name: str | None = None
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)=", word)
    start = col
    if m is not None:
        name = m.group(1)
        start = col + m.end()
        if start == end:
            raise SpecError(line, start, "expected an expression after '='")
    elif word[:1] not in ("$", "_") and not word[:1].isalpha():
        raise SpecError(line, col, "expected [NAME=]EXPR[:TYPE]")
    p = _ExprParser(line, start, end)
    base, param, index, steps, text = p.expr()
    typ: str | None = None
    if p.peek() == ":":
        tcol = p.pos + 1
        typ = line[tcol:end]
        if typ not in TYPES:
            raise SpecError(line, tcol, f"unknown type {typ!r} (known: {', '.join(TYPES)})")
    elif p.pos != end:
        raise p.fail(f"unexpected {line[p.pos]!r}")
    if base == "retval" and not is_return:
        raise SpecError(line, start, "$retval is only available in %return events")
    if base == "args":
        if name is not None:
            raise SpecError(line, col, "$arg* takes no NAME=")
        name = "$arg*"
    elif name is None:
        if base == "param" and not steps:
            name = param
        elif base in ("arg", "retval", "stack") and not steps:
            name = text[1:]
        else:
            name = f"arg{position}"
    assert name is not None
    return FetchArg(name, base, param, index, tuple(steps), typ, text)


def _group_event(line: str, col: int, text: str) -> tuple[str | None, str | None, int]:
    """GRP/EVENT, GRP/ or EVENT after ``f:`` / ``-:`` (None where omitted)."""
    if "/" in text:
        group, event = text.split("/", 1)
        _name(line, col, group, "group")
        ecol = col + len(group) + 1
        if event:
            _name(line, ecol, event, "event")
        return group, event or None, ecol
    if not text:
        raise SpecError(line, col, "expected [GRP/][EVENT] after ':'")
    return None, _name(line, col, text, "event"), col


def _func(line: str, col: int, word: str) -> tuple[FilterLine, bool]:
    is_return = False
    glob = word
    pct = word.find("%")
    if pct >= 0:
        if word[pct:] != "%return":
            raise SpecError(line, col + pct, "only %return may follow the function")
        glob, is_return = word[:pct], True
    if not glob:
        raise SpecError(line, col, "expected a function glob")
    if glob.startswith("!"):
        raise SpecError(line, col, "a probe cannot negate its function")
    colons = [i for i, ch in enumerate(glob) if ch == ":"]
    if len(colons) > 1:
        raise SpecError(line, col + colons[1], "expected module:qualname (one ':')")
    try:
        return FilterLine(glob, False, glob), is_return
    except ValueError as exc:
        raise SpecError(line, col, f"bad function glob: {exc}") from None


def parse_spec(line: str) -> ProbeSpec | RemoveSpec:
    """Parse one line of ``dynamic_events``; raise SpecError (ValueError) if malformed."""
    if len(line) > MAX_LINE:
        raise SpecError(line, MAX_LINE, f"a definition of {len(line)} characters "
                        f"(at most {MAX_LINE})")
    words = _words(line)
    if not words:
        raise SpecError(line, 0, "empty definition")
    col0, head = words[0]
    if head.startswith("-:"):
        group, event, ecol = _group_event(line, col0 + 2, head[2:])
        if event is None:
            raise SpecError(line, col0 + len(head), "expected the event name to remove")
        if len(words) > 1:
            raise SpecError(line, words[1][0], "a removal takes nothing after the event")
        return RemoveSpec(group or DEFAULT_GROUP, event, ecol)
    if head != "f" and not head.startswith("f:"):
        raise SpecError(line, col0, "expected 'f' (an fprobe event) or '-:' (a removal)")
    group = event = None
    ecol = col0
    if head.startswith("f:"):
        group, event, ecol = _group_event(line, col0 + 2, head[2:])
    if len(words) < 2:
        raise SpecError(line, len(line.rstrip()), "expected the function to probe")
    fcol, fword = words[1]
    func, is_return = _func(line, fcol, fword)
    if event is None:
        last = func.glob.split(":")[-1].split(".")[-1]
        if any(ch in last for ch in "*?["):
            raise SpecError(line, fcol, "a glob function needs an explicit event name")
        event = _sanitize(last) + ("__exit" if is_return else "__entry")
        ecol = fcol
    if len(words) - 2 > MAX_ARGS:
        raise SpecError(line, words[2 + MAX_ARGS][0], f"more than {MAX_ARGS} fetchargs")
    args: list[FetchArg] = []
    seen: set[str] = set()
    for position, (col, word) in enumerate(words[2:], start=1):
        arg = _fetcharg(line, col, word, position, is_return)
        if arg.name in seen:
            raise SpecError(line, col, f"field name {arg.name!r} is used twice")
        seen.add(arg.name)
        args.append(arg)
    return ProbeSpec(group or DEFAULT_GROUP, event, func, is_return, tuple(args), ecol)
