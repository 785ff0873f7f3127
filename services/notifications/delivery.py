"""The delivery process's work: an event in, a signed POST to each webhook it concerns.

Idempotent and in order. The consumer (group ``notifications-deliver``) reads the ``requests``,
``kudos`` and ``badges`` topics, each keyed by its subject, so one request's events arrive in
the order they happened and are delivered in that order: each event's deliveries are finished
(delivered or given up) before the next event of its partition is read. Each delivery is a
document with a deterministic id (webhook + event) written *before* the first POST, holding
the exact body; a redelivered event (a restart, a rebalance) finds it and does only what is
left: nothing when it was delivered or failed, the rest of its attempts when it was pending
(a crash between the receiver's 2xx and the write of "delivered" sends it once more, with the
same ``X-InsideTrack-Delivery`` id, so a receiver can drop the copy).

A delivery is retried on no answer (connect or read timeout, refused connection), a 5xx or a
429, with pauses doubling from ``webhook_backoff_ms``, up to ``webhook_max_attempts`` attempts
within ``webhook_retry_window_s``; then it is kept as failed with the reason. Redirects are
not followed (a 3xx is a failure). A webhook whose deliveries fail ``webhook_disable_after``
times in a row is disabled, with the reason in ``disabled_reason``. A stop (SIGTERM) during a
pause ends the wait: the event is not committed and the next start resumes its delivery.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Callable

import requests as http

from services.notifications.config import NotificationsSettings
from services.notifications.directory import PeopleCopy
from services.notifications.domain import (
    EVENT_OF_TYPE, Webhook, body_for, delivery_id, encode_body, headers_for, matches, notice_for, people_of, retryable,
)
from services.notifications.store import Store
from shared.bus.consumer import TransientError
from shared.clock import Clock, as_utc
from shared.events import TYPE_HEADER, Envelope, EventSchema, header_value
from shared.vocabulary import DeliveryStatus

log = logging.getLogger(__name__)

DELIVER_GROUP = "notifications-deliver"
DELIVER_TOPICS = ("requests", "kudos", "badges")
RELOAD_S = 30.0  # webhooks are read again at least this often (a version change is seen at once)
VERSION_EVERY_S = 1.0  # the version is read at most this often for events older than the last read
CLOCK_SKEW = timedelta(seconds=5)  # between the processes that stamp events and this one
# A person the people copy does not know yet (a new hire thanked a minute after the import: the
# kudos topic can be read before the people topic) is waited for this long, then the message is
# skipped (logged): never sent naming nobody.
UNKNOWN_PERSON_WAIT_S = 30.0


def not_notified(message) -> bool:
    """An event of a type no webhook takes (most request events: acknowledged, assigned, ...),
    known by its ``ce_type`` header: the consumer passes it by undecoded (``skip``). A message
    without the header is decoded and looked at as before."""
    kind = header_value(message, TYPE_HEADER)
    return kind is not None and kind not in EVENT_OF_TYPE


class Stopping(TransientError):
    """The process is stopping during a retry's pause: leave the event for the next start."""


