"""``fntrace view``: the viewer and the profile served on 127.0.0.1, and a real browser.

The server is fetched over HTTP as a browser would (index.html, the viewer's
files, the profile, a path it must refuse); the command is run as a person
runs it (``--no-browser``, the address read from its output, Ctrl-C); and
headless Chromium (Debian's ``chromium``, which ``.ci/run`` installs) loads the
page of the bundled example: speedscope's sandwich view lists the functions
in the DOM, so the test reads their names there.  A failure leaves a
screenshot in the test's tmp dir.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import needs_subprocess

from fntrace.analysis.speedscope import write_speedscope
from fntrace.analysis.traceset import open_set
from fntrace.analysis.view import DIST, PROFILE_NAME, ViewServer, view

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
pytestmark = needs_subprocess


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's recording of the bundled example."""
    d = tmp_path_factory.mktemp("shop")
    dat = d / "shop.dat"
    subprocess.run([sys.executable, "-m", "fntrace", "record", "-F", "*:mod:__main__",
                    "--args", "--retval", "-o", str(dat), "--", str(ROOT / "examples/shop.py")],
                   check=True, env=ENV, cwd=d, capture_output=True, timeout=120)
    return dat


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, b"", ""


@pytest.fixture
def served(shop: Path) -> Iterator[tuple[str, threading.Thread]]:
    box: dict[str, object] = {}
    ready = threading.Event()

    def started(server: ViewServer, url: str) -> None:
        box["server"], box["url"] = server, url
        ready.set()

    th = threading.Thread(target=view, args=([str(shop)],),
                          kwargs={"open_browser": False, "out": io.StringIO(),
                                  "started": started}, daemon=True)
    th.start()
    assert ready.wait(60)
    yield str(box["url"]), th
    box["server"].shutdown()  # type: ignore[attr-defined]
    th.join(30)
    assert not th.is_alive()


def test_serves_viewer_and_profile(served: tuple[str, threading.Thread], shop: Path) -> None:
    url, _ = served
    assert url.startswith("http://127.0.0.1:")
    assert url.endswith(f"/#profileURL={PROFILE_NAME}&title=shop.dat")
    base = url.split("#")[0]
    status, body, ctype = get(base)
    assert status == 200 and ctype.startswith("text/html")
    assert body == (DIST / "index.html").read_bytes()
    for asset in re.findall(rb'(?:src|href)="([^"]+)"', body):
        status, data, _ = get(base + asset.decode())
        assert status == 200 and data == (DIST / asset.decode()).read_bytes()
    status, body, ctype = get(base + PROFILE_NAME)
    assert status == 200 and ctype == "application/json"
    traces = open_set([str(shop)], io.StringIO())
    want = io.StringIO()
    write_speedscope(traces.records(), want, traces.process_names(), traces.thread_names(),
                     name="shop.dat")
    assert json.loads(body) == json.loads(want.getvalue())
    for bad in ("../etc/passwd", "%2e%2e/pyproject.toml", "nothing.js", "speedscope_dist/"):
        assert get(base + bad)[0] == 404


def test_command_serves_until_ctrl_c(shop: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "fntrace", "view", "--no-browser", str(shop)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a SIGINT-ignoring parent must not pass that on
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"serving speedscope at (http://127\.0\.0\.1:\d+/)#", line)
        assert m, line
        assert get(m.group(1) + PROFILE_NAME)[0] == 200
        assert "Ctrl-C" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "fntrace view: stopped" in out and err == ""


def test_command_refuses_a_missing_file_and_a_taken_port(tmp_path: Path, shop: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "fntrace", "view", "--no-browser",
                        str(tmp_path / "none.dat")], env=ENV, capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stderr) == (1, f"fntrace view: {tmp_path / 'none.dat'}: no such file\n")
    with ViewServer(str(shop)) as taken:
        r = subprocess.run([sys.executable, "-m", "fntrace", "view", "--no-browser", "--port",
                            str(taken.port), str(shop)], env=ENV, capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("fntrace view: ")
    assert len(r.stderr.splitlines()) == 1


# -- a real browser -------------------------------------------------------------------

def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium: .ci/run installs Debian's chromium package as root "
                "(apt-get install chromium); without it this test cannot run a browser")


