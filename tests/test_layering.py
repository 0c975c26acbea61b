"""fntrace's layers, read from its source: imports go only downwards, no cycles,
no private name reached across modules.

The import graph is read with ``ast`` (every ``import`` in a module, including
the lazy ones inside functions, except those under ``if TYPE_CHECKING:``, which
never run).  A layer may import its own package and any lower layer; two
different packages of the same rank may not import each other (the readers
never need the recording side, and the other way round).  docs/design.md draws
the same diagram.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "fntrace"

#: (module prefix, rank): the longest matching prefix decides a module's layer.
LAYERS: list[tuple[str, int]] = [
    ("fntrace._speedups", 0),        # the C extension
    ("fntrace.core", 1),             # registry, trampolines, backends, ipmodify, symbols
    ("fntrace.formats", 2),          # the trace file format (no tracing in it)
    ("fntrace.tracing", 3),          # ring buffer, events, Instance, tracers, features
    ("fntrace.recording", 4),        # the record/run session, recorder, follow
    ("fntrace.analysis", 4),         # replay, report, dump, info: from files alone
    ("fntrace.control", 5),          # live control (server in-process, client)
    ("fntrace.integrations", 5),     # IPython magics, failure graphs
    ("fntrace.pytest_plugin", 5),    # the pytest11 entry point (its path is public)
    ("fntrace.cli", 6),              # the only place that knows argparse
    ("fntrace.__main__", 7),
    ("fntrace", 7),                  # the package's public facade
]

#: Known breaches being removed by the redesign (issue 13); must end empty.  An
#: entry that no longer occurs fails too, so the list only shrinks.
KNOWN: set[str] = {
    'cycle: fntrace.analysis.dump <-> fntrace.analysis.report',
    ('cycle: fntrace.core.backends.monitoring <-> fntrace.core.backends.profile'
     ' <-> fntrace.core.engine <-> fntrace.core.ipmodify <-> fntrace.core.ops'),
    'cycle: fntrace.recording.follow <-> fntrace.recording.record',
    'private: fntrace.analysis.report imports fntrace.analysis.dump._quiet_stdout',
    'private: fntrace.core.ipmodify uses fntrace.core.engine._enabled',
    'private: fntrace.core.ipmodify uses fntrace.core.engine._internal_codes',
    'private: fntrace.core.ipmodify uses fntrace.core.engine._lock',
    'private: fntrace.core.ipmodify uses fntrace.core.engine._parent',
    'private: fntrace.tracing.inject imports fntrace.core.ipmodify._one_line_table',
    'private: fntrace.tracing.inject uses fntrace.core.engine._internal_codes',
    'private: fntrace.tracing.livepatch uses fntrace.core.engine._internal_codes',
    'up: fntrace.cli -> fntrace',
    'up: fntrace.control.server -> fntrace',
    'up: fntrace.pytest_plugin -> fntrace',
    'up: fntrace.pytest_plugin -> fntrace.integrations.failure_graph',
    'up: fntrace.recording._follow.sitecustomize -> fntrace',
    'up: fntrace.recording.record -> fntrace.control',
}


def layer(mod: str) -> tuple[str, int]:
    best = max((p for p in LAYERS if mod == p[0] or mod.startswith(p[0] + ".")),
               key=lambda p: len(p[0]))
    return best


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = modules()


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                for inner in ast.walk(sub):
                    if hasattr(inner, "lineno"):
                        lines.add(inner.lineno)
    return lines


def _resolve(mod: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _target(name: str) -> str | None:
    """The fntrace module an imported dotted name lands in (longest known prefix)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        cand = ".".join(parts[:n])
        if cand in MODULES or cand == "fntrace._speedups":
            return cand
    return None


def imports(mod: str, path: Path) -> Iterator[tuple[str, int, list[str]]]:
    """(imported module, line, names taken from it) for every import that runs."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                t = _target(a.name)
                if t:
                    yield t, node.lineno, []
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(mod, path, node)
            if not base.startswith("fntrace"):
                continue
            for a in node.names:
                sub = _target(base + "." + a.name)
                if sub == base + "." + a.name:
                    yield sub, node.lineno, []
                else:
                    t = _target(base)
                    if t:
                        yield t, node.lineno, [a.name]


def graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in imports(m, p) if t != m} for m, p in MODULES.items()}


def breaches() -> set[str]:
    found = set()
    for mod, path in MODULES.items():
        src_pkg, src_rank = layer(mod)
        for tgt, _line, names in imports(mod, path):
            if tgt == mod:
                continue
            pkg, rank = layer(tgt)
            if rank > src_rank or (rank == src_rank and pkg != src_pkg
                                   and src_pkg != "fntrace" and pkg != "fntrace"):
                found.add(f"up: {mod} -> {tgt}")
            elif pkg == "fntrace" and src_pkg != "fntrace" and tgt == "fntrace":
                found.add(f"up: {mod} -> {tgt}")
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    found.add(f"private: {mod} imports {tgt}.{n}")
    return found


def private_attributes() -> set[str]:
    """``alias._name`` where ``alias`` is an fntrace module imported in that file."""
    found = set()
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("fntrace") and a.asname:
                        aliases[a.asname] = a.name
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, path, node)
                for a in node.names:
                    full = base + "." + a.name
                    if full in MODULES or full == "fntrace._speedups":
                        aliases[a.asname or a.name] = full
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__") and aliases[node.value.id] != mod):
                found.add(f"private: {mod} uses {aliases[node.value.id]}.{node.attr}")
    return found


def cycles() -> set[str]:
    """Strongly connected components of more than one module (Tarjan)."""
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: set[str] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            # A package and its own submodules importing each other is how
            # packages work (``__init__`` re-exports); only other cycles count.
            comp = [c for c in comp if not any(o != c and o.startswith(c + ".") for o in comp)]
            if len(comp) > 1:
                out.add("cycle: " + " <-> ".join(sorted(comp)))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer() -> None:
    assert all(layer(m) for m in MODULES)
    assert len(MODULES) > 40


def test_layers_cycles_and_private_names() -> None:
    found = breaches() | private_attributes() | cycles()
    new = sorted(found - KNOWN)
    gone = sorted(KNOWN - found)
    assert (new, gone) == ([], []), "\n".join(["new breaches:", *new, "fixed (remove from KNOWN):",
                                               *gone])


@pytest.mark.parametrize("case", ["up", "cycle", "private"])
def test_the_checker_sees_each_kind(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    ) -> None:
    """The reader itself: a made-up package with one breach of each kind is caught."""
    pkg = tmp_path / "fntrace"
    (pkg / "core").mkdir(parents=True)
    (pkg / "tracing").mkdir()
    for d in (pkg, pkg / "core", pkg / "tracing"):
        (d / "__init__.py").write_text("")
    body = {"up": ("from fntrace.tracing import feature\n", ""),
            "cycle": ("from fntrace.core import b\n", "from fntrace.core import a\n"),
            "private": ("from fntrace.core.b import _hidden\n", "_hidden = 1\n")}[case]
    (pkg / "core" / "a.py").write_text(body[0])
    (pkg / "core" / "b.py").write_text(body[1])
    (pkg / "tracing" / "feature.py").write_text("")
    mods = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = list(path.relative_to(tmp_path).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    monkeypatch.setitem(globals(), "MODULES", mods)
    found = breaches() | private_attributes() | cycles()
    expected = {"up": {"up: fntrace.core.a -> fntrace.tracing.feature"},
                "cycle": {"cycle: fntrace.core.a <-> fntrace.core.b"},
                "private": {"private: fntrace.core.a imports fntrace.core.b._hidden"}}[case]
    assert found == expected
