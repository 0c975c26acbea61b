"""The control server: this process's tracefs on a Unix domain socket.

One daemon thread runs a selector loop over the listening socket and the
client connections, all non-blocking.  Idle it sleeps in the selector with no
timeout, so a process that is not being steered pays one blocked thread and
nothing else (no instrumentation: instances register ops only when a tracer
is set).  While some client streams ``trace_pipe`` it wakes every ``POLL``
seconds to move events from the ring buffer into that stream's bounded send
queue; a reader that does not keep up loses lines (counted in
``control/stats`` and announced in the stream), it never slows the program,
which only ever writes to its ring buffer.

Who may connect: the socket is in a 0700 directory of ours and is itself
0600; each accepted peer is also checked with SO_PEERCRED and anyone but our
own uid is answered EACCES and dropped.  There is no TCP listener.
"""

from __future__ import annotations

import atexit
import errno
import os
import selectors
import socket
import struct
import sys
import threading
from collections import deque
from typing import Any

from fntrace.control.protocol import (
    MAX_REQUEST,
    VERSION,
    ControlError,
    ProtocolError,
    decode_request,
    encode,
    errno_for,
    error_response,
)
from fntrace.control.runtime import ensure_dir, socket_path, unsupported
from fntrace.control.tree import Tree
from fntrace.core.version import __version__
from fntrace.tracing import ftrace_text
from fntrace.tracing.instance import Instance

__all__ = ["POLL", "STREAM_QUEUE_BYTES", "Server", "current", "listen", "peer_credentials"]

#: Seconds between ring-buffer polls while a trace_pipe stream is open.
POLL = 0.05
#: Default bound of one stream's send queue (lines beyond it are dropped).
STREAM_QUEUE_BYTES = 1 << 20
_CHUNK = 1 << 16

_lock = threading.Lock()
_server: Server | None = None


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at fork time


os.register_at_fork(after_in_child=_after_fork_in_child)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end (SO_PEERCRED)."""
    size = struct.calcsize("3i")
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


class _Stream:
    """A trace_pipe reader: its instance and bounded queue of rendered lines."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.unreported = 0  # lines dropped since the last notice in the stream


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.closing = False  # close once wbuf is sent
        self.stream: _Stream | None = None


