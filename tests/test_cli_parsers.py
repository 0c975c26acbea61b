"""``fntrace COMMAND`` builds COMMAND's parser alone, and says exactly what the whole
command would: the same help, the same errors, the same usage line."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest

from fntrace.cli import COMMANDS, build_parser


def _outcome(command: str | None, args: list[str]) -> tuple[object, str, str]:
    """What parsing ``args`` prints and ends with, by build_parser(command)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            ns = build_parser(command).parse_args(args)
            ended: object = sorted(vars(ns).items(), key=str)
        except SystemExit as exc:
            ended = exc.code
    return ended, out.getvalue(), err.getvalue()


def test_the_help_lists_every_subcommand_in_order() -> None:
    ended, out, _ = _outcome(None, ["--help"])
    assert ended == 0
    listed = out.split("positional arguments:\n", 1)[1].split("\n", 1)[0].strip()
    assert listed == "{funcs,ctl,attach,run,record,replay,info,report,dump,view}"
    assert COMMANDS == tuple(listed.strip("{}").split(","))
    lines = [line.split()[0] for line in out.splitlines() if line.startswith("    ")
             and line.split()[0] in COMMANDS]
    assert lines == list(COMMANDS)


@pytest.mark.parametrize("command", ["record", "run", "funcs"])
def test_one_subcommand_alone_imports_its_module_alone(command: str) -> None:
    # (cli/formatter.py is every parser's help formatter, no subcommand's)
    code = ("import sys; from fntrace.cli import build_parser; build_parser(sys.argv[1]); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('fntrace.cli.') "
            "and m != 'fntrace.cli.formatter')))")
    out = subprocess.run([sys.executable, "-c", code, command], capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    # run's options are record's (run.py imports them from record.py)
    assert out == (["fntrace.cli.record", "fntrace.cli.run"] if command == "run"
                   else [f"fntrace.cli.{command}"])


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("rest", [["--help"], ["--no-such-option"], [], ["-t", "nosuch"]])
def test_a_subcommand_alone_says_what_all_of_them_say(command: str, rest: list[str]) -> None:
    args = [command, *rest]
    alone = _outcome(command, args)
    assert alone == _outcome(None, args)
    assert alone[0] != 0 or "usage: fntrace " + command in alone[1]


# argparse quotes the choices up to 3.13; 3.14's does not.
_CHOICES = ", ".join(repr(c) if sys.version_info < (3, 14) else c for c in COMMANDS)


@pytest.mark.parametrize(("args", "said"), [
    ([], "fntrace: error: the following arguments are required: command\n"),
    (["nosuch"], "fntrace: error: argument command: invalid choice: 'nosuch' (choose from "
     + _CHOICES + ")\n"),
])
def test_without_a_known_subcommand_the_errors_are_argparses_own(args: list[str],
                                                                  said: str) -> None:
    ended, out, err = _outcome(args[0] if args else None, args)
    assert (ended, out) == (2, "")
    assert err.startswith("usage: fntrace [-h] [--version]")
    assert "{funcs,ctl,attach,run,record,replay,info,report,dump,view} ...\n" in err
    assert err.endswith(said)
