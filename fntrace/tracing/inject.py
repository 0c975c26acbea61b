"""Error injection: the kernel's ``fail_function``, for Python functions.

``fntrace.inject(target, raise_=OSError("disk full"), probability=10)`` makes
calls of ``target`` (a function object or a ``module:qualname`` glob) fail on
purpose, so a program's error paths can be tested without breaking anything
for real.  It is one IPMODIFY ops (see fntrace/core/ipmodify.py): a failing
call either skips the body and returns ``retval`` (the kernel's
``override_function_with_return``) or continues in a tiny *raiser* that raises
the exception (``set_instruction_pointer``).  The caller sees the exception
exactly as if the function had raised it first thing::

    File "app.py", line 30, in caller          <- the caller's line
    File "store.py", line 12, in save          <- the core's stub (the def line)
    File "store.py", line 12, in save          <- the raiser, relabelled as ``save``
    OSError: disk full
    injected by fntrace fail_function into store:save     <- a note (add_note)

The raiser's code object carries the target's name, qualname, file and first
line, so the innermost frame is named as the injected function and points at
its ``def``; no fntrace frame appears.  Each failure gets a fresh exception
(a class is instantiated, an instance copied), so tracebacks never pile up
across injections.

When a call fails is decided as the kernel's ``should_fail()`` decides
(lib/fault-inject.c, Documentation/fault-injection/fault-injection.rst), in
this order, for each call that the optional ``condition(arguments)`` accepts:

1. ``probability`` 0: never.  ``times`` 0: never (the budget is spent).
2. ``space`` > 0: the call is skipped and ``space`` decreases by one.  The
   documentation's meaning (failures are suppressed until the budget reaches
   zero, so exactly the first ``space`` eligible calls pass) is kept; the
   kernel's code compares ``space > size`` and so lets one call fewer pass.
3. ``interval`` > 1: a counter of the calls reaching this step increases and
   only every ``interval``-th fails (the counter is not reset).
4. one draw ``random.randrange(100)`` of the injection's ``random.Random(seed)``;
   the call fails when the draw is below ``probability`` (percent).  The draw
   is made even at 100, as the kernel's is, so a seeded run is reproducible.
5. the call fails; ``times`` decreases unless it is -1 (unlimited).

``space`` and ``times`` are budgets that count down, as the debugfs files do.
Counters: ``hits`` (calls of a target seen), ``injected`` (calls failed).

Every failure is written into the ring buffer of every live instance (while
its ``tracing_on`` is 1 and the thread passes its pid filter)::

    MainThread-1234  [000] M.... 0.000123: fail_function: store:save raised OSError('disk full')
    MainThread-1234  [000] M.... 0.000140: fail_function: store:size returned 0

Instance files (the kernel's layout): ``fail_function/inject`` (write a name
to add it, ``!name`` to remove it, an empty write clears all; read lists the
names), ``fail_function/<name>/retval`` (a Python literal to return, or a
builtin exception such as ``OSError("disk full")`` to raise; default None),
and the shared ``probability``, ``interval``, ``times``, ``space``.  Their
defaults are the kernel's: probability 0, interval 1, times 1, space 0 -- an
added function does not fail until probability is set.
"""

from __future__ import annotations

import ast
import builtins
import copy
import random
import threading
import types
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fntrace.core import engine, forksafe
from fntrace.core.engine import BusyError
from fntrace.core.events import EVENT_OVERHEAD
from fntrace.core.events import FAIL as _FAIL_KIND
from fntrace.core.filter import Filter, parse
from fntrace.core.flags import Flags
from fntrace.core.ipmodify import one_line_table
from fntrace.core.ops import Ops
from fntrace.core.oscaps import native_id
from fntrace.core.symbols import iter_loaded_code
from fntrace.tracing.alive import instances
from fntrace.tracing.reprs import SafeRepr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from fntrace.core.regs import FtraceRegs
    from fntrace.core.symbols import Function
    from fntrace.tracing.files import FileTable
    from fntrace.tracing.instance import Instance

__all__ = ["FAIL", "Action", "FaultAttr", "Injection", "inject", "parse_inject_spec",
           "register_files", "target_name"]

FAIL = _FAIL_KIND.tag  # (ts, size, "J", ip, text): one injected failure (events.FailAt)
if TYPE_CHECKING:
    Condition = Callable[[dict[str, Any]], object]
ExceptionSpec = type[BaseException] | BaseException

