"""The fntrace command as a user meets it: each test runs the real command
(``python -m fntrace ...``) in a subprocess and checks exactly what it prints
and records (issue 12)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from helpers import default_sigint

from fntrace.formats.tracefile import open_trace

ROOT = str(Path(__file__).resolve().parent.parent)
ENV = {**os.environ, "PYTHONPATH": ROOT}


def fntrace(*args: str, cwd: Path, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fntrace", *args], cwd=cwd,
                          env=env or ENV, text=True, capture_output=True, timeout=120,
                          input=stdin, preexec_fn=default_sigint)


def write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


ECHO_ARGV = """
    import sys
    def show(args):
        print(repr(args))
    show(sys.argv[1:])
"""


# One line of ftrace's text format, as `fntrace run` prints it: TASK-PID [CPU] FLAGS TS: ...
TRACE_LINE = re.compile(r" *[^\s\[]+-\d+ +\[\d+\] \S+ +\d+\.\d+: [^\n]*\n")


def split_run(out: str) -> tuple[str, list[str]]:
    """`fntrace run`'s stdout as the program's text and the trace's lines.

    The two share the terminal. The writer thread writes its whole lines when it
    wakes, which can fall between any two writes of the program (print writes its
    text and its newline apart), even mid-line: so they are told apart by the trace
    line's form, never by position, and each keeps its own order.
    """
    trace = [m.group(0).rstrip("\n") for m in TRACE_LINE.finditer(out)]
    return TRACE_LINE.sub("", out), trace


def test_split_run_takes_a_trace_line_out_of_the_middle_of_a_program_line() -> None:
    line = "      MainThread-24910   [000] M.... 36771.611352: __main__:main <-__main__:<module>"
    assert split_run("{" + line + "\n\n    \"a\": 1\n}\n" + line + "\n") == \
        ('{\n    "a": 1\n}\n', [line, line])


def called(path: Path) -> list[str]:
    """The functions entered, in order, as the file holds them."""
    return [r.func for r in open_trace(str(path)).records() if r.kind in ("entry", "call")]


# -- 2. everything after the program belongs to the program ---------------------------

def test_arguments_after_the_script_are_the_programs(tmp_path: Path) -> None:
    write(tmp_path / "prog.py", ECHO_ARGV)
    for cmd in ("record", "run"):
        res = fntrace(cmd, "-F", "show", "-o", "t.out", "prog.py", "-q", "-o", "y", "--args",
                      "-m", "x", "--", "-F", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert res.stdout == "['-q', '-o', 'y', '--args', '-m', 'x', '--', '-F']\n"
        # fntrace's own -o took effect and --args did not.
        assert (tmp_path / "t.out").exists()
        (tmp_path / "t.out").unlink()


def test_leading_double_dash_still_works(tmp_path: Path) -> None:
    write(tmp_path / "prog.py", ECHO_ARGV)
    res = fntrace("record", "-t", "function", "-F", "show", "-o", "t.dat", "--", "prog.py",
                  "-t", "--", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "['-t', '--']\n"
    assert called(tmp_path / "t.dat") == ["__main__:show"]


def test_arguments_after_dash_m_module_are_the_programs(tmp_path: Path) -> None:
    write(tmp_path / "echoargs.py", ECHO_ARGV)
    # As `python -m echoargs -q - --outp=z`: -q, -, and an abbreviation of --output
    # all go to the program; -ox.dat (attached value) and --thresh=0 are fntrace's.
    res = fntrace("record", "-ox.dat", "--thresh=0", "-F", "show", "-m", "echoargs",
                  "-q", "-", "--outp=z", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "['-q', '-', '--outp=z']\n"
    assert called(tmp_path / "x.dat") == ["__main__:show"]
    header = open_trace(str(tmp_path / "x.dat")).header
    assert header["argv"][1:] == ["-q", "-", "--outp=z"]
    res = fntrace("run", "-F", "show", "-mechoargs", "-h", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    program, trace = split_run(res.stdout)
    assert program == "['-h']\n" and len(trace) == 1
    # A -- right after the module is fntrace's (the form fntrace always took); later
    # ones are the program's.
    res = fntrace("run", "-F", "show", "-m", "echoargs", "--", "-q", "--", "x", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    program, trace = split_run(res.stdout)
    assert program == "['-q', '--', 'x']\n" and len(trace) == 1


def test_json_tool_module_with_its_own_options(tmp_path: Path) -> None:
    (tmp_path / "f.json").write_text('{"b": 1, "a": [1, 2]}')
    res = fntrace("record", "-o", "j.dat", "-F", "__main__:main", "-m", "json.tool",
                  "--sort-keys", "--compact", "f.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == '{"a":[1,2],"b":1}\n'
    assert called(tmp_path / "j.dat") == ["__main__:main"]


def test_dash_m_without_a_module_is_a_usage_error(tmp_path: Path) -> None:
    res = fntrace("record", "-o", "x.dat", "-m", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.splitlines()[-1] == "fntrace record: error: argument -m: expected one " \
                                          "argument"


# -- 3. run keeps its output when the program closes stdout ----------------------------

CLOSES_STDOUT = """
    import sys
    def work(n):
        return n * 2
    print("result", work(21))
    sys.stdout.close()
    work(1)
