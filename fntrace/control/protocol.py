"""The control protocol, version 1 (documented in docs/control.md).

Newline-delimited JSON over a Unix stream socket.  A request is one line::

    {"v": 1, "op": "read", "path": "current_tracer"}
    {"v": 1, "op": "write", "path": "set_ftrace_filter", "value": "myapp:*", "append": false}

and gets one response line, ``{"v": 1, "ok": true, "value": ...}`` or
``{"v": 1, "ok": false, "errno": "EINVAL", "error": "..."}``.  After a
successful ``pipe`` response the connection carries raw trace text until the
client closes it.  Both ends check ``v``: a peer of another version is refused
with a message naming both versions, never misread.

Kept apart from the server and the client so both agree on the limits and the
error names by construction.
"""

from __future__ import annotations

import errno as _errno
import json
from typing import Any

from fntrace.formats.nesting import too_deep

__all__ = [
    "ERRNO_OF",
    "MAX_REQUEST",
    "MAX_RESPONSE",
    "OPS",
    "VERSION",
    "ControlError",
    "ProtocolError",
    "decode_request",
    "decode_response",
    "encode",
    "error_response",
]

VERSION = 1
#: A request line longer than this is refused (EMSGSIZE) and the connection closed.
MAX_REQUEST = 1 << 20
#: The client refuses responses longer than this (a `trace` of a full buffer fits).
MAX_RESPONSE = 1 << 28
OPS = ("hello", "read", "write", "ls", "mkdir", "rmdir", "pipe")

#: Exception types of the file interface and the errno names that carry them.
ERRNO_OF: dict[type[BaseException], str] = {
    ValueError: "EINVAL",
    FileNotFoundError: "ENOENT",
    FileExistsError: "EEXIST",
    PermissionError: "EACCES",
    IsADirectoryError: "EISDIR",
    NotADirectoryError: "ENOTDIR",
}


class ControlError(Exception):
    """An error answered by the server, or a failure to reach it.

    ``errno`` is the symbolic name (``EINVAL``, ``ENOENT``, ``EPROTO``...);
    ``str(exc)`` is the one line to show the user.
    """

    def __init__(self, errno: str, message: str) -> None:
        super().__init__(message)
        self.errno = errno


class ProtocolError(ControlError):
    """The peer broke the protocol: garbage, oversize, another version."""

    def __init__(self, message: str, errno: str = "EPROTO") -> None:
        super().__init__(errno, message)


def encode(msg: dict[str, Any]) -> bytes:
    """One message as a line (JSON escapes newlines, so a message is one line)."""
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def error_response(code: str, message: str) -> dict[str, Any]:
    return {"v": VERSION, "ok": False, "errno": code, "error": message}


def errno_for(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls in ERRNO_OF:
            return ERRNO_OF[cls]
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in _errno.errorcode:
        return _errno.errorcode[code]
    return "EIO"


def _object(line: bytes, what: str, flat: bool) -> dict[str, Any]:
    """The JSON object of a line.  ``flat``: its values must be scalars (a request
    is one level deep: anything nested is refused, as is nesting Python's JSON
    parser would give up on, before it could cost anything)."""
    try:
        text = line.decode("utf-8")
        if too_deep(text):
            raise RecursionError
        msg = json.loads(text)
    except RecursionError:
        raise ProtocolError(f"malformed {what}: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(f"malformed {what}: not a JSON line") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"malformed {what}: not a JSON object")
    if flat:
        for key, value in msg.items():
            if isinstance(value, (dict, list)):
                raise ProtocolError(f"malformed {what}: {key!r} holds a nested "
                                    f"{type(value).__name__}; fields are strings, "
                                    f"numbers, booleans or null")
    return msg


def _version_ok(version: Any) -> bool:
    """Exactly the integer VERSION: JSON ``true`` and ``1.0`` are not version 1."""
    return type(version) is int and version == VERSION


def decode_request(line: bytes) -> dict[str, Any]:
    """Validate a request line; :class:`ProtocolError` says what is wrong with it."""
    msg = _object(line, "request", flat=True)
    version = msg.get("v")
    if not _version_ok(version):
        raise ProtocolError(f"protocol version {version!r} not supported: "
                            f"this fntrace server speaks version {VERSION}")
    op = msg.get("op")
    if op not in OPS:
        raise ProtocolError(f"unknown op {op!r}: expected one of {', '.join(OPS)}")
    path = msg.setdefault("path", "")
    if not isinstance(path, str):
        raise ProtocolError("malformed request: path must be a string")
    if op == "write" and not isinstance(msg.get("value"), str):
        raise ProtocolError("malformed request: write needs a string value")
    if not isinstance(msg.setdefault("append", False), bool):
        raise ProtocolError("malformed request: append must be true or false")
    return msg


def decode_response(line: bytes) -> dict[str, Any]:
    """Validate a response line; raise :class:`ControlError` for an error answer."""
    msg = _object(line, "response", flat=False)
    version = msg.get("v")
    if not _version_ok(version):
        raise ProtocolError(f"the fntrace server speaks protocol version {version!r}, "
                            f"this client speaks version {VERSION}: use matching versions")
    if msg.get("ok") is True:
        return msg
    code, text = msg.get("errno"), msg.get("error")
    if not isinstance(code, str) or not isinstance(text, str):
        raise ProtocolError("malformed response from the fntrace server")
    if code == "EPROTO":
        raise ProtocolError(text)
    raise ControlError(code, text)
