"""Deterministic synthetic input: a small configuration language."""

from __future__ import annotations

import random

_WORDS = ("alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta", "lambda",
          "zeta", "north", "south", "east", "west", "red", "green", "blue", "amber")
_OPS = ("+", "-", "*", "/")


def _expr(rng: random.Random, depth: int) -> str:
    if depth <= 0 or rng.random() < 0.35:
        if rng.random() < 0.7:
            return str(rng.randint(1, 999))
        return f"{rng.randint(1, 99)}.{rng.randint(0, 99):02d}"
    left = _expr(rng, depth - 1)
    right = _expr(rng, depth - 1)
    if rng.random() < 0.25:
        return f"({left} {rng.choice(_OPS)} {right})"
    return f"{left} {rng.choice(_OPS)} {right}"


def make_document(seed: int, n_records: int) -> str:
    rng = random.Random(seed)
    out = []
    for i in range(n_records):
        name = f"{rng.choice(_WORDS)}_{seed}_{i}"
        out.append(f"record {name} {{\n")
        out.append(f'  label = "{rng.choice(_WORDS)} {rng.choice(_WORDS)}";\n')
        out.append(f"  region = {rng.choice(_WORDS[10:14])};\n")
        for k in range(rng.randint(3, 7)):
            out.append(f"  m{k} = {_expr(rng, 3)};\n")
        tags = ", ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 5)))
        out.append(f"  tags = [{tags}];\n")
        out.append("}\n# comment line between records\n")
    return "".join(out)