class Server:
    """One listening socket and its thread; made by :func:`listen`."""

    def __init__(self, stream_queue_bytes: int = STREAM_QUEUE_BYTES) -> None:
        self.pid = os.getpid()
        self.uid = os.geteuid()
        self.queue_limit = stream_queue_bytes
        self.stats: dict[str, int] = dict.fromkeys(
            ("connections", "requests", "lines_sent", "lines_dropped",
             "refused_peers", "protocol_errors", "errors"), 0)
        self.tree = Tree(self._stats_text)
        self.conns: dict[int, _Conn] = {}
        self._stop = False
        ensure_dir()
        self.path = socket_path(self.pid)
        if os.path.lexists(self.path):  # left by a dead process whose pid we reuse
            os.unlink(self.path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(self.path)
            os.chmod(self.path, 0o600)
            self.sock.listen(16)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, "listen")
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self.thread = threading.Thread(target=self._run, name="fntrace-control", daemon=True)
        self.thread.start()

    # -- the loop -------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop:
                streaming = any(c.stream is not None for c in self.conns.values())
                for key, mask in self.sel.select(POLL if streaming else None):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._guarded(key.data, mask)
                for conn in [c for c in self.conns.values() if c.stream is not None]:
                    self._guarded(conn, 0)
        finally:
            for conn in list(self.conns.values()):
                self._close(conn)
            self.sel.close()
            self.sock.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _guarded(self, conn: _Conn, mask: int) -> None:
        """Serve one connection; whatever goes wrong costs that connection only."""
        try:
            if mask & selectors.EVENT_READ:
                self._readable(conn)
            if conn.sock.fileno() >= 0 and conn.stream is not None:
                self._fill(conn)
            if conn.sock.fileno() >= 0:
                self._flush(conn)
        except Exception:
            self.stats["errors"] += 1
            self._close(conn)

    def _drain_wake(self) -> None:
        try:
            os.read(self._wake_r, 512)
        except BlockingIOError:
            pass

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and the like: refuse this one, keep serving
                self.stats["errors"] += 1
                return
            sock.setblocking(False)
            try:
                _, uid, _ = peer_credentials(sock)
            except OSError:
                uid = -1
            if uid != self.uid:
                self.stats["refused_peers"] += 1
                try:
                    sock.send(encode(error_response(
                        "EACCES", f"permission denied: peer uid {uid} is not {self.uid}")))
                except OSError:
                    pass
                sock.close()
                continue
            conn = _Conn(sock)
            self.conns[sock.fileno()] = conn
            self.stats["connections"] += 1
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _close(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self.conns.pop(fd, None)
            try:
                self.sel.unregister(conn.sock)
            except (KeyError, ValueError):
                pass
            conn.sock.close()
        conn.stream = None

    # -- requests --------------------------------------------------------------
    def _readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        if conn.stream is not None or conn.closing:
            return  # a stream's client has nothing more to say; ignore it
        conn.rbuf += data
        if len(conn.rbuf) > MAX_REQUEST and conn.rbuf.find(b"\n", 0, MAX_REQUEST + 1) < 0:
            self._refuse(conn, ProtocolError(
                f"request longer than {MAX_REQUEST} bytes", errno="EMSGSIZE"))

    def _refuse(self, conn: _Conn, exc: ProtocolError) -> None:
        self.stats["protocol_errors"] += 1
        conn.rbuf.clear()
        conn.wbuf += encode(error_response(exc.errno, str(exc)))
        conn.closing = True

    def _request(self, conn: _Conn, line: bytes) -> None:
        self.stats["requests"] += 1
        try:
            if len(line) > MAX_REQUEST:
                raise ProtocolError(f"request longer than {MAX_REQUEST} bytes",
                                    errno="EMSGSIZE")
            req = decode_request(line)
        except ProtocolError as exc:
            self._refuse(conn, exc)
            return
        try:
            value = self._do(conn, req)
        except ControlError as exc:
            resp = error_response(exc.errno, str(exc))
        except Exception as exc:
            resp = error_response(errno_for(exc), str(exc) or type(exc).__name__)
        else:
            resp = {"v": VERSION, "ok": True, "value": value}
            if req["op"] == "pipe":
                resp["stream"] = True
        conn.wbuf += encode(resp)

    def _do(self, conn: _Conn, req: dict[str, Any]) -> Any:
        op, path, tree = req["op"], req["path"], self.tree
        if op == "read":
            return tree.read(path)
        if op == "write":
            tree.write(path, req["value"], req["append"])
            return None
        if op == "ls":
            return tree.ls(path)
        if op == "mkdir":
            tree.mkdir(path)
            return None
        if op == "rmdir":
            tree.rmdir(path, self._busy)
            return None
        if op == "pipe":
            inst, rest = tree.resolve(path)
            if rest != "trace_pipe":
                raise ValueError(f"pipe: {path} is not a trace_pipe")
            conn.stream = _Stream(inst)
            return None
        return {"server": f"fntrace {__version__}", "protocol": VERSION, "pid": self.pid,
                "python": sys.version.split()[0], "argv": list(sys.argv)}

    def _busy(self, inst: Instance) -> bool:
        return any(c.stream is not None and c.stream.inst is inst
                   for c in self.conns.values())

    # -- sending -----------------------------------------------------------------
    def _fill(self, conn: _Conn) -> None:
        """Move new events of the stream's instance into its bounded queue."""
        stream = conn.stream
        assert stream is not None
        events = stream.inst.rb.live.consume()
        if not events:
            return
        limit = self.queue_limit
        if stream.unreported and stream.queued < limit // 2:
            notice = (f"# fntrace: {stream.unreported} lines dropped "
                      "(trace_pipe reader too slow)\n").encode()
            stream.queue.append(notice)
            stream.queued += len(notice)
            stream.unreported = 0
        for line in ftrace_text.render_events(stream.inst, events):
            data = line.encode("utf-8", "backslashreplace")
            if stream.queued + len(data) > limit:
                stream.unreported += 1
                self.stats["lines_dropped"] += 1
                continue
            stream.queue.append(data)
            stream.queued += len(data)

    def _flush(self, conn: _Conn) -> None:
        """Send what is pending; then answer the next request line, one at a time.

        A client that does not read its responses is no longer read from
        (no EVENT_READ while a response waits), so its requests cannot pile up.
        """
        while True:
            if not self._send(conn):
                return
            if conn.wbuf or conn.closing or conn.stream is not None:
                break
            end = conn.rbuf.find(b"\n")
            if end < 0:
                break
            line = bytes(conn.rbuf[:end])
            del conn.rbuf[:end + 1]
            self._request(conn, line)
        if conn.closing and not conn.wbuf:
            self._close(conn)
            return
        want = selectors.EVENT_READ
        if conn.wbuf:
            want = selectors.EVENT_WRITE | (want if conn.stream is not None else 0)
        if self.sel.get_key(conn.sock).events != want:
            self.sel.modify(conn.sock, want, conn)

    def _send(self, conn: _Conn) -> bool:
        """Send without blocking; False when the connection died."""
        stream = conn.stream
        while True:
            if not conn.wbuf and stream is not None and stream.queue:
                while stream.queue and len(conn.wbuf) < _CHUNK:
                    data = stream.queue.popleft()
                    stream.queued -= len(data)
                    conn.wbuf += data
                    self.stats["lines_sent"] += 1
            if not conn.wbuf:
                return True
            try:
                sent = conn.sock.send(conn.wbuf[:_CHUNK])
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self._close(conn)
                return False
            del conn.wbuf[:sent]

    def _stats_text(self) -> str:
        live = {"clients": len(self.conns),
                "streams": sum(c.stream is not None for c in self.conns.values())}
        return "".join(f"{k} {v}\n" for k, v in {**live, **self.stats}.items())

    # -- life ------------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving, remove the socket, close the served instances."""
        self._stop = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if threading.current_thread() is not self.thread:
            self.thread.join(5)
        self._unlink()
        self.tree.close()

    def _unlink(self) -> None:
        if os.getpid() == self.pid:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def current() -> Server | None:
    """The running server of this process, if any."""
    server = _server
    if server is not None and (server.pid != os.getpid() or not server.thread.is_alive()):
        return None
    return server


def listen(stream_queue_bytes: int = STREAM_QUEUE_BYTES) -> Server:
    """Serve this process's tracefs on ``<runtime dir>/<pid>.sock``; idempotent.

    Returns the running server (``.path``, ``.close()``).  The socket is
    removed at interpreter exit; one left by a killed process is cleaned by
    ``fntrace ctl --list`` or replaced by the next process with that pid.
    """
    global _server
    why = unsupported()
    if why is not None:
        raise OSError(errno.EOPNOTSUPP, why)
    with _lock:
        server = current()
        if server is None:
            server = Server(stream_queue_bytes)
            _server = server
            atexit.register(server._unlink)
        return server
