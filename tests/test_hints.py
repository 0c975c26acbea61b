"""core/hints.py: which patterns matched nothing, and the advice, against a
hand-made set of loaded modules (an oracle independent of this interpreter)."""

from __future__ import annotations

from typing import Any

import fntrace
from fntrace.core.filter import parse
from fntrace.core.hints import Loaded, report

SO = "/site/black/__init__.cpython-311-x86_64-linux-gnu.so"
FOUND = Loaded(
    functions={"app": {"main", "Cart.total"}, "app.db": {"connect"}, "black.pure": {"out"}},
    modules={"app": "/src/app/__init__.py", "app.db": "/src/app/db.py", "black": SO,
             "black.linegen": SO.replace("__init__", "linegen"),
             "black.pure": "/site/black/pure.py", "sys": None},
    main_name="app.cli", main_how="-m app.cli")


def said(*patterns: str) -> list[str]:
    return report(parse(patterns), FOUND, "-F")


def test_matching_and_negative_and_trigger_lines_say_nothing() -> None:
    assert said("main", "app:*", "*:mod:app.*", "!nothing", "app.db:connect", "total") == []


def test_compiled_modules_are_named() -> None:
    assert said("black:*") == [
        f"-F 'black:*' matched no function: Module black is compiled (mypyc, Cython or C: "
        f"{SO}): it has no Python functions to trace."]
    assert said("black.*") == [
        "-F 'black.*' matched no function: 'black.*' matches qualnames (Class.method), not "
        "modules: did you mean 'black:*' or '*:mod:black.*'? 2 of the 3 loaded modules it "
        "names are compiled (mypyc, Cython or C: black, black.linegen) and have no Python "
        "functions to trace."]


def test_module_spellings() -> None:
    assert said("app.Cart.total", "app.db", "app.cli:*") == [
        "-F 'app.Cart.total' matched no function: 'app.Cart.total' matches qualnames, not "
        "module.function: did you mean 'app:Cart.total'?",
        "-F 'app.db' matched no function: 'app.db' names a module, not a function: did you "
        "mean 'app.db:*' or '*:mod:app.db.*'?",
        "-F 'app.cli:*' matched no function: no module 'app.cli' is loaded. app.cli runs as "
        "the program (-m app.cli): its functions are '__main__:*'."]


def test_close_names_within_the_module() -> None:
    assert said("conect:mod:app.*", "ap:*", "zzz") == [
        "-F 'conect:mod:app.*' matched no function: no function of module app, app.db "
        "matches 'conect': did you mean 'connect:mod:app.*'?",
        "-F 'ap:*' matched no function: no loaded module matches 'ap': did you mean module "
        "'app'?",
        "-F 'zzz' matched no function: no loaded function has a name like it (is its module "
        "imported yet?)"]


def test_check_filter_on_an_ops() -> None:
    ops = fntrace.Ops(lambda *a: None, filter=["json.*", "*:mod:json.*"], notrace="dumsp")
    import json  # noqa: F401  (loaded: the advice is computed from what is loaded)

    msgs = fntrace.check_filter(ops)
    assert msgs[0] == ("filter 'json.*' matched no function: 'json.*' matches qualnames "
                       "(Class.method), not modules: did you mean 'json:*' or '*:mod:json.*'?")
    assert msgs[1].startswith("notrace 'dumsp' matched no function: did you mean ")
    assert "'dumps'" in msgs[1]
    assert len(msgs) == 2
    assert fntrace.check_filter("*:mod:json.* loads") == []


def test_the_program_named_as_a_module() -> None:
    assert said("app.cli.*", "app.cli.main", "app.cli") == [
        "-F 'app.cli.*' matched no function: 'app.cli.*' matches qualnames (Class.method), not "
        "modules. app.cli runs as the program (-m app.cli): its functions are '__main__:*'.",
        "-F 'app.cli.main' matched no function: 'app.cli.main' matches qualnames, not "
        "module.function: did you mean '__main__:main'? app.cli runs as the program "
        "(-m app.cli): its functions are '__main__:*'.",
        "-F 'app.cli' matched no function: 'app.cli' matches qualnames (Class.method), not "
        "modules. app.cli runs as the program (-m app.cli): its functions are '__main__:*'."]


def test_a_name_a_package_reexports_points_at_its_definition() -> None:
    assert said("app:connect", "connect:mod:app") == [
        "-F 'app:connect' matched no function: no function of module app matches 'connect', "
        "but 'app.db:connect' does (a function belongs to the module that defines it, not to "
        "one that re-exports it)",
        "-F 'connect:mod:app' matched no function: no function of module app matches "
        "'connect', but 'app.db:connect' does (a function belongs to the module that defines "
        "it, not to one that re-exports it)"]


def test_a_module_named_nowhere_walks_only_its_own_functions(monkeypatch: Any) -> None:
    """A pattern on a module not loaded (the pytest plugin's filter, misspelt) is
    answered from the module list and a walk kept to that module's functions, not
    from a Function for every function of the process (~70 ms in a pytest run)."""
    from fntrace.core import hints

    asked: list[Any] = []
    real = hints.loaded

    def spy(names: Any = (), only: Any = None) -> Loaded:
        asked.append(only)
        return real(names, only)

    monkeypatch.setattr(hints, "loaded", spy)
    assert hints.check(["*:mod:no_such_module_here"]) == [
        "filter '*:mod:no_such_module_here' matched no function: no loaded module matches "
        "'no_such_module_here' (imported yet?)"]
    assert hints.check(["no_such_module_here:f"])[0].startswith(
        "filter 'no_such_module_here:f' matched no function: no loaded module matches")
    only = asked[0]
    assert only is not None and asked[1] is not None
    assert only("no_such_module_here") and not only("no_such_module_here.sub")
    assert not only("json") and not only("no_such_module_here_too")
    walked = real(only=only)
    assert set(walked.functions) == set() and "json" in walked.modules
    # A bare glob's advice reads every function's name: the whole walk.
    hints.check(["no_such_function_anywhere_xyz"])
    assert asked[2] is None
    # A loaded module's advice names functions in other modules: the whole walk.
    hints.check(["nothing_like_this:mod:json"])
    assert asked[3] is None


def test_a_function_of_a_module_not_imported_still_counts() -> None:
    """Code made by exec under a module name no import made: the narrowed walk
    still finds it (the pattern matched a function, and nothing is said)."""
    namespace: dict[str, Any] = {"__name__": "made_up_by_exec_mod"}
    exec("def made_here(x):\n    return x\n", namespace)
    assert fntrace.check_filter("*:mod:made_up_by_exec_mod") == []
    assert fntrace.check_filter("made_up_by_exec_mod:made_here") == []
    assert fntrace.check_filter("made_up_by_exec_mod:other")[0].startswith(
        "filter 'made_up_by_exec_mod:other' matched no function: no loaded module")


def test_advice_leaves_no_function_cached() -> None:
    """The walk for advice makes Functions for the caller only: the symbol cache
    (the tracer's, one entry per code seen running) does not grow by every
    function of the process."""
    from fntrace.core import symbols

    namespace: dict[str, Any] = {"__name__": "advice_cache_probe_mod"}
    exec("def never_run(x):\n    return x\n", namespace)
    code = namespace["never_run"].__code__
    assert fntrace.check_filter("no_such_function_anywhere_xyz") != []
    assert id(code) not in symbols.cache()
