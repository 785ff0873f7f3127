"""The notifications database: webhooks, deliveries, the requests' titles, the delivery lists.

Every read is by ``_id`` (our FerretDB answers nothing else from an index), except the list of
webhooks: a handful of documents an admin configures, never grown by history, read whole when
an admin lists them or when their version (``meta`` ``webhooks``) changed.

| collection | `_id` | what |
|---|---|---|
| `webhooks` | `wh_<hex>` | one webhook (url, events, format, department, secret, enabled, failures) |
| `meta` | `webhooks` | `v`: raised by every change of a webhook (delivery processes reload on a change) |
| `deliveries` | `dl_<hash of webhook and event>` | one event to one webhook: the exact body, status, attempts |
| `delivery_lists` | `wh:<webhook>` (head), `wh:<webhook>\\|<day>` | a webhook's deliveries, newest event first (`shared.feeds`) |
| `request_titles` | request id | title, customer (from `request.submitted`: later events do not carry them) |
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.database import Database

from shared.db import find_by_ids, insert_many_once, insert_once
from shared.errors import NotFound
from shared.feeds import DAY, Entry, FeedStore, in_order
from services.notifications.domain import Webhook

WEBHOOKS_META = "webhooks"


def _list(webhook_id: str) -> str:
    return f"wh:{webhook_id}"


def _found(doc: dict | None, webhook_id: str) -> dict:
    """The webhook as read or written; a missing one is NotFound."""
    if doc is None:
        raise NotFound("not_found", f"no webhook {webhook_id!r}")
    return doc


class Store:
    def __init__(self, db: Database):
        self.db = db
        self.webhooks = db["webhooks"]
        self.meta = db["meta"]
        self.deliveries = db["deliveries"]
        self.request_titles = db["request_titles"]
        self.lists = FeedStore(db["delivery_lists"], slots={"wh": DAY})

    # -- webhooks ---------------------------------------------------------------------------------

    def _changed(self) -> None:
        self.meta.update_one({"_id": WEBHOOKS_META}, {"$inc": {"v": 1}}, upsert=True)

    def webhooks_version(self) -> int:
        doc = self.meta.find_one({"_id": WEBHOOKS_META})
        return int(doc["v"]) if doc else 0

    def create_webhook(self, fields: dict[str, Any], now: datetime) -> dict:
        doc = {"_id": "wh_" + secrets.token_hex(8), **fields, "created_at": now, "updated_at": now,
               "enabled": True, "disabled_reason": None, "failures": 0}
        self.webhooks.insert_one(doc)
        self._changed()
        return doc

    def webhook(self, webhook_id: str) -> dict:
        return _found(self.webhooks.find_one({"_id": webhook_id}), webhook_id)

    def update_webhook(self, webhook_id: str, fields: dict[str, Any], now: datetime) -> dict:
        doc = _found(self.webhooks.find_one_and_update({"_id": webhook_id}, {"$set": {**fields, "updated_at": now}},
                                                       return_document=ReturnDocument.AFTER), webhook_id)
        self._changed()
        return doc

    def delete_webhook(self, webhook_id: str) -> dict:
        doc = _found(self.webhooks.find_one_and_delete({"_id": webhook_id}), webhook_id)
        self._changed()
        return doc

    def all_webhooks(self) -> list[dict]:
        """Every webhook (a configuration list: a scan of a few documents), oldest first."""
        return sorted(self.webhooks.find({}), key=lambda d: (d["created_at"], d["_id"]))

    def delivered_ok(self, webhook_id: str) -> None:
        self.webhooks.update_one({"_id": webhook_id, "failures": {"$ne": 0}}, {"$set": {"failures": 0}})

    def delivery_failed(self, webhook: Webhook, reason: str, disable_after: int, now: datetime) -> bool:
        """Count a failed delivery; disable the webhook when it failed ``disable_after`` times in a
        row. True if this disabled it."""
        doc = self.webhooks.find_one_and_update({"_id": webhook.id}, {"$inc": {"failures": 1}},
                                                return_document=ReturnDocument.AFTER)
        if doc is None or doc["failures"] < disable_after or not doc.get("enabled", True):
            return False
        self.webhooks.update_one({"_id": webhook.id, "enabled": True}, {"$set": {
            "enabled": False, "updated_at": now,
            "disabled_reason": f"disabled after {doc['failures']} failed deliveries in a row; the last: {reason}"}})
        self._changed()
        return True

    # -- deliveries -------------------------------------------------------------------------------

    def open_delivery(self, doc: dict) -> dict:
        """The delivery with this ``_id``: stored now (and put on its webhook's list), or as stored
        before (a redelivered event: its status says what is left to do)."""
        if insert_once(self.deliveries, doc):
            self.lists.add(_list(doc["webhook_id"]), Entry(doc["_id"], doc["event_time"]))
            return doc
        stored = self.deliveries.find_one({"_id": doc["_id"]})
        # Mends a list entry a crash left out (adding is idempotent).
        self.lists.add(_list(stored["webhook_id"]), Entry(stored["_id"], stored["event_time"]))
        return stored

    def record_attempt(self, delivery_id: str, fields: dict[str, Any]) -> None:
        self.deliveries.update_one({"_id": delivery_id}, {"$set": fields, "$inc": {"attempts": 1}})

    def deliveries_page(self, webhook_id: str, first: Any, after: str | None) -> dict:
        page = self.lists.page(_list(webhook_id), first, after)
        found = find_by_ids(self.deliveries, page["ids"], {"body": 0})
        return {**page, "items": in_order(page["ids"], found)}

    # -- requests' titles ---------------------------------------------------------------------------

    def remember_requests(self, requests: list[tuple[str, str, str]]) -> None:
        """Requests' titles and customers (id, title, customer), from their ``request.submitted``
        (once per request: a redelivery finds it there). Inserted, not upserted: an update costs
        FerretDB ~15 inserts, and an import of history sends 20,000 of these."""
        insert_many_once(self.request_titles, [{"_id": i, "title": t, "customer": c} for i, t, c in requests])

    def request(self, request_id: str) -> dict | None:
        return self.request_titles.find_one({"_id": request_id})
