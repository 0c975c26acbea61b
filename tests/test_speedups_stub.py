"""fntrace/_speedups.pyi against the built extension: the same public names,
each of the same kind (class, function, constant; in a class, method or data
attribute), so the stub mypy checks against cannot drift from the C module.
"""

from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import pytest

import fntrace.core.accel

built = fntrace.core.accel.built
pytestmark = pytest.mark.skipif(built is None, reason="the C extension is not built")

STUB = Path(fntrace.__file__).with_name("_speedups.pyi")
#: Special methods the stub declares because the type implements them in C.
SPECIAL = {"__call__", "__len__", "__getitem__", "__iter__"}


def applies(test: ast.expr) -> bool:
    """An `if sys.version_info ...:` of the stub, evaluated on this Python."""
    code = compile(ast.Expression(test), str(STUB), "eval")
    return bool(eval(code, {"sys": sys}))


def body(nodes: list[ast.stmt]) -> list[ast.stmt]:
    """The statements that apply here (version branches resolved)."""
    out: list[ast.stmt] = []
    for node in nodes:
        if isinstance(node, ast.If):
            out.extend(body(node.body if applies(node.test) else node.orelse))
        else:
            out.append(node)
    return out


def kinds(nodes: list[ast.stmt]) -> dict[str, str]:
    """name -> "class", "function", "property" or "data" for a stub body."""
    found: dict[str, str] = {}
    for node in body(nodes):
        if isinstance(node, ast.ClassDef):
            found[node.name] = "class"
        elif isinstance(node, ast.FunctionDef):
            decorators = {d.id for d in node.decorator_list if isinstance(d, ast.Name)}
            found[node.name] = "property" if "property" in decorators else "function"
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found[node.target.id] = "data"
    return found


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text(encoding="utf-8"))


def public(names: dict[str, str]) -> dict[str, str]:
    return {n: k for n, k in names.items() if not n.startswith("_")}


def module_kind(obj: object) -> str:
    if isinstance(obj, type):
        return "class"
    if isinstance(obj, types.BuiltinFunctionType):
        return "function"
    return "data"


def member_kind(cls: type, name: str) -> str:
    attr = vars(cls)[name]
    if isinstance(attr, types.MethodDescriptorType):
        return "function"
    if isinstance(attr, types.GetSetDescriptorType | types.MemberDescriptorType):
        return "data"
    return type(attr).__name__


def test_module_names_and_kinds_match_the_stub() -> None:
    stub = public(kinds(stub_tree().body))
    real = {name: module_kind(getattr(built, name)) for name in dir(built)
            if not name.startswith("_")}
    assert stub == real


def test_module_constants_have_the_stub_type() -> None:
    for node in body(stub_tree().body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            assert isinstance(node.annotation, ast.Name)
            assert type(getattr(built, node.target.id)).__name__ == node.annotation.id


def test_every_class_has_the_stub_members() -> None:
    classes = [n for n in body(stub_tree().body) if isinstance(n, ast.ClassDef)]
    assert classes
    for node in classes:
        cls = getattr(built, node.name)
        stub = kinds(node.body)
        # A read-only getset (RingCore.events) is a property in the stub.
        want = {n: ("data" if k == "property" else k) for n, k in public(stub).items()}
        real = {n: member_kind(cls, n) for n in vars(cls) if not n.startswith("_")}
        assert want == real, node.name
        for special in SPECIAL:
            assert (special in stub) == (special in dir(cls)), (node.name, special)


def test_read_only_in_the_stub_is_read_only_in_c() -> None:
    ring = built.RingCore(1024)
    with pytest.raises(AttributeError):
        ring.events = None
    ring.overwrite = False  # a plain attribute in the stub: settable
    assert ring.overwrite is False