#: Renders an Action's value once, when the Action is made (never in a failing
#: call), so it is not timed: a slow-repr cutoff would make the text depend on the
#: machine's load, and one slow moment would mark the type slow process-wide.
_repr = SafeRepr(64, 1 << 40)


def function_of(target: Any) -> types.FunctionType:
    """The plain function behind a bound method or a class/static method."""
    func = target
    for _ in range(3):
        if isinstance(func, (staticmethod, classmethod, types.MethodType)):
            func = func.__func__
    if not isinstance(func, types.FunctionType):
        raise TypeError(f"not a Python function: {target!r}")
    return func


def target_name(target: Any) -> str:
    """``module:qualname`` of a function object (bound methods, class/static methods too).

    The name comes from the code object and the globals, as the core names
    functions, so it still matches after ``__qualname__`` was rewritten.
    """
    if isinstance(target, str):
        return target
    func = function_of(target)
    module = func.__globals__.get("__name__")
    return f"{module if isinstance(module, str) else '?'}:{func.__code__.co_qualname}"


# -- when to fail ---------------------------------------------------------------------


def _check(name: str, value: int, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def _renew_action_lock(attr: FaultAttr) -> None:
    attr.lock = threading.Lock()  # see fntrace/core/forksafe.py


def _renew_injector_locks(injection: Injection) -> None:
    injection._counts = threading.Lock()  # see fntrace/core/forksafe.py
    injection._changing = threading.Lock()


class FaultAttr:
    """The kernel's ``struct fault_attr``: when calls fail (see the module docstring)."""

    def __init__(self, probability: int = 100, interval: int = 1, times: int = -1,
                 space: int = 0, seed: int | None = None) -> None:
        self.probability = _check("probability", probability, 0, 100)
        self.interval = _check("interval", interval, 1)
        self.times = _check("times", times, -1)
        self.space = _check("space", space, 0)
        self.random = random.Random(seed)
        self.count = 0  # calls that reached the interval step
        self.lock = threading.Lock()
        forksafe.renew_in_child(self, _renew_action_lock)

    def set(self, name: str, value: int) -> None:
        low, high = {"probability": (0, 100), "interval": (1, None), "times": (-1, None),
                     "space": (0, None)}[name]
        with self.lock:
            setattr(self, name, _check(name, value, low, high))

    def should_fail(self) -> bool:
        with self.lock:
            if self.probability == 0 or self.times == 0:
                return False
            if self.space > 0:
                self.space -= 1
                return False
            if self.interval > 1:
                self.count += 1
                if self.count % self.interval:
                    return False
            if self.random.randrange(100) >= self.probability:
                return False
            if self.times > 0:
                self.times -= 1
            return True


# -- how to fail -----------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """What a failing call does: raise ``exception`` if set, else return ``retval``."""

    exception: ExceptionSpec | None = None
    retval: Any = None
    #: The value as the trace and ``retval`` show it, rendered once here.
    shown: str = field(default="", init=False, compare=False)

    def __post_init__(self) -> None:
        exc = self.exception
        if exc is None:
            object.__setattr__(self, "shown", _repr(self.retval))
            return
        if not (isinstance(exc, BaseException)
                or (isinstance(exc, type) and issubclass(exc, BaseException))):
            raise TypeError(f"raise_ must be an exception class or instance, got {exc!r}")
        object.__setattr__(self, "shown", f"{exc.__name__}()" if isinstance(exc, type)
                           else _repr(exc))

    def fresh(self) -> BaseException:
        """A new exception to raise (a class instantiated, an instance copied)."""
        exc = self.exception
        if isinstance(exc, type):
            return exc()
        assert exc is not None
        try:
            new = copy.copy(exc)
            if type(new) is not type(exc) or new.args != exc.args:
                new = exc
        except Exception:  # an exception whose args do not rebuild it: reuse it
            new = exc
        new.__traceback__ = None
        return new

    def text(self) -> str:
        """The value as written to and read from ``fail_function/<name>/retval``."""
        return self.shown


def _raiser_template(exc: BaseException) -> Callable[..., Any]:
    def raiser(*args: Any, **kwargs: Any) -> Any:
        raise exc
    return raiser


_RAISER = _raiser_template(ValueError()).__code__


def _relabelled(target: types.CodeType) -> types.CodeType:
    """The raiser's code named and placed as ``target`` (name, qualname, file, first line)."""
    return _RAISER.replace(co_name=target.co_name, co_qualname=target.co_qualname,
                           co_filename=target.co_filename,
                           co_firstlineno=target.co_firstlineno,
                           co_linetable=one_line_table(_RAISER))


# -- the injection ------------------------------------------------------------------------


class Injection:
    """One IPMODIFY ops failing calls of its targets; see the module docstring.

    Targets are ``module:qualname`` globs, each with its own :class:`Action`;
    the :class:`FaultAttr` and the ``condition`` are shared by all of them
    (the kernel's fail_function has one fault_attr and a retval per function).
    """

    def __init__(self, attr: FaultAttr | None = None,
                 condition: Condition | None = None) -> None:
        self.attr = attr if attr is not None else FaultAttr()
        self.condition = condition
        self.hits = 0
        self.injected = 0
        self.ops: Ops | None = None
        self._targets: dict[str, Action] = {}
        self._table: tuple[tuple[Filter, Action], ...] = ()
        self._chosen: dict[int, tuple[Function, Action | None]] = {}
        # target's Function -> relabelled raiser (by Function, not id(code): a Function
        # holds its code weakly, so a freed code's id may come back for another)
        self._raisers: dict[Function, types.CodeType] = {}
        self._counts = threading.Lock()
        self._changing = threading.Lock()
        forksafe.renew_in_child(self, _renew_injector_locks)

    @property
    def targets(self) -> dict[str, Action]:
        return dict(self._targets)

    @property
    def active(self) -> bool:
        return self.ops is not None

    def add(self, pattern: str, action: Action) -> None:
        """Fail calls of ``pattern`` too (or change its action); BusyError changes nothing."""
        Filter(parse(pattern))  # a malformed glob: ValueError before anything changes
        targets = {**self._targets, pattern: action}
        self._apply(targets)

    def discard(self, pattern: str) -> None:
        targets = {k: v for k, v in self._targets.items() if k != pattern}
        self._apply(targets)

    def remove(self) -> None:
        """Stop injecting; every target runs its original code again."""
        self._apply({})

    def _apply(self, targets: dict[str, Action]) -> None:
        """Move to ``targets``; on any error (BusyError) the old state stays whole.

        The new table is in place before the ops reaches a new function, so
        its first call already finds its action.
        """
        with self._changing:
            patterns = list(targets)
            old = (self._targets, self._table, self._chosen)
            self._targets = targets
            self._table = tuple((Filter(parse(p)), a) for p, a in targets.items())
            self._chosen = {}
            try:
                if not patterns:
                    if self.ops is not None:
                        engine.unregister(self.ops)
                        self.ops = None
                    self._forget_raisers()
                elif self.ops is None:
                    ops = Ops(self._entry, flags=Flags.IPMODIFY | Flags.RECURSION,
                              filter=patterns, private=self)
                    engine.register(ops)  # BusyError: nothing registered
                    self.ops = ops
                elif patterns != list(old[0]):
                    self.ops.set_filter(patterns)  # BusyError: the old filter stays
            except BaseException:
                self._targets, self._table, self._chosen = old
                raise

    def _forget_raisers(self) -> None:
        for code in self._raisers.values():
            engine.unmark_internal(code)
        self._raisers = {}

    def _action(self, ip: Function) -> Action | None:
        got = self._chosen.get(id(ip.code))
        if got is None or got[0] is not ip:
            action = next((a for f, a in self._table if f.selects(ip.module, ip.qualname)),
                          None)
            self._chosen[id(ip.code)] = got = (ip, action)
        return got[1]

    def _entry(self, ip: Function, parent: Function | None, ops: Ops,
               fregs: FtraceRegs) -> None:
        action = self._action(ip)
        if action is None:
            return
        with self._counts:
            self.hits += 1
        condition = self.condition
        if condition is not None and not condition(fregs.arguments):
            return
        if not self.attr.should_fail():
            return
        with self._counts:
            self.injected += 1
        if action.exception is None:
            fregs.override_function_with_return(action.retval)
            text = f"returned {action.shown}"
        else:
            exc = action.fresh()
            note = f"injected by fntrace fail_function into {ip.name}"
            if note not in getattr(exc, "__notes__", ()):
                exc.add_note(note)
            fregs.set_instruction_pointer(self._raiser(ip, exc))
            text = f"raised {action.shown}"
        _emit(ip, text)

    def _raiser(self, ip: Function, exc: BaseException) -> Callable[..., Any]:
        code = self._raisers.get(ip)
        if code is None:
            code = _relabelled(ip.code)
            engine.mark_internal(code)  # never a site: tracers see the call as failed, not run
            self._raisers[ip] = code
        template = _raiser_template(exc)
        return types.FunctionType(code, template.__globals__, code.co_name, None,
                                  template.__closure__)

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return (f"<Injection {' '.join(self._targets) or '-'} {state} hits={self.hits} "
                f"injected={self.injected}>")


def _emit(ip: Function, text: str) -> None:
    tid = native_id()
    size = EVENT_OVERHEAD + len(text)
    for inst in instances():
        if inst.tracing and (not inst.pid_filtered or inst.pid_allowed(tid)):
            rb = inst.rb
            rb.write((rb.now(), size, FAIL, ip, text))
    for listener in list(LISTENERS):
        listener(ip, text)



def inject(target: Any, raise_: ExceptionSpec | None = None, retval: Any = None, *,
           probability: int = 100, interval: int = 1, times: int = -1, space: int = 0,
           condition: Condition | None = None, seed: int | None = None) -> Injection:
    """Make calls of ``target`` fail: raise ``raise_``, or return ``retval`` without running.

    ``target`` is a function object (methods, class and static methods, closures)
    or a ``module:qualname`` glob (functions imported later are covered too).
    A target already modified by another IPMODIFY user (a livepatch, another
    injection) raises BusyError and nothing changes.  ``Injection.remove()``
    undoes it.
    """
    if raise_ is not None and retval is not None:
        raise ValueError("give raise_ or retval, not both")
    action = Action(raise_, retval)
    injection = Injection(FaultAttr(probability, interval, times, space, seed), condition)
    injection.add(target_name(target), action)
    return injection


# -- the command-line spec ----------------------------------------------------------------

_KEYS = ("raise", "retval", "probability", "interval", "times", "space", "seed")
#: Limits on what a spec (or a ``retval`` file write) may hold, so a hostile or
#: mistyped one is a ValueError with its column, never a RecursionError or a
#: MemoryError from Python's own parser (docs/tracefs.md, fail_function).
MAX_SPEC = 4096        # characters
MAX_NESTING = 32       # brackets, and signs in a row (``--1``), nested in one value


def _scan(text: str, base: int = 0) -> list[tuple[int, str]]:
    """Split on ``:`` outside quotes and brackets: (column, field) pairs.

    Checks the limits on the way: ValueError("column N: ...") for a spec over
    MAX_SPEC characters, nesting over MAX_NESTING, unbalanced brackets or an
    unterminated string.
    """
    if len(text) > MAX_SPEC:
        raise ValueError(f"column {base + MAX_SPEC}: longer than {MAX_SPEC} characters")
    fields: list[tuple[int, str]] = []
    depth = signs = 0
    quote = ""
    start = qstart = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote, qstart = ch, i
        elif ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise ValueError(f"column {base + i}: brackets nested deeper than "
                                 f"{MAX_NESTING}")
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"column {base + i}: unbalanced {ch!r}")
        elif ch == ":" and depth == 0:
            fields.append((start, text[start:i]))
            start = i + 1
        if ch in "+-~" and not quote:
            signs += 1
            if signs > MAX_NESTING:
                raise ValueError(f"column {base + i}: more than {MAX_NESTING} signs in a row")
        elif not ch.isspace():
            signs = 0
        i += 1
    if quote:
        raise ValueError(f"column {base + qstart}: unterminated string")
    if depth:
        raise ValueError(f"column {base + len(text)}: unbalanced brackets")
    fields.append((start, text[start:]))
    return fields


