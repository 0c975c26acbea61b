"""The record/run session: the program run as python would run it, traced.

Everything a traced program must keep of its untraced behaviour lives here:
its argv, ``__main__``, sys.path[0], standard streams and exit status, the way
it dies (its own traceback without fntrace's frames; SIGINT and SIGTERM after
the file is finished), and each exit path (``os._exit``, signals, fork)
finishing the trace.  It takes a :class:`~fntrace.recording.config.RecordConfig`;
the command's options and help are ``fntrace/cli/record.py``'s.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.py's C half (see _sigmask)
import atexit
import builtins
import os
import runpy
import signal
import sys
import threading
import time
import types
from collections.abc import Callable

from fntrace.core import symbols
from fntrace.core.oscaps import native_id
from fntrace.recording import follow, forkwarning, startup, wakeup
from fntrace.recording.config import RecordConfig
from fntrace.recording.recorder import Recorder, header_for, mute, unmute

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from fntrace.tracing.instance import Instance

__all__ = ["ServeLive", "configure", "record", "run", "start_followed_child", "start_recording"]

#: What ``live`` serves: given the recording instance before the program starts,
#: makes it the top level of a live control server (the cli passes the control
#: layer's; the recording side does not import it).  OSError: it could not.
ServeLive = Callable[["Instance"], object]

_command = "record"


def _fail(text: str) -> NoReturn:
    raise SystemExit(f"fntrace {_command}: {text}")


def configure(config: RecordConfig) -> tuple[Any, dict[str, Any]]:
    """A new instance set up from the options (not yet tracing) and the options' record."""
    from fntrace.tracing.instance import Instance

    inst = Instance("record")
    try:
        inst.write("trace_clock", config.clock)
        if config.buffer_size is not None:
            inst.write("buffer_size_kb", str(config.buffer_size))
        if config.no_overwrite:
            inst.write("options/overwrite", "0")
        if config.args:
            inst.write("options/func-args", "1")
            inst.write("options/funcgraph-args", "1")
        if config.repr_call:
            inst.write("options/repr-call", "1")
        if config.tasks:
            inst.write("options/tasks", "1")
        if config.retval:
            inst.write("options/funcgraph-retval", "1")
        for path, values in (("set_ftrace_filter", config.filter),
                             ("set_ftrace_notrace", config.notrace),
                             ("set_graph_function", config.graph_function),
                             ("set_graph_notrace", config.graph_notrace),
                             ("set_ftrace_filter", config.trigger)):
            for value in values or ():
                inst.write(path, value, append=True)
        if config.max_depth is not None:
            inst.write("max_graph_depth", str(config.max_depth))
        if config.thresh is not None:
            inst.write("tracing_thresh", str(config.thresh))
        if config.thread:
            inst.write("set_ftrace_pid", " ".join(map(str, config.thread)))
    except (ValueError, OSError) as exc:
        inst.close()
        _fail(str(exc))
    opts = config.header_options()
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


#: The C function itself (absent where there are no threads: WebAssembly).  The
#: ``signal`` module's wrapper makes the old mask a set of enum members through a
#: generator; run while the tracer is armed (the mask is released after it is),
#: that is stdlib code to look at, and on 3.12 naming a generator's code reads
#: its frame's locals, which binds ctypes (core/framelocals.py): ~20M
#: instructions of a recording's start-up for a mask that is only put back.
_sigmask = getattr(_signal, "pthread_sigmask", None)


def _hold_signals() -> None:
    if _sigmask is not None:
        _fork_mask.old = _sigmask(signal.SIG_BLOCK, _HELD)


def _release_signals() -> None:
    old = getattr(_fork_mask, "old", None)
    if old is not None and _sigmask is not None:
        _fork_mask.old = None
        _sigmask(signal.SIG_SETMASK, old)


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


def _install_exit_paths(rec: Recorder, config: RecordConfig) -> None:
    following = config.follow
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

    base = os.path.abspath(config.output or "") if following else ""  # before the program may chdir

    def after_fork() -> None:
        # fntrace/core/forksafe.py has renewed every lock of fntrace already.
        forkwarning.after_fork_in_child()
        try:
            if not following:
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


def record(config: RecordConfig, serve_live: ServeLive | None = None) -> int:
    """fntrace record: run ``config``'s program traced into the trace file
    ``config.output``; the program's exit status (or this process dies of the
    program's signal).  ``serve_live`` is needed with ``config.live``."""
    global _command
    _command = "record"
    return _main(config, config.output or "fntrace.dat", None, serve_live)


