"""Recursive-descent parser and expression evaluator."""

from __future__ import annotations

from .lexer import Token
from .model import Field, Record


class ParseError(Exception):
    pass


class Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def accept(self, ch: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.is_punct(ch):
            self.i += 1
            return True
        return False

    def expect(self, ch: str) -> None:
        if not self.accept(ch):
            raise ParseError(f"expected {ch!r} at token {self.i}: {self.peek()!r}")

    def expect_kind(self, kind: str) -> Token:
        tok = self.next()
        if tok.kind != kind:
            raise ParseError(f"expected {kind}, got {tok!r}")
        return tok

    def records(self) -> list[Record]:
        out = []
        while self.peek() is not None:
            out.append(self.record())
        return out

    def record(self) -> Record:
        kw = self.expect_kind("ident")
        if kw.text != "record":
            raise ParseError(f"expected 'record', got {kw!r}")
        rec = Record(self.expect_kind("ident").text)
        self.expect("{")
        while not self.accept("}"):
            rec.add(self.field())
        return rec

    def field(self) -> Field:
        name = self.expect_kind("ident").text
        self.expect("=")
        value = self.value()
        self.expect(";")
        return Field(name, value)

    def value(self) -> object:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end")
        if tok.kind == "string":
            return self.next().text
        if tok.kind == "ident":
            return self.next().text
        if tok.is_punct("["):
            return self.list_value()
        return self.expr()

    def list_value(self) -> list[str]:
        self.expect("[")
        items = [self.expect_kind("ident").text]
        while self.accept(","):
            items.append(self.expect_kind("ident").text)
        self.expect("]")
        return items

    def expr(self) -> float:
        acc = self.term()
        while True:
            if self.accept("+"):
                acc = acc + self.term()
            elif self.accept("-"):
                acc = acc - self.term()
            else:
                return acc

    def term(self) -> float:
        acc = self.factor()
        while True:
            if self.accept("*"):
                acc = acc * self.factor()
            elif self.accept("/"):
                d = self.factor()
                acc = acc / d if d else 0.0
            else:
                return acc

    def factor(self) -> float:
        if self.accept("("):
            v = self.expr()
            self.expect(")")
            return v
        tok = self.next()
        if tok.kind == "int":
            return int(tok.text)
        if tok.kind == "float":
            return float(tok.text)
        raise ParseError(f"expected a number, got {tok!r}")


def parse(tokens: list[Token]) -> list[Record]:
    return Parser(tokens).records()
