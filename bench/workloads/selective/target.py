"""The audit trail: the small module a selective trace filter picks out.

Called once per record, per batch of records and per document, so its
functions make about 0.1% of the program's Python function calls.  It has no
generators (each call is one entry and one exit) and calls nothing outside
itself but builtins and hashlib, so every Python call it makes is its own.
"""

from __future__ import annotations

import hashlib


def _fold(acc: int, text: str) -> int:
    for ch in text:
        acc = (acc * 131 + ord(ch)) & 0xFFFFFFFF
    return acc


def _fmt_region(pair: tuple[str, int]) -> str:
    return f"{pair[0]}={pair[1]}"


def _bucket(score: float) -> int:
    return int(score // 10) if score < 1e9 else 10**8


class Auditor:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.doc = -1
        self.acc = 0

    def begin_document(self, doc: int, n_tokens: int) -> None:
        self.doc = doc
        self.lines.append(f"doc {doc} tokens {n_tokens}")

    def admit(self, name: str, score: float) -> None:
        self.acc = (self.acc ^ _bucket(score)) * 31 + len(name) & 0xFFFFFFFF

    def check(self, report) -> None:  # type: ignore[no-untyped-def]
        parts = []
        for pair in report.by_region:
            parts.append(_fmt_region(pair))
        regions = ",".join(parts)
        line = f"{self.doc} n={report.n} total={report.total!r} {regions} {report.top}"
        self.acc = _fold(self.acc, line)
        self.lines.append(line)

    def end_document(self, summary: dict[str, float]) -> None:
        self.lines.append(f"summary {self.doc} {sorted(summary.items())}")

    def digest(self) -> str:
        h = hashlib.sha256("\n".join(self.lines).encode())
        return f"{h.hexdigest()[:16]}-{self.acc:08x}"