"""


def test_run_writes_to_its_own_stdout_when_the_program_closes_it(tmp_path: Path) -> None:
    write(tmp_path / "closer.py", CLOSES_STDOUT)
    res = fntrace("run", "-F", "work", "closer.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    program, trace = split_run(res.stdout)
    assert program == "result 42\n"
    assert [ln.split(": ", 1)[1] for ln in trace] == ["__main__:work <-__main__:<module>"] * 2


def test_run_json_tool_closing_stdout(tmp_path: Path) -> None:
    # The case: json.tool closes sys.stdout (its `with outfile`).
    (tmp_path / "f.json").write_text('{"a": 1}')
    res = fntrace("run", "-F", "__main__:main", "-m", "json.tool", "f.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Exception ignored" not in res.stderr and res.stderr == ""
    # json.tool writes its text in pieces: the trace's line may fall mid-line.
    program, trace = split_run(res.stdout)
    assert program == '{\n    "a": 1\n}\n'
    assert [ln.split(": ", 1)[1] for ln in trace] == ["__main__:main <-__main__:<module>"]


def test_run_dash_o_dash_is_the_terminal(tmp_path: Path) -> None:
    write(tmp_path / "closer.py", CLOSES_STDOUT)
    res = fntrace("run", "-o", "-", "-F", "work", "closer.py", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("__main__:work <-__main__:<module>") == 2
    assert not (tmp_path / "-").exists()


def test_run_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    write(tmp_path / "many.py", """
        def f(i):
            return i
        for i in range(20000):
            f(i)
    """)
    cmd = f"{sys.executable} -m fntrace run -F f many.py | head -n 2"
    res = subprocess.run(["sh", "-c", cmd], cwd=tmp_path, env=ENV, text=True,
                         capture_output=True, timeout=120)
    assert len(res.stdout.splitlines()) == 2
    assert res.stderr == ""


# -- issue 11 item 7: Ctrl-C during fntrace's own start-up --------------------------

def test_sigint_while_importing_is_one_line_and_130(tmp_path: Path) -> None:
    write(tmp_path / "prog.py", ECHO_ARGV)
    env = {**ENV, "FNTRACE_TEST_SIGINT": "import"}
    for args in (["record", "-o", "s.dat", "prog.py"], ["report", "x.dat"], ["--version"]):
        res = fntrace(*args, cwd=tmp_path, env=env)
        assert (res.returncode, res.stdout, res.stderr) == (130, "", "fntrace: interrupted\n")
    assert not (tmp_path / "s.dat").exists()
    # The console script (a file called fntrace) is guarded the same way.
    write(tmp_path / "fntrace", "import sys\nfrom fntrace.cli import main\nsys.exit(main())\n")
    res = subprocess.run([sys.executable, "fntrace", "funcs"], cwd=tmp_path, env=env,
                         text=True, capture_output=True, timeout=120,
                         preexec_fn=default_sigint)
    assert (res.returncode, res.stdout, res.stderr) == (130, "", "fntrace: interrupted\n")


def test_sigint_once_recording_is_set_up_finishes_the_file(tmp_path: Path) -> None:
    write(tmp_path / "prog.py", ECHO_ARGV)
    env = {**ENV, "FNTRACE_TEST_SIGINT": "start"}
    res = fntrace("record", "-o", "s.dat", "prog.py", cwd=tmp_path, env=env)
    assert (res.returncode, res.stdout, res.stderr) == (130, "", "fntrace: interrupted\n")
    info = fntrace("info", "s.dat", cwd=tmp_path)
    assert "status:      complete" in info.stdout
    assert called(tmp_path / "s.dat") == []


def test_a_program_importing_fntrace_keeps_its_keyboardinterrupt(tmp_path: Path) -> None:
    write(tmp_path / "lib.py", """
        try:
            import fntrace
        except KeyboardInterrupt:
            print("program saw KeyboardInterrupt")
    """)
    env = {**ENV, "FNTRACE_TEST_SIGINT": "import"}
    res = subprocess.run([sys.executable, "lib.py"], cwd=tmp_path, env=env, text=True,
                         capture_output=True, timeout=120, preexec_fn=default_sigint)
    # Not the command: no guard, no test hook either.
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


# -- 4. --live steers the recording itself -------------------------------------------

STEPPED = """
    import os, sys
    def fa(i):
        return i
    def fb(i):
        return i
    print("ready", os.getpid(), flush=True)
    sys.stdin.readline()
    fa(1); fb(1)
    print("step", flush=True)
    sys.stdin.readline()
    fa(2); fb(2)
