"""The text of a traced value, made without running any of the program's code.

Calling a program's ``__repr__`` is observable: a dataclass's repr reads its
fields through their descriptors, a ``Mock`` counts the call, an ORM's lazy
query set runs its query, a proxy takes a lock.  CPython's own test of
dataclasses (``test_getting_field_calls_get``) sees a traced program count
50 ``__get__`` calls where the untraced one counts 1.  So by default
(``options/repr-call`` 0) fntrace shows a value only through code it knows
runs nothing of the program's:

* None, bool, int, float, complex, str, bytes (and subclasses that keep the
  base type's repr): the base type's repr, str and bytes cut first;
* list, tuple, dict, set, frozenset: walked here, at most :data:`MAX_ITEMS`
  items and :data:`MAX_LEVEL` levels deep, each item by these same rules;
* namedtuples, dataclasses, exceptions, enum members, bound methods and
  modules whose repr is the standard library's own: rebuilt here from what
  the object holds (instance dicts, slots, ``args``), never through a
  property or a descriptor of the program's (such a field shows as
  ``<descriptor>``);
* the C-level reprs that read nothing but the object's type and identity
  (functions, builtins, code objects, types, ranges, descriptors): called;
* anything else: ``<module.Class object at 0x...>``, what ``object.__repr__``
  gives, which names the type and the identity and runs nothing.

Each read here is a dict lookup, a C getter or a C slot, and each
container is read in one C call (a slice, or a list of its first items), so
a thread changing it meanwhile cannot make the read fail.
``repr-call`` 1 calls the program's reprs
instead (reprs.py), with the guards that needs.
"""

from __future__ import annotations

import enum
import sys
import types
import weakref
from collections.abc import Callable
from itertools import islice

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MAX_ITEMS", "MAX_LEVEL", "class_rule", "text_maker", "value_text"]

#: Items shown of a container (then ``...``), as reprlib's default of 6.
MAX_ITEMS = 6
#: Containers nested deeper than this show as ``[...]``, ``(...)``, ``{...}``.
MAX_LEVEL = 2

_GETSET = types.GetSetDescriptorType
_MEMBER = types.MemberDescriptorType
_FUNCTION = types.FunctionType
# type's own getters, called directly: a metaclass's __getattribute__, or a
# property of the same name, cannot put program code in front of them.
_TYPE_MODULE = type.__dict__["__module__"]
_MRO = type.__dict__["__mro__"].__get__
_DICT = type.__dict__["__dict__"].__get__
_NAME = type.__dict__["__name__"].__get__
_QUALNAME = type.__dict__["__qualname__"].__get__

#: Types whose repr is C code reading only the object's own fields, its type's
#: name and its address: called as they are.
_C_REPRS: frozenset[type] = frozenset({
    types.FunctionType, types.BuiltinFunctionType, types.MethodWrapperType,
    types.WrapperDescriptorType, types.MethodDescriptorType,
    types.ClassMethodDescriptorType, types.GetSetDescriptorType,
    types.MemberDescriptorType, types.CodeType, types.CellType, types.FrameType,
    types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType, range,
    type(None), type(NotImplemented), type(Ellipsis),
})

#: Standard library value types whose repr reads only the value's own fields
#: (named, so that none of their modules is imported here): module -> names.
#: A datetime or time with a tzinfo other than a ``timezone`` is not one.
_PURE_NAMED: dict[str, frozenset[str]] = {
    "decimal": frozenset({"Decimal"}),
    "fractions": frozenset({"Fraction"}),
    "datetime": frozenset({"date", "time", "datetime", "timedelta", "timezone"}),
    "uuid": frozenset({"UUID"}),
    "pathlib": frozenset({"PurePath", "PurePosixPath", "PureWindowsPath", "Path",
                          "PosixPath", "WindowsPath"}),
    "pathlib._local": frozenset({"PurePath", "PurePosixPath", "PureWindowsPath", "Path",
                                 "PosixPath", "WindowsPath"}),
}

#: Base types whose repr of a subclass instance is the base repr of its value.
_SCALARS: tuple[type, ...] = (bool, int, float, complex)


def _owner(cls: type) -> type | None:
    """The class whose own dict defines ``cls``'s ``__repr__`` (dict lookups only)."""
    for klass in _MRO(cls):
        if "__repr__" in _DICT(klass):
            return klass
    return None


def _class_attr(cls: type, name: str) -> Any:
    """``name`` as ``cls``'s MRO holds it (no descriptor called), or None."""
    for klass in _MRO(cls):
        value = _DICT(klass).get(name)
        if value is not None:
            return value
    return None


def _instance_dict(value: Any) -> dict[str, Any] | None:
    """``value.__dict__`` through the interpreter's own getter, or None."""
    getter = _class_attr(type(value), "__dict__")
    if type(getter) is not _GETSET and type(getter) is not _MEMBER:
        return None
    got = getter.__get__(value)
    return got if type(got) is dict else None