class DevTools:
    """Headless Chromium driven over its DevTools pipe (``--remote-debugging-pipe``:
    JSON commands on its fd 3, answers and events on its fd 4, each ended by a
    NUL byte), with the standard library alone.

    Why: ``--dump-dom`` with a virtual-time budget dumps the page when the budget
    runs out, whether speedscope has drawn the profile yet or not; under load
    (the profile served late) it dumped an empty table.  Here the test asks the
    live page for its DOM until what it waits for is there: the page's own
    progress decides, and the deadline only bounds a real failure."""

    def __init__(self, browser: str, profile: Path, url: str) -> None:
        to_child, self._w = os.pipe()
        self._r, from_child = os.pipe()
        # A small Python puts the pipe's ends on fds 3 and 4 (by way of fds above
        # 9, so neither end is overwritten by the other's move), then becomes
        # Chromium (Debian's chromium is a shell script: dash takes only
        # one-digit descriptors in a redirection).
        place = ("import fcntl, os, sys\n"
                 "a, b = (fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3])\n"
                 "os.dup2(a, 3)\nos.dup2(b, 4)\nos.execv(sys.argv[3], sys.argv[3:])\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", place, str(to_child), str(from_child), browser,
             "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--remote-debugging-pipe", f"--user-data-dir={profile}",
             "--window-size=1280,800", url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(to_child, from_child))
        os.close(to_child)
        os.close(from_child)
        self._buf = b""
        self._id = 0
        self.session = ""

    def call(self, method: str, params: dict[str, Any] | None = None,
             session: bool = True, timeout: float = 60) -> dict[str, Any]:
        """Send one command and return its result (events in between are skipped)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._r], [], [], left)[0]:
                    raise TimeoutError(f"DevTools: no answer to {method}")
                chunk = os.read(self._r, 65536)
                if not chunk:
                    raise EOFError(f"DevTools: Chromium closed its pipe during {method}")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            got = json.loads(raw)
            if got.get("id") == self._id:
                if "error" in got:
                    raise RuntimeError(f"DevTools: {method}: {got['error']}")
                return got.get("result", {})  # type: ignore[no-any-return]

    def attach(self) -> None:
        """To the page Chromium opened with the URL."""
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": page["targetId"], "flatten": True},
                                 session=False)["sessionId"]

    def html(self) -> str:
        result = self.call("Runtime.evaluate", {
            "expression": "document.documentElement ? document.documentElement.outerHTML : ''",
            "returnByValue": True})
        return str(result["result"].get("value", ""))

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False, timeout=10)
        except (OSError, TimeoutError, EOFError, RuntimeError):
            pass
        os.close(self._w)
        os.close(self._r)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_chromium_shows_the_functions_of_the_bundled_example(shop: Path,
                                                             tmp_path: Path) -> None:
    browser = chromium()
    proc = subprocess.Popen([sys.executable, "-m", "fntrace", "view", "--no-browser", str(shop)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = re.search(r"(http://\S+)", proc.stdout.readline())
        assert url
        want = ["__main__:checkout", "__main__:Cart.add", "__main__:discount", "__main__:main",
                "__main__:Cart.total.&lt;locals&gt;.&lt;genexpr&gt;"]
        chrome = DevTools(browser, tmp_path / "profile", url.group(1) + "&view=sandwich")
        try:
            chrome.attach()
            deadline = time.monotonic() + 180  # a bound on a failure, not a wait
            dom = chrome.html()
            while any(w not in dom for w in want) and time.monotonic() < deadline:
                time.sleep(0.2)
                dom = chrome.html()
            missing = [w for w in want if w not in dom]
            if missing:
                shot = tmp_path / "view.png"
                chrome.screenshot(shot)
                (tmp_path / "dom.html").write_text(dom)
                pytest.fail(f"speedscope's page lacks {missing} after 180 s; screenshot "
                            f"{shot}, DOM {tmp_path / 'dom.html'}")
        finally:
            chrome.close()
        assert "shop.dat" in dom  # the title speedscope shows
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
