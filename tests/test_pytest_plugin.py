"""The pytest flight recorder, driven through real pytest runs (pytester).

Each test writes a small project (a package ``shop`` and its tests), runs pytest
on it in this process (or in subprocesses for xdist) with the plugin, and
checks the report: the "fntrace: calls" section's exact lines, durations
masked (they vary with the machine's load, nothing else does).
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import needs_threads, raised

import fntrace

pytest_plugins = ["pytester"]

# The plugin by module, whether or not fntrace is installed with its entry point
# (blocked by name so that it is not registered twice).
PLUGIN = ["-p", "no:fntrace", "-p", "fntrace.pytest_plugin"]

# pytest-asyncio asks for its loop scope to be set.  A repr slower than repr-max-us
# (1 ms by default) is not called again for its type: a machine under load could
# then show ``<dict object>``; no time limit here, so the expectations are exact.
QUIET = ["-o", "asyncio_default_fixture_loop_scope=function",
         "--fntrace-option=repr-max-us=1000000000"]

SHOP = '''
def price(item, qty):
    return item["price"] * qty

def total(cart):
    return sum(price(item, qty) for item, qty in cart)

def discount(amount, code):
    if code != "HALF":
        raise ValueError(f"unknown code {code!r}")
    return amount / 2

def checkout(cart, code):
    amount = total(cart)
    return round(discount(amount, code), 2)
'''



_DURATION = re.compile(r"^( *\d+\)) [ +!#*@$]? *[\d.]+ (?:us|ms|s) +\|")


def masked(text: str) -> list[str]:
    """Section lines with the duration column blanked (it is the only varying part)."""
    out = []
    for line in text.splitlines():
        m = _DURATION.match(line)
        if m:
            line = f"{m.group(1)} DURATION |" + line[m.end():]
        out.append(re.sub(r"0x[0-9a-f]+", "ADDR", line))
    return out


def section_of(output: str, test: str = "") -> list[str]:
    """The lines of the first "fntrace: calls" section in pytest's output (after the
    header line of test ``test`` when given)."""
    lines = output.splitlines()
    start = 0
    if test:
        start = next(i for i, ln in enumerate(lines) if re.match(rf"^_+ {re.escape(test)} _+$", ln))
    begin = next(i for i in range(start, len(lines)) if " fntrace: calls " in lines[i])
    end = begin + 1
    while end < len(lines) and not re.match(r"^(=|_|-){5,}", lines[end]) \
            and not lines[end].startswith("fntrace: "):
        end += 1
    return masked("\n".join(lines[begin + 1:end]))


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(shop=SHOP)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*PLUGIN, *QUIET, *args)


FAILING = '''
import shop

def test_pays():
    assert shop.checkout([({"price": 10}, 2)], "HALF") == 10.0

def test_refused():
    cart = [({"price": 10}, 2), ({"price": 2.5}, 4)]
    assert shop.checkout(cart, "FREE") == 0
'''


DISCOUNT = "shop:discount(amount=30.0, code='FREE');"
GENEXPR = "shop:total.<locals>.<genexpr>(.0=<list_iterator object at ADDR>)"


@pytest.mark.usefixtures("hot_path")
def test_failing_test_shows_its_calls_with_arguments_and_the_raise(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_shop=FAILING)
    result = run(shop, "--fntrace=*:mod:shop", "-rP")
    result.assert_outcomes(passed=1, failed=1)
    assert section_of(result.stdout.str(), "test_refused") == [
        " 0)               |  shop:checkout(cart=[({...}, 2), ({...}, 4)], code='FREE') {",
        " 0)               |    shop:total(cart=[({...}, 2), ({...}, 4)]) {",
        f" 0)               |      {GENEXPR} {{",
        " 0) DURATION |        shop:price(item={'price': 10}, qty=2); /* ret=20 */",
        " 0) DURATION |      } /* shop:total.<locals>.<genexpr> yield ret=20 */",
        f" 0)               |      {GENEXPR} {{",
        " 0) DURATION |        shop:price(item={'price': 2.5}, qty=4); /* ret=10.0 */",
        " 0) DURATION |      } /* shop:total.<locals>.<genexpr> yield ret=10.0 */",
        " 0) DURATION |      shop:total.<locals>.<genexpr>(.0=<list_iterator object at ADDR>); "
        "/* ret=None */",
        " 0) DURATION |    } /* shop:total ret=30.0 */",
        f" 0) DURATION |    {DISCOUNT} /* {raised('ValueError')} */  <-- raised here",
        f" 0) DURATION |  }} /* shop:checkout {raised('ValueError')} */",
    ]
    # The passing test printed no section (-rP shows passing tests' sections).
    assert result.stdout.str().count("fntrace: calls") == 1


def test_inactive_without_the_option(shop: pytest.Pytester) -> None:
    # Without --fntrace the plugin registers nothing: no instance, no patched function,
    # and a failure gets no section.
    shop.makepyfile(test_idle='''
        import fntrace, shop

        def test_nothing_traced():
            assert shop.total([({"price": 1}, 1)]) == 1
            assert fntrace.instances() == []
            assert fntrace.enabled_functions() == ""

        def test_fails():
            assert shop.total([]) == 1
    ''')
    result = run(shop)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "fntrace: calls" not in out
    assert not re.search(r"^fntrace: ", out, re.M)  # no summary line either
    assert shop.parseconfig(*PLUGIN).pluginmanager.get_plugin("fntrace-flight-recorder") is None


def test_while_a_test_runs_exactly_its_filter_is_patched(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_on='''
        import fntrace, shop

        def test_traced():
            shop.total([({"price": 1}, 1)])
            (inst,) = fntrace.instances()
            assert inst.read("current_tracer").strip() == "function_graph"
            assert inst.read("options/funcgraph-args").strip() == "1"
            assert inst.read("options/funcgraph-retval").strip() == "1"
            patched = sorted(ln.split()[0] for ln in fntrace.enabled_functions().splitlines())
            # (shop's <module> ran at import: its code is gone, and its site with it)
            assert patched == ["shop:price", "shop:total", "shop:total.<locals>.<genexpr>"]
    ''')
    run(shop, "--fntrace=*:mod:shop").assert_outcomes(passed=1)
    assert fntrace.instances() == []  # closed at the end of the session


def test_passing_tests_print_and_keep_nothing(shop: pytest.Pytester, tmp_path: Path) -> None:
    shop.makepyfile(test_pass='''
        import shop

        def test_one():
            assert shop.checkout([({"price": 4}, 1)], "HALF") == 2

        def test_two():
            assert shop.total([({"price": 4}, 2)]) == 8
    ''')
    rec = tmp_path / "rec"
    result = run(shop, "--fntrace=*:mod:shop", "-rA", f"--fntrace-record={rec}")
    result.assert_outcomes(passed=2)
    assert "fntrace: calls" not in result.stdout.str()
    assert list(rec.iterdir()) == []


def test_each_failure_shows_only_its_own_test_parametrized(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_param='''
        import pytest, shop

        @pytest.mark.parametrize("qty", [1, 2, 3])
        def test_qty(qty):
            assert shop.price({"price": 5}, qty) < 10
    ''')
    result = run(shop, "--fntrace=*:mod:shop")
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert section_of(out, "test_qty[2]") == [
        " 0) DURATION |  shop:price(item={'price': 5}, qty=2); /* ret=10 */"]
    assert section_of(out, "test_qty[3]") == [
        " 0) DURATION |  shop:price(item={'price': 5}, qty=3); /* ret=15 */"]


def test_lines_keeps_the_last_lines(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_many='''
        import shop

        def test_loop():
            for qty in range(10):
                shop.price({"price": 1}, qty)
            assert False
    ''')
    result = run(shop, "--fntrace=shop:price", "--fntrace-lines=3", "--fntrace-no-args")
    assert section_of(result.stdout.str()) == [
        "... 7 earlier lines not shown",
        " 0) DURATION |  shop:price(); /* ret=7 */",
        " 0) DURATION |  shop:price(); /* ret=8 */",
        " 0) DURATION |  shop:price(); /* ret=9 */",
    ]


def test_depth_limit_marks_the_deepest_traced_caller(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_deep=FAILING)
    result = run(shop, "--fntrace=*:mod:shop", "--fntrace-depth=1", "--fntrace-no-retval",
                 "--fntrace-no-args", "-k", "refused")
    assert section_of(result.stdout.str()) == [
        f" 0) DURATION |  shop:checkout(); /* {raised('ValueError')} */  <-- raised here"]


def test_the_mark_follows_the_traceback_not_an_earlier_caught_raise(
        shop: pytest.Pytester) -> None:
    shop.makepyfile(test_caught='''
        import pytest, shop

        def test_second_call_fails():
            with pytest.raises(ValueError):
                shop.discount(1, "NOPE")
            shop.price(None, 1)
    ''')
    result = run(shop, "--fntrace=*:mod:shop", "--fntrace-no-args")
    assert section_of(result.stdout.str()) == [
        f" 0) DURATION |  shop:discount(); /* {raised('ValueError')} */",
        f" 0) DURATION |  shop:price(); /* {raised('TypeError')} */  <-- raised here",
    ]


def test_an_assertion_in_the_test_marks_nothing(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_assert='''
        import shop

        def test_wrong_total():
            assert shop.total([({"price": 2}, 3)]) == 5
    ''')
    result = run(shop, "--fntrace=shop:total", "--fntrace=shop:price")
    assert section_of(result.stdout.str()) == [
        " 0)               |  shop:total(cart=[({...}, 3)]) {",
        " 0) DURATION |    shop:price(item={'price': 2}, qty=3); /* ret=6 */",
        " 0) DURATION |  } /* shop:total ret=6 */",
    ]


FIXTURES = '''
import pytest, shop

@pytest.fixture(scope="session")
def catalogue():
    shop.price({"price": 100}, 1)
    yield
    shop.total([({"price": 7}, 1)])

@pytest.fixture(scope="module")
def basket():
    return shop.total([({"price": 3}, 1)])

def test_first(catalogue, basket):
    assert shop.price({"price": 1}, 1) == 0

def test_second(catalogue, basket):
    assert shop.price({"price": 2}, 1) == 0
'''


def test_a_shared_fixture_shows_in_the_first_test_that_used_it(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_fix=FIXTURES)
    result = run(shop, "--fntrace=shop:price", "--fntrace-no-args")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert section_of(out, "test_first") == [
        " 0) DURATION |  shop:price(); /* ret=100 */",  # the session fixture's setup
        " 0) DURATION |  shop:price(); /* ret=3 */",  # the module fixture's
        " 0) DURATION |  shop:price(); /* ret=1 */",
    ]
    assert section_of(out, "test_second") == [" 0) DURATION |  shop:price(); /* ret=2 */"]


def test_errors_in_setup_and_teardown_get_the_section(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_err='''
        import pytest, shop

        @pytest.fixture
        def broken_setup():
            shop.discount(1, "BAD")

        @pytest.fixture
        def broken_teardown():
            yield
            shop.price(None, 2)

        def test_setup(broken_setup):
            pass

        def test_teardown(broken_teardown):
            shop.price({"price": 1}, 1)
    ''')
    result = run(shop, "--fntrace=*:mod:shop", "--fntrace-no-args")
    result.assert_outcomes(passed=1, errors=2)
    out = result.stdout.str()
    assert section_of(out, "ERROR at setup of test_setup") == [
        f" 0) DURATION |  shop:discount(); /* {raised('ValueError')} */  <-- raised here"]
    assert section_of(out, "ERROR at teardown of test_teardown") == [
        " 0) DURATION |  shop:price(); /* ret=1 */",
        f" 0) DURATION |  shop:price(); /* {raised('TypeError')} */  <-- raised here",
    ]


@needs_threads
def test_threads_of_a_test_are_traced(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_thread='''
        import threading, shop

        def test_worker():
            t = threading.Thread(target=shop.price, args=({"price": 3}, 3))
            t.start()
            t.join()
            assert shop.price({"price": 1}, 0) == 1
    ''')
    result = run(shop, "--fntrace=shop:price")
    lines = section_of(result.stdout.str())
    # Threads are the CPU column (one per thread, in order of their first event).
    assert sorted(lines) == [
        " 0) DURATION |  shop:price(item={'price': 3}, qty=3); /* ret=9 */",
        " 1) DURATION |  shop:price(item={'price': 1}, qty=0); /* ret=0 */",
    ]


def test_async_tests_with_pytest_asyncio(shop: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    shop.makepyfile(ashop='''
        import asyncio

        async def fetch(n):
            await asyncio.sleep(0)
            return n * 2

        async def gather(n):
            a = await fetch(n)
            if a > 2:
                raise RuntimeError(a)
            return a
    ''')
    shop.makepyfile(test_async='''
        import pytest, ashop

        @pytest.mark.asyncio
        async def test_gather():
            assert await ashop.gather(1) == 2
            await ashop.gather(2)
    ''')
    result = run(shop, "--fntrace=*:mod:ashop")  # pytest-asyncio: by its entry point
    result.assert_outcomes(failed=1)
    assert section_of(result.stdout.str()) == [
        " 0)               |  ashop:gather(n=1) {",
        " 0) DURATION |    ashop:fetch(n=1); /* yield ret=None */",
        " 0) DURATION |  } /* ashop:gather yield ret=None */",
        " 0)               |  ashop:gather(n=1) {",
        " 0) DURATION |    ashop:fetch(n=1); /* ret=2 */",
        " 0) DURATION |  } /* ashop:gather ret=2 */",
        " 0)               |  ashop:gather(n=2) {",
        " 0) DURATION |    ashop:fetch(n=2); /* yield ret=None */",
        " 0) DURATION |  } /* ashop:gather yield ret=None */",
        " 0)               |  ashop:gather(n=2) {",
        " 0) DURATION |    ashop:fetch(n=2); /* ret=4 */",
        f" 0) DURATION |  }} /* ashop:gather {raised('RuntimeError')} */  <-- raised here",
    ]


PARAM_FAILING = '''
import pytest, shop

@pytest.mark.parametrize("qty", [1, 2, 3, 4])
def test_qty(qty):
    assert shop.price({"price": 5}, qty) < 10
'''


def test_xdist_workers_trace_their_own_tests(shop: pytest.Pytester, tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    shop.makepyfile(test_par=PARAM_FAILING)
    rec = tmp_path / "rec"
    result = run(shop, "--fntrace=shop:price", "-n", "2", f"--fntrace-record={rec}")
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    for qty in (2, 3, 4):
        assert section_of(out, f"test_qty[{qty}]") == [
            f" 0) DURATION |  shop:price(item={{'price': 5}}, qty={qty}); /* ret={5 * qty} */"]
    assert sorted(p.name for p in rec.iterdir()) == [
        f"test_par.py_test_qty[{q}].dat" for q in (2, 3, 4)]


def test_xdist_bad_filter_is_a_usage_error_of_the_controller(shop: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    shop.makepyfile(test_par=PARAM_FAILING)
    result = run(shop, "--fntrace=shop:[oops", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [ln for ln in result.stderr.lines if ln.startswith("ERROR: ")]
    assert len(errors) == 1 and errors[0].startswith("ERROR: --fntrace: "), errors


def test_exitfirst_and_last_failed(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_par=PARAM_FAILING)
    first = shop.runpytest(*PLUGIN, *QUIET, "--fntrace=shop:price", "-x")
    first.assert_outcomes(passed=1, failed=1)
    assert section_of(first.stdout.str(), "test_qty[2]") == [
        " 0) DURATION |  shop:price(item={'price': 5}, qty=2); /* ret=10 */"]
    again = shop.runpytest(*PLUGIN, *QUIET, "--fntrace=shop:price", "--lf")
    again.assert_outcomes(failed=1)
    assert "run-last-failure: rerun previous 1 failure" in again.stdout.str()
    assert section_of(again.stdout.str(), "test_qty[2]") == [
        " 0) DURATION |  shop:price(item={'price': 5}, qty=2); /* ret=10 */"]


def test_junit_xml_carries_the_section(shop: pytest.Pytester, tmp_path: Path) -> None:
    shop.makepyfile(test_shop=FAILING)
    xml = tmp_path / "junit.xml"
    result = run(shop, "--fntrace=shop:discount", f"--junitxml={xml}")
    result.assert_outcomes(passed=1, failed=1)
    cases = {case.get("name"): case for case in ET.parse(xml).iter("testcase")}
    assert cases["test_pays"].find("properties") is None
    props = cases["test_refused"].findall("properties/property")
    assert [p.get("name") for p in props] == ["fntrace: calls"]
    assert masked(props[0].get("value") or "") == [
        f" 0) DURATION |  {DISCOUNT} /* {raised('ValueError')} */  <-- raised here"]


def _replay(path: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "fntrace", "replay", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return masked("\n".join(ln for ln in out.splitlines() if not ln.startswith("#")))


def test_record_writes_a_trace_file_per_failing_test(shop: pytest.Pytester, tmp_path: Path) -> None:
    shop.makepyfile(test_shop=FAILING)
    rec = tmp_path / "rec"
    result = run(shop, "--fntrace=shop:discount", "--fntrace=shop:checkout",
                 f"--fntrace-record={rec}")
    result.assert_outcomes(passed=1, failed=1)
    (path,) = rec.iterdir()
    assert path.name == "test_shop.py_test_refused.dat"
    assert _replay(path) == [
        " 0)               |  shop:checkout(cart=[({...}, 2), ({...}, 4)], code='FREE') {",
        f" 0) DURATION |    shop:discount(amount=30.0, code='FREE'); /* {raised('ValueError')} */",
        f" 0) DURATION |  }} /* shop:checkout {raised('ValueError')} */",
    ]
    assert f"fntrace: 1 trace file(s) in {rec}" in result.stdout.str()


def test_record_all_writes_every_test(shop: pytest.Pytester, tmp_path: Path) -> None:
    shop.makepyfile(test_shop=FAILING)
    rec = tmp_path / "rec"
    result = run(shop, "--fntrace=shop:discount", f"--fntrace-record={rec}",
                 "--fntrace-record-all", "--fntrace-buffer-size=1")
    result.assert_outcomes(passed=1, failed=1)
    assert sorted(p.name for p in rec.iterdir()) == [
        "test_shop.py_test_pays.dat", "test_shop.py_test_refused.dat"]
    assert _replay(rec / "test_shop.py_test_pays.dat") == [
        " 0) DURATION |  shop:discount(amount=20, code='HALF'); /* ret=10.0 */"]


def test_record_all_loses_nothing_of_a_long_test(shop: pytest.Pytester, tmp_path: Path) -> None:
    # A 1 KiB ring holds a few dozen events; the file must hold all 2000 calls.
    shop.makepyfile(test_long='''
        import shop

        def test_many():
            for qty in range(2000):
                shop.price({"price": 1}, qty)
    ''')
    rec = tmp_path / "rec"
    run(shop, "--fntrace=shop:price", f"--fntrace-record={rec}", "--fntrace-record-all",
        "--fntrace-buffer-size=1").assert_outcomes(passed=1)
    lines = _replay(rec / "test_long.py_test_many.dat")
    assert lines == [f" 0) DURATION |  shop:price(item={{'price': 1}}, qty={q}); /* ret={q} */"
                     for q in range(2000)]


@pytest.mark.parametrize(("args", "message"), [
    (["--fntrace=shop:[oops"], "--fntrace: "),
    (["--fntrace-record=x"], "--fntrace-record needs --fntrace=FILTER"),
    (["--fntrace=shop:*", "--fntrace-record-all"], "--fntrace-record-all needs"),
    (["--fntrace=shop:*", "--fntrace-lines=-1"], "--fntrace-lines must not be negative"),
    (["--fntrace=shop:*", "--fntrace-buffer-size=0"], "--fntrace-buffer-size: "),
    (["--fntrace=shop:*", "--fntrace-option=nosuch=1"], "--fntrace-option: options/nosuch: "),
    (["--fntrace=shop:*", "--fntrace-option=funcgraph-tail"], "--fntrace-option 'funcgraph-t"),
])
def test_bad_options_are_one_line_usage_errors(shop: pytest.Pytester, args: list[str],
                                               message: str) -> None:
    shop.makepyfile(test_shop=FAILING)
    result = run(shop, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [ln for ln in result.stderr.lines if ln.startswith("ERROR: ")]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: {message}"), result.stderr.lines
    assert fntrace.instances() == []


def test_a_filter_that_matches_nothing_is_said(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_shop=FAILING)
    result = run(shop, "--fntrace=shop.*")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert section_of(out) == ["(no traced call in this test)"]
    assert ("fntrace: filter 'shop.*' matched no function: 'shop.*' matches qualnames "
            "(Class.method), not modules: did you mean 'shop:*' or '*:mod:shop.*'?") in out


def test_the_entry_point_loads_the_plugin(shop: pytest.Pytester) -> None:
    eps = [ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "fntrace"]
    if not eps:
        pytest.skip("fntrace is not installed with its entry points (pip install -e .)")
    assert eps[0].value == "fntrace.pytest_plugin"
    shop.makepyfile(test_shop=FAILING)
    result = shop.runpytest(*QUIET, "--fntrace=shop:discount")
    result.assert_outcomes(passed=1, failed=1)
    assert section_of(result.stdout.str()) == [
        f" 0) DURATION |  {DISCOUNT} /* {raised('ValueError')} */  <-- raised here"]


def test_the_report_hook_is_a_new_style_wrapper(shop: pytest.Pytester) -> None:
    """pytest_runtest_makereport runs for every phase and subtest: the recorder's is
    a new-style wrapper wherever pluggy has them (half the cost of an old one)."""
    from fntrace import pytest_plugin

    config = shop.parseconfigure(*PLUGIN, *QUIET, "--fntrace=*:mod:shop")
    recorder = config.pluginmanager.get_plugin("fntrace-flight-recorder")
    assert recorder is not None
    impls = [impl for impl in config.hook.pytest_runtest_makereport.get_hookimpls()
             if impl.plugin is recorder]
    assert len(impls) == 1
    assert pytest_plugin.NEW_STYLE_WRAPPERS  # every pytest 8 (pluggy >= 1.1)
    assert impls[0].wrapper and not impls[0].hookwrapper
