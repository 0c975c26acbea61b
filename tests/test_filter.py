"""Tests for fntrace.core.filter: the set_ftrace_filter grammar and its matching.

Expectations are exact on purpose: the grammar is a user-facing file format, so
any change in what a line means should show up here as a failing test.
"""

from __future__ import annotations

import copy
import fnmatch
import pickle
import re
from collections.abc import Callable

import pytest

from fntrace.core import filter as flt
from fntrace.core.filter import KNOWN_COMMANDS, Filter, FilterLine, parse, parse_line

# --------------------------------------------------------------------------- parsing


def test_known_commands_exact() -> None:
    assert frozenset({"mod", "traceon", "traceoff", "snapshot", "stacktrace", "dump",
                      "enable_event", "disable_event"}) == KNOWN_COMMANDS
    assert isinstance(KNOWN_COMMANDS, frozenset)


@pytest.mark.parametrize(
    ("text", "negate", "glob", "command", "params"),
    [
        # plain globs
        ("foo", False, "foo", None, ()),
        ("JSONDecoder.raw_decode", False, "JSONDecoder.raw_decode", None, ()),
        ("*.<locals>.*", False, "*.<locals>.*", None, ()),
        ("[ab]*", False, "[ab]*", None, ()),
        ("[!ab]?", False, "[!ab]?", None, ()),
        ("a[]]b", False, "a[]]b", None, ()),
        ("[!]]x", False, "[!]]x", None, ()),
        ("a,b", False, "a,b", None, ()),
        ("traceoff", False, "traceoff", None, ()),
        ("mod", False, "mod", None, ()),
        # full names
        ("json.decoder:JSONDecoder.raw_decode", False, "json.decoder:JSONDecoder.raw_decode",
         None, ()),
        ("pkg.mod:outer.<locals>.inner", False, "pkg.mod:outer.<locals>.inner", None, ()),
        ("json.*:*", False, "json.*:*", None, ()),
        # negation
        ("!foo", True, "foo", None, ()),
        ("!json.*:*", True, "json.*:*", None, ()),
        # mod
        ("*:mod:pkg.*", False, "*", "mod", ("pkg.*",)),
        ("!*:mod:pkg", True, "*", "mod", ("pkg",)),
        ("f*:mod:[ab]*", False, "f*", "mod", ("[ab]*",)),
        ("pkg.m:f*:mod:pkg.m", False, "pkg.m:f*", "mod", ("pkg.m",)),
        # count triggers, with and without count, bare and full-name globs
        ("foo:traceon", False, "foo", "traceon", ()),
        ("foo:traceon:5", False, "foo", "traceon", ("5",)),
        ("foo:traceoff", False, "foo", "traceoff", ()),
        ("foo:traceoff:3", False, "foo", "traceoff", ("3",)),
        ("foo:traceoff:03", False, "foo", "traceoff", ("03",)),
        ("foo:snapshot", False, "foo", "snapshot", ()),
        ("foo:snapshot:1", False, "foo", "snapshot", ("1",)),
        ("foo:stacktrace", False, "foo", "stacktrace", ()),
        ("foo:stacktrace:10", False, "foo", "stacktrace", ("10",)),
        ("m:f:traceoff", False, "m:f", "traceoff", ()),
        ("m:f:traceoff:3", False, "m:f", "traceoff", ("3",)),
        ("!foo:traceoff", True, "foo", "traceoff", ()),
        ("mod:traceoff", False, "mod", "traceoff", ()),
        # dump
        ("foo:dump", False, "foo", "dump", ()),
        ("m:f:dump", False, "m:f", "dump", ()),
        # events
        ("foo:enable_event:sched:sched_switch", False, "foo", "enable_event",
         ("sched", "sched_switch")),
        ("foo:enable_event:sched:sched_switch:2", False, "foo", "enable_event",
         ("sched", "sched_switch", "2")),
        ("foo:disable_event:sys:ev", False, "foo", "disable_event", ("sys", "ev")),
        ("m:f:disable_event:sys:ev:1", False, "m:f", "disable_event", ("sys", "ev", "1")),
        ("!m:f:enable_event:sys:ev", True, "m:f", "enable_event", ("sys", "ev")),
    ],
)
def test_parse_line_forms(
    text: str, negate: bool, glob: str, command: str | None, params: tuple[str, ...]
) -> None:
    line = parse_line(text)
    assert line == FilterLine(text, negate, glob, command, params)
    assert (line.text, line.negate, line.glob, line.command, line.params) == (
        text, negate, glob, command, params)