def literal(text: str, column: int = 0) -> Any:
    """``ast.literal_eval`` of ``text`` within the limits; ValueError("column N: ...")
    for anything else (a syntax error, a non-literal, an unhashable set or dict key)."""
    _scan(text, column)
    try:
        return ast.literal_eval(text.strip())
    except SyntaxError as exc:
        where = column + len(text) - len(text.lstrip()) + max((exc.offset or 1) - 1, 0)
        raise ValueError(f"column {where}: not a Python literal ({exc.msg})") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"column {column}: not a Python literal ({exc})") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"column {column}: nested too deeply") from None


def parse_exception(text: str, column: int = 0) -> BaseException:
    """``OSError``, ``OSError("disk full")``, ``KeyError('k')``: a builtin exception.

    Only a builtin exception class name and literal arguments are accepted
    (``ast.literal_eval`` on each argument); nothing is ever evaluated.  The
    exception is built here, so arguments its class refuses
    (``UnicodeDecodeError(1)``) are a ValueError now, not a TypeError later.
    """
    _scan(text, column)
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"not an exception constructor: {text!r} ({exc.msg}, column "
                         f"{column + max((exc.offset or 1) - 1, 0)})") from None
    except (RecursionError, MemoryError):
        raise ValueError(f"column {column}: {text[:40]!r}... is nested too deeply") from None
    args: list[Any] = []
    if isinstance(node, ast.Call):
        if node.keywords:
            raise ValueError(f"keyword arguments are not allowed: {text!r}")
        for arg in node.args:
            try:
                args.append(ast.literal_eval(arg))
            except (ValueError, TypeError, RecursionError, MemoryError):
                raise ValueError(f"exception arguments must be literals: {text!r} (column "
                                 f"{column + arg.col_offset})") from None
        node = node.func
    if not isinstance(node, ast.Name):
        raise ValueError(f"expected a builtin exception name: {text!r}")
    cls = getattr(builtins, node.id, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise ValueError(f"{node.id!r} is not a builtin exception")
    try:
        return cls(*args)
    except Exception as exc:  # the class's own argument checks, whatever they raise
        raise ValueError(f"{text.strip()!r} cannot be built: {type(exc).__name__}: "
                         f"{exc}") from None


def _int(key: str, value: str) -> int:
    try:
        if len(value.strip()) > 20:   # FaultAttr's numbers fit 64 bits
            raise ValueError
        number = int(value.strip(), 10)
        if not -(1 << 63) <= number < 1 << 63:
            raise ValueError
        return number
    except ValueError:
        raise ValueError(f"{key}: expected an integer, got {value!r}") from None


def parse_inject_spec(text: str) -> dict[str, Any]:
    """``FUNC:raise=OSError("disk full"):probability=10`` -> keyword arguments of :func:`inject`.

    FUNC is a ``module:qualname`` glob; the fields after it are ``key=value``
    with keys raise, retval (a Python literal), probability, interval, times,
    space, seed.  A malformed spec raises ValueError naming the problem.
    """
    shown = repr(text) if len(text) <= 200 else repr(text[:200]) + "..."
    try:
        fields = _scan(text)
    except ValueError as exc:
        raise ValueError(f"inject spec {shown}: {exc}") from None
    first = next((i for i, (_, f) in enumerate(fields)
                  if "=" in f and f.split("=", 1)[0].strip() in _KEYS), len(fields))
    target = ":".join(f for _, f in fields[:first]).strip()
    if not target:
        raise ValueError(f"inject spec {shown}: no function named")
    out: dict[str, Any] = {"target": target}
    for col, spec_field in fields[first:]:
        key, eq, value = spec_field.partition("=")
        key = key.strip()
        if not eq or key not in _KEYS:
            raise ValueError(f"inject spec {shown}: unknown field {spec_field!r} "
                             f"(expected one of {', '.join(_KEYS)}; column {col})")
        if key in out or (key == "raise" and "raise_" in out):
            raise ValueError(f"inject spec {shown}: {key} given twice (column {col})")
        vcol = col + len(spec_field) - len(value)
        try:
            if key == "raise":
                out["raise_"] = parse_exception(value, vcol)
            elif key == "retval":
                try:
                    out["retval"] = literal(value, vcol)
                except ValueError as exc:
                    raise ValueError(f"retval must be a Python literal, got "
                                     f"{value[:40]!r}: {exc}") from None
            else:
                out[key] = _int(key, value)
        except ValueError as exc:
            raise ValueError(f"inject spec {shown}: {exc}") from None
    if "raise_" in out and "retval" in out:
        raise ValueError(f"inject spec {shown}: give raise or retval, not both")
    try:
        FaultAttr(*(out.get(k, d) for k, d in
                    (("probability", 100), ("interval", 1), ("times", -1), ("space", 0))))
        Filter(parse(target))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"inject spec {shown}: {exc}") from None
    return out


