"""``fntrace record``: run a program traced, streaming the trace to a file.

The program runs as ``python script.py args`` (or ``python -m module``)
would: its argv, ``__main__``, sys.path[0], standard streams, exit code, and
the way it dies (an uncaught exception prints the program's traceback without
fntrace's frames and exits 1; SIGINT and SIGTERM kill it with the same signal
once the file is finished).  Options mirror the instance files.  With
``--follow`` every child process (forked, or a new Python interpreter: see
follow.py) records its own file ``PATH.<pid>`` with the same options.
"""

from __future__ import annotations

import argparse
import atexit
import builtins
import os
import runpy
import signal
import sys
import threading
import time
import types
from typing import Any, NoReturn

from fntrace.core import symbols
from fntrace.core.oscaps import native_id
from fntrace.recording import forkwarning, startup, wakeup
from fntrace.recording.recorder import Recorder, header_for, mute, unmute

__all__ = ["add_parser", "add_run_parser", "split_command"]

#: The option strings of record and run that take a value (filled as the parsers are
#: built): what :func:`split_command` must skip to find where the program starts.
VALUED: set[str] = set()
#: Those that take none.
FLAGS: set[str] = {"-h", "--help"}

EXAMPLES = """\
examples:
  fntrace record -- examples/shop.py                 function_graph trace into fntrace.dat
  fntrace record -t function -F '__main__:*' -o shop.dat examples/shop.py --fast
                                                     the script's own functions (it runs as
                                                     __main__); --fast is the script's
  fntrace record --args --retval -D 3 -m json.tool --sort-keys f.json
                                                     everything after -m MODULE is the
                                                     program's, as with python
  fntrace record -T '__main__:checkout:traceoff' -- examples/shop.py
                                                     stop recording at checkout
  fntrace info fntrace.dat                           what was recorded
  fntrace replay fntrace.dat -F '__main__:*' --until 0.5
                                                     the script's calls in the first 0.5 s
"""


