"""Wiring of the kudos process: database, directory copy, outbox relay, cards, Flask app.

At start, the process builds the feeds from the kudos collection if this database predates
them (once, in the background; ``feeds.py``), and its outbox relay's safety-net search puts any
kudos a dead process left pending on its feeds (storing imported ones an interrupted import had
only recorded the events of) before publishing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from services.recognition.directory import Directory, directory_reader
from services.recognition.kudos import documents
from services.recognition.kudos.api import cards_api, kudos_api
from services.recognition.kudos.cards import CardStore
from services.recognition.kudos.config import KudosSettings
from services.recognition.kudos.feeds import FeedBuilder
from services.recognition.kudos.handlers import KudosService
from services.recognition.kudos.repository import KudosRepository
from services.recognition.kudos.typeset import use_fonts
from shared.auth import require_internal_token
from shared.bus.consumer import ConsumerRunner
from shared.bus.kafka import EventProducer
from shared.bus.outbox import OutboxRelay
from shared.calendar import BusinessCalendar
from shared.clock import Clock, clock_for
from shared.db import connect
from shared.fonts import font_dir
from shared.serve import ServiceRuntime
from shared.web import create_service_app, dependency_checks

SERVICE = "kudos"


@dataclass
class KudosRuntime(ServiceRuntime):
    service: KudosService = None
    relay: OutboxRelay = None
    directory_reader: ConsumerRunner = None


def _directory_loaded(reader: ConsumerRunner):
    def check() -> None:
        if not reader.caught_up.is_set():
            raise RuntimeError("the directory copy is still loading from the people topic")

    return check


def create_app(service: KudosService, settings: KudosSettings, readiness=None) -> Flask:
    app = create_service_app(SERVICE, settings, readiness)
    require_internal_token(app, settings.internal_token, public_prefixes=("/cards/",))
    app.extensions["kudos_service"] = service
    use_fonts(font_dir(settings))  # no fonts, no start: a card would be boxes
    app.extensions["card_store"] = CardStore(settings.cards_dir)
    app.register_blueprint(kudos_api)
    app.register_blueprint(cards_api)
    return app


def build_runtime(settings: KudosSettings, clock: Clock | None = None) -> KudosRuntime:
    db = connect(settings, SERVICE)
    documents.ensure_indexes()
    producer = EventProducer(settings, client_id=SERVICE)
    directory = Directory()
    reader = directory_reader(settings, directory, producer)
    repo = KudosRepository()
    service = KudosService(settings=settings, repo=repo, directory=directory, clock=clock or clock_for(settings),
                           calendar=BusinessCalendar.from_settings(settings))
    repo.feeds.prepare()  # a database from before the feeds is built in the background
    builder = FeedBuilder(repo.feeds, repo.kudos, service.clock)
    # Imported kudos' events wait in kudos_imports, ten to a document, never added to later.
    # That collection comes first: a pass publishes each collection's notices, then its safety-
    # net search, and the search of a year of kudos (a scan on FerretDB) outlasted the client's
    # 30 s timeout on the loaded machine, failing the pass before an import's events went out.
    relay = OutboxRelay(producer, [repo.imports, repo.kudos], poll_ms=settings.outbox_poll_ms,
                        insert_only=[repo.imports], on_scan=service.recover,
                        journals=[repo.imports_journal, repo.kudos_journal])
    service.notify, service.notify_inserted = relay.notify, relay.notify_inserted
    readiness = {**dependency_checks(settings, db), "directory": _directory_loaded(reader)}
    app = create_app(service, settings, readiness)
    return KudosRuntime(settings=settings, app=app, producer=producer, workers=[builder, relay, reader],
                        service=service, relay=relay, directory_reader=reader)
