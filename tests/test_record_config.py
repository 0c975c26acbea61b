"""The recording side's configuration (issue 13): a RecordConfig, never an argparse
Namespace; argparse lives in fntrace/cli/ alone; the ``--follow`` child gets the
parent's config through the environment, whole."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fntrace.cli import build_parser
from fntrace.cli.record import config_of, split_command
from fntrace.recording import follow
from fntrace.recording.config import RecordConfig

ROOT = Path(__file__).resolve().parent.parent

#: Every field given a value other than its default.
FULL = RecordConfig(
    tracer="function", filter=("a:*", "b:f"), notrace=("a:_*",), graph_function=("m:g",),
    graph_notrace=("m:h",), max_depth=3, thresh=7, args=True, retval=True,
    repr_call=True, tasks=True, compress="zlib", buffer_size=64,
    no_overwrite=True, trigger=("m:f:traceoff",), thread=(11, 12), clock="global",
    follow=True, live=True, inject=("m:f:retval=0",), otel=("m:f",), output="out.dat",
    module="json.tool", argv=("x.json", "-q"))


def test_every_field_is_set_in_full() -> None:
    """FULL exercises each field (the tests below would miss a new one otherwise)."""
    default = RecordConfig()
    assert [name for name in RecordConfig.FIELDS
            if getattr(FULL, name) == getattr(default, name)] == []


def test_json_round_trip() -> None:
    assert RecordConfig.from_json(FULL.to_json()) == FULL
    assert RecordConfig.from_json(RecordConfig().to_json()) == RecordConfig()


def test_from_json_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="unknown record option 'colour'"):
        RecordConfig.from_json(json.dumps({"colour": "red"}))
    with pytest.raises(ValueError, match="JSON object"):
        RecordConfig.from_json("[1]")


def test_follow_environment_round_trip(monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    """export() in the parent, recipe() in the child: the inherited options whole, the
    parent's own (threads, live, inject, program) not, the output made absolute."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(follow.ENV, raising=False)
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    follow.export(FULL)
    assert os.environ["PYTHONPATH"] == follow.FOLDER + os.pathsep + "/elsewhere"
    child, root_pid = follow.recipe()
    assert root_pid == os.getpid()
    assert child == RecordConfig(
        tracer="function", filter=("a:*", "b:f"), notrace=("a:_*",), graph_function=("m:g",),
        graph_notrace=("m:h",), max_depth=3, thresh=7, args=True, retval=True,
        repr_call=True, tasks=True, compress="zlib", buffer_size=64, no_overwrite=True,
        trigger=("m:f:traceoff",), clock="global", follow=True, output=str(tmp_path / "out.dat"))


def test_header_options_as_the_file_always_had_them() -> None:
    """The header's "options": these keys in this order, an option not given null."""
    keys = ["tracer", "filter", "notrace", "graph_function", "graph_notrace", "max_depth",
            "thresh", "args", "retval", "buffer_size", "no_overwrite", "trigger", "thread",
            "clock", "follow", "repr_call", "tasks"]
    assert list(RecordConfig().header_options()) == keys
    assert RecordConfig().header_options() == {
        "tracer": "function_graph", "filter": None, "notrace": None, "graph_function": None,
        "graph_notrace": None, "max_depth": None, "thresh": None, "args": False,
        "retval": False, "buffer_size": None, "no_overwrite": False, "trigger": None,
        "thread": None, "clock": "mono", "follow": False, "repr_call": False,
        "tasks": False}
    got = FULL.header_options()
    assert (got["filter"], got["thread"], got["max_depth"]) == (["a:*", "b:f"], [11, 12], 3)


def _parsed(args: list[str]) -> RecordConfig:
    parser = build_parser()  # which options take a value is noted as it is built
    own, program = split_command(args[1:])
    ns = parser.parse_args([args[0], *own])
    assert program is not None
    ns.module, ns.argv = program
    return config_of(ns)


def test_the_command_line_makes_the_config() -> None:
    assert _parsed(["record", "-t", "function", "-F", "a:*", "-F", "b:f", "-N", "a:_*",
                    "-G", "m:g", "--graph-notrace", "m:h", "-D", "3", "--thresh", "7",
                    "--args", "--retval", "--repr-call", "--tasks", "--compress", "zlib",
                    "--buffer-size", "64",
                    "--no-overwrite",
                    "-T", "m:f:traceoff", "--thread", "11", "--thread", "12",
                    "--clock", "global", "--follow", "--live", "--inject", "m:f:retval=0",
                    "--otel", "m:f", "-o", "out.dat", "-m", "json.tool", "x.json", "-q"]) == FULL
    assert _parsed(["record", "--", "p.py", "-o", "x"]) == RecordConfig(argv=("p.py", "-o", "x"))
    # run: the tracer is chosen later (function, or nop with --live alone), no file.
    assert _parsed(["run", "p.py"]) == RecordConfig(tracer=None, output=None, argv=("p.py",))


def _imports_argparse(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "argparse":
            return True
    return False


def test_only_the_cli_imports_argparse() -> None:
    found = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "fntrace").rglob("*.py")
                   if _imports_argparse(p))
    assert found and all(p.startswith("fntrace/cli/") for p in found), found


def test_the_recording_side_loads_no_argparse() -> None:
    """Importing the recording and the readers leaves argparse unloaded (nothing they
    import, stdlib included, brings it in)."""
    code = ("import sys\n"
            "import fntrace.recording.record, fntrace.recording.follow\n"
            "import fntrace.analysis.replay, fntrace.analysis.report\n"
            "import fntrace.analysis.dump, fntrace.analysis.info\n"
            "print('argparse' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (res.stdout, res.stderr) == ("False\n", "")


def test_a_config_is_an_immutable_value() -> None:
    """What the frozen dataclass it was gave: equality and hash by the fields, a repr
    naming them, no assignment, replace() making a changed copy."""
    assert RecordConfig(argv=("p.py",)) == RecordConfig(argv=("p.py",)) != RecordConfig()
    assert hash(RecordConfig(argv=("p.py",))) == hash(RecordConfig(argv=("p.py",)))
    assert RecordConfig() != ("function_graph",)
    assert repr(RecordConfig()).startswith(
        "RecordConfig(tracer='function_graph', filter=(), notrace=(), graph_function=(), ")
    assert repr(RecordConfig()).endswith("output='fntrace.dat', module=None, argv=())")
    with pytest.raises(AttributeError, match="immutable"):
        FULL.tracer = "nop"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        FULL.colour = "red"  # type: ignore[attr-defined]
    changed = FULL.replace(tracer="nop")
    assert (changed.tracer, FULL.tracer) == ("nop", "function")
    assert changed == RecordConfig(**{**FULL.values(), "tracer": "nop"})
    with pytest.raises(TypeError):
        FULL.replace(colour="red")
    assert RecordConfig.FIELDS == tuple(RecordConfig.defaults()) == tuple(FULL.values())
