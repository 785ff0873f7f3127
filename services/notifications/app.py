"""Wiring of the notifications process: people copy, webhook store, delivery consumer, app."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import requests as http

from services.notifications.api import notifications_api
from services.notifications.config import NotificationsSettings
from services.notifications.delivery import DELIVER_GROUP, DELIVER_TOPICS, Deliverer, not_notified
from services.notifications.directory import PeopleCopy, people_reader
from services.notifications.domain import UrlRules
from services.notifications.handlers import WebhookAdmin
from services.notifications.store import Store
from shared.auth import require_internal_token
from shared.bus.consumer import ConsumerRunner
from shared.bus.kafka import EventProducer
from shared.clock import Clock, clock_for
from shared.db import connect
from shared.serve import ServiceRuntime
from shared.web import create_service_app, dependency_checks

SERVICE = "notifications"
NOTIFICATIONS_GROUPS = {DELIVER_GROUP: DELIVER_TOPICS}
# A poll's events are delivered one after another, each up to its retry window: a small poll,
# and a long window before the group gives the member's partitions to another.
MAX_POLL_RECORDS = 20
POLL_WINDOW_MS = 1_800_000


class AfterDirectory:
    """Starts the delivery consumer once the people copy has read the topic's backlog (a message
    built before would name nobody); stops it, and the wait, on request."""

    def __init__(self, reader: ConsumerRunner, runner: ConsumerRunner, deliverer: Deliverer):
        self.reader, self.runner, self.deliverer = reader, runner, deliverer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> threading.Thread:
        self._thread = threading.Thread(target=self._run, name="deliver-after-directory", daemon=True)
        self._thread.start()
        return self._thread

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.reader.caught_up.wait(0.2):
                if not self._stop.is_set():
                    self.runner.run()
                return

    def request_stop(self) -> None:
        self._stop.set()
        self.deliverer.stop_event.set()  # a retry's pause ends now
        self.runner.request_stop()

    def stop(self, timeout: float = 30) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)


@dataclass
class NotificationsRuntime(ServiceRuntime):
    store: Store = None
    people: PeopleCopy = None
    deliverer: Deliverer = None
    admin: WebhookAdmin = None
    people_reader: ConsumerRunner = None
    deliver_runner: ConsumerRunner = None


def build_runtime(settings: NotificationsSettings, clock: Clock | None = None,
                  session: http.Session | None = None) -> NotificationsRuntime:
    clock = clock or clock_for(settings)
    db = connect(settings, SERVICE)
    store = Store(db)
    people = PeopleCopy()
    producer = EventProducer(settings, client_id=SERVICE)  # the dead-letter path
    reader = people_reader(settings, people, producer)
    deliverer = Deliverer(store, people, settings, clock, session=session)
    runner = ConsumerRunner(settings, group=DELIVER_GROUP, topics=list(DELIVER_TOPICS), batch_handler=deliverer.handle_batch,
                            producer=producer, max_poll_records=MAX_POLL_RECORDS, max_poll_interval_ms=POLL_WINDOW_MS,
                            skip=not_notified)
    admin = WebhookAdmin(store, people, UrlRules(settings.webhook_allow_http, settings.allowed_hosts), clock)

    def directory_loaded() -> None:
        if not reader.caught_up.is_set():
            raise RuntimeError("the people copy is still loading from the people topic")

    def delivering() -> None:
        if runner.dependency_down:
            raise RuntimeError(f"the delivery consumer waits for a dependency: {runner.dependency_down}")

    app = create_service_app(SERVICE, settings, {**dependency_checks(settings, db), "directory": directory_loaded,
                                                 "delivery": delivering})
    require_internal_token(app, settings.internal_token)
    app.extensions["webhook_admin"] = admin
    app.register_blueprint(notifications_api)
    return NotificationsRuntime(
        settings=settings, app=app, producer=producer, workers=[reader, AfterDirectory(reader, runner, deliverer)],
        store=store, people=people, deliverer=deliverer, admin=admin, people_reader=reader, deliver_runner=runner)
