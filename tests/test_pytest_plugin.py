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

import fntrace

pytest_plugins = ["pytester"]

# The plugin by module, whether or not fntrace is installed with its entry point
# (blocked by name so that it is not registered twice).
PLUGIN = ["-p", "no:fntrace", "-p", "fntrace.pytest_plugin"]

# pytest-asyncio asks for its loop scope to be set.
QUIET = ["-o", "asyncio_default_fixture_loop_scope=function"]

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


@pytest.mark.usefixtures("hot_path")
def test_failing_test_shows_its_calls_with_arguments_and_the_raise(shop: pytest.Pytester) -> None:
    shop.makepyfile(test_shop=FAILING)
    result = run(shop, "--fntrace=*:mod:shop", "-rP")
    result.assert_outcomes(passed=1, failed=1)
    assert section_of(result.stdout.str(), "test_refused") == [
        " 0)               |  shop:checkout(cart=[({...}, 2), ({...}, 4)], code='FREE') {",
        " 0)               |    shop:total(cart=[({...}, 2), ({...}, 4)]) {",
        " 0)               |      shop:total.<locals>.<genexpr>(.0=<list_iterator object at ADDR>) {",
        " 0) DURATION |        shop:price(item={'price': 10}, qty=2); /* ret=20 */",
        " 0) DURATION |      } /* shop:total.<locals>.<genexpr> yield ret=20 */",
        " 0)               |      shop:total.<locals>.<genexpr>(.0=<list_iterator object at ADDR>) {",
        " 0) DURATION |        shop:price(item={'price': 2.5}, qty=4); /* ret=10.0 */",
        " 0) DURATION |      } /* shop:total.<locals>.<genexpr> yield ret=10.0 */",
        " 0) DURATION |      shop:total.<locals>.<genexpr>(.0=<list_iterator object at ADDR>); "
        "/* ret=None */",
        " 0) DURATION |    } /* shop:total ret=30.0 */",
        " 0) DURATION |    shop:discount(amount=30.0, code='FREE'); /* raised */  <-- raised here",
        " 0) DURATION |  } /* shop:checkout raised */",
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
    assert "fntrace" not in result.stdout.str()
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
            assert patched == ["shop:<module>", "shop:price", "shop:total",
                           "shop:total.<locals>.<genexpr>"]
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
        " 0) DURATION |  shop:checkout(); /* raised */  <-- raised here"]


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
        " 0) DURATION |  shop:discount(); /* raised */",
        " 0) DURATION |  shop:price(); /* raised */  <-- raised here",
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
