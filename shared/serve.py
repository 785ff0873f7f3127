"""Run a service process: settings, logs, background parts, a threaded WSGI server, clean stop.

Every service's ``__main__`` calls :func:`serve`; SIGTERM/SIGINT stop the HTTP server, then
the runtime's background parts (relay, consumers, timers), in that order.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Callable, Protocol, TypeVar

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
    shutdown = Shutdown().install()
    runtime = build(settings)
    if on_start is not None:
        on_start(runtime)
    runtime.start_background()
    server = create_server(runtime.app, host="127.0.0.1", port=port_of(settings),
                           threads=getattr(settings, "http_threads", threads), ident=service)
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    log.info("service started", extra={"port": port_of(settings)})
    shutdown.wait()
    log.info("stopping")
    server.close()
    runtime.stop()
    log.info("stopped")
