"""``fntrace view``: a recording opened in the speedscope viewer fntrace ships.

The trace files are converted to a speedscope profile (``speedscope.py``) in a
temporary directory, then a small HTTP server on 127.0.0.1 serves the viewer's
release build (``speedscope_dist/``, vendored from npm by
``scripts/update_speedscope.sh``) and the profile, and the browser is pointed
at ``/#profileURL=profile.json``: speedscope fetches the profile from the page's
own origin, so nothing leaves the machine and no internet is needed.  The
server answers only the viewer's files and the profile (no directory listing,
no other path), runs until Ctrl-C, and removes the profile when it stops.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import webbrowser
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO
from urllib.parse import quote, urlsplit

from fntrace.analysis.speedscope import Counts, write_speedscope
from fntrace.analysis.traceset import open_set
from fntrace.formats.tracefile import exit_status

__all__ = ["DIST", "PROFILE_NAME", "ViewServer", "convert", "page_url", "view"]

#: The vendored speedscope release build.
DIST = Path(__file__).resolve().parent / "speedscope_dist"
PROFILE_NAME = "profile.json"

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".json": "application/json",
          ".wasm": "application/wasm", ".woff2": "font/woff2", ".png": "image/png",
          ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8",
          ".md": "text/plain; charset=utf-8"}


def convert(paths: Sequence[str], out_path: str, warn: IO[str] | None = None,
            ) -> tuple[Counts, int]:
    """Write the speedscope profile of the trace files ``paths`` to ``out_path``;
    what was written, and the reading commands' exit status (1: a file's header
    or footer was corrupt, though every event it could read is in the profile)."""
    traces = open_set(paths, warn)
    name = ", ".join(os.path.basename(p) for p in paths)
    with open(out_path, "w", encoding="utf-8") as out:
        counts = write_speedscope(traces.records(), out, traces.process_names(),
                                  traces.thread_names(), name=name)
    return counts, exit_status(traces.files)


def page_url(host: str, port: int, title: str) -> str:
    """The viewer's address with the profile to load (speedscope's hash parameters)."""
    return (f"http://{host}:{port}/#profileURL={quote(PROFILE_NAME, safe='')}"
            f"&title={quote(title, safe='')}")


class ViewServer(ThreadingHTTPServer):
    """Serves the viewer's files and one profile; nothing else."""

    daemon_threads = True

    def __init__(self, profile: str, host: str = "127.0.0.1", port: int = 0,
                 dist: Path = DIST) -> None:
        self.profile = profile
        self.files = {p.name: p for p in dist.iterdir() if p.is_file()}
        if "index.html" not in self.files:
            raise FileNotFoundError(f"the speedscope viewer is missing from {dist} "
                                    f"(scripts/update_speedscope.sh restores it)")
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        name = urlsplit(self.path).path.lstrip("/") or "index.html"
        if name == PROFILE_NAME:
            path = Path(self.server.profile)
        elif name in self.server.files:
            path = self.server.files[name]
        else:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        try:
            size = path.stat().st_size
            f = open(path, "rb")
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with f:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type",
                             _TYPES.get(path.suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if body:
                while block := f.read(1 << 20):
                    self.wfile.write(block)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the terminal shows the address and Ctrl-C, not every request."""


def view(paths: Sequence[str], host: str = "127.0.0.1", port: int = 0,
         open_browser: bool = True, out: IO[str] | None = None,
         started: Callable[[ViewServer, str], None] | None = None) -> int:
    """Convert ``paths``, serve viewer and profile until Ctrl-C; the exit status
    (1 when a file's header or footer was corrupt, as replay and dump say).

    ``started`` (for tests and embedding) is called with the server and the
    page's address once it listens; it may call ``server.shutdown()`` from
    another thread to stop it.
    """
    stream = sys.stdout if out is None else out
    with tempfile.TemporaryDirectory(prefix="fntrace-view-") as tmp:
        profile = os.path.join(tmp, PROFILE_NAME)
        counts, status = convert(paths, profile)
        server = ViewServer(profile, host, port)
        try:
            title = " ".join(os.path.basename(p) for p in paths)
            url = page_url(host, server.port, title)
            print(f"fntrace view: {counts.profiles} profile(s), {counts.opens} function runs; "
                  f"serving speedscope at {url}", file=stream)
            print("fntrace view: Ctrl-C stops", file=stream, flush=True)
            if open_browser:
                threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
            if started is not None:
                started(server, url)
            previous = _stop_on_sigterm()
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                print("\nfntrace view: stopped", file=stream)
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
        finally:
            server.server_close()
    return status


def _stop_on_sigterm() -> signal.Handlers | Callable[..., object] | int | None:
    """SIGTERM stops the server as Ctrl-C does (the profile's temporary copy is
    removed); returns the handler to put back, None outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, stop)