class _Noting:
    """An ArgumentParser's add_argument that also notes which options take a value."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_argument(self, *names: str, **kw: Any) -> argparse.Action:
        action = self.parser.add_argument(*names, **kw)
        (FLAGS if action.nargs == 0 else VALUED).update(action.option_strings)
        return action


def add_trace_options(parser: argparse.ArgumentParser, default_tracer: str | None) -> None:
    """The options record and run share; they mirror the instance files."""
    p = _Noting(parser)
    p.add_argument("-t", "--tracer", default=default_tracer,
                   choices=("function", "function_graph"),
                   help=f"default {default_tracer or 'function (nop with --live alone)'}")
    p.add_argument("-F", "--filter", action="append", metavar="PATTERN",
                   help="set_ftrace_filter pattern (repeatable)")
    p.add_argument("-N", "--notrace", action="append", metavar="PATTERN",
                   help="set_ftrace_notrace pattern (repeatable)")
    p.add_argument("-G", "--graph-function", action="append", metavar="PATTERN",
                   help="set_graph_function pattern (repeatable)")
    p.add_argument("--graph-notrace", action="append", metavar="PATTERN",
                   help="set_graph_notrace pattern (repeatable)")
    p.add_argument("-D", "--max-depth", type=int, metavar="N", help="max_graph_depth")
    p.add_argument("--thresh", type=int, metavar="USECS", help="tracing_thresh (µs)")
    p.add_argument("--args", action="store_true", help="arguments (func-args, funcgraph-args)")
    p.add_argument("--retval", action="store_true",
                   help="return values (function_graph)")
    p.add_argument("--buffer-size", type=int, metavar="KIB", help="buffer_size_kb per thread")
    p.add_argument("--no-overwrite", action="store_true",
                   help="drop new events when a buffer is full (default: drop oldest)")
    p.add_argument("-T", "--trigger", action="append", metavar="FUNC:CMD[:N]",
                   help="function trigger, e.g. 'mod:f:traceoff' (repeatable)")
    p.add_argument("--thread", action="append", type=int, metavar="TID",
                   help="trace only this thread id (set_ftrace_pid; repeatable)")
    p.add_argument("--clock", default="mono", help="trace_clock (default mono, which "
                   "several processes share)")
    p.add_argument("--live", action="store_true", help="also serve fntrace ctl PID")
    p.add_argument("--inject", action="append", metavar="SPEC",
                   help="fail a function: 'FUNC:raise=OSError(\"disk full\"):probability=10' "
                   "or 'FUNC:retval=0:times=3' (repeatable)")
    p.add_argument("--otel", action="append", metavar="SPEC",
                   help="OpenTelemetry spans for the functions of 'PATTERN... [KEY=EXPR...]' "
                   "(docs/otel.md; repeatable)")
    # Where the program starts is found by split_command, as python finds it: these
    # two only document it (and receive it from cli.main).
    parser.add_argument("-m", dest="module", metavar="MODULE",
                        help="run a module, as python -m; every later argument is the "
                        "program's (a -- right after MODULE is skipped)")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="script.py [args...]",
                        help="the program and its arguments (a leading -- is optional; every "
                        "argument after the script is the program's)")


def _unique_long(token: str) -> str | None:
    """The long option ``token`` abbreviates (argparse accepts unique prefixes)."""
    name = token.split("=", 1)[0]
    if name in VALUED or name in FLAGS:
        return name
    hits = [o for o in VALUED | FLAGS if o.startswith("--") and o.startswith(name)]
    return hits[0] if len(hits) == 1 else None


def split_command(args: list[str]) -> tuple[list[str], tuple[str | None, list[str]] | None]:
    """Split ``record``/``run``'s arguments where the program starts, as python does.

    Returns fntrace's own arguments and, if a program was named, ``(module,
    argv)``: after ``-m MODULE`` or the script path every argument is the
    program's (``fntrace record -m black -q -`` as ``python -m black -q -``).
    A ``--`` before the program, or right after ``-m MODULE``, is fntrace's end
    of options (``-m black -- -q -`` also works); any later one is the
    program's.  An option that takes a value skips it (``-o x.dat``,
    ``-ox.dat``, ``--output=x.dat``, ``--outp x.dat`` as argparse abbreviates).
    """
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "--":
            rest = args[i + 1:]
            return args[:i], ((None, rest) if rest else None)
        if tok == "-m" or (tok.startswith("-m") and not tok.startswith("--")):
            module = tok[2:] or (args[i + 1] if i + 1 < len(args) else None)
            if module is None:
                return args, None  # argparse says "-m: expected one argument"
            start = i + 1 if tok[2:] else i + 2
            if args[start:start + 1] == ["--"]:
                start += 1  # `-m black -- -q -`: fntrace's end of options, as it always was
            return args[:i], (module, args[start:])
        if tok == "-" or not tok.startswith("-"):
            return args[:i], (None, args[i:])
        if tok.startswith("--"):
            name = _unique_long(tok)
            takes = name in VALUED and "=" not in tok
        else:
            takes = tok[:2] in VALUED and len(tok) == 2
        i += 2 if takes else 1
    return args, None


def add_parser(sub: Any) -> None:
    rec = sub.add_parser(
        "record", help="run a program traced, writing a trace file",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES)
    noting = _Noting(rec)
    noting.add_argument("-o", "--output", default="fntrace.dat", metavar="PATH",
                        help="trace file to write (default fntrace.dat)")
    noting.add_argument("--follow", action="store_true",
                        help="trace child processes too (fork, multiprocessing, Python "
                        "subprocesses), each into PATH.<pid>")
    add_trace_options(rec, "function_graph")
    rec.set_defaults(handler=record_main, command_name="record")


RUN_EXAMPLES = """\
examples:
  fntrace run -- examples/shop.py                    every call, live (function tracer)
  fntrace run -t function_graph -F '*:mod:__main__' --args --retval -- examples/shop.py
  fntrace run -F 'json.*:*' -o trace.txt -m json.tool f.json
                                                     the json package into trace.txt
  fntrace run -o - -m json.tool f.json               the trace reaches the terminal even
                                                     though json.tool closes sys.stdout
  fntrace run --inject 'store:save:raise=OSError("disk full"):interval=2' -- app.py
  fntrace run --live -- server.py                    untraced until steered with fntrace ctl