#: Called as ``listener(ip, text)`` for every failure (the CLI prints them).
LISTENERS: list[Callable[[Function, str], None]] = []


def start_specs(specs: Iterable[dict[str, Any]], write: Callable[[str], None] | None = None
                ) -> Callable[[], None]:
    """Start one injection per parsed spec (all or none); returns what stops them all.

    ``write`` gets a ``fail_function: module:func raised ...`` line per failure.
    """
    done: list[Injection] = []
    listener: Callable[[Function, str], None] | None = None
    if write is not None:
        def listener(ip: Function, text: str) -> None:
            write(f"fail_function: {ip.name} {text}\n")
        LISTENERS.append(listener)

    def stop() -> None:
        for injection in done:
            injection.remove()
        if listener is not None and listener in LISTENERS:
            LISTENERS.remove(listener)

    try:
        for kwargs in specs:
            done.append(inject(**kwargs))
    except BaseException:
        stop()
        raise
    return stop


# -- the instance files ----------------------------------------------------------------------


class _FailFunction:
    """One instance's ``fail_function/`` directory: one Injection, kernel defaults."""

    def __init__(self) -> None:
        self.attr = FaultAttr(probability=0, interval=1, times=1, space=0)
        self.injection = Injection(self.attr)


_ATTRS = ("probability", "interval", "times", "space")
_state: weakref.WeakKeyDictionary[Instance, _FailFunction] = weakref.WeakKeyDictionary()


