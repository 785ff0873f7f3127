"""Internal HTTP API of the notifications service (the gateway calls it for admins).

| method, path | what |
|---|---|
| `GET /webhooks` | every webhook (no secrets) |
| `POST /webhooks` | register: `{url, events, format, department, secret}`; answers `{webhook, generated_secret}` |
| `GET /webhooks/<id>` | one webhook |
| `POST /webhooks/<id>` | change the fields given (and `enabled`: true switches a disabled one on again) |
| `DELETE /webhooks/<id>` | remove it (its deliveries stay in the database) |
| `GET /webhooks/<id>/deliveries?first=&after=` | its deliveries, newest first (a page) |

Refusals: the one error shape (`shared/errors.py`): `400 invalid_url | url_not_https |
host_not_allowed | no_events | unknown_event | unknown_format | unknown_department |
invalid_secret | invalid_enabled`, `403 admin_only`, `404 not_found`.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from services.notifications.handlers import WebhookAdmin
from shared.auth import reads_as_public
from shared.errors import Forbidden
from shared.web import json_body

notifications_api = Blueprint("notifications_api", __name__)


def _admin() -> WebhookAdmin:
    if reads_as_public():  # a read-only (screen) token, even an admin's, sees no webhook
        raise Forbidden("admin_only", "only admins manage webhooks")
    return current_app.extensions["webhook_admin"]


@notifications_api.get("/webhooks")
def list_webhooks():
    return jsonify(_admin().list(g.get("actor_id")))


@notifications_api.post("/webhooks")
def create_webhook():
    return jsonify(_admin().create(g.get("actor_id"), json_body())), 201


@notifications_api.get("/webhooks/<webhook_id>")
def get_webhook(webhook_id: str):
    return jsonify(_admin().get(g.get("actor_id"), webhook_id))


@notifications_api.post("/webhooks/<webhook_id>")
def update_webhook(webhook_id: str):
    return jsonify(_admin().update(g.get("actor_id"), webhook_id, json_body()))


@notifications_api.delete("/webhooks/<webhook_id>")
def delete_webhook(webhook_id: str):
    return jsonify(_admin().delete(g.get("actor_id"), webhook_id))


@notifications_api.get("/webhooks/<webhook_id>/deliveries")
def deliveries(webhook_id: str):
    return jsonify(_admin().deliveries(g.get("actor_id"), webhook_id, request.args.get("first"),
                                       request.args.get("after")))