"""


def add_run_parser(sub: Any) -> None:
    run = sub.add_parser(
        "run", help="run a program traced, printing the trace live (trace_pipe)",
        description="Run a program as record does, printing the trace as it is made "
        "(the instance's trace_pipe) to stdout or -o FILE.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EXAMPLES)
    _Noting(run).add_argument("-o", "--output", metavar="FILE",
                              help="write the trace to FILE (- or none: the terminal)")
    add_trace_options(run, None)
    run.set_defaults(handler=run_main, command_name="run", follow=False)


_command = "record"


def _fail(text: str) -> NoReturn:
    raise SystemExit(f"fntrace {_command}: {text}")


def configure(ns: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """A new instance set up from the options (not yet tracing) and the options' record."""
    from fntrace.tracing.instance import Instance

    inst = Instance("record")
    opts: dict[str, Any] = {"tracer": ns.tracer}
    try:
        inst.write("trace_clock", ns.clock)
        if ns.buffer_size is not None:
            inst.write("buffer_size_kb", str(ns.buffer_size))
        if ns.no_overwrite:
            inst.write("options/overwrite", "0")
        if ns.args:
            inst.write("options/func-args", "1")
            inst.write("options/funcgraph-args", "1")
        if ns.retval:
            inst.write("options/funcgraph-retval", "1")
        for path, values in (("set_ftrace_filter", ns.filter),
                             ("set_ftrace_notrace", ns.notrace),
                             ("set_graph_function", ns.graph_function),
                             ("set_graph_notrace", ns.graph_notrace),
                             ("set_ftrace_filter", ns.trigger)):
            for value in values or ():
                inst.write(path, value, append=True)
        if ns.max_depth is not None:
            inst.write("max_graph_depth", str(ns.max_depth))
        if ns.thresh is not None:
            inst.write("tracing_thresh", str(ns.thresh))
        if ns.thread:
            inst.write("set_ftrace_pid", " ".join(map(str, ns.thread)))
    except (ValueError, OSError) as exc:
        inst.close()
        _fail(str(exc))
    for key in ("filter", "notrace", "graph_function", "graph_notrace", "max_depth", "thresh",
                "args", "retval", "buffer_size", "no_overwrite", "trigger", "thread", "clock",
                "follow"):
        opts[key] = getattr(ns, key)
    opts["instance_options"] = dict(inst.options)
    return inst, opts


def _outside_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """The traceback without fntrace's frames (its runner's, and its hooks' when a
    signal's exception was raised inside one)."""
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    kept: list[types.TracebackType] = []
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if not (name.startswith(pkg) or name.startswith("<frozen runpy")):
            kept.append(tb)
        tb = tb.tb_next
    out: types.TracebackType | None = None
    for item in reversed(kept):
        out = types.TracebackType(out, item.tb_frame, item.tb_lasti, item.tb_lineno)
    return out


def _print_exception(exc: BaseException, inst: Any) -> None:
    tid = native_id()
    mute(inst, tid)  # the traceback's own calls are not the program's
    try:
        tb = _outside_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
    finally:
        unmute(inst, tid)


def _die_of(signum: int, flush: bool = False) -> NoReturn:
    """End this process by ``signum``'s default action, as untraced it would have ended.

    ``flush``: the program unwound first (KeyboardInterrupt), so its buffered
    output was due; a SIGTERM kills without it, as it does untraced (and a
    forked child must not take the streams' locks, which another thread of its
    parent may have held at fork time).
    """
    if flush:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
    signal.signal(signum, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # not reached unless the signal is blocked


# Signals that end the program while fntrace sets up a process (a forked child's
# new recording, a new interpreter's): held until the setup is complete, so the
# handler always finds a whole recorder to finish.
_HELD = {signal.SIGTERM, signal.SIGINT}
_fork_mask = threading.local()


def _hold_signals() -> None:
    if hasattr(signal, "pthread_sigmask"):  # absent where there are no threads (WebAssembly)
        _fork_mask.old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)


