"""A real headless Chromium (Debian's package), driven over the DevTools protocol."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager

import requests as http
from simple_websocket import Client as WsClient

from tests.integration.service_helpers import free_port

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1920,1080"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    def __init__(self, ws_url: str):
        self.ws = WsClient(ws_url, max_message_size=64 * 1024 * 1024)
        self._ids = itertools.count(1)

    def call(self, method: str, **params):
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive(timeout=30))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(message["error"])
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"the page never satisfied: {expression}")

    def evaluate_async(self, expression: str):
        """The value of an expression that is a promise, once it settles."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"the page threw: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def size(self, width: int, height: int, mobile: bool = False) -> None:
        """The page's viewport (a phone: ``mobile``, touch-sized, at 390 px wide)."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)

    def screenshot(self, full_page: bool = False) -> bytes:
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            metrics = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])


@contextmanager
def open_page(url: str, width: int = 1920, height: int = 1080, timezone: str | None = None):
    """Chromium showing ``url`` at ``width`` x ``height`` (``timezone``: the page's, e.g. the company's)."""
    binary = chromium_path()
    assert binary, "Debian's chromium is not installed (make test installs it as root)"
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--remote-debugging-port={port}",
                                 f"--user-data-dir={profile}", url],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # its own group: see _stop
        try:
            deadline = time.monotonic() + 30
            targets = []
            while time.monotonic() < deadline and not targets:
                try:
                    targets = [t for t in http.get(f"http://127.0.0.1:{port}/json", timeout=1).json() if t["type"] == "page"]
                except (http.RequestException, ValueError):
                    time.sleep(0.3)
            assert targets, "chromium did not open the page"
            page = Page(targets[0]["webSocketDebuggerUrl"])
            # The page itself is 1920x1080 by default, like the office TV (the window adds browser chrome).
            page.size(width, height)
            if timezone:
                page.call("Emulation.setTimezoneOverride", timezoneId=timezone)
            try:
                yield page
            finally:
                page.ws.close()
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """End Chromium and every helper process it started (renderers, crash handler): they write
    into the profile directory too, and one still writing there made its removal fail."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # anyone left in the group?
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    proc.wait(10)
