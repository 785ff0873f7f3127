"""Wiring of the requests service: database, producer, outbox relay, sweeper, Flask app."""

from __future__ import annotations

from dataclasses import dataclass

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
from shared.clock import Clock, clock_for
from shared.db import connect
from shared.serve import Periodic, ServiceRuntime
from shared.web import create_service_app, dependency_checks

SERVICE = "requests"


def create_app(service: RequestsService, settings: RequestsSettings, readiness=None) -> Flask:
    app = create_service_app(SERVICE, settings, readiness)
    require_internal_token(app, settings.internal_token)
    app.extensions["requests_service"] = service
    app.register_blueprint(people_api)
    app.register_blueprint(requests_api)
    # The people directory reads its freshness counter once per call (directory.py).
    app.before_request(service.repo.directory.begin_call)
    app.teardown_request(lambda _exc=None: service.repo.directory.end_call())
    return app


@dataclass
class RequestsRuntime(ServiceRuntime):
    service: RequestsService = None
    relay: OutboxRelay = None
    sweeper: Periodic = None


def build_runtime(settings: RequestsSettings, clock: Clock | None = None) -> RequestsRuntime:
    db = connect(settings, SERVICE)
    documents.ensure_indexes()
    producer = EventProducer(settings, client_id=SERVICE)
    repo = Repository()
    clock = clock or clock_for(settings)
    # Before the relay starts (a relay may clear outbox flags, never the lists' own flags):
    # build the read models of an old var/ once, finish projections a crash interrupted, and
    # move the people counter so every instance reloads its directory copy.
    repo.read_models.ensure_built(clock.now())
    repo.read_models.recover()
    repo.directory.bump()
    service: RequestsService | None = None

    def finish_projections(collection, docs) -> None:
        if collection.name == repo.requests.name:
            repo.read_models.recover([d["_id"] for d in docs])
        elif collection.name == repo.imports.name:
            service.recover_imports(docs)

    relay = OutboxRelay(producer, [repo.people, repo.requests, repo.imports], poll_ms=settings.outbox_poll_ms,
                        scan_s=settings.outbox_scan_s, on_scan=finish_projections, insert_only=[repo.imports],
                        journals=[repo.people_journal, repo.requests_journal, repo.imports_journal])
    service = RequestsService(
        repo=repo, clock=clock, calendar=BusinessCalendar.from_settings(settings), notify=relay.notify,
        publish=producer.publish_all, notify_inserted=relay.notify_inserted,
    )
    app = create_app(service, settings, readiness=dependency_checks(settings, db))
    app.extensions["requests_admin_email"] = settings.admin_email
    sweeper = Periodic("sweeper", settings.sweep_interval_ms / 1000, service.sweep)
    return RequestsRuntime(settings=settings, app=app, producer=producer, workers=[relay, sweeper],
                           service=service, relay=relay, sweeper=sweeper)
