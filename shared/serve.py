"""Run a service process: settings, logs, background parts, a threaded WSGI server, clean stop.

Every service's ``__main__`` calls :func:`serve`; SIGTERM/SIGINT stop the HTTP server, then
the runtime's background parts (relay, consumers, timers), in that order.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol, TypeVar

from waitress import wasyncore
from waitress.server import create_server

from shared.config import ConfigError, Settings, load_settings
from shared.lifecycle import Shutdown
from shared.logging import configure_logging

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Settings)


class Runtime(Protocol):
    app: object

    def start_background(self) -> None: ...

    def stop(self) -> None: ...


def serve(
    service: str,
    settings_class: type[S],
    build: Callable[[S], Runtime],
    port_of: Callable[[S], int],
    on_start: Callable[[Runtime], object] | None = None,
    threads: int = 8,
) -> None:
    try:
        settings = load_settings(settings_class)
    except ConfigError as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(service, settings.log_level, settings.log_format)
    tune_collector(settings)
    shutdown = Shutdown().install()
    try:
        runtime = build(settings)
    except ConfigError as exc:  # e.g. a rules file the service cannot use
        print(f"{service}: {exc}", file=sys.stderr)
        sys.exit(2)
    if on_start is not None:
        on_start(runtime)
    runtime.start_background()
    http = HttpServer(runtime.app, port_of(settings), threads=getattr(settings, "http_threads", threads), ident=service,
                      host=settings.http_host)
    http.start()
    log.info("service started", extra={"port": port_of(settings)})
    shutdown.wait()
    log.info("stopping")
    http.stop()
    runtime.stop()
    log.info("stopped")


def tune_collector(settings: Settings) -> None:
    """How often Python's cyclic garbage collector makes a full collection (``gc_full_after``;
    the points processes: three times less often than Python's default).

    A full collection walks every object the process holds: the points processes hold tables,
    caches and a directory, and each batch allocates enough to start one every few hundred
    milliseconds. In the 100,000-event pipeline bench they took 16 of the scoring process's
    35 CPU seconds and 8 of the applier's 30 (docs/performance.md). Young objects are still
    collected as often as Python does by default; garbage that lived long waits longer."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, settings.gc_full_after)


class HttpServer:
    """A threaded WSGI server (waitress) on loopback, run in a thread, stoppable from another."""

    def __init__(self, app, port: int, threads: int = 8, ident: str = "insidetrack", host: str = "127.0.0.1"):
        self.server = create_server(app, host=host, port=port, threads=threads, ident=ident)
        self.port = self.server.effective_port
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):
            # Closing the sockets under waitress's select() loop ends it this way; expected
            # only while stopping.
            if not self._stopping.is_set():
                raise

    def stop(self, timeout: float = 10) -> None:
        self._stopping.set()
        self.server.close()  # the listening socket
        wasyncore.close_all(self.server._map)  # open keep-alive connections end the loop
        self.server.task_dispatcher.shutdown(timeout=timeout)
        if self._thread is not None:
            self._thread.join(timeout)


class Periodic:
    """Call ``fn`` every ``interval_s`` in a thread until stopped; failures are logged, retried."""

    def __init__(self, name: str, interval_s: float, fn: Callable[[], object]):
        self.name, self.interval_s, self.fn = name, interval_s, fn
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self._thread

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.fn()
            except Exception as exc:  # noqa: BLE001 - the next pass retries
                log.warning("%s failed, will retry", self.name, extra={"error": repr(exc)})

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


@dataclass
class ServiceRuntime:
    """One service process: its Flask app, its producer and the background workers it runs
    (outbox relay, consumers, timers). Tests build it with their own clock and call
    ``start_background()`` / ``stop()`` themselves."""

    settings: Settings
    app: object
    producer: object
    workers: list = field(default_factory=list)  # each has start() and stop()

    def start_background(self, only: list | None = None) -> None:
        for worker in self.workers if only is None else only:
            worker.start()

    def stop(self) -> None:
        # Consumers are asked first, all at once: each sees it at the end of its current poll
        # (up to a second when idle), so their waits overlap instead of adding up. Then every
        # worker is stopped and waited for in reverse order, as before (the relay last, so it
        # still publishes what the consumers' last messages recorded).
        for worker in self.workers:
            request_stop = getattr(worker, "request_stop", None)
            if request_stop is not None:
                request_stop()
        for worker in reversed(self.workers):
            worker.stop()
        self.producer.close()
