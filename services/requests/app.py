"""Wiring of the requests service: database, producer, outbox relay, sweeper, Flask app."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from flask import Flask

from services.requests import documents
from services.requests.api import people_api, requests_api
from services.requests.config import RequestsSettings
from services.requests.handlers import RequestsService
from services.requests.repository import Repository
from shared.auth import require_internal_token
from shared.bus.kafka import EventProducer
from shared.bus.outbox import OutboxRelay
from shared.calendar import BusinessCalendar
from shared.clock import Clock, SystemClock
from shared.db import connect
from shared.web import create_service_app, dependency_checks

log = logging.getLogger(__name__)
SERVICE = "requests"


def create_app(service: RequestsService, settings: RequestsSettings, readiness=None) -> Flask:
    app = create_service_app(SERVICE, settings, readiness)
    require_internal_token(app, settings.internal_token)
    app.extensions["requests_service"] = service
    app.register_blueprint(people_api)
    app.register_blueprint(requests_api)
    return app


@dataclass
class Runtime:
    """Everything one requests process runs; tests build it with their own clock."""

    settings: RequestsSettings
    service: RequestsService
    producer: EventProducer
    relay: OutboxRelay
    app: Flask
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start_background(self, sweeper: bool = True) -> None:
        self._threads.append(self.relay.start())
        if sweeper:
            thread = threading.Thread(target=self._sweep_loop, name="sweeper", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _sweep_loop(self) -> None:
        interval = self.settings.sweep_interval_ms / 1000
        while not self._stop.wait(interval):
            try:
                self.service.sweep()
            except Exception as exc:  # noqa: BLE001 - the next pass retries; timers are not lost
                log.warning("sweep failed, will retry", extra={"error": repr(exc)})

    def stop(self) -> None:
        self._stop.set()
        self.relay.stop()
        for thread in self._threads:
            thread.join(10)
        self.producer.close()


def build_runtime(settings: RequestsSettings, clock: Clock | None = None) -> Runtime:
    db = connect(settings, SERVICE)
    documents.ensure_indexes()
    producer = EventProducer(settings, client_id=SERVICE)
    repo = Repository()
    relay = OutboxRelay(producer, [repo.people, repo.requests], poll_ms=settings.outbox_poll_ms)
    service = RequestsService(
        repo=repo, clock=clock or SystemClock(), calendar=BusinessCalendar.from_settings(settings), notify=relay.notify
    )
    app = create_app(service, settings, readiness=dependency_checks(settings, db))
    return Runtime(settings=settings, service=service, producer=producer, relay=relay, app=app)