@pytest.mark.parametrize(("raw", "stripped"), [("  foo  ", "foo"), ("\t!m:f:traceoff:2\n",
                                                                    "!m:f:traceoff:2")])
def test_parse_line_strips_text(raw: str, stripped: str) -> None:
    assert parse_line(raw).text == stripped


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("foo", None),
        ("*:mod:pkg", None),
        ("foo:dump", None),
        ("foo:traceoff", None),
        ("foo:traceoff:3", 3),
        ("foo:traceon:03", 3),
        ("foo:snapshot:1", 1),
        ("foo:stacktrace:12", 12),
        ("foo:enable_event:s:e", None),
        ("foo:disable_event:s:e:7", 7),
    ],
)
def test_count(text: str, count: int | None) -> None:
    assert parse_line(text).count == count


MALFORMED = [
    ("", "empty pattern"),
    ("   ", "empty pattern"),
    ("!", "nothing to negate"),
    ("!!foo", "starts with '!'"),
    ("foo bar", "whitespace"),
    ("foo\tbar", "whitespace"),
    (":f", "empty module side"),
    ("m:", "empty qualname side"),
    (":", "empty module side"),
    ("!:f", "empty module side"),
    ("m:!f", "starts with '!'"),
    ("[abc", "unclosed '['"),
    ("a[]", "unclosed '['"),
    ("[!]", "unclosed '['"),
    ("m:[abc", "unclosed '['"),
    ("[m:f]", "unclosed '['"),
    ("a:b:c", "unknown command"),
    ("a:b:c:d", "unknown command"),
    ("foo:tracoff:3", "unknown command 'tracoff'"),
    (":traceoff", "empty function glob"),
    ("!:traceoff", "empty function glob"),
    (":mod:pkg", "empty function glob"),
    ("foo:mod", "exactly one module glob"),
    ("foo:mod:", "empty module glob"),
    ("foo:mod:a:b", "exactly one module glob"),
    ("foo:mod:[x", "unclosed '['"),
    ("foo:mod:!pkg", "starts with '!'"),
    ("foo:traceoff:", "not a positive integer"),
    ("foo:traceoff:0", "not a positive integer"),
    ("foo:traceoff:-1", "not a positive integer"),
    ("foo:traceoff:+3", "not a positive integer"),
    ("foo:traceoff:1.5", "not a positive integer"),
    ("foo:traceoff:x", "not a positive integer"),
    ("foo:traceoff:\u00b3", "not a positive integer"),  # superscript 3: str.isdigit() is True
    ("foo:traceoff:1:2", "at most one count"),
    ("foo:traceon:0", "not a positive integer"),
    ("foo:snapshot:abc", "not a positive integer"),
    ("foo:stacktrace:1:2", "at most one count"),
    ("m:f:traceoff:0", "not a positive integer"),
    ("foo:dump:1", "dump takes no parameters"),
    ("foo:enable_event", "system:event[:count]"),
    ("foo:enable_event:sched", "system:event[:count]"),
    ("foo:enable_event::switch", "non-empty system and event"),
    ("foo:enable_event:sched:", "non-empty system and event"),
    ("foo:enable_event:sched:switch:0", "not a positive integer"),
    ("foo:enable_event:sched:switch:x", "not a positive integer"),
    ("foo:disable_event:a:b:1:2", "system:event[:count]"),
]