def run(config: RecordConfig, serve_live: ServeLive | None = None) -> int:
    """fntrace run: record's machinery with a text sink instead of a file."""
    global _command
    _command = "run"
    steering = (config.tracer, config.filter, config.notrace, config.graph_function,
                config.graph_notrace, config.args, config.retval, config.trigger,
                config.thread)
    if (config.live or config.otel) and not any(steering):
        # --live alone: untraced until steered through fntrace ctl
        config = config.replace(tracer="nop")
    elif config.tracer is None:
        config = config.replace(tracer="function")
    from fntrace.recording.recorder import TextSink

    path = config.output if config.output not in (None, "-") else None
    try:
        out = open(path, "w", encoding="utf-8") if path is not None else _own_stdout()
    except OSError as exc:
        _fail(f"{path}: {exc.strerror}")
    return _main(config, path if path is not None else "<stdout>", TextSink(out), serve_live)


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


def _main(config: RecordConfig, path: str, sink: Any, serve_live: ServeLive | None) -> int:
    if not config.module and not config.argv:
        _fail("nothing to run: give -- script.py [args] or -m module")
    if config.module is None and not os.path.exists(config.argv[0]):
        _fail(f"{config.argv[0]}: no such file")
    specs: list[dict[str, Any]] = []
    if config.inject:
        from fntrace.tracing.inject import parse_inject_spec

        try:
            specs = [parse_inject_spec(s) for s in config.inject]
        except ValueError as exc:
            _fail(str(exc))
    argv = [config.module, *config.argv] if config.module is not None else list(config.argv)
    # Registered before the recorder's own exit hook, so it runs after it (atexit is
    # last in, first out): the advice comes after the last of the trace.
    atexit.register(_print_unmatched, os.getpid())
    rec = start_recording(config, argv, path, writer=sink)
    if config.follow:
        follow.export(config)
    if config.live:
        try:
            if serve_live is None:
                raise OSError("nothing serves live control here")
            # The instance that records is the one ctl sees at the top level (as
            # tracefs's top level is the kernel's main buffer): ctl's filter and
            # tracer changes are what lands in the file or the live text.
            serve_live(rec.inst)
        except OSError as exc:  # FileExistsError included
            _fail(f"--live: {exc}")
    stop_injections = None
    if specs:
        from fntrace.tracing.inject import start_specs

        stop_injections = start_specs(specs)
    if config.otel:
        from fntrace.tracing.otel.setup import start as start_otel

        try:
            start_otel(list(config.otel))
        except (ValueError, ImportError) as exc:
            _fail(f"--otel: {exc}")
    startup.checkpoint("start")
    return _run(config, argv, rec, stop_injections)


def start_recording(config: RecordConfig, argv: list[str], path: str,
                    root_pid: int | None = None, writer: Any = None) -> Recorder:
    """This process recording into ``path`` with ``config``'s options (tracing still off),
    finished on every way out; the root's and every followed child's.

    SIGTERM and SIGINT are held meanwhile: one that comes between the file's
    creation and its handler would leave a file without its footer (a
    multiprocessing pool terminates workers that may still be starting).
    """
    _hold_signals()
    try:
        return _start_recording(config, argv, path, root_pid, writer)
    finally:
        _release_signals()


def _start_recording(config: RecordConfig, argv: list[str], path: str,
                     root_pid: int | None, writer: Any) -> Recorder:
    inst, opts = configure(config)
    try:
        inst.write("current_tracer", config.tracer)
        inst.tracing_on = False  # on once the program starts
        header = header_for(inst, argv, opts)
        if root_pid is not None:
            header["root_pid"] = root_pid
        rec = Recorder(inst, path, header, writer=writer, compress=config.compress)
    except (ValueError, OSError) as exc:
        inst.close()
        _fail(f"{path}: {exc}" if isinstance(exc, OSError) else str(exc))
    rec.command = _command
    rec.start()
    _install_exit_paths(rec, config)
    return rec


def _main_module(config: RecordConfig, argv: list[str],
                 ) -> tuple[types.CodeType, types.ModuleType]:
    """The program's code and a fresh ``__main__`` for it, as the interpreter prepares them."""
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    if config.module is not None:
        try:
            _, spec, code = runpy._get_module_details(config.module)  # type: ignore[attr-defined]
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


def _run(config: RecordConfig, argv: list[str], rec: Recorder, stop: Any) -> int:
    inst = rec.inst
    if config.module is not None:
        sys.path[0] = os.getcwd()
    else:
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    code_obj, main = _main_module(config, argv)
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
    _say_unmatched(inst, config.live)
    # Non-daemon threads of the program still run until the interpreter joins them;
    # the atexit hook finishes the file after that, as late as Python allows.
    return code


# The program's top frame is the root of its stacks (no parent, no fntrace frames).
symbols.mark_root(_run.__code__, __name__)


def start_followed_child() -> None:
    """In a new child interpreter of ``record --follow`` (its sitecustomize calls this):
    record into ``PATH.<pid>`` as the root records."""
    config, root_pid = follow.recipe()
    rec = start_recording(config, list(sys.argv), f"{config.output}.{os.getpid()}",
                          root_pid=root_pid)
    rec.inst.tracing_on = True
