"""Types of fntrace._speedups, the optional C hot path (sources: fntrace/csrc/).

The module is the C twin of pure-Python pieces (ring_buffer._PyRingCore,
tracers' recorders, the backends' callbacks); fntrace.core.accel decides whether
it is used.  tests/test_speedups_stub.py checks that this stub names exactly
what the built module has.
"""

import sys
from collections.abc import Callable, Iterator, Sequence
from types import CodeType, FrameType
from typing import Any, final

#: 1 when funcgraph-args is read in C (from the frame's fast locals).
FRAME_ARGS: int

#: value_text's limits as the C walk applies them: items shown per container,
#: and container levels walked.
VALUE_TEXT_ITEMS: int
VALUE_TEXT_LEVEL: int

def value_text(value: object, max_len: int, class_rule: Callable[[type], object],
               name: str | None = None, /) -> str | None:
    """value_text.py's text of value (after ``name=`` when given), cut to max_len,
    as the C recorder's walk renders it; None where that walk hands the value
    to the Python walker (for tests)."""

def local_clock() -> int:
    """The "local" trace clock in ns (never goes backwards)."""

def check_frame(frame: FrameType, function: object, first_locals: tuple[object, ...],
                owner: int, /) -> str | None:
    """None when the C frame mirror reads this running frame as CPython does."""

def lz_compress(data: bytes, /) -> bytes:
    """data as one LZ4 block (a trace file's event chunk compression, flag 2)."""

def lz_decompress(block: bytes, size: int, /) -> bytes:
    """The size bytes an LZ4 block holds; ValueError (why) when it is not a block
    of exactly that many."""

def frame_key(frame: FrameType, /) -> int:
    """function_graph's stack key of a running frame."""

def code_gone(code_id: int, /) -> None:
    """symbols' report that the code object with this id is being freed."""

def holds_code(code_id: int, /) -> bool:
    """Whether a per-code table has this address."""

def forget_codes() -> None:
    """Every per-code table forgets every code."""

def take_all(buffers: Sequence[RingCore], /) -> list[tuple[RingCore, tuple[Any, ...]]]:
    """Consume every event of these buffers, merged in time order."""

def encode_buffers(
    buffers: Sequence[RingCore],
    other: Callable[[RingCore, tuple[Any, ...]], tuple[int, str]],
    event_codes: dict[str, int], note_prefix: bytes | None = ...,
    keys: dict[Any, tuple[str, int, str | None, int]] = ..., lz4: bool = ..., /,
) -> tuple[bytes, int, list[int], int | None, int | None, bool]:
    """Consume these buffers into one trace-file event chunk: (payload, n, tids,
    earliest timestamp, latest timestamp, notes), the timestamps None without
    events; notes: whether a string of its table starts with note_prefix (True
    when it is None or not given).  keys: the caller's cache of each
    function's table key (name, flags, file, line), kept across chunks.  lz4:
    the payload as an LZ4 event chunk stores it (flag, size, block)."""

@final
class EventQueue:
    """A thread buffer's events, oldest first (reads like a deque of tuples)."""

    def append(self, event: tuple[Any, ...], /) -> None: ...
    def popleft(self) -> tuple[Any, ...]: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> tuple[Any, ...]: ...
    def __iter__(self) -> Iterator[tuple[Any, ...]]: ...

class RingCore:
    """A thread's ring buffer: events and counters, write() in C."""

    capacity: int
    written: int
    in_bytes: int
    overrun: int
    overrun_bytes: int
    dropped: int
    read: int
    read_bytes: int
    overwrite: bool
    on_full: Callable[[], object] | None
    def __init__(self, capacity: int = 0, overwrite: bool = True) -> None: ...
    @property
    def events(self) -> EventQueue: ...
    def write(self, event: tuple[Any, ...], /) -> bool: ...

