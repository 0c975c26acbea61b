"""Hand-written tokenizer: many tiny method calls per character and token."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

PUNCT = frozenset("{}[]();=,+-*/")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    pos: int

    def is_punct(self, ch: str) -> bool:
        return self.kind == "punct" and self.text == ch


def is_ident_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_"


def is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


class Scanner:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def advance(self) -> str:
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def take_while(self, pred) -> str:  # type: ignore[no-untyped-def]
        start = self.pos
        while not self.at_end() and pred(self.peek()):
            self.advance()
        return self.text[start:self.pos]

    def skip_space_and_comments(self) -> None:
        while not self.at_end():
            ch = self.peek()
            if ch.isspace():
                self.advance()
            elif ch == "#":
                self.take_while(lambda c: c != "\n")
            else:
                return


def tokenize(text: str) -> Iterator[Token]:
    sc = Scanner(text)
    while True:
        sc.skip_space_and_comments()
        if sc.at_end():
            return
        start = sc.pos
        ch = sc.peek()
        if is_ident_start(ch):
            yield Token("ident", sc.take_while(is_ident_char), start)
        elif is_digit(ch):
            whole = sc.take_while(is_digit)
            if sc.peek() == ".":
                sc.advance()
                whole += "." + sc.take_while(is_digit)
                yield Token("float", whole, start)
            else:
                yield Token("int", whole, start)
        elif ch == '"':
            sc.advance()
            body = sc.take_while(lambda c: c != '"')
            sc.advance()
            yield Token("string", body, start)
        elif ch in PUNCT:
            yield Token("punct", sc.advance(), start)
        else:
            raise SyntaxError(f"unexpected {ch!r} at {start}")