def _release_signals() -> None:
    old = getattr(_fork_mask, "old", None)
    if old is not None:
        _fork_mask.old = None
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _hear_signals(rec: Recorder, on_term: Any, running: list[bool]) -> None:
    """Make the writer hear of SIGTERM, so a handler that cannot run is made to.

    A Python handler runs in the main thread between two bytecodes; a SIGTERM
    that lands just before the main thread blocks in C (a multiprocessing worker
    about to wait on its queue's lock, as ``Pool.terminate()`` finds it) is
    noted but its handler never runs, and the process, which untraced would
    have died, hangs.  The recorder's wake pipe is the signal wakeup fd whenever
    the program leaves that slot empty (fntrace/recording/wakeup.py: the program sees
    set_wakeup_fd as untraced; an fd it sets is its own): the writer hears the
    signal and, if a turn later the process is still alive, sends SIGTERM to the
    main thread again, which interrupts the blocking call (EINTR) so the handler
    runs.  Once the handler has run (``running``) nothing more is sent: a second
    SIGTERM while it finishes the file would only be deferred.
    """
    if not wakeup.take(rec.wake_w):  # not the main thread: nothing to hear through
        return
    heard = [0.0, 0.0]  # when SIGTERM was heard, when the main thread was last poked

    def on_signal(signum: int) -> None:  # in the writer thread
        now = time.monotonic()
        if signum == signal.SIGTERM and not heard[0]:
            heard[0] = now
        if (not heard[0] or running[0] or now - heard[0] < rec.interval
                or now - heard[1] < rec.interval
                or signal.getsignal(signal.SIGTERM) is not on_term):
            return
        heard[1] = now
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, signal.SIGTERM)

    rec.on_signal = on_signal


def _install_exit_paths(rec: Recorder, follow: bool, ns: argparse.Namespace) -> None:
    real_exit = os._exit

    def finish_and_die(signum: int) -> None:
        # As untraced: SIGTERM kills at once (no unwinding), once the file is finished.
        rec.finish(unregister=False)
        _die_of(signum)

    def flushing_exit(code: int) -> NoReturn:
        rec.finish()
        real_exit(code)

    def finish_at_exit() -> None:
        rec.finish()
        wakeup.move_to(-1)  # the writer is gone: the slot is no longer fntrace's

    os._exit = flushing_exit  # type: ignore[assignment]
    atexit.register(finish_at_exit)

    running = [False]  # the handler has run: the writer has nothing more to make happen

    def on_term(signum: int, frame: types.FrameType | None) -> None:
        running[0] = True
        rec.interrupt(signum, finish_and_die)

    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, on_term)
        _hear_signals(rec, on_term, running)

    base = os.path.abspath(ns.output) if follow else ""  # before the program may chdir

    def after_fork() -> None:
        # fntrace/core/forksafe.py has renewed every lock of fntrace already.
        forkwarning.after_fork_in_child()
        try:
            if not follow:
                rec.abandon()
                wakeup.move_to(-1)  # before the pipe is closed: no signal writes to it
                rec.close_wake_pipe()
                return
            parent = rec.header["pid"]
            header = dict(rec.header, pid=os.getpid(), ppid=parent,
                          start_ts=rec.inst.rb.clock(), start_realtime_ns=time.time_ns())
            header.setdefault("root_pid", parent)
            try:
                rec.restart_in_child(f"{base}.{os.getpid()}", header)
                wakeup.move_to(rec.wake_w)  # the parent's writer must not hear the child's
            except OSError as exc:
                rec.abandon()
                wakeup.move_to(-1)
                print(f"fntrace {_command} --follow: not tracing pid {os.getpid()}: {exc}",
                      file=sys.stderr)
                return
            rec.header = header  # what this child's own forks start from
        finally:
            _release_signals()

    def before_fork() -> None:
        _hold_signals()
        forkwarning.before_fork(rec.os_threads())

    def after_fork_in_parent() -> None:
        forkwarning.after_fork_in_parent()
        _release_signals()

    if hasattr(os, "register_at_fork"):  # absent where there is no fork
        os.register_at_fork(before=before_fork, after_in_parent=after_fork_in_parent,
                            after_in_child=after_fork)


