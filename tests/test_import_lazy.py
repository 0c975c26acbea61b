"""``import fntrace`` loads the core API only; features load on first use (PEP 562)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fntrace

FEATURES = ("fntrace.tracing", "fntrace.recording", "fntrace.analysis", "fntrace.control",
            "fntrace.integrations", "fntrace.formats", "fntrace.cli", "fntrace.core.ipmodify",
            "fntrace.core.hints")
HEAVY = ("inspect", "ast", "dataclasses", "ctypes", "difflib")


def _child(code: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_import_fntrace_loads_no_feature_and_no_heavy_stdlib() -> None:
    got = _child("import sys, json; before = set(sys.modules); import fntrace; "
                 "print(json.dumps(sorted(set(sys.modules) - before)))")
    assert isinstance(got, list)
    loaded = [m for m in got if any(m == f or m.startswith(f + ".") for f in FEATURES)]
    assert loaded == []
    assert [m for m in HEAVY if m in got] == []
    assert "fntrace.core.engine" in got


def test_import_fntrace_imports_neither_typing_nor_re_nor_enum() -> None:
    # These three were most of `import fntrace`'s instructions on 3.12/3.13 (issue 15):
    # the child runs without site (-S -I), which on some installs imports them itself.
    code = ("import sys, json; before = set(sys.modules); import fntrace; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    root = str(Path(fntrace.__file__).parent.parent)
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {root!r}); "
                          + code], capture_output=True, text=True, check=True, timeout=120)
    got = json.loads(out.stdout)
    assert [m for m in ("typing", "re", "enum", "fnmatch", "dataclasses") if m in got] == []
    # and what was deferred still works on first use
    flags = _child("import fntrace, json; op = fntrace.Ops(print, flags=fntrace.Flags.RECURSION); "
                   "print(json.dumps([repr(op.flags), op._flags, str(op)]))")
    assert flags == ["<Flags.RECURSION: 4>", 4, "<Ops print flags=4>"]


def test_a_feature_name_loads_its_module_on_first_use() -> None:
    got = _child("import sys, json, fntrace; a = 'fntrace.tracing.instance' in sys.modules; "
                 "inst = fntrace.Instance; b = 'fntrace.tracing.instance' in sys.modules; "
                 "print(json.dumps([a, b, inst.__module__]))")
    assert got == [False, True, "fntrace.tracing.instance"]


def test_every_public_name_resolves_and_is_listed() -> None:
    from fntrace.core.hints import check
    from fntrace.tracing import livepatch
    from fntrace.tracing.inject import Injection, inject, parse_inject_spec
    from fntrace.tracing.instance import Instance, instances, marker, trace

    expected = {"Injection": Injection, "Instance": Instance, "check_filter": check,
                "inject": inject, "instances": instances, "livepatch": livepatch,
                "marker": marker, "parse_inject_spec": parse_inject_spec, "trace": trace}
    for name, value in expected.items():
        assert getattr(fntrace, name) is value
    for name in fntrace.__all__:
        assert getattr(fntrace, name) is not None
        assert name in dir(fntrace)
    ns: dict[str, object] = {}
    exec("from fntrace import *", ns)
    assert set(fntrace.__all__) <= set(ns)


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        fntrace.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("no AttributeError")


#: What an Instance does not import until it is used (issue 15): error injection,
#: live patching and the probe grammar, with the stdlib modules only they need.
DEFERRED = ("fntrace.tracing.inject", "fntrace.tracing.livepatch", "fntrace.tracing.probes.parser",
            "fntrace.tracing.probes.condition", "dataclasses", "inspect", "ast", "random",
            "copy")


def test_an_instance_loads_injection_livepatch_and_probes_on_first_use() -> None:
    # -S: site on some installs imports some of these itself.
    code = f"""
import sys, json
sys.path.insert(0, {str(Path(fntrace.__file__).parent.parent)!r})
from fntrace.tracing.instance import Instance
watch = {DEFERRED!r}
def loaded():
    return [m for m in watch if m in sys.modules]
inst = Instance()
inst.write("current_tracer", "function")
inst.write("current_tracer", "nop")
steps = [loaded()]
inst.close()  # closing what was never used imports nothing
steps.append(loaded())
inst = Instance()
steps.append(inst.read("fail_function/probability"))
steps.append(loaded())
steps.append(inst.read("livepatch"))
steps.append(loaded())
inst.write("dynamic_events", "f:lazy_probe json:dumps")
steps.append(inst.read("dynamic_events"))
steps.append(loaded())
inst.close()
print(json.dumps(steps))
"""
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    steps = json.loads(out.stdout)
    assert steps[0] == [] and steps[1] == []
    assert steps[2] == "0\n"  # the kernel's default probability, read through the module
    assert "fntrace.tracing.inject" in steps[3] and "fntrace.tracing.livepatch" not in steps[3]
    assert steps[4] == ""  # no patches
    assert "fntrace.tracing.livepatch" in steps[5]
    assert "fntrace.tracing.probes.parser" not in steps[5]
    assert steps[6] == "f:fprobes/lazy_probe json:dumps\n"
    assert "fntrace.tracing.probes.parser" in steps[7]


def test_the_probes_package_names_load_their_module_on_first_use() -> None:
    got = _child("import sys, json; import fntrace.tracing.probes as p; "
                 "a = 'fntrace.tracing.probes.parser' in sys.modules; spec = p.ProbeSpec; "
                 "b = 'fntrace.tracing.probes.parser' in sys.modules; "
                 "ns = {}; exec('from fntrace.tracing.probes import *', ns); "
                 "print(json.dumps([a, b, spec.__module__, sorted(set(p.__all__) - set(ns)), "
                 "sorted(set(p.__all__) - set(dir(p)))]))")
    assert got == [False, True, "fntrace.tracing.probes.parser", [], []]
    from fntrace.tracing import probes
    from fntrace.tracing.probes import events, parser

    assert (probes.ProbeEvents, probes.parse_spec, probes.PROBE) == (
        events.ProbeEvents, parser.parse_spec, events.PROBE)
    try:
        probes.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("no AttributeError")
