"""Sorting, grouping and scoring records with small key functions."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter

from .model import Record


@dataclass(frozen=True)
class Report:
    n: int
    top: tuple[str, ...]
    by_region: tuple[tuple[str, int], ...]
    total: float


def batches(records: list[Record], size: int) -> Iterator[list[Record]]:
    for i in range(0, len(records), size):
        yield records[i:i + size]


def clamp(x: float, lo: float = -1e6, hi: float = 1e6) -> float:
    return lo if x < lo else hi if x > hi else x


def score(rec: Record) -> float:
    ms = rec.metrics()
    if not ms:
        return 0.0
    return sum(clamp(m) for m in ms) / len(ms) + 0.5 * len(rec.tags)


def tag_key(tag: str) -> tuple[int, str]:
    return (len(tag), tag)


def label_words(rec: Record) -> list[str]:
    return [w.capitalize() for w in str(rec.get("label", "")).split()]


def analyse(batch: list[Record]) -> Report:
    ranked = sorted(batch, key=score, reverse=True)
    ranked = sorted(ranked, key=lambda r: (r.region, -score(r)))
    groups: dict[str, list[Record]] = defaultdict(list)
    for rec in ranked:
        groups[rec.region].append(rec)
    for recs in groups.values():
        recs.sort(key=attrgetter("name"))
    tags = sorted({t for rec in batch for t in rec.tags}, key=tag_key)
    words = sorted((w for rec in batch for w in label_words(rec)), key=str.lower)
    total = sum(score(r) for r in batch)
    top = tuple(r.name for r in ranked[:3]) + tuple(tags[:2]) + tuple(words[:1])
    by_region = tuple(sorted((k, len(v)) for k, v in groups.items()))
    return Report(len(batch), top, by_region, round(total, 6))


def summarise(records: list[Record]) -> dict[str, float]:
    scores = [score(r) for r in records]
    by_region: dict[str, list[float]] = defaultdict(list)
    for rec, s in zip(records, scores, strict=True):
        by_region[rec.region].append(s)
    out = {k: round(statistics.fmean(v), 6) for k, v in sorted(by_region.items())}
    out["median"] = round(statistics.median(scores), 6)
    return out