@final
class GraphStack:
    """function_graph's stack of calls for one thread: (key, ts, depth, state)."""

    def push(self, key: int, ts: int | None, depth: int, state: int, /) -> None: ...
    def last(self) -> tuple[int, int] | None: ...
    def pop_to(self, key: int, /) -> tuple[int, int | None, int, int] | None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> tuple[int, int | None, int, int]: ...

@final
class FuncRecorder:
    """The function tracer's entry event, written in C."""

    ok: bool
    report: Callable[[BaseException], object] | None
    pid_check: Callable[[], object] | None
    tracing: bool
    def __init__(self, rb: Any, fn_cache: dict[int, Any],
                 function_for_frame: Callable[[FrameType], Any]) -> None: ...
    def ring_changed(self) -> None: ...

@final
class GraphRecorder:
    """function_graph's entry and exit events, written in C."""

    ok: bool
    report: Callable[[BaseException], object] | None
    pid_check: Callable[[], object] | None
    tracing: bool
    max_depth: int
    def __init__(self, rb: Any, tls: Any, unwind: str) -> None: ...
    def ring_changed(self) -> None: ...
    def reprs(self, args: bool, retval: bool, safe_repr: Callable[[object], str], /) -> None: ...

@final
class ProfThread:
    """One thread's profile: its call segments and its records, packed."""

    def hit(self, fn: object, /) -> None: ...
    def add(self, fn: object, spent_ns: int, /) -> None: ...
    def push(self, key: int, start_ns: int, generation: int, /) -> None: ...
    def pop_to(self, key: int, now_ns: int, /) -> tuple[int, int, int] | None: ...
    def records(self) -> list[tuple[Any, int, int, int]]: ...
    def clear_table(self) -> None: ...
    def __len__(self) -> int: ...

@final
class ProfRecorder:
    """The function profiler's entries and exits of plain functions, in C."""

    ok: bool
    report: Callable[[BaseException], object] | None
    generation: int
    graph_time: bool
    def __init__(self, tls: Any, make_state: Callable[[], ProfThread], start: str, yield_: str,
                 open: dict[int, list[Any]], open_limit: int) -> None: ...

@final
class TaskThread:
    """One thread's asyncio task state: cur, written, last, last_n, and a stack of
    saved (cur, last, last_n)."""

    cur: int
    written: int
    last: Any
    last_n: int
    def push(self, prev: int, task: object, n: int = 0, /) -> None: ...
    def pop(self) -> tuple[int, Any, int] | None: ...
    def __len__(self) -> int: ...

@final
class TaskRecorder:
    """The asyncio task notes of Handle._run, create_task and _set_task_name
    (tracing/tasks.py), written in C."""

    ok: bool
    report: Callable[[BaseException], object] | None
    pid_check: Callable[[], object] | None
    tracing: bool
    def __init__(self, rb: Any, tls: Any, numbers: dict[Any, int],
                 ended: set[int],
                 task_types: Callable[[], tuple[tuple[type, ...], type | None] | None],
                 quote: Callable[[str], str], tag: str, prefix: str) -> None: ...
    wanted: int
    def ring_changed(self) -> None: ...
    def take_number(self) -> int: ...
    def watch(self, current_tasks: dict[Any, Any]) -> bool: ...
    def want(self, level: int) -> None: ...

@final
class Dispatcher:
    """The sys.monitoring callbacks of the monitoring backend, in C."""

    def __init__(self, sites: dict[int, Any], slow_start: Callable[..., Any],
                 slow_resume: Callable[..., Any], exit_call: Callable[..., Any],
                 events: tuple[str, str, str, str, str, str], disable: object,
                 refused: list[dict[str, bool]] | None = None) -> None: ...
    def py_start(self, code: CodeType, offset: int, /) -> Any: ...
    def py_resume(self, code: CodeType, offset: int, /) -> Any: ...
    def py_throw(self, code: CodeType, offset: int, exc: BaseException, /) -> Any: ...
    def py_return(self, code: CodeType, offset: int, value: object, /) -> Any: ...
    def py_yield(self, code: CodeType, offset: int, value: object, /) -> Any: ...
    def py_unwind(self, code: CodeType, offset: int, exc: BaseException, /) -> Any: ...
    def sites_changed(self) -> None: ...