@pytest.mark.parametrize(("text", "reason"), MALFORMED)
def test_parse_line_malformed(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_line(text)
    message = str(info.value)
    assert message.startswith(f"malformed filter pattern {text.strip()!r}: ")
    assert reason in message


@pytest.mark.parametrize(("text", "reason"), [m for m in MALFORMED if m[0].strip()
                                              and not any(c.isspace() for c in m[0])])
def test_parse_malformed_single(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"malformed filter pattern {text!r}")):
        parse(text)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"glob": ""}, "empty function glob"),
        ({"glob": "a b"}, "whitespace"),
        ({"glob": "a:b:c"}, "more than one ':'"),
        ({"glob": "[x"}, "unclosed '['"),
        ({"command": "bogus"}, "unknown command 'bogus'"),
        ({"params": ("x",)}, "parameters without a command"),
        ({"command": "mod", "params": ("a:b",)}, "bad module glob"),
        ({"command": "traceoff", "params": ("0",)}, "not a positive integer"),
    ],
)
def test_filter_line_validates_on_direct_construction(
    kwargs: dict[str, object], reason: str
) -> None:
    fields: dict[str, object] = {"text": "TXT", "negate": False, "glob": "f", "command": None,
                                 "params": ()}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=re.escape("malformed filter pattern 'TXT'")) as info:
        FilterLine(**fields)  # type: ignore[arg-type]
    assert reason in str(info.value)


# --------------------------------------------------------------------------- parse() batches


@pytest.mark.parametrize(
    ("patterns", "texts"),
    [
        ("", []),
        ("   \n\t", []),
        ("foo", ["foo"]),
        ("a b\nc\t!d", ["a", "b", "c", "!d"]),
        ("a,b", ["a,b"]),
        ("a, b", ["a,", "b"]),
        ("*:mod:pkg  m:f:traceoff:2", ["*:mod:pkg", "m:f:traceoff:2"]),
        (["a", "b c", "", "  ", "\n!d\n"], ["a", "b", "c", "!d"]),
        ([], []),
        (("x", "y"), ["x", "y"]),
    ],
)
def test_parse_batches(patterns: str | list[str] | tuple[str, ...], texts: list[str]) -> None:
    lines = parse(patterns)
    assert isinstance(lines, list)
    assert [line.text for line in lines] == texts
    assert lines == [parse_line(t) for t in texts]


def test_parse_accepts_generator() -> None:
    assert [line.glob for line in parse(p for p in ["a", "!b"])] == ["a", "b"]


@pytest.mark.parametrize(
    ("patterns", "bad"),
    [
        ("good bad: alsogood", "bad:"),
        (["good", "foo:traceoff:0", "alsogood"], "foo:traceoff:0"),
        (["good", "x y:", "z"], "y:"),
        (["first:", "second:"], "first:"),  # the first bad line is the one reported
        ("a:b:c good", "a:b:c"),
    ],
)
def test_parse_all_or_nothing(patterns: str | list[str], bad: str) -> None:
    result: list[FilterLine] | None = None
    with pytest.raises(ValueError) as info:
        result = parse(patterns)
    assert result is None
    assert f"malformed filter pattern {bad!r}" in str(info.value)