def record_main(ns: argparse.Namespace) -> int:
    return _main(ns, ns.output, None)


def run_main(ns: argparse.Namespace) -> int:
    """fntrace run: record's machinery with a text sink instead of a file."""
    global _command
    _command = "run"
    steering = (ns.tracer, ns.filter, ns.notrace, ns.graph_function, ns.graph_notrace,
                ns.args, ns.retval, ns.trigger, ns.thread)
    if (ns.live or ns.otel) and not any(steering):
        ns.tracer = "nop"  # --live alone: untraced until steered through fntrace ctl
    elif ns.tracer is None:
        ns.tracer = "function"
    from fntrace.recording.recorder import TextSink

    to_file = ns.output not in (None, "-")
    try:
        out = open(ns.output, "w", encoding="utf-8") if to_file else _own_stdout()
    except OSError as exc:
        _fail(f"{ns.output}: {exc.strerror}")
    return _main(ns, ns.output if to_file else "<stdout>", TextSink(out))


def _own_stdout() -> Any:
    """A stream on fntrace's own duplicate of the standard output file descriptor.

    The program owns ``sys.stdout``: it may close it (``json.tool`` does), replace
    it or redirect it, and the trace must still reach the terminal, so the trace
    never goes through that object.  Without a real descriptor (an in-process
    call under a capturing harness) there is nothing to duplicate and sys.stdout
    is used.
    """
    if sys.stdout is None:  # started with no stdout at all (fd 1 closed)
        return open(os.devnull, "w", encoding="utf-8")
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stdout
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return os.fdopen(os.dup(fd), "w", encoding=encoding, errors="backslashreplace")


def _main(ns: argparse.Namespace, path: str, sink: Any) -> int:
    if not ns.module and not ns.argv:
        _fail("nothing to run: give -- script.py [args] or -m module")
    if ns.module is None and not os.path.exists(ns.argv[0]):
        _fail(f"{ns.argv[0]}: no such file")
    specs: list[dict[str, Any]] = []
    if ns.inject:
        from fntrace.tracing.inject import parse_inject_spec

        try:
            specs = [parse_inject_spec(s) for s in ns.inject]
        except ValueError as exc:
            _fail(str(exc))
    argv = [ns.module, *ns.argv] if ns.module is not None else list(ns.argv)
    # Registered before the recorder's own exit hook, so it runs after it (atexit is
    # last in, first out): the advice comes after the last of the trace.
    atexit.register(_print_unmatched, os.getpid())
    rec = start_recording(ns, argv, path, writer=sink)
    if ns.follow:
        from fntrace.recording.follow import export

        export(ns)
    if ns.live:
        from fntrace import control

        try:
            # The instance that records is the one ctl sees at the top level (as
            # tracefs's top level is the kernel's main buffer): ctl's filter and
            # tracer changes are what lands in the file or the live text.
            control.listen().tree.adopt_top(rec.inst)
        except OSError as exc:  # FileExistsError included
            _fail(f"--live: {exc}")
    stop_injections = None
    if specs:
        from fntrace.tracing.inject import start_specs

        stop_injections = start_specs(specs)
    if ns.otel:
        from fntrace.tracing.otel.setup import start as start_otel

        try:
            start_otel(ns.otel)
        except (ValueError, ImportError) as exc:
            _fail(f"--otel: {exc}")
    startup.checkpoint("start")
    return _run(ns, argv, rec, stop_injections)


def start_recording(ns: argparse.Namespace, argv: list[str], path: str,
                    root_pid: int | None = None, writer: Any = None) -> Recorder:
    """This process recording into ``path`` with ``ns``'s options (tracing still off),
    finished on every way out; the root's and every followed child's.

    SIGTERM and SIGINT are held meanwhile: one that comes between the file's
    creation and its handler would leave a file without its footer (a
    multiprocessing pool terminates workers that may still be starting).
    """
    _hold_signals()
    try:
        return _start_recording(ns, argv, path, root_pid, writer)
    finally:
        _release_signals()