def _pure_named(value: Any, cls: type) -> bool:
    """Whether ``cls`` is one of :data:`_PURE_NAMED` (itself, not a subclass)."""
    module = _TYPE_MODULE.__get__(cls)
    names = _PURE_NAMED.get(module) if type(module) is str else None
    if names is None or _NAME(cls) not in names:
        return False
    home = sys.modules.get(module)  # type: ignore[arg-type]
    space = _instance_dict(home) if home is not None else None
    if space is None or space.get(_NAME(cls)) is not cls:
        return False
    tz = _class_attr(cls, "tzinfo")
    if tz is None:
        return True
    if type(tz) is not _GETSET:  # the pure-Python datetime: not worth the care
        return False
    zone = tz.__get__(value)
    return zone is None or type(zone) is space.get("timezone")


def _plain_metaclass(cls: type) -> bool:
    """Whether looking an attribute up on ``cls`` runs only type's own code (no
    ``__getattribute__`` or ``__getattr__`` of a metaclass's)."""
    for meta in _MRO(type(cls)):
        if meta is not type and meta is not object:
            space = _DICT(meta)
            if "__getattribute__" in space or "__getattr__" in space:
                return False
    return True


def _is_data_descriptor(attr: Any) -> bool:
    kind = type(attr)
    return _class_attr(kind, "__set__") is not None or _class_attr(kind, "__delete__") is not None