# --------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("pattern", "module", "qualname", "expected"),
    [
        # bare qualname globs
        ("JSONDecoder.raw_decode", "json.decoder", "JSONDecoder.raw_decode", True),
        ("*raw_decode", "json.decoder", "JSONDecoder.raw_decode", True),
        ("*.raw_decode", "json.decoder", "JSONDecoder.raw_decode", True),
        ("JSON*", "json.decoder", "JSONDecoder.decode", True),
        ("foo", "m", "foo", True),
        ("foo", "m", "foobar", False),
        ("foo", "m", "xfoo", False),
        ("foo", "foo", "bar", False),
        # a bare glob never matches module names ...
        ("json*", "json.decoder", "JSONDecoder.decode", False),
        ("json*", "xjson", "f", False),
        ("m*", "m", "f", False),
        # ... but matches the last part of the qualname (the function's own name)
        ("raw_decode", "json.decoder", "JSONDecoder.raw_decode", True),
        ("raw_*", "json.decoder", "JSONDecoder.raw_decode", True),
        ("JSONDecoder", "json.decoder", "JSONDecoder.raw_decode", False),
        ("inner", "pkg", "outer.<locals>.inner", True),
        ("*:*", "anything", "at_all", True),
        ("*decoder:JSON*", "json.decoder", "JSONDecoder.decode", True),
        # case-sensitive
        ("jsondecoder.*", "json.decoder", "JSONDecoder.decode", False),
        ("JSON*", "json", "f", False),
        ("Json.decoder:*", "json.decoder", "f", False),
        # full-name globs match module:qualname only
        ("json.decoder:JSONDecoder.raw_decode", "json.decoder", "JSONDecoder.raw_decode", True),
        ("json.decoder:*", "json.decoder", "JSONDecoder.raw_decode", True),
        ("json.*:*.raw_decode", "json.decoder", "JSONDecoder.raw_decode", True),
        ("json.encoder:*", "json.decoder", "JSONDecoder.raw_decode", False),
        ("json:*", "json.decoder", "f", False),
        ("pkg.mod:outer.<locals>.inner", "pkg.mod", "outer.<locals>.inner", True),
        ("pkg.mod:outer.<locals>.inner", "pkg.other", "outer.<locals>.inner", False),
        ("*.<locals>.*", "pkg.mod", "outer.<locals>.inner", True),
        ("*<lambda>", "m", "f.<locals>.<lambda>", True),
        ("*", "m", "anything", True),
        # '?'
        ("f?o", "m", "foo", True),
        ("f?o", "m", "fo", False),
        ("f?o", "m", "fooo", False),
        ("m:?", "m", "f", True),
        ("m:?", "m", "fg", False),
        # character classes
        ("[ab]*", "m", "apple", True),
        ("[ab]*", "m", "banana", True),
        ("[ab]*", "m", "cat", False),
        ("[!ab]*", "m", "cat", True),
        ("[!ab]*", "a", "apple", False),
        ("[!ab]*", "b.x", "apple", False),
        ("[!ab]*", "m", "apple", False),
        ("[a-c]x", "m", "bx", True),
        ("[a-c]x", "m", "dx", False),
        ("a[]]b", "m", "a]b", True),
        ("a[.]b", "m", "a.b", True),
        ("a[.]b", "m", "aXb", False),
        # regex metacharacters are literal
        ("a.b", "m", "aXb", False),
        ("a+b", "m", "aab", False),
        ("a+b", "m", "a+b", True),
        ("f^", "m", "f^", True),
        # mod: module glob limits the line
        ("*:mod:pkg.*", "pkg.a", "f", True),
        # PKG.* names the package itself too (issue 12: *:mod:json.* covers json:loads)
        ("*:mod:pkg.*", "pkg", "f", True),
        ("*:mod:pkg.*", "pkgx", "f", False),
        ("*:mod:pkg.*", "pkgx.a", "f", False),
        ("*:mod:p?g.*", "pkg", "f", False),
        ("*:mod:p*.*", "pkg", "f", False),
        ("*:mod:pkg.sub.*", "pkg.sub", "f", True),
        ("*:mod:pkg.sub.*", "pkg", "f", False),
        ("pkg.*:f", "pkg", "f", True),
        ("pkg.*:f", "pkg", "g", False),
        ("pkg.*:f", "pkg.a", "f", True),
        ("pkg.*:f", "pk", "f", False),
        ("pkg.*", "pkg", "f", False),
        ("pkg.*", "m", "pkg.f", True),
        ("a*:b*", "ax", "bc", True),
        ("a*:b*", "ax", "cb", False),
        ("*:mod:pkg.*", "other", "f", False),
        ("f:mod:pkg", "pkg", "f", True),
        ("f:mod:pkg", "pkg", "g", False),
        ("f:mod:pkg", "pkg2", "f", False),
        ("*:mod:Pkg", "pkg", "f", False),
        ("*:mod:p?g", "pkg", "f", True),
        ("*:mod:[!x]*", "pkg", "f", True),
        ("*:mod:[!x]*", "xpkg", "f", False),
        ("pkg.a:f*:mod:pkg.*", "pkg.a", "foo", True),
        ("pkg.a:f*:mod:pkg.*", "pkg.b", "foo", False),
        # triggers match by their glob too
        ("foo:traceoff:3", "m", "foo", True),
        ("foo:traceoff:3", "m", "bar", False),
        ("m:f:enable_event:s:e", "m", "f", True),
        # negation does not change what a line matches, only its effect
        ("!foo", "m", "foo", True),
        ("!foo", "m", "bar", False),
    ],
)
def test_matches(pattern: str, module: str, qualname: str, expected: bool) -> None:
    assert parse_line(pattern).matches(module, qualname) is expected


