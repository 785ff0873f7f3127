"""The admin's use cases: register, change, remove and list webhooks, read their deliveries.

Every one is for admins only, decided here (the service that owns the data), whatever the
gateway checked before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifications.directory import PeopleCopy
from services.notifications.domain import UrlRules, new_secret, webhook_fields
from services.notifications.store import Store
from shared.auth import ADMIN_ROLE, caller
from shared.clock import Clock, utc
from shared.errors import Forbidden

VIEW_FIELDS = ("url", "events", "format", "department", "enabled", "disabled_reason", "failures", "created_at",
               "updated_at")
DELIVERY_FIELDS = ("webhook_id", "event_id", "event_type", "event", "subject", "event_time", "status", "attempts",
                   "response_status", "error", "created_at", "last_attempt_at", "delivered_at")


def _plain(value: Any) -> Any:
    return utc(value).isoformat() if isinstance(value, datetime) else value


def webhook_view(doc: dict) -> dict[str, Any]:
    """A webhook as an admin sees it: never its secret."""
    return {"id": doc["_id"], **{f: _plain(doc.get(f)) for f in VIEW_FIELDS}}


def delivery_view(doc: dict) -> dict[str, Any]:
    return {"id": doc["_id"], **{f: _plain(doc.get(f)) for f in DELIVERY_FIELDS}}


@dataclass
class WebhookAdmin:
    store: Store
    people: PeopleCopy
    rules: UrlRules
    clock: Clock

    def _admin(self, actor_id: str | None) -> None:
        person = caller(actor_id, self.people.get)
        if person.role != ADMIN_ROLE:
            raise Forbidden("admin_only", "only admins manage webhooks")

    def create(self, actor_id: str | None, body: dict) -> dict[str, Any]:
        """Register a webhook; with no secret given one is made, and returned here only, once."""
        self._admin(actor_id)
        fields = webhook_fields(body, self.rules, creating=True)
        generated = None
        if "secret" not in fields:
            generated = fields["secret"] = new_secret()
        doc = self.store.create_webhook(fields, self.clock.now())
        return {"webhook": webhook_view(doc), "generated_secret": generated}

    def update(self, actor_id: str | None, webhook_id: str, body: dict) -> dict[str, Any]:
        self._admin(actor_id)
        self.store.webhook(webhook_id)  # an unknown id is NOT_FOUND before any field is judged
        fields = webhook_fields(body, self.rules, creating=False)
        return {"webhook": webhook_view(self.store.update_webhook(webhook_id, fields, self.clock.now()))}

    def delete(self, actor_id: str | None, webhook_id: str) -> dict[str, Any]:
        self._admin(actor_id)
        return {"webhook": webhook_view(self.store.delete_webhook(webhook_id))}

    def get(self, actor_id: str | None, webhook_id: str) -> dict[str, Any]:
        self._admin(actor_id)
        return webhook_view(self.store.webhook(webhook_id))

    def list(self, actor_id: str | None) -> dict[str, Any]:
        self._admin(actor_id)
        return {"items": [webhook_view(d) for d in self.store.all_webhooks()]}

    def deliveries(self, actor_id: str | None, webhook_id: str, first: Any, after: str | None) -> dict[str, Any]:
        self._admin(actor_id)
        self.store.webhook(webhook_id)
        page = self.store.deliveries_page(webhook_id, first, after)
        return {"items": [delivery_view(d) for d in page["items"]], "cursors": page["cursors"],
                "page_info": page["page_info"], "total_count": page["total_count"]}
