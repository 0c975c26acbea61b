"""Where control sockets live: one private directory per user.

``$XDG_RUNTIME_DIR/fntrace`` when the session has a runtime directory, else
``/tmp/fntrace-<uid>``.  The directory is mode 0700 and must be ours: its
mode is the first gate (another user cannot even reach a socket in it), the
SO_PEERCRED check in the server is the second.  A directory that exists with
looser permissions or another owner is refused rather than repaired, since
someone else may have planted it.
"""

from __future__ import annotations

import os
import socket
import stat
import sys

__all__ = ["ensure_dir", "runtime_dir", "socket_path", "unsupported"]


def unsupported() -> str | None:
    """Why this Python cannot serve or reach control sockets, or None if it can."""
    if not hasattr(socket, "AF_UNIX"):
        return (f"fntrace control needs Unix domain sockets, which this Python "
                f"({sys.platform}) lacks")
    return None


def _euid() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else os.getuid()


def runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base):
        return os.path.join(base, "fntrace")
    return f"/tmp/fntrace-{_euid()}"


def socket_path(pid: int) -> str:
    return os.path.join(runtime_dir(), f"{pid}.sock")


def ensure_dir() -> str:
    """Create (0700) or check the runtime directory; PermissionError if unsafe."""
    path = runtime_dir()
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{path}: not a directory; refusing to serve control there")
    if st.st_uid != _euid():
        raise PermissionError(f"{path}: owned by uid {st.st_uid}, not {_euid()}; "
                              "refusing to serve control there")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise PermissionError(f"{path}: mode {stat.S_IMODE(st.st_mode):o} lets other users in "
                              "(want 700); refusing to serve control there")
    return path
