"""Live control: a running process's tracefs, steered from another process.

``fntrace.control.listen()`` starts the server (``server.py``) on a Unix
socket in a per-user runtime directory (``runtime.py``); ``Client(pid)``
(``client.py``) and ``fntrace ctl`` (fntrace/cli/ctl.py) speak the protocol of ``protocol.py``
(docs/control.md).  Nothing is traced until a client sets a tracer.
"""

from __future__ import annotations

from fntrace.control.client import Client
from fntrace.control.protocol import VERSION, ControlError, ProtocolError
from fntrace.control.server import Server, current, listen

__all__ = ["VERSION", "Client", "ControlError", "ProtocolError", "Server", "current", "listen"]
