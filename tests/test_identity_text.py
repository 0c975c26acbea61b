"""The identity form of user objects in function_graph's arguments and return values.

Why: the C graph recorder writes ``<module.Qualname object at 0x...>`` itself
(fntrace/csrc/identity.c: a per-type prefix kept while the type's version tag
and __qualname__ stay, the address in hex) instead of calling
``object.__repr__``.  Every case where its shortcut could go stale or differ
is held here to ``object.__repr__``'s own text, the oracle, on both paths:
a class whose __module__ or __qualname__ changes between calls, "builtins"
and non-str modules, non-ASCII names, a text past the length limit, a static
type, and a class that gains a ``__repr__`` of its own.
"""

from __future__ import annotations

from typing import Any

from fntrace.tracing.instance import trace


def id_pass(obj: Any) -> Any:
    return obj


class Plain:
    pass


def rendered(values: list[Any], max_len: int = 64) -> list[tuple[str, str]]:
    """(argument text, return value text) of id_pass for each value, in order."""
    with trace("function_graph", filter="id_pass", funcgraph_args=1,
               funcgraph_retval=1, repr_max_len=max_len) as inst:
        for v in values:
            id_pass(v)
        inst.write("tracing_on", "0")
        events = [ev for buf in inst.rb.live.buffers() for ev in buf.events]
    args = [ev[5] for ev in events if ev[2] == "E"]
    rets = [ev[7] for ev in events if ev[2] == "X"]
    return list(zip(args, rets, strict=True))


def oracle(v: Any, max_len: int = 64) -> tuple[str, str]:
    text = object.__repr__(v)
    if len(text) > max_len:
        text = text[:max(max_len - 3, 1)] + "..."
    return f"obj={text}", text


def test_user_objects_as_object_repr_writes_them(hot_path: str) -> None:
    class Local:
        pass

    values = [Plain(), Plain(), Local(), object(), Plain()]
    assert rendered(values) == [oracle(v) for v in values]
    assert rendered(values)[0][1].startswith("<test_identity_text.Plain object at 0x")


def test_module_and_qualname_changed_between_calls(hot_path: str) -> None:
    Moving = type("Moving", (), {"__module__": __name__})  # fresh in each run: it changes
    a, b = Moving(), Moving()
    want = [oracle(a)]
    values = [a]

    def step(change: Any) -> None:
        change()
        # a lookup through the class gives it a new version tag at once (a
        # changed class has none until then, and none is never cached)
        assert not hasattr(b, "no_such_attribute")
        values.append(b)
        want.append(oracle(b))

    with trace("function_graph", filter="id_pass", funcgraph_args=1,
               funcgraph_retval=1) as inst:
        id_pass(a)
        for change in (lambda: setattr(Moving, "__qualname__", "Renamed"),
                       lambda: setattr(Moving, "__module__", "elsewhere.mod"),
                       lambda: setattr(Moving, "__module__", "builtins"),
                       lambda: setattr(Moving, "__module__", 5),
                       lambda: setattr(Moving, "__module__", "back"),
                       lambda: setattr(Moving, "__qualname__", "Nœud"),
                       lambda: setattr(Moving, "__qualname__", "Q" * 80)):
            step(change)
            id_pass(b)
        inst.write("tracing_on", "0")
        events = [ev for buf in inst.rb.live.buffers() for ev in buf.events]
    got = list(zip([ev[5] for ev in events if ev[2] == "E"],
                   [ev[7] for ev in events if ev[2] == "X"], strict=True))
    assert got == want
    assert [w[1].split(" object at")[0] for w in want] == [
        "<test_identity_text.Moving", "<test_identity_text.Renamed", "<elsewhere.mod.Renamed",
        "<Moving", "<Moving",
        "<back.Renamed", "<back.Nœud", "<back." + "Q" * 55 + "..."]


def test_limits_and_names_outside_the_fast_form(hot_path: str) -> None:
    long_class = type("L" * 70, (), {})
    wide = type("Größe", (), {})
    values = [long_class(), wide(), Plain()]
    assert rendered(values) == [oracle(v) for v in values]
    assert rendered(values, max_len=20) == [oracle(v, 20) for v in values]
    # a limit the text just fits, and one it passes by one character
    p = Plain()
    n = len(object.__repr__(p))
    assert rendered([p], max_len=n) == [oracle(p, n)]
    assert rendered([p], max_len=n - 1) == [oracle(p, n - 1)]


def test_a_class_that_gains_a_repr_is_still_shown_by_identity(hot_path: str) -> None:
    Gains = type("Gains", (), {"__module__": __name__})
    g = Gains()
    with trace("function_graph", filter="id_pass", funcgraph_args=1,
               funcgraph_retval=1) as inst:
        id_pass(g)
        Gains.__repr__ = lambda self: "never called"  # type: ignore[assignment]
        id_pass(g)
        inst.write("tracing_on", "0")
        rets = [ev[7] for buf in inst.rb.live.buffers() for ev in buf.events if ev[2] == "X"]
    assert rets == [object.__repr__(g)] * 2


def test_non_ascii_parameter_name(hot_path: str) -> None:
    ns: dict[str, Any] = {}
    exec("def id_wide(été):\n    return été\n", ns)
    p = Plain()
    with trace("function_graph", filter="id_wide", funcgraph_args=1,
               funcgraph_retval=1) as inst:
        ns["id_wide"](p)
        inst.write("tracing_on", "0")
        events = [ev for buf in inst.rb.live.buffers() for ev in buf.events]
    assert [ev[5] for ev in events if ev[2] == "E"] == [f"été={object.__repr__(p)}"]


def id_many(a: Any, b: Any, c: Any, d: Any, e: Any, f: Any, g: Any, h: Any, i: Any,
            *rest: Any, k: Any = None, **more: Any) -> None:
    return None


def test_arguments_joined_past_eight_and_not_ascii(hot_path: str) -> None:
    """The C recorder joins up to eight arguments' texts by hand, a list beyond."""
    objs = [Plain() for _ in range(4)]
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((1, objs[0], "x", 2, objs[1], 3.5, None, objs[2], 7), {}),
        ((1, objs[0], "é", 2, objs[1], 3.5, None, objs[2], 7, objs[3]), {"k": 9, "z": objs[3]}),
        ((objs[0],) * 8 + (0,), {"k": "ü"}),
    ]
    with trace("function_graph", filter="id_many", funcgraph_args=1) as inst:
        for args, kwargs in calls:
            id_many(*args, **kwargs)
        inst.write("tracing_on", "0")
        got = [ev[5] for buf in inst.rb.live.buffers() for ev in buf.events if ev[2] == "E"]

    def text(v: Any) -> str:
        return object.__repr__(v) if isinstance(v, Plain) else repr(v)

    want = []
    for args, kwargs in calls:
        names = "abcdefghi"
        parts = [f"{n}={text(v)}" for n, v in zip(names, args, strict=False)]
        parts.append(f"rest={text(tuple(args[9:]))}")
        parts.append(f"k={text(kwargs.get('k'))}")
        parts.append(f"more={text({n: v for n, v in kwargs.items() if n != 'k'})}")
        want.append(", ".join(parts))
    assert got == want