class _Walk:
    """One value's text: ``text(value, level)`` by the rules of the module doc."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def text(self, value: Any, level: int) -> str:
        cls = type(value)
        rule = _FAST.get(cls)
        if rule is not None:
            if rule is _REPR:
                return repr(value)
            if rule is _CUT:
                return repr(value[: self.max_len + 1])
            return rule(self, value, level)  # type: ignore[operator]
        known = _KNOWN.get(id(cls))
        if known is not None and known[0]() is cls:
            return known[1](self, value, level)
        return self.slow(value, cls, level)

    def slow(self, value: Any, cls: type, level: int) -> str:
        """A type :data:`_FAST` and :data:`_KNOWN` do not know (yet)."""
        if issubclass(cls, type):  # a class whose metaclass has its own repr: type's
            return type.__repr__(value)
        owner = _owner(cls)
        if owner is None or owner is object:
            _remember(cls, _identity)
            return object.__repr__(value)
        if owner in _SCALARS:
            return owner.__repr__(value)  # type: ignore[call-arg]
        if owner is str or owner is bytes:
            return repr(owner.__getitem__(value, slice(0, self.max_len + 1)))
        container = _CONTAINERS.get(owner)
        if container is not None:
            return container(self, value, level)
        if owner is type:
            return type.__repr__(value)
        if _pure_named(value, cls):
            return repr(value)
        return self.rebuilt(value, cls, owner, level)

    def rebuilt(self, value: Any, cls: type, owner: type, level: int) -> str:
        """A standard library repr redone from the object's fields, else the
        identity form."""
        if owner is BaseException:
            args = BaseException.args.__get__(value)  # type: ignore[attr-defined]
            if type(args) is tuple and len(args) == 1:
                return f"{_NAME(cls)}({self.text(args[0], level + 1)})"
            return _NAME(cls) + self.sequence(args, len(args), "(", ")", level)
        space = _DICT(owner)
        func = space["__repr__"]
        home = func.__module__ if type(func) is _FUNCTION else None
        if cls is types.MethodType:
            return self.method(value, level)
        if cls is types.ModuleType or (owner is types.ModuleType):
            return self.module(value)
        if home == "enum" and issubclass(cls, enum.Enum):
            return self.enum_member(value, cls, level)
        if home == "collections" and "_fields" in space and issubclass(cls, tuple):
            names = space["_fields"]
            items = tuple.__getitem__(value, slice(0, MAX_ITEMS))
            return self.fields(_NAME(cls), zip(names, items, strict=False), len(names), level)
        if "__dataclass_fields__" in space and _plain_metaclass(owner):
            plan = _DataclassText(cls, owner)
            _remember(cls, plan)
            return plan(self, value, level)
        _remember(cls, _identity)  # a repr of the program's (or one not rebuilt here)
        return object.__repr__(value)

    def sequence(self, head: Any, n: int, left: str, right: str, level: int) -> str:
        """Up to MAX_ITEMS items of a container of ``n`` (``head``: its first ones)."""
        if level >= MAX_LEVEL:
            return f"{left}...{right}" if n else f"{left}{right}"
        shown = [self.text(v, level + 1) for v in islice(head, MAX_ITEMS)]
        if n > MAX_ITEMS:
            shown.append("...")
        if left == "(" and n == 1:
            return f"({shown[0]},)"
        return left + ", ".join(shown) + right

    def fields(self, name: str, pairs: Any, n: int, level: int) -> str:
        if level >= MAX_LEVEL:
            return f"{name}(...)"
        shown = [f"{k}={self.text(v, level + 1)}" for k, v in islice(pairs, MAX_ITEMS)]
        if n > MAX_ITEMS:
            shown.append("...")
        return f"{name}({', '.join(shown)})"

    def method(self, value: Any, level: int) -> str:
        func = types.MethodType.__func__.__get__(value)  # type: ignore[attr-defined]
        owner = types.MethodType.__self__.__get__(value)  # type: ignore[attr-defined]
        name = func.__qualname__ if type(func) is _FUNCTION else "?"
        return f"<bound method {name} of {self.text(owner, MAX_LEVEL)}>"

    def module(self, value: Any) -> str:
        names = _instance_dict(value) or {}
        name = names.get("__name__")
        return f"<module {name!r}>" if type(name) is str else object.__repr__(value)

    def enum_member(self, value: Any, cls: type, level: int) -> str:
        fields = _instance_dict(value) or {}
        name, raw = fields.get("_name_"), fields.get("_value_")
        if type(name) is not str:
            return object.__repr__(value)
        return f"<{_NAME(cls)}.{name}: {self.text(raw, level + 1)}>"


class _DataclassText:
    """A dataclass's text, as its generated repr shows it, from the fields it
    lists (``repr=True``), planned once per class: each field read from a slot
    or the instance dict, never through a property or descriptor of the
    program's.  Holds no reference to the class (a class that goes away takes
    its plan with it, see :func:`_remember`)."""

    def __init__(self, cls: type, owner: type) -> None:
        import dataclasses  # a dataclass exists, so the program has imported it already

        self.name = _QUALNAME(cls)
        fields = []
        for f in dataclasses.fields(owner):
            if f.repr:
                attr = _class_attr(cls, f.name)
                kind = (_SLOT if type(attr) is _MEMBER else
                        _HIDDEN if attr is not None and _is_data_descriptor(attr) else _OWN)
                fields.append((f.name, kind))
        self.fields = tuple(fields)

    def __call__(self, walk: _Walk, value: Any, level: int) -> str:
        if level >= MAX_LEVEL:
            return f"{self.name}(...)"
        own = _instance_dict(value) or {}
        cls = type(value)
        shown = []
        for name, kind in self.fields[:MAX_ITEMS]:
            if kind is _HIDDEN:
                text = "<descriptor>"
            elif kind is _SLOT:
                # The plan is the class's at its first value: a slot since
                # replaced by a property (or anything else) is not read.
                slot = _class_attr(cls, name)
                if type(slot) is not _MEMBER:
                    text = "<descriptor>"
                else:
                    try:
                        text = walk.text(slot.__get__(value, cls), level + 1)
                    except AttributeError:
                        text = "<unset>"
            elif name in own:
                text = walk.text(own[name], level + 1)
            else:
                default = _class_attr(cls, name)
                text = "<unset>" if default is None else walk.text(default, level + 1)
            shown.append(f"{name}={text}")
        if len(self.fields) > MAX_ITEMS:
            shown.append("...")
        return f"{self.name}({', '.join(shown)})"


#: How a dataclass field is read: from a slot, from the instance dict (or the
#: class default), or not at all (a data descriptor of the program's).
_SLOT, _OWN, _HIDDEN = "slot", "own", "hidden"


def _seq(base: Any, left: str, right: str) -> Callable[[_Walk, Any, int], str]:
    def render(w: _Walk, value: Any, level: int) -> str:
        n = base.__len__(value)
        return w.sequence(base.__getitem__(value, slice(0, MAX_ITEMS)), n, left, right, level)
    return render


def _dict(w: _Walk, value: Any, level: int) -> str:
    n = dict.__len__(value)
    if level >= MAX_LEVEL:
        return "{...}" if n else "{}"
    items = list(islice(dict.items(value), MAX_ITEMS))
    shown = [f"{w.text(k, level + 1)}: {w.text(v, level + 1)}" for k, v in items]
    if n > MAX_ITEMS:
        shown.append("...")
    return "{" + ", ".join(shown) + "}"


def _set(w: _Walk, value: Any, level: int) -> str:
    base = set if issubclass(type(value), set) else frozenset
    n = base.__len__(value)
    if n == 0:
        return "set()" if base is set else "frozenset()"
    shown = w.sequence(list(islice(base.__iter__(value), MAX_ITEMS)), n, "{", "}", level)
    return shown if base is set else f"frozenset({shown})"


_CONTAINERS: dict[type, Callable[[_Walk, Any, int], str]] = {
    list: _seq(list, "[", "]"), tuple: _seq(tuple, "(", ")"), dict: _dict, set: _set,
    frozenset: _set,
}


#: Markers of :data:`_FAST`: call repr() (a C repr of the closed set above, or
#: an exact scalar); cut then repr() (exact str, bytes and bytearray).
_REPR = object()
_CUT = object()
#: Exact types and what their text is: a marker, or a container's walk.  A
#: dict lookup by type decides the commonest values at once.
_FAST: dict[type, Any] = {
    **dict.fromkeys(_C_REPRS, _REPR), **dict.fromkeys((bool, int, float, complex, type), _REPR),
    str: _CUT, bytes: _CUT, bytearray: _CUT, **_CONTAINERS,
}
#: What the walker decided for a class (by id, with a weak reference to tell a
#: reused id): the identity form, or a dataclass's plan.  An entry goes with its
#: class.  A decision made once stays: a class that gains a ``__repr__`` later
#: still shows as decided, which runs nothing of the program's either.
_KNOWN: dict[int, tuple[weakref.ref[type], Callable[[_Walk, Any, int], str]]] = {}


def _identity(walk: _Walk, value: Any, level: int) -> str:
    return object.__repr__(value)


def _remember(cls: type, how: Callable[[_Walk, Any, int], str]) -> None:
    key = id(cls)
    try:
        _KNOWN[key] = (weakref.ref(cls, lambda _ref: _KNOWN.pop(key, None)), how)
    except TypeError:  # a type that takes no weak reference: decided every time
        pass


#: class_rule's answer for the exact types of :data:`_FAST` whose rule is a
#: container's walk: the container's name.
_CONTAINER_NAMES: dict[type, str] = {list: "list", tuple: "tuple", dict: "dict", set: "set",
                                     frozenset: "frozenset"}


def class_rule(cls: type) -> tuple[str, Any] | None:
    """How the walker shows *every* value of exactly ``cls``, when that depends
    on the class alone: for the C recorder (fntrace/csrc/value_text.c), which
    keeps the answer per class while the class stays unchanged (its version
    tag) and renders the values itself, byte for byte as here.

    The answer follows :meth:`_Walk.text`'s order: :data:`_FAST`, then
    :data:`_KNOWN`, then the part of :meth:`_Walk.slow` that reads the class
    alone (and remembers what ``slow`` remembers).  ``(rule, arg)``:
    ``("repr", None)`` repr() as is; ``("type", None)`` type's repr;
    ``("cut", base)`` the base str, bytes or bytearray's first ``max_len + 1``
    items, then repr(); ``("scalar", base)`` the base's repr;
    ``("list" | "tuple" | "dict" | "set" | "frozenset", None)`` walked;
    ``("identity", None)`` object's repr; ``("plan", (name, fields))`` a
    dataclass's plan (:class:`_DataclassText`).  None: it depends on the value
    (or is rare), the walker decides each time."""
    rule = _FAST.get(cls)
    if rule is _REPR:
        return ("repr", None)
    if rule is _CUT:
        return ("cut", cls)
    if rule is not None:
        return (_CONTAINER_NAMES[cls], None)
    known = _KNOWN.get(id(cls))
    if known is not None and known[0]() is cls:
        how = known[1]
        if how is _identity:
            return ("identity", None)
        if type(how) is _DataclassText:
            return ("plan", (how.name, how.fields))
        return None
    if issubclass(cls, type):
        return ("type", None)
    owner = _owner(cls)
    if owner is None or owner is object:
        _remember(cls, _identity)
        return ("identity", None)
    if owner in _SCALARS:
        return ("scalar", owner)
    if owner is str or owner is bytes:
        return ("cut", owner)
    if owner in _CONTAINERS:
        return (_CONTAINER_NAMES[owner], None)
    if owner is type:
        return ("type", None)
    return None


def text_maker(max_len: int) -> Callable[[Any], str]:
    """``value_text`` with ``max_len`` fixed: what a SafeRepr keeps for its values.

    The commonest values are decided here without a call of the walker: an
    exact type of :data:`_FAST`, or a class :data:`_KNOWN` knows."""
    walk = _Walk(max_len)
    fast, known, as_is, cut = _FAST, _KNOWN, _REPR, _CUT

    def text(value: Any) -> str:
        cls = type(value)
        rule = fast.get(cls)
        if rule is as_is:
            return repr(value)
        if rule is None:
            how = known.get(id(cls))
            if how is not None and how[0]() is cls:
                return how[1](walk, value, 0)
            return walk.slow(value, cls, 0)
        if rule is cut:
            return repr(value[: max_len + 1])
        return rule(walk, value, 0)  # type: ignore[no-any-return]

    return text


def value_text(value: Any, max_len: int) -> str:
    """``value``'s text by the rules above, before the caller's cut to ``max_len``."""
    return _Walk(max_len).text(value, 0)