# --------------------------------------------------------------------------- Filter.selects


@pytest.mark.parametrize(
    ("patterns", "module", "qualname", "expected"),
    [
        ([], "m", "anything", True),
        (["foo"], "m", "foo", True),
        (["foo"], "m", "bar", False),
        (["!foo"], "m", "foo", False),
        (["!foo"], "m", "bar", True),
        (["a*", "!ab"], "m", "abc", True),
        (["a*", "!ab"], "m", "ab", False),
        (["a*", "!ab"], "m", "b", False),
        (["!ab", "a*"], "m", "ab", True),  # order matters: a later rule wins
        (["a*", "!a*", "ab"], "m", "ab", True),
        (["a*", "!a*", "ab"], "m", "ac", False),
        (["foo", "bar"], "m", "bar", True),
        (["foo", "bar"], "m", "baz", False),
        (["!foo", "!bar"], "m", "baz", True),
        (["!foo", "!bar"], "m", "bar", False),
        (["*:mod:pkg.*"], "pkg.x", "f", True),
        (["*:mod:pkg.*"], "other", "f", False),
        (["!*:mod:pkg.*"], "pkg.x", "f", False),
        (["!*:mod:pkg.*"], "other", "f", True),
        (["*", "!*:mod:pkg"], "pkg", "f", False),
        (["*", "!*:mod:pkg"], "pkg2", "f", True),
        (["*:mod:pkg", "!f"], "pkg", "f", False),
        (["*:mod:pkg", "!f"], "pkg", "g", True),
        (["json.*:*"], "json.decoder", "JSONDecoder.decode", True),
        (["json.*"], "json.decoder", "JSONDecoder.decode", False),
        (["json.*"], "xjson", "f", False),
        (["json.decoder:*", "!*.raw_decode"], "json.decoder", "JSONDecoder.raw_decode", False),
        (["json.decoder:*", "!*.raw_decode"], "json.decoder", "JSONDecoder.decode", True),
        (["f?o"], "m", "fxo", True),
        (["[!f]*"], "f", "foo", False),
        (["[!f]*"], "m", "foo", False),
        (["[!f]*"], "m", "A.foo", True),  # the qualname "A.foo" itself matches
        # a pure predicate: applies to modules that were never imported
        (["never_loaded_yet.*:*"], "never_loaded_yet.sub", "g", True),
    ],
)
def test_selects(patterns: list[str], module: str, qualname: str, expected: bool) -> None:
    assert Filter(parse(patterns)).selects(module, qualname) is expected


@pytest.mark.parametrize(
    ("patterns", "module", "qualname", "expected"),
    [
        ([], "m", "anything", False),
        (["foo"], "m", "foo", True),
        (["foo"], "m", "bar", False),
        (["!foo"], "m", "foo", False),
        (["!foo"], "m", "bar", False),
        (["a*", "!ab"], "m", "abc", True),
        (["a*", "!ab"], "m", "ab", False),
        (["a*", "!ab"], "m", "b", False),
        (["!ab", "a*"], "m", "ab", True),
        (["*:mod:pkg"], "pkg", "f", True),
        (["*:mod:pkg"], "pkg.sub", "f", False),
        (["*", "!*:mod:pkg"], "pkg", "f", False),
        (["*", "!*:mod:pkg"], "other", "f", True),
    ],
)
def test_excludes(patterns: list[str], module: str, qualname: str, expected: bool) -> None:
    assert Filter(parse(patterns)).excludes(module, qualname) is expected