def _of(inst: Instance) -> _FailFunction:
    state = _state.get(inst)
    if state is None:
        state = _state[inst] = _FailFunction()
    return state


def parse_retval(text: str) -> Action:
    """A ``retval`` file write: a Python literal, or a builtin exception constructor."""
    value = text.strip()
    try:
        return Action(None, literal(value))
    except ValueError:
        pass
    try:
        return Action(parse_exception(value))
    except ValueError as exc:
        raise ValueError(f"retval: expected a Python literal or a builtin exception "
                         f"like OSError('disk full'), got {text[:80]!r} ({exc})") from None


class FailFunctionFiles:
    """``fail_function/``: inject, <name>/retval, probability, interval, times, space."""

    def names(self, inst: Instance) -> list[str]:
        state = _state.get(inst)
        funcs = list(state.injection.targets) if state is not None else []
        return ["inject", *_ATTRS, *(f"{name}/retval" for name in funcs)]

    def read(self, inst: Instance, path: str) -> str | None:
        state = _of(inst)
        if path == "inject":
            return "".join(f"{name}\n" for name in state.injection.targets)
        if path in _ATTRS:
            return f"{getattr(state.attr, path)}\n"
        name, _, leaf = path.rpartition("/")
        action = state.injection.targets.get(name)
        if leaf == "retval" and action is not None:
            return action.text() + "\n"
        return None

    def write(self, inst: Instance, path: str, text: str, append: bool) -> bool:
        state = _of(inst)
        if path == "inject":
            self._inject(inst, state, text.strip())
        elif path in _ATTRS:
            value = text.strip()
            if (not value.lstrip("-").isascii() or not value.lstrip("-").isdigit()
                    or len(value) > 20 or not -(1 << 63) <= int(value) < 1 << 63):
                raise ValueError(f"fail_function/{path}: expected an integer (64-bit), "
                                 f"got {text[:40]!r}")
            state.attr.set(path, int(value))
        else:
            name, _, leaf = path.rpartition("/")
            if leaf != "retval" or name not in state.injection.targets:
                raise FileNotFoundError(f"{inst.name}: no such file: fail_function/{path}")
            state.injection.add(name, parse_retval(text))
        return True

    def _inject(self, inst: Instance, state: _FailFunction, name: str) -> None:
        injection = state.injection
        if not name:
            injection.remove()
        elif name.startswith("!"):
            if name[1:].strip() not in injection.targets:
                raise FileNotFoundError(f"fail_function/inject: {name[1:]!r} is not injected")
            injection.discard(name[1:].strip())
        else:
            if name in injection.targets:
                raise BusyError(f"fail_function/inject: {name} is already injected")
            filt = Filter(parse(name))  # ValueError for a malformed name
            if not any(filt.selects(fn.module, fn.qualname) for fn in iter_loaded_code()):
                raise ValueError(f"fail_function/inject: no such function: {name}")
            injection.add(name, Action())

    def close(self, inst: Instance) -> None:
        state = _state.pop(inst, None)
        if state is not None:
            state.injection.remove()


def register_files(table: FileTable) -> None:
    files = FailFunctionFiles()
    table.directory("fail_function", files)
    table.on_close(files.close)
