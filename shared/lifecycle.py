"""Clean shutdown: SIGTERM and SIGINT ask every registered part to stop, once."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

log = logging.getLogger(__name__)


class Shutdown:
    """Collects stop callbacks and runs them, in reverse order, on the first signal."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._callbacks: list[Callable[[], None]] = []

    def on_stop(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def install(self) -> "Shutdown":
        """Handle SIGTERM/SIGINT in this (main) thread."""
        signal.signal(signal.SIGTERM, self._signalled)
        signal.signal(signal.SIGINT, self._signalled)
        return self

    def _signalled(self, signum, _frame) -> None:
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        self.trigger()

    def trigger(self) -> None:
        if self.requested.is_set():
            return
        self.requested.set()
        for callback in reversed(self._callbacks):
            try:
                callback()
            except Exception:  # noqa: BLE001 - one part failing to stop must not block the rest
                log.exception("error while stopping")

    def wait(self, timeout: float | None = None) -> bool:
        return self.requested.wait(timeout)
