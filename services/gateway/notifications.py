"""Chat webhooks (notifications service), for admins only: the service decides, on every call."""

from __future__ import annotations

import graphene

from services.gateway.calls import call_service, run_mutation
from services.gateway.clients import segment
from services.gateway.types import (
    DateTime, DeliveryStatus, Department, UserError, WebhookEvent, WebhookFormat, connection_from_page,
    connection_types, enum_value,
)


class Webhook(graphene.ObjectType):
    """Where Inside Track posts events for a chat channel. Its secret is never shown."""

    id = graphene.ID(required=True)
    url = graphene.String(required=True)
    events = graphene.List(graphene.NonNull(WebhookEvent), required=True)
    department = graphene.Field(Department, description="Only events about this department's people or queue.")
    format = graphene.Field(WebhookFormat, required=True)
    enabled = graphene.Boolean(required=True)
    disabled_reason = graphene.String(description="Why it was switched off (deliveries kept failing).")
    failures = graphene.Int(required=True, description="Deliveries failed in a row.")
    created_at = DateTime(required=True)
    updated_at = DateTime(required=True)


class WebhookDelivery(graphene.ObjectType):
    """One event posted (or being posted) to one webhook."""

    id = graphene.ID(required=True, description="Sent as X-InsideTrack-Delivery; the same on every attempt.")
    webhook_id = graphene.ID(required=True)
    event_id = graphene.ID(required=True)
    event_type = graphene.String(required=True)
    event = graphene.Field(WebhookEvent, required=True)
    subject = graphene.ID(required=True)
    event_time = DateTime(required=True)
    status = graphene.Field(DeliveryStatus, required=True)
    attempts = graphene.Int(required=True)
    response_status = graphene.Int(description="The receiver's last HTTP status, if it answered.")
    error = graphene.String(description="What went wrong on the last attempt.")
    created_at = DateTime(required=True)
    last_attempt_at = DateTime()
    delivered_at = DateTime()


WebhookDeliveryConnection, WebhookDeliveryEdge = connection_types(WebhookDelivery, "WebhookDelivery")


class WebhookInput(graphene.InputObjectType):
    url = graphene.String(required=True, description="https:// (http:// only where the service allows it)")
    events = graphene.List(graphene.NonNull(WebhookEvent), required=True)
    department = Department()
    format = WebhookFormat(default_value="slack")
    secret = graphene.String(description="Signs every body (X-InsideTrack-Signature: sha256=<HMAC>); write-only. "
                             "Left out: one is made and returned once, in generatedSecret.")


class UpdateWebhookInput(graphene.InputObjectType):
    url = graphene.String()
    events = graphene.List(graphene.NonNull(WebhookEvent))
    department = Department()
    format = WebhookFormat()
    secret = graphene.String(description="A new secret (write-only).")
    enabled = graphene.Boolean(description="true switches a disabled webhook on again.")


class WebhookPayload(graphene.ObjectType):
    webhook = graphene.Field(Webhook)
    generated_secret = graphene.String(description="createWebhook without a secret: the one made for it, shown only here.")
    errors = graphene.List(graphene.NonNull(UserError), required=True)


def _fields(input, creating: bool) -> dict:
    body = {}
    for name in ("url", "secret", "enabled"):
        if input.get(name) is not None:
            body[name] = input[name]
    if input.get("events") is not None:
        body["events"] = [enum_value(e) for e in input["events"]]
    if input.get("format") is not None:
        body["format"] = enum_value(input["format"])
    if "department" in input or creating:
        body["department"] = enum_value(input.get("department"))
    return body


def _payload(out: dict) -> dict:
    answer = out["webhook"] or {}
    return {"webhook": answer.get("webhook"), "generated_secret": answer.get("generated_secret"), "errors": out["errors"]}


class CreateWebhook(graphene.Mutation):
    """Post events to a chat channel (admins)."""

    class Arguments:
        input = WebhookInput(required=True)

    Output = WebhookPayload

    def mutate(root, info, input):
        ctx = info.context
        return _payload(run_mutation("webhook", lambda: ctx.services.notifications.post(
            "/webhooks", ctx.actor_id, _fields(input, creating=True))))


class UpdateWebhook(graphene.Mutation):
    """Change a webhook's fields, or switch it on again (admins)."""

    class Arguments:
        id = graphene.ID(required=True)
        input = UpdateWebhookInput(required=True)

    Output = WebhookPayload

    def mutate(root, info, id, input):
        ctx = info.context
        return _payload(run_mutation("webhook", lambda: ctx.services.notifications.post(
            f"/webhooks/{segment(id)}", ctx.actor_id, _fields(input, creating=False))))


class DeleteWebhook(graphene.Mutation):
    """Stop posting to a webhook and remove it (admins)."""

    class Arguments:
        id = graphene.ID(required=True)

    Output = WebhookPayload

    def mutate(root, info, id):
        ctx = info.context
        return _payload(run_mutation("webhook", lambda: ctx.services.notifications.delete(
            f"/webhooks/{segment(id)}", ctx.actor_id)))


class NotificationsQueries(graphene.ObjectType):
    webhooks = graphene.List(graphene.NonNull(Webhook), required=True, description="Every webhook (admins).")
    webhook_deliveries = graphene.Field(WebhookDeliveryConnection, required=True, webhook_id=graphene.ID(required=True),
                                        first=graphene.Int(), after=graphene.String(),
                                        description="A webhook's deliveries, newest event first, failed ones "
                                                    "with the reason (admins).")

    def resolve_webhooks(root, info):
        ctx = info.context
        return call_service(lambda: ctx.services.notifications.get("/webhooks", ctx.actor_id))["items"]

    def resolve_webhook_deliveries(root, info, webhook_id, first=None, after=None):
        ctx = info.context
        page = call_service(lambda: ctx.services.notifications.get(
            f"/webhooks/{segment(webhook_id)}/deliveries", ctx.actor_id, first=first, after=after))
        return connection_from_page(page)


class NotificationsMutations(graphene.ObjectType):
    create_webhook = CreateWebhook.Field(required=True)
    update_webhook = UpdateWebhook.Field(required=True)
    delete_webhook = DeleteWebhook.Field(required=True)