def _start_recording(ns: argparse.Namespace, argv: list[str], path: str,
                     root_pid: int | None, writer: Any) -> Recorder:
    inst, opts = configure(ns)
    try:
        inst.write("current_tracer", ns.tracer)
        inst.tracing_on = False  # on once the program starts
        header = header_for(inst, argv, opts)
        if root_pid is not None:
            header["root_pid"] = root_pid
        rec = Recorder(inst, path, header, writer=writer)
    except (ValueError, OSError) as exc:
        inst.close()
        _fail(f"{path}: {exc}" if isinstance(exc, OSError) else str(exc))
    rec.command = _command
    rec.start()
    _install_exit_paths(rec, ns.follow, ns)
    return rec


def _main_module(ns: argparse.Namespace, argv: list[str],
                 ) -> tuple[types.CodeType, types.ModuleType]:
    """The program's code and a fresh ``__main__`` for it, as the interpreter prepares them."""
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    if ns.module is not None:
        try:
            _, spec, code = runpy._get_module_details(ns.module)  # type: ignore[attr-defined]
        except ImportError as exc:
            _fail(str(exc))
        main.__dict__.update(__file__=spec.origin, __spec__=spec, __loader__=spec.loader,
                             __package__=spec.parent, __cached__=spec.cached)
        argv[0] = spec.origin
        return code, main
    path = os.path.abspath(argv[0])
    with open(path, "rb") as f:
        source = f.read()
    main.__dict__.update(__file__=path, __cached__=None, __package__=None, __spec__=None)
    return compile(source, path, "exec", dont_inherit=True), main


#: The option that sets each pattern file, for the messages of _say_unmatched.
_PATTERN_FILES = (("filter", "-F", "set_ftrace_filter"), ("notrace", "-N", "set_ftrace_notrace"),
                  ("graph_function", "-G", "set_graph_function"),
                  ("graph_notrace", "--graph-notrace", "set_graph_notrace"))


_unmatched: list[str] = []


def _say_unmatched(inst: Any, live: bool) -> None:
    """Once the program's main is over (its functions all still exist): each pattern
    that matched no function loaded now, with what was probably meant (core/hints.py),
    kept for :func:`_print_unmatched`.  Under --live the patterns may have come from
    ctl, so they are named by file."""
    groups = [(file if live else option, getattr(inst, attr).lines)
              for attr, option, file in _PATTERN_FILES]
    if not any(lines for _, lines in groups):
        return
    from fntrace.core import hints

    try:
        _unmatched[:] = [f"fntrace {_command}: {msg}\n"
                         for msg in hints.report_unmatched(groups)]
    except Exception:  # advice must never change how the program ends
        pass


def _print_unmatched(root_pid: int) -> None:
    """At exit, after the trace is finished: the advice, on fntrace's own stderr
    (the program may have closed sys.stderr), once (not in forked children)."""
    if _unmatched and os.getpid() == root_pid:
        try:
            os.write(2, "".join(_unmatched).encode("utf-8", "backslashreplace"))
        except OSError:
            pass


def _run(ns: argparse.Namespace, argv: list[str], rec: Recorder, stop: Any) -> int:
    inst = rec.inst
    if ns.module is not None:
        sys.path[0] = os.getcwd()
    else:
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    code_obj, main = _main_module(ns, argv)
    sys.argv = list(argv)
    sys.modules["__main__"] = main
    code = 0
    startup.release()  # from here Ctrl-C is the program's KeyboardInterrupt, as untraced
    inst.tracing_on = True
    try:
        exec(code_obj, main.__dict__)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt as exc:
        _print_exception(exc, inst)
        rec.finish()
        _die_of(signal.SIGINT, flush=True)
    except BaseException as exc:
        _print_exception(exc, inst)
        code = 1
    finally:
        mute(inst, native_id())  # the program's main is over
        if stop is not None:
            stop()
    _say_unmatched(inst, ns.live)
    # Non-daemon threads of the program still run until the interpreter joins them;
    # the atexit hook finishes the file after that, as late as Python allows.
    return code


# The program's top frame is the root of its stacks (no parent, no fntrace frames).
symbols.mark_root(_run.__code__, __name__)
