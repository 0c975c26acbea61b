"""The fntrace parsers' help formatter: argparse's, its width measured without shutil (issue 15)."""

from __future__ import annotations

import argparse
import importlib
import shutil

import pytest

from fntrace.cli import COMMANDS, build_parser
from fntrace.cli.formatter import Formatter, terminal_columns


@pytest.mark.parametrize("columns", [None, "57", "200", "0", "-3", "wide"])
def test_the_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size().columns


@pytest.mark.parametrize("columns", ["40", "79", "132"])
def test_every_parser_helps_as_argparses_own_formatter_would(monkeypatch: pytest.MonkeyPatch,
                                                             columns: str) -> None:
    monkeypatch.setenv("COLUMNS", columns)

    modules = [importlib.import_module(f"fntrace.cli.{name}") for name in COMMANDS]
    modules.append(importlib.import_module("fntrace.cli"))

    def helps(formatter: type[argparse.HelpFormatter]) -> list[str]:
        for module in modules:  # each parser's module names the formatter class it uses
            if hasattr(module, "Formatter"):
                monkeypatch.setattr(module, "Formatter", formatter)
        out = []
        for command in ("record", "run", "replay", "ctl", None):
            parser = build_parser(command)
            out.append(parser.format_help())
            sub = next(a for a in parser._actions
                       if isinstance(a, argparse._SubParsersAction))
            out += [p.format_help() for p in sub.choices.values()]
        return out

    ours = helps(Formatter)
    theirs = helps(argparse.RawDescriptionHelpFormatter)
    assert ours == theirs
    assert helps(argparse.HelpFormatter) != theirs  # the swap reaches every parser
    assert any(len(line) > int(columns) - 20 for text in ours for line in text.splitlines())