@pytest.mark.parametrize(
    ("patterns", "empty"),
    [
        ([], True),
        (["!foo"], True),
        (["!foo", "!*:mod:x"], True),
        (["foo"], False),
        (["!foo", "bar"], False),
        (["*:mod:x"], False),
    ],
)
def test_is_empty(patterns: list[str], empty: bool) -> None:
    assert Filter(parse(patterns)).is_empty is empty


def test_empty_singleton() -> None:
    assert isinstance(Filter.EMPTY, Filter)
    assert Filter.EMPTY.lines == ()
    assert Filter.EMPTY.is_empty
    assert Filter.EMPTY.selects("m", "f")
    assert not Filter.EMPTY.excludes("m", "f")
    assert Filter.EMPTY.text() == ""
    assert Filter() == Filter.EMPTY


def test_matching_uses_precompiled_regexes(monkeypatch: pytest.MonkeyPatch) -> None:
    f = Filter(parse(["json.*:*", "!*:mod:json.encoder", "[ab]?c"]))

    def boom(*args: object, **kwargs: object) -> object:
        raise AssertionError("glob compiled at match time")

    monkeypatch.setattr(fnmatch, "translate", boom)
    monkeypatch.setattr(fnmatch, "fnmatch", boom)
    monkeypatch.setattr(fnmatch, "fnmatchcase", boom)
    monkeypatch.setattr(re, "compile", boom)
    assert f.selects("json.decoder", "f")
    assert not f.selects("json.encoder", "f")
    assert f.selects("m", "abc")
    assert not f.excludes("m", "zzz")
    assert f.extended([]).selects("json.x", "g")


# --------------------------------------------------------------------------- Filter construction


@pytest.mark.parametrize(
    "text",
    [
        "foo:traceon",
        "foo:traceoff:3",
        "foo:snapshot",
        "foo:stacktrace:2",
        "foo:dump",
        "foo:enable_event:sched:switch",
        "foo:disable_event:sched:switch:1",
        "!foo:traceoff",
    ],
)
def test_filter_rejects_triggers(text: str) -> None:
    lines = [parse_line("ok"), parse_line(text)]
    with pytest.raises(ValueError, match="trigger commands belong to a trace instance") as info:
        Filter(lines)
    assert repr(text) in str(info.value)
    with pytest.raises(ValueError, match="trigger commands belong to a trace instance"):
        Filter.EMPTY.extended(lines)


@pytest.mark.parametrize("text", ["foo", "!foo", "*:mod:pkg", "!*:mod:pkg", "m:f"])
def test_filter_accepts_plain_and_mod(text: str) -> None:
    assert Filter([parse_line(text)]).lines == (parse_line(text),)


def test_filter_lines_is_tuple_and_copied() -> None:
    source = parse(["a", "b"])
    f = Filter(source)
    assert isinstance(f.lines, tuple)
    source.append(parse_line("c"))
    assert [line.text for line in f.lines] == ["a", "b"]


def test_extended() -> None:
    base = Filter(parse("a*"))
    new = base.extended(parse("!ab"))
    assert new is not base
    assert [line.text for line in base.lines] == ["a*"]
    assert [line.text for line in new.lines] == ["a*", "!ab"]
    assert base.selects("m", "ab")
    assert not new.selects("m", "ab")
    assert new.selects("m", "abc")
    assert base.extended([]) == base
    assert Filter.EMPTY.extended(parse("x")).lines == (parse_line("x"),)
    assert Filter.EMPTY.lines == ()


def test_extended_positive_rule_changes_default() -> None:
    only_neg = Filter(parse("!foo"))
    assert only_neg.selects("m", "bar")
    with_pos = only_neg.extended(parse("baz"))
    assert not with_pos.selects("m", "bar")
    assert with_pos.selects("m", "baz")
    assert not with_pos.is_empty


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        ([], ""),
        (["foo"], "foo"),
        (["  foo ", "!bar", "*:mod:pkg"], "foo\n!bar\n*:mod:pkg"),
        (["a", "a"], "a\na"),
        ("json.decoder:*  !*.raw_decode", "json.decoder:*\n!*.raw_decode"),
    ],
)
def test_text(patterns: str | list[str], expected: str) -> None:
    assert Filter(parse(patterns)).text() == expected