"""


def _steer(tmp: Path, cmd: list[str], before: list[list[str]], between: list[list[str]],
           ) -> list[str]:
    """Run ``STEPPED`` under ``cmd``; run the ctl commands ``before`` its first calls and
    ``between`` its two steps (it waits on stdin: no timing); return ctl's outputs."""
    write(tmp / "loop.py", STEPPED)
    proc = subprocess.Popen([sys.executable, "-m", "fntrace", *cmd, "--", "loop.py"],
                            cwd=tmp, env=ENV, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    outputs = []
    try:
        pid = proc.stdout.readline().split()[1]
        for step, ctls in enumerate((before, between)):
            for args in ctls:
                flags = [a for a in args if a.startswith("--")]
                res = fntrace("ctl", *flags, pid, *(a for a in args if a not in flags),
                              cwd=tmp)
                assert res.returncode == 0, res.stderr
                outputs.append(res.stdout + res.stderr)
            proc.stdin.write("\n")
            proc.stdin.flush()
            if step == 0:
                assert proc.stdout.readline() == "step\n"
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    return outputs


def test_record_live_ctl_sees_and_steers_the_recording(tmp_path: Path) -> None:
    outs = _steer(tmp_path, ["record", "--live", "-F", "fa", "-o", "live.dat"],
                  [["current_tracer"], ["set_ftrace_filter"], ["ls", "instances"]],
                  [["set_ftrace_filter", "fb"]])
    assert outs == ["function_graph\n", "fa\n", "", ""]
    records = [(r.kind, r.func) for r in open_trace(str(tmp_path / "live.dat")).records()]
    assert records == [("entry", "__main__:fa"), ("exit", "__main__:fa"),
                       ("entry", "__main__:fb"), ("exit", "__main__:fb")]
    # The exact values: fa's is the first step's call, fb's the second's.
    res = fntrace("replay", "live.dat", cwd=tmp_path)
    assert [ln.split("|")[1].strip() for ln in res.stdout.splitlines() if "|  __" in ln] == \
        ["__main__:fa();", "__main__:fb();"]


def test_run_live_ctl_steers_the_printed_trace(tmp_path: Path) -> None:
    _steer(tmp_path, ["run", "--live", "-F", "fa", "--args", "-o", "live.txt"],
           [["current_tracer"]], [["set_ftrace_filter", "fb"]])
    lines = (tmp_path / "live.txt").read_text().splitlines()
    assert [ln.split(": ", 1)[1] for ln in lines] == [
        "__main__:fa(i=1) <-__main__:<module>", "__main__:fb(i=2) <-__main__:<module>"]


def test_run_live_alone_starts_untraced_until_ctl_sets_a_tracer(tmp_path: Path) -> None:
    outs = _steer(tmp_path, ["run", "--live", "-o", "live.txt"],
                  [["current_tracer"]],
                  [["set_ftrace_filter", "fb"], ["current_tracer", "function"],
                   ["current_tracer"]])
    assert outs == ["nop\n", "", "", "function\n"]
    lines = (tmp_path / "live.txt").read_text().splitlines()
    assert [ln.split(": ", 1)[1] for ln in lines] == ["__main__:fb <-__main__:<module>"]


# -- 6. report --diff fits the terminal ----------------------------------------------

DIFFED = """
    import sys
    class AVeryLongClassNameThatMakesTheQualifiedNameWide:
        def a_method_with_a_rather_long_name_too(self, i):
            return i
    def short(i):
        return i
    obj = AVeryLongClassNameThatMakesTheQualifiedNameWide()
    for i in range(int(sys.argv[1])):
        obj.a_method_with_a_rather_long_name_too(i)
        short(i)
"""
LONG = "__main__:AVeryLongClassNameThatMakesTheQualifiedNameWide." \
       "a_method_with_a_rather_long_name_too"


def test_report_diff_fits_the_terminal_and_wide_shows_all(tmp_path: Path) -> None:
    write(tmp_path / "d.py", DIFFED)
    for n, out in (("3", "a.dat"), ("5", "b.dat")):
        assert fntrace("record", "-o", out, "d.py", n, cwd=tmp_path).returncode == 0
    for cols in (80, 100, 120):
        res = fntrace("report", "a.dat", "--diff", "b.dat", "-s", "calls", cwd=tmp_path,
                      env={**ENV, "COLUMNS": str(cols)})
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert max(map(len, lines)) <= cols, (cols, lines)
        assert lines[3] == "# calls: base, new, diff, %; total and self: diff (--wide: all, exact)"
        assert lines[4].split() == ["base", "new", "diff", "%", "Total", "diff", "Self", "diff",
                                    "Function"]
        rows = {ln.split()[-1]: ln.split()[:4] for ln in lines[6:]}
        assert len(rows) == 4  # with the class body
        long = next(n for n in rows if n.endswith("too"))
        assert long == "..." + LONG[-len(long) + 3:]  # cut from the left
        assert rows[long] == ["3", "5", "+2", "+66.7%"]
        assert rows["__main__:short"] == ["3", "5", "+2", "+66.7%"]
        assert rows["__main__:<module>"] == ["1", "1", "0", "+0.0%"]
    res = fntrace("report", "a.dat", "--diff", "b.dat", "--wide", cwd=tmp_path,
                  env={**ENV, "COLUMNS": "80"})
    lines = res.stdout.splitlines()
    assert lines[3].split() == [w for m in ("Total", "Self", "Calls")
                                for w in (m, "base", m, "new", m, "diff", "%")] + ["Function"]
    assert any(ln.endswith(LONG) for ln in lines)


# -- 1. a filter that matches nothing says so, and helps --------------------------------

def _package(tmp: Path) -> None:
    """A package ``mypkg`` (its own function, a submodule's, a -m entry) and a program."""
    (tmp / "mypkg" / "sub").mkdir(parents=True)
    write(tmp / "mypkg" / "__init__.py", """
        def helper(x):
            return x + 1
    """)
    write(tmp / "mypkg" / "sub" / "__init__.py", """
        def deep(x):
            return x * 2
    """)
    write(tmp / "mypkg" / "tool.py", """
        import mypkg.sub
        def main():
            print(mypkg.sub.deep(mypkg.helper(1)))
        if __name__ == "__main__":
            main()
    """)
    write(tmp / "prog.py", """
        import mypkg.sub
        def run_the_program():
            return mypkg.sub.deep(mypkg.helper(2))
        print(run_the_program())
    """)


def _said(res: subprocess.CompletedProcess[str]) -> list[str]:
    return res.stderr.splitlines()


def test_a_package_glob_without_a_colon_says_what_was_meant(tmp_path: Path) -> None:
    _package(tmp_path)
    for cmd in ("record", "run"):
        res = fntrace(cmd, "-F", "mypkg.*", "-o", "out", "prog.py", cwd=tmp_path)
        assert (res.returncode, res.stdout) == (0, "6\n")
        assert _said(res) == [
            f"fntrace {cmd}: -F 'mypkg.*' matched no function: 'mypkg.*' matches qualnames "
            "(Class.method), not modules: did you mean 'mypkg:*' or '*:mod:mypkg.*'?"]


def test_module_dot_function_and_a_module_name_get_their_spelling(tmp_path: Path) -> None:
    _package(tmp_path)
    res = fntrace("record", "-F", "mypkg.helper", "-F", "mypkg.sub", "-N", "run_the_progam",
                  "-o", "t.dat", "prog.py", cwd=tmp_path)
    assert (res.returncode, res.stdout) == (0, "6\n")
    assert _said(res) == [
        "fntrace record: -F 'mypkg.helper' matched no function: 'mypkg.helper' matches "
        "qualnames, not module.function: did you mean 'mypkg:helper'?",
        "fntrace record: -F 'mypkg.sub' matched no function: 'mypkg.sub' names a module, not a "
        "function: did you mean 'mypkg.sub:*' or '*:mod:mypkg.sub.*'?",
        "fntrace record: -N 'run_the_progam' matched no function: did you mean "
        "'run_the_program'?"]
    assert called(tmp_path / "t.dat") == []


def test_patterns_that_match_say_nothing_and_mod_covers_the_package(tmp_path: Path) -> None:
    _package(tmp_path)
    res = fntrace("record", "-t", "function", "-F", "*:mod:mypkg.*", "-F", "!nothing_at_all",
                  "-o", "t.dat", "prog.py", cwd=tmp_path)
    assert (res.returncode, res.stdout, res.stderr) == (0, "6\n", "")
    # The package's own code (mypkg:helper, its <module>) is in, as are its submodules'.
    assert called(tmp_path / "t.dat") == ["mypkg:<module>", "mypkg.sub:<module>",
                                          "mypkg:helper", "mypkg.sub:deep"]


def test_the_module_run_with_dash_m_is_main(tmp_path: Path) -> None:
    _package(tmp_path)
    res = fntrace("run", "-F", "mypkg.tool:*", "-m", "mypkg.tool", cwd=tmp_path)
    assert (res.returncode, res.stdout) == (0, "4\n")
    assert _said(res) == [
        "fntrace run: -F 'mypkg.tool:*' matched no function: no module 'mypkg.tool' is loaded. "
        "mypkg.tool runs as the program (-m mypkg.tool): its functions are '__main__:*'."]


def test_a_misspelt_module_gets_the_close_names(tmp_path: Path) -> None:
    _package(tmp_path)
    res = fntrace("run", "-F", "*:mod:mypgk.*", "-F", "mypkg.sub:dep", "prog.py", cwd=tmp_path)
    assert res.returncode == 0
    assert _said(res) == [
        "fntrace run: -F '*:mod:mypgk.*' matched no function: no loaded module matches "
        "'mypgk.*': did you mean module 'mypkg'?",
        "fntrace run: -F 'mypkg.sub:dep' matched no function: no function of module mypkg.sub "
        "matches 'dep': did you mean 'mypkg.sub:deep'?"]


def test_funcs_says_what_matched_nothing(tmp_path: Path) -> None:
    res = fntrace("funcs", "-m", "json", "-F", "json.*", cwd=tmp_path)
    assert (res.returncode, res.stdout) == (0, "")
    assert _said(res) == [
        "fntrace funcs: -F 'json.*' matched no function: 'json.*' matches qualnames "
        "(Class.method), not modules: did you mean 'json:*' or '*:mod:json.*'?"]
    res = fntrace("funcs", "-m", "json", "-F", "*:mod:json.*", cwd=tmp_path)
    listed = res.stdout.splitlines()
    assert res.stderr == "" and {"json:loads", "json:dumps",
                                 "json.decoder:JSONDecoder.decode"} <= set(listed)
    assert {name.partition(":")[0] for name in listed} == {
        "json", "json.decoder", "json.encoder", "json.scanner"}


def test_ctl_check_and_control_unmatched(tmp_path: Path) -> None:
    outs = _steer(tmp_path, ["run", "--live", "-F", "fa", "-o", "live.txt"],
                  [["--check", "set_ftrace_filter", "f_b", "--append"],
                   ["control/unmatched"], ["--check", "set_ftrace_filter", "fb"]], [])
    # (The closest name first; stdlib names may follow it: 'f_b' is close to '_cb'.)
    said = "set_ftrace_filter 'f_b' matched no function: did you mean 'fb'"
    assert outs[0].startswith(f"fntrace ctl: {said}") and outs[0].count("\n") == 1
    assert outs[1].startswith(said) and outs[1].count("\n") == 1
    assert outs[2] == ""  # fb matches: nothing to say


COMPILED_MODULE = getattr(__import__("_json"), "__file__", None)


def test_a_compiled_module_is_said_compiled(tmp_path: Path) -> None:
    import pytest

    if not (COMPILED_MODULE or "").endswith(".so"):
        pytest.skip("_json is built into this interpreter, not an extension file")
    write(tmp_path / "usejson.py", "import json, _json\nprint(json.dumps([1]))\n")
    res = fntrace("run", "-F", "_json:*", "usejson.py", cwd=tmp_path)
    assert (res.returncode, res.stdout) == (0, "[1]\n")
    assert _said(res) == [
        "fntrace run: -F '_json:*' matched no function: Module _json is compiled (mypyc, "
        f"Cython or C: {COMPILED_MODULE}): it has no Python functions to trace."]


def test_a_script_named_by_its_file_is_main(tmp_path: Path) -> None:
    _package(tmp_path)
    res = fntrace("record", "-F", "prog:*", "-o", "t.dat", "prog.py", cwd=tmp_path)
    assert (res.returncode, res.stdout) == (0, "6\n")
    assert _said(res) == [
        "fntrace record: -F 'prog:*' matched no function: no module 'prog' is loaded. prog "
        "runs as the program (prog.py): its functions are '__main__:*'."]


def test_run_says_unmatched_patterns_after_the_whole_trace_once(tmp_path: Path) -> None:
    write(tmp_path / "forks.py", """
        import os, warnings
        warnings.simplefilter("ignore")  # 3.12+: fork() with fntrace's writer thread
        def work(n):
            return n * 2
        work(1)
        pid = os.fork()
        if pid == 0:
            work(2)
            os._exit(0)
        os.waitpid(pid, 0)
        work(3)
    """)
    res = subprocess.run([sys.executable, "-m", "fntrace", "run", "--args", "-F", "work",
                          "-F", "nomatch_qq", "forks.py"], cwd=tmp_path, env=ENV, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    hint = "fntrace run: -F 'nomatch_qq' matched no function: "
    assert [ln.startswith(hint) for ln in lines].count(True) == 1
    assert lines[-1].startswith(hint)  # after every trace line
    assert sorted(ln.split(": ", 1)[1] for ln in lines[:-1]) == [
        f"__main__:work(n={n}) <-__main__:<module>" for n in (1, 3)]
