"""Run the gateway: ``python -m services.gateway``.

Served by gunicorn with threads (WebSockets need a server that hands over the socket; the
threaded worker does): one worker process, ``INSIDETRACK_HTTP_THREADS`` threads. The live
event readers start in the worker and stop with it; SIGTERM stops everything cleanly.
"""

from __future__ import annotations

import sys

from gunicorn.app.base import BaseApplication

from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from shared.config import ConfigError, load_settings
from shared.logging import configure_logging


class GatewayServer(BaseApplication):
    def __init__(self, settings: GatewaySettings):
        self.settings = settings
        self.app = None
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        host = f"[{s.http_host}]" if ":" in s.http_host else s.http_host  # an IPv6 address
        self.cfg.set("bind", f"{host}:{s.gateway_port}")
        self.cfg.set("workers", 1)
        self.cfg.set("worker_class", "gthread")
        self.cfg.set("threads", s.http_threads)
        self.cfg.set("timeout", 120)
        self.cfg.set("graceful_timeout", 10)
        self.cfg.set("accesslog", None)
        self.cfg.set("post_worker_init", lambda worker: self.app.extensions["live_hub"].start())
        self.cfg.set("worker_exit", lambda server, worker: self.app and self.app.extensions["live_hub"].stop())

    def load(self):
        configure_logging("gateway", self.settings.log_level, self.settings.log_format)
        self.app = create_app(self.settings)
        return self.app


def main() -> None:
    try:
        settings = load_settings(GatewaySettings)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        sys.exit(2)
    GatewayServer(settings).run()


if __name__ == "__main__":
    main()
