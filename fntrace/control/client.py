"""The control client: another process's tracefs, by pid.

``Client(pid)`` connects to that process's socket and turns every failure
into a :class:`ControlError` whose text is the one line the CLI prints:
no such process, a process that is not controllable, a stale socket (removed
here), permission denied, an error answered by the server.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Generator
from typing import Any

from fntrace.control.protocol import (
    MAX_RESPONSE,
    VERSION,
    ControlError,
    ProtocolError,
    decode_response,
    encode,
)
from fntrace.control.runtime import runtime_dir, socket_path, unsupported

__all__ = ["Client", "pid_alive", "scan"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _not_controllable(pid: int) -> ControlError:
    return ControlError("ENOENT", f"process {pid} is not controllable: it has no fntrace control "
                        "socket (start it with `fntrace run --live` or have it call "
                        "fntrace.control.listen())")


def connect(pid: int | None = None, path: str | None = None,
            timeout: float | None = 10.0) -> socket.socket:
    """A socket connected to ``pid``'s server (or to ``path``), or ControlError."""
    if path is None:
        if pid is None:
            raise ValueError("connect: give a pid or a path")
        if pid <= 0:
            raise ControlError("ESRCH", f"no such process: {pid}")
        path = socket_path(pid)
    why = unsupported()
    if why is not None:
        raise ControlError("EOPNOTSUPP", why)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except FileNotFoundError:
        sock.close()
        if pid is not None and not pid_alive(pid):
            raise ControlError("ESRCH", f"no such process: {pid}") from None
        if pid is not None:
            raise _not_controllable(pid) from None
        raise ControlError("ENOENT", f"no control socket at {path}") from None
    except ConnectionRefusedError:
        sock.close()
        if pid is not None and not pid_alive(pid):
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise ControlError("ESRCH", f"no such process: {pid} "
                               "(its stale control socket was removed)") from None
        raise ControlError("ECONNREFUSED", f"process {pid or path} refused the connection "
                           "(its control server is not running)") from None
    except PermissionError:
        sock.close()
        raise ControlError("EACCES", f"permission denied: cannot reach {path} "
                           "(only the process's own user may control it)") from None
    except OSError as exc:
        sock.close()
        raise ControlError(errno.errorcode.get(exc.errno or 0, "EIO"),
                           f"cannot connect to {path}: {exc.strerror or exc}") from None
    return sock


class Client:
    """Requests to one process; ``pipe()`` uses a connection of its own."""

    def __init__(self, pid: int | None = None, path: str | None = None,
                 timeout: float | None = 10.0) -> None:
        self.pid, self.path, self.timeout = pid, path, timeout
        self.sock = connect(pid, path, timeout)
        self._buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request, one response --------------------------------------------
    def request(self, op: str, path: str = "", **fields: Any) -> Any:
        msg = {"v": VERSION, "op": op, "path": path, **fields}
        try:
            self.sock.sendall(encode(msg))
        except OSError:
            pass  # the server may have answered (refused) and closed: read that
        return decode_response(self._line(self.sock, self._buf))["value"]

    @staticmethod
    def _line(sock: socket.socket, buf: bytearray) -> bytes:
        while True:
            end = buf.find(b"\n")
            if end >= 0:
                line = bytes(buf[:end])
                del buf[:end + 1]
                return line
            if len(buf) > MAX_RESPONSE:
                raise ProtocolError("response from the fntrace server is too long")
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                raise ControlError("ETIMEDOUT", "the fntrace server did not answer") from None
            except OSError as exc:
                if buf:
                    raise ProtocolError("connection lost mid-response") from None
                raise ControlError("ECONNRESET",
                                   f"connection to the fntrace server lost: {exc}") from None
            if not data:
                raise ControlError("ECONNRESET", "the fntrace server closed the connection")
            buf += data

    def hello(self) -> dict[str, Any]:
        value = self.request("hello")
        if not isinstance(value, dict):
            raise ProtocolError("malformed hello response")
        return value

    def read(self, path: str) -> str:
        return str(self.request("read", path))

    def write(self, path: str, value: str, append: bool = False) -> None:
        self.request("write", path, value=value, append=append)

    def ls(self, path: str = "") -> list[str]:
        return [str(n) for n in self.request("ls", path)]

    def mkdir(self, path: str) -> None:
        self.request("mkdir", path)

    def rmdir(self, path: str) -> None:
        self.request("rmdir", path)

    def pipe(self, path: str = "trace_pipe",
             timeout: float | None = None) -> Generator[str, None, None]:
        """trace_pipe lines as they come, until the iterator is closed.

        Waits for lines forever, or raises ControlError(ETIMEDOUT) after
        ``timeout`` seconds without one; closing the generator closes its
        connection, which ends the stream in the server.
        """
        sock = connect(self.pid, self.path, self.timeout)
        buf = bytearray()
        try:
            sock.sendall(encode({"v": VERSION, "op": "pipe", "path": path}))
            decode_response(self._line(sock, buf))
            sock.settimeout(timeout)
            while True:
                end = buf.find(b"\n")
                if end >= 0:
                    line = bytes(buf[:end + 1])
                    del buf[:end + 1]
                    yield line.decode("utf-8", "replace")
                    continue
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    raise ControlError("ETIMEDOUT", "trace_pipe: no line within "
                                       f"{timeout} s") from None
                if not data:
                    return
                buf += data
        finally:
            sock.close()


def scan() -> list[tuple[int, str]]:
    """(pid, state) for every socket in the runtime directory.

    state is ``live``, ``stale (removed)`` for a dead process's socket (it is
    unlinked), or ``not responding`` for a live pid whose socket refuses.
    """
    try:
        names = os.listdir(runtime_dir())
    except FileNotFoundError:
        return []
    out: list[tuple[int, str]] = []
    for name in sorted(names, key=lambda n: (len(n), n)):
        stem, _, ext = name.partition(".")
        if ext != "sock" or not stem.isdigit():
            continue
        pid = int(stem)
        try:
            with Client(pid, timeout=2.0) as client:
                info = client.hello()
            argv = info.get("argv") or []
            out.append((pid, f"live  python {info.get('python')}  {' '.join(map(str, argv))}"))
        except ControlError as exc:
            if not pid_alive(pid):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(runtime_dir(), name))
                out.append((pid, "stale (removed)"))
            else:
                out.append((pid, f"not responding: {exc}"))
    return out
