"""Event filters: ``events/GRP/EVENT/filter``, a condition on an event's fields.

Grammar (the kernel's event filter, parsed here, never evaluated by Python)::

    cond  := and ('||' and)*
    and   := unary ('&&' unary)*
    unary := '!' unary | '(' cond ')' | FIELD OP LITERAL
    OP    := == != < <= > >= ~        (~ is a glob match, strings only)
    LITERAL := a number (12, -3, 0x1f, 2.5) or a string ("bob", 'bob')

Limits (a longer or deeper filter is a SpecError with its column, never a
RecursionError, here or when an event is tested): MAX_FILTER characters,
MAX_DEPTH ``(`` and ``!`` nested, MAX_TERMS predicates.  ``a || b || c`` is
kept flat, so testing an event recurses only as deep as the nesting.

Strings take ``==``, ``!=`` and ``~``.  A predicate compares the field's
fetched value (after its :TYPE): numbers with int/float values, strings with
str values.  A field that failed to fetch, or whose value is of another type,
satisfies no predicate (``!`` still negates the result).
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Collection

from fntrace.tracing.probes.parser import SpecError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Condition", "parse_condition"]

_TOKEN = re.compile(r"""\s*(?:(?P<op>&&|\|\||==|!=|<=|>=|<|>|~|!|\(|\))
                       |(?P<num>-?(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?))
                       |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
                       |(?P<name>[A-Za-z_][A-Za-z0-9_]*))""", re.VERBOSE)

_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}

if TYPE_CHECKING:
    Node = Callable[[dict[str, Any]], bool]

MAX_FILTER = 4096      # characters
MAX_DEPTH = 32         # '(' and '!' nested
MAX_TERMS = 256        # FIELD OP LITERAL predicates
MAX_NUMBER = 40        # characters in a number literal


class Condition:
    """A compiled filter; ``matches(fields)`` takes field name -> value."""

    __slots__ = ("_node", "text")

    def __init__(self, text: str, node: Node) -> None:
        self.text = text
        self._node = node

    def matches(self, fields: dict[str, Any]) -> bool:
        return self._node(fields)


def _pred(name: str, op: str, lit: Any) -> Node:
    if op == "~":
        pattern = re.compile(fnmatch.translate(lit))

        def glob(fields: dict[str, Any]) -> bool:
            value = fields.get(name)
            return type(value) is str and pattern.fullmatch(value) is not None
        return glob
    cmp = _CMP[op]
    if isinstance(lit, str):
        def string(fields: dict[str, Any]) -> bool:
            value = fields.get(name)
            return isinstance(value, str) and cmp(str(value), lit)
        return string

    def number(fields: dict[str, Any]) -> bool:
        value = fields.get(name)
        return isinstance(value, (int, float)) and cmp(value, lit)
    return number


class _Parser:
    def __init__(self, text: str, names: Collection[str] | None) -> None:
        self.text = text
        self.names = names
        self.tokens: list[tuple[int, str, str]] = []  # (column, kind, text)
        self.depth = self.terms = 0
        if len(text) > MAX_FILTER:
            raise SpecError(text, MAX_FILTER, f"a filter of {len(text)} characters "
                            f"(at most {MAX_FILTER})", "filter")
        pos = 0
        end = len(text.rstrip())
        while pos < end:
            m = _TOKEN.match(text, pos)
            if m is None or m.lastgroup is None:
                col = pos + len(text[pos:]) - len(text[pos:].lstrip())
                raise SpecError(text, col, "unexpected character", "filter")
            self.tokens.append((m.start(m.lastgroup), m.lastgroup, m.group(m.lastgroup)))
            pos = m.end()
        self.i = 0

    def fail(self, reason: str) -> SpecError:
        col = self.tokens[self.i][0] if self.i < len(self.tokens) else len(self.text.rstrip())
        return SpecError(self.text, col, reason, "filter")

    def peek(self) -> str:
        return self.tokens[self.i][2] if self.i < len(self.tokens) else ""

    def take(self) -> tuple[int, str, str]:
        if self.i >= len(self.tokens):
            raise self.fail("unexpected end of filter")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def cond(self) -> Node:
        terms = [self.conj()]
        while self.peek() == "||" and self.tokens[self.i][1] == "op":
            self.i += 1
            terms.append(self.conj())
        if len(terms) == 1:
            return terms[0]
        alternatives = tuple(terms)
        return lambda f: any(t(f) for t in alternatives)

    def conj(self) -> Node:
        terms = [self.unary()]
        while self.peek() == "&&" and self.tokens[self.i][1] == "op":
            self.i += 1
            terms.append(self.unary())
        if len(terms) == 1:
            return terms[0]
        required = tuple(terms)
        return lambda f: all(t(f) for t in required)

    def nested(self) -> None:
        """One more '(' or '!' level: refused past MAX_DEPTH (the caller undoes it)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.i -= 1
            raise self.fail(f"'(' and '!' nested deeper than {MAX_DEPTH}")

    def unary(self) -> Node:
        _, kind, tok = self.take()
        if kind == "op" and tok == "!":
            self.nested()
            inner = self.unary()
            self.depth -= 1
            return lambda f: not inner(f)
        if kind == "op" and tok == "(":
            self.nested()
            inner = self.cond()
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.i += 1
            self.depth -= 1
            return inner
        if kind != "name":
            self.i -= 1
            raise self.fail("expected a field name, '!' or '('")
        if self.names is not None and tok not in self.names:
            self.i -= 1
            raise self.fail(f"no field {tok!r} in this event")
        _, okind, op = self.take()
        if okind != "op" or op not in (*_CMP, "~"):
            self.i -= 1
            raise self.fail("expected a comparison (== != < <= > >= ~)")
        _, lkind, lit = self.take()
        value: Any
        self.terms += 1
        if self.terms > MAX_TERMS:
            self.i -= 3
            raise self.fail(f"more than {MAX_TERMS} comparisons")
        if lkind == "num" and len(lit) > MAX_NUMBER:
            self.i -= 1
            raise self.fail(f"a number of more than {MAX_NUMBER} characters")
        if lkind == "num":
            if "." in lit:
                value = float(lit)
            else:
                value = int(lit, 16 if "x" in lit.lower() else 10)
        elif lkind == "str":
            value = re.sub(r"\\(.)", r"\1", lit[1:-1])
        else:
            self.i -= 1
            raise self.fail("expected a number or a string")
        if isinstance(value, str) and op not in ("==", "!=", "~"):
            self.i -= 2
            raise self.fail("strings compare with ==, != and ~ only")
        if op == "~" and not isinstance(value, str):
            self.i -= 2
            raise self.fail("~ takes a string glob")
        return _pred(tok, op, value)


def parse_condition(text: str, names: Collection[str] | None = None) -> Condition:
    """Compile a filter; ``names`` (None: any) are the fields it may name.

    Raises SpecError (a ValueError) with the 0-based column of the error.
    """
    p = _Parser(text, names)
    if not p.tokens:
        raise SpecError(text, 0, "empty filter (write 0 to clear)", "filter")
    node = p.cond()
    if p.i != len(p.tokens):
        raise p.fail("unexpected token")
    return Condition(text.strip(), node)