class Deliverer:
    def __init__(self, store: Store, people: PeopleCopy, settings: NotificationsSettings, clock: Clock,
                 session: http.Session | None = None, stop_event: threading.Event | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.store, self.people, self.settings, self.clock = store, people, settings, clock
        self.session = session or http.Session()
        self.session.trust_env = False  # never through a proxy from the environment, never ~/.netrc
        self.stop_event = stop_event or threading.Event()
        self.monotonic = monotonic
        self._webhooks: list[Webhook] = []
        self._version: int | None = None
        self._loaded_at = 0.0
        self._checked_at: datetime | None = None  # the clock's time of the last version read
        self._checked_mono = 0.0
        self._read_this_batch = False  # the version was read during the batch being handled (if any)
        self._in_batch = False

    # -- webhooks ---------------------------------------------------------------------------------

    def webhooks(self, event_time=None) -> list[Webhook]:
        """The webhooks, their version read by _id for every event newer than the last read (a
        webhook created since may be for it), and at most once a second for older ones (a
        backlog, imported history: a read per event was a third of this process's database
        work): a webhook created after the last read has ``created_at`` after such an event,
        so it would not take it anyway, and one changed or disabled is seen within a second.

        Read at most once a batch (:meth:`handle_events`): every event of a batch was published
        before the batch's first read, so a webhook created after that read is newer than all of
        them (a read per event was ~200 reads a second under load, 1.5 % of the stack's CPU)."""
        now = self.monotonic()
        fresh = self._version is not None and ((self._in_batch and self._read_this_batch) or (  # None: read again
            event_time is not None and self._checked_at is not None
            and event_time < self._checked_at - CLOCK_SKEW and now - self._checked_mono < VERSION_EVERY_S))
        if not fresh:
            version = self.store.webhooks_version()
            self._read_this_batch = True
            self._checked_at, self._checked_mono = self.clock.now(), now
            if version != self._version or now - self._loaded_at > RELOAD_S:
                self._webhooks = [Webhook.from_doc(d) for d in self.store.all_webhooks()]
                self._version, self._loaded_at = version, now
        return self._webhooks

    # -- one event --------------------------------------------------------------------------------

    def handle_batch(self, deliveries) -> None:
        """The consumer's batch handler (``shared.bus.consumer.Delivery``): :meth:`handle_events`."""
        self.handle_events([(d.envelope, d.payload) for d in deliveries])

    def handle(self, envelope: Envelope, payload: EventSchema) -> None:
        """One event: :meth:`handle_events`."""
        self.handle_events([(envelope, payload)])

    def handle_events(self, events: list[tuple[Envelope, EventSchema]]) -> None:
        """Events in order: the titles of the requests submitted among them remembered first, in
        one insert (history sends thousands), then each one's messages. Redelivered, they do
        nothing twice (the titles are there, each delivery is recorded once)."""
        submitted = [p.model_dump(mode="json") for e, p in events if e.type == "request.submitted"]
        self.store.remember_requests([(d["request_id"], d["title"], d["customer"]) for d in submitted])
        self._in_batch, self._read_this_batch = True, False  # the webhooks' version: read once for this batch (webhooks)
        try:
            for envelope, payload in events:
                self._notify(envelope, payload)
        finally:
            self._in_batch = False

    def _notify(self, envelope: Envelope, payload: EventSchema) -> None:
        if envelope.type not in EVENT_OF_TYPE:
            return
        at = as_utc(envelope.time)
        webhooks = [w for w in self.webhooks(at)
                    if w.enabled and EVENT_OF_TYPE[envelope.type].value in w.events and at >= w.created_at]
        if not webhooks:
            return  # nobody to tell (history from before every webhook included)
        data = payload.model_dump(mode="json")  # only for an event some webhook takes (most take none)
        if data.get("private"):
            return  # a private kudos is never sent (notice_for says so too): no need to wait for names
        self._wait_for_people(people_of(envelope.type, data), envelope.id)
        request = self.store.request(data["request_id"]) if envelope.type.startswith("request.") else None
        notice = notice_for(envelope.type, data, self.people.get, request, self.settings.public_base_url)
        if notice is None:
            return  # never sent to a channel (a private kudos, a hidden person)
        for webhook in webhooks:
            if matches(webhook, notice, at):
                self.deliver(webhook, envelope, notice)

    def _wait_for_people(self, ids: list[str], event_id: str) -> None:
        deadline = self.monotonic() + UNKNOWN_PERSON_WAIT_S
        while any(self.people.get(i) is None for i in ids):
            if self.monotonic() >= deadline:
                log.warning("a person the event names is unknown here; no message", extra={
                    "event_id": event_id, "unknown": [i for i in ids if self.people.get(i) is None]})
                return
            if self.stop_event.wait(0.2):
                raise Stopping("stopping while waiting for the people copy; the event is read again on the next start")

    def deliver(self, webhook: Webhook, envelope: Envelope, notice) -> None:
        body = encode_body(body_for(webhook.format, notice, envelope.to_dict()))
        delivery = self.store.open_delivery({
            "_id": delivery_id(webhook.id, envelope.id), "webhook_id": webhook.id, "event_id": envelope.id,
            "event_type": envelope.type, "event": notice.event.value, "subject": envelope.subject,
            "event_time": as_utc(envelope.time),
            "status": DeliveryStatus.PENDING.value, "attempts": 0, "created_at": self.clock.now(),
            "body": body.decode(), "response_status": None, "error": None,
        })
        if delivery["status"] != DeliveryStatus.PENDING.value:
            return  # done before (a redelivered event)
        body = delivery["body"].encode()  # the bytes stored first, even if names changed since
        headers = headers_for(webhook.secret, body, delivery["_id"], notice.event.value)
        attempts = int(delivery.get("attempts", 0))
        started = self.monotonic()
        while True:
            status, error = self._post(webhook.url, body, headers)
            attempts += 1
            now = self.clock.now()
            if status is not None and 200 <= status < 300:
                self.store.record_attempt(delivery["_id"], {
                    "status": DeliveryStatus.DELIVERED.value, "response_status": status, "error": None,
                    "last_attempt_at": now, "delivered_at": now})
                self.store.delivered_ok(webhook.id)
                log.info("webhook delivered", extra={"webhook_id": webhook.id, "delivery_id": delivery["_id"],
                                                     "event_id": envelope.id, "attempts": attempts})
                return
            pause = self.settings.webhook_backoff_ms / 1000 * 2 ** (attempts - 1)
            again = (retryable(status) and attempts < self.settings.webhook_max_attempts
                     and self.monotonic() + pause - started <= self.settings.webhook_retry_window_s)
            if not again:
                self.store.record_attempt(delivery["_id"], {
                    "status": DeliveryStatus.FAILED.value, "response_status": status, "error": error,
                    "last_attempt_at": now})
                disabled = self.store.delivery_failed(webhook, error, self.settings.webhook_disable_after, now)
                log.warning("webhook delivery failed", extra={
                    "webhook_id": webhook.id, "delivery_id": delivery["_id"], "event_id": envelope.id,
                    "attempts": attempts, "error": error, "webhook_disabled": disabled})
                if disabled:
                    self._version = None  # read the webhooks again before the next event
                return
            self.store.record_attempt(delivery["_id"], {"response_status": status, "error": error,
                                                        "last_attempt_at": now})
            log.info("webhook delivery will be retried", extra={
                "webhook_id": webhook.id, "delivery_id": delivery["_id"], "attempt": attempts, "error": error,
                "pause_s": pause})
            if self.stop_event.wait(pause):
                raise Stopping("stopping during a webhook retry; the delivery resumes on the next start")

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
        """POST once: (HTTP status or None, what went wrong or None)."""
        try:
            response = self.session.post(
                url, data=body, headers=headers, allow_redirects=False,
                timeout=(self.settings.webhook_connect_timeout_s, self.settings.webhook_read_timeout_s))
        except http.Timeout as exc:
            return None, f"timeout: {type(exc).__name__}"
        except http.RequestException as exc:
            return None, f"no answer: {type(exc).__name__}: {str(exc)[:300]}"
        response.close()
        if 200 <= response.status_code < 300:
            return response.status_code, None
        if 300 <= response.status_code < 400:
            return response.status_code, f"HTTP {response.status_code}: redirects are not followed"
        return response.status_code, f"HTTP {response.status_code}"