@final
class ChunkDecoder:
    """A trace file's event chunks into Records (csrc/decode.c), exactly as the
    Python decoder (formats/tracefile._decode) or not at all."""

    def __init__(self, record: type, fields: tuple[str, ...], kinds: tuple[str, ...],
                 events: tuple[str, ...], task_prefix: str, task_kind: str, max_depth: int,
                 /) -> None: ...
    def check(self, data: bytes, pos: int, count: int, nstrings: int, nfuncs: int,
              nthreads: int, version: int, /) -> bool: ...
    def decode(self, data: bytes, pos: int, count: int, strings: list[str],
               funcs: list[tuple[str, int, str | None, int]], tids: list[int], pid: int,
               version: int, /) -> list[Any] | None: ...
    def tally(self, data: bytes, pos: int, count: int, nstrings: int, nfuncs: int,
              nthreads: int, version: int,
              /) -> tuple[list[int], int | None, int | None] | None: ...

@final
class ReportAggregator:
    """report's per-function numbers from encoded event chunks (csrc/aggregate.c)."""

    def __init__(self, per_thread: bool, max_depth: int, folded: bool = False, /) -> None: ...
    def add(self, data: bytes, pos: int, count: int, nstrings: int, names: list[str],
            tids: list[int], pid: int, order: int, version: int, /) -> bool: ...
    def advance(self, ts: int, order: int, /) -> None: ...
    def finish(self) -> tuple[bool, dict[tuple[int, int] | None,
                                         dict[str, tuple[int, int, int, int, int, int]]]] | None:
        ...
    def folded(self) -> tuple[list[tuple[int, int, int | None]], list[str],
                              list[tuple[int, int]]] | None: ...

@final
class GraphRenderer:
    """replay's function_graph text of Records, as graph_text.GraphText writes it
    (csrc/render_graph.c)."""

    def __init__(self, record: type, fields: tuple[str, ...],
                 kinds: tuple[str, str, str, str], events: tuple[str, str],
                 keys: dict[tuple[int, int], int], heads: list[str], labels: list[str] | None,
                 abstime: bool, duration: bool, overhead: bool, tail: bool, srcline: bool,
                 other: Callable[[int, Any], str], slow: Callable[[str, int], str],
                 /) -> None: ...
    def render(self, records: list[Any], /) -> str: ...
    def finish(self) -> str: ...

@final
class ChromeJSON:
    """dump --chrome's JSON events of Records, as dump.ChromeWriter writes them
    (csrc/render_chrome.c)."""

    def __init__(self, record: type, fields: tuple[str, ...],
                 kinds: tuple[str, str, str, str, str], events: tuple[str, str],
                 t0: int | None, count: int,
                 name_thread: Callable[[int, int], list[str]], /) -> None: ...
    def write(self, records: list[Any], /) -> str: ...
    def finish(self) -> tuple[str, int]: ...

if sys.version_info < (3, 12):
    @final
    class ProfileHook:
        """The profile function of the 3.11 backend, in C."""

        def __init__(self, sites: dict[int, Any], discover: Callable[..., Any],
                     exit_call: Callable[..., Any], throws: dict[FrameType, int],
                     events: tuple[str, str, str, str, str, str],
                     opcodes: tuple[int, int, int],
                     fn_cache: dict[int, Any] = ...) -> None: ...
        def __call__(self, frame: FrameType, event: str, arg: object, /) -> None: ...
        def forget(self, code: CodeType, /) -> None: ...
        def clear(self) -> None: ...
        def install_all(self) -> None: ...
        def uninstall_all(self) -> None: ...