def test_text_roundtrips_through_parse() -> None:
    f = Filter(parse(["a*", "!ab", "*:mod:pkg.*", "m:f?"]))
    assert Filter(parse(f.text())) == f


# --------------------------------------------------------------------------- immutability


@pytest.mark.parametrize("attr", ["text", "negate", "glob", "command", "params"])
def test_filter_line_frozen(attr: str) -> None:
    line = parse_line("foo:traceoff:3")
    with pytest.raises(AttributeError, match="cannot assign to field"):
        setattr(line, attr, "x")
    assert line == parse_line("foo:traceoff:3")


@pytest.mark.parametrize("attr", ["lines", "new_attribute", "_reversed"])
def test_filter_immutable(attr: str) -> None:
    f = Filter(parse("foo"))
    with pytest.raises(AttributeError):
        setattr(f, attr, ())
    assert f.lines == (parse_line("foo"),)
    assert not f.selects("m", "bar")


def test_filter_cannot_delete_attributes() -> None:
    f = Filter(parse("foo"))
    with pytest.raises(AttributeError):
        del f.lines
    assert f.lines == (parse_line("foo"),)


def test_equality_and_hashing() -> None:
    assert parse_line("!a*:mod:p") == parse_line(" !a*:mod:p ")
    assert parse_line("a") != parse_line("!a")
    assert len({parse_line("a"), parse_line("a"), parse_line("b")}) == 2
    assert Filter(parse("a b")) == Filter(parse(["a", "b"]))
    assert Filter(parse("a b")) != Filter(parse("b a"))
    assert len({Filter(parse("a")), Filter(parse("a"))}) == 1


@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy,
                                   lambda f: pickle.loads(pickle.dumps(f))])
def test_filter_copy_and_pickle(clone: Callable[[Filter], object]) -> None:
    f = Filter(parse(["a*", "!ab", "*:mod:pkg"]))
    g = clone(f)
    assert isinstance(g, Filter)
    assert g == f
    assert g.selects("pkg", "zz") and not g.selects("m", "ab") and g.selects("m", "ax")


def test_module_all_exports_exist() -> None:
    for name in flt.__all__:
        assert hasattr(flt, name)


# --------------------------------------------------------------------------- compiled globs


def test_compiled_globs_match_as_fnmatch_does() -> None:
    # _compile turns the common shapes into string tests and the rest into a regex:
    # every shape must answer exactly as fnmatch.fnmatchcase on every name.
    globs = ["abc", "*", "a*", "*c", "*b*", "a*c", "ab*ba", "*.<locals>.*", "a?c", "[ab]*",
             "*a*b*", "", "x]y", "!", "a.b", "**", "*[!a]", "a*b*c"]
    names = ["", "a", "b", "c", "abc", "abcabc", "aba", "abba", "abxba", "ac", "ca", "f.<locals>.g",
             "a.b", "x]y", "!", "bc", "a\nc", "acb", "aXbYc", "*", "ab*ba"]
    from fntrace.core import filter as filter_module

    for glob in globs:
        if not glob:
            continue
        match = filter_module._compile(glob)
        for name in names:
            assert bool(match(name)) == fnmatch.fnmatchcase(name, glob), (glob, name)
        module_match = filter_module._compile_module(glob + ".*")
        for name in names + [n + ".x" for n in names]:
            want = (fnmatch.fnmatchcase(name, glob + ".*")
                    or ("*" not in glob and "?" not in glob and "[" not in glob and name == glob))
            assert bool(module_match(name)) == want, (glob, name)


@pytest.mark.parametrize("count", ["0", "-1", "", "1.5", "\u00b2", "\u0663", "x"])
def test_a_count_must_be_ascii_digits(count: str) -> None:
    with pytest.raises(ValueError, match="not a positive integer"):
        parse_line(f"f:traceoff:{count}" if count else "f:traceoff:")
