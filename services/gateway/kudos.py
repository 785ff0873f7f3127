"""Kudos: the feed, giving, add-ons (kudos service); cards are proxied at /cards/."""

from __future__ import annotations

import graphene

from services.gateway.calls import call_service, call_service_or_none, run_mutation
from services.gateway.clients import segment
from services.gateway.people import Person
from services.gateway.requests import SupportRequest
from services.gateway.types import (
    DateTime, Gesture, KudosDirection, UserError, connection_from_page, connection_types, enum_value,
)


class KudosAddOn(graphene.ObjectType):
    actor = graphene.Field(Person)
    message = graphene.String()
    at = DateTime(required=True)

    def resolve_actor(root, info):
        return call_service(lambda: info.context.person(root["actor_id"]))


class Kudos(graphene.ObjectType):
    id = graphene.ID(required=True)
    giver = graphene.Field(Person)
    recipients = graphene.List(graphene.NonNull(Person), required=True)
    message = graphene.String(required=True)
    values = graphene.List(graphene.NonNull(graphene.String), required=True)
    gesture = graphene.Field(Gesture, required=True)
    request = graphene.Field(SupportRequest, description="The request this kudos thanks for, if any (null for anyone who may not see it).")
    created_at = DateTime(required=True)
    add_ons = graphene.List(graphene.NonNull(KudosAddOn), required=True)
    add_on_count = graphene.Int(required=True)
    private = graphene.Boolean(required=True, description="Seen only by the giver, the recipients, their managers "
                               "and admins; never in the company feed or on the screen (still scored).")
    card_url = graphene.String(required=True, description="The 1200x630 card image (PNG); a private kudos's link "
                               "works only as given here.")
    thumbnail_url = graphene.String(required=True, description="A 400x210 thumbnail (PNG).")

    def resolve_giver(root, info):
        return call_service(lambda: info.context.person(root["giver_id"]))

    def resolve_recipients(root, info):
        return call_service(lambda: info.context.people_list(root["recipient_ids"]))

    def resolve_request(root, info):
        ctx = info.context
        if not root.get("request_id"):
            return None
        return call_service_or_none(lambda: ctx.services.requests.get(f"/requests/{segment(root['request_id'])}", ctx.actor_id))

    def resolve_card_url(root, info):
        return info.context.card_url(root["card_url"])

    def resolve_thumbnail_url(root, info):
        return info.context.card_url(root["thumbnail_url"])


KudosConnection, KudosEdge = connection_types(Kudos, "Kudos")


class GiveKudosInput(graphene.InputObjectType):
    to = graphene.List(graphene.NonNull(graphene.ID), required=True)
    message = graphene.String(required=True)
    values = graphene.List(graphene.NonNull(graphene.String))
    gesture = Gesture(default_value="thanks")
    request_id = graphene.ID()
    private = graphene.Boolean(default_value=False, description="Only the giver, the recipients, their managers and "
                               "admins see it; still scored.")
    idempotency_key = graphene.String(description="Safe retries: the same key from you within 24 hours returns the first result instead of acting twice.")


class GiveKudosPayload(graphene.ObjectType):
    kudos = graphene.Field(Kudos)
    errors = graphene.List(graphene.NonNull(UserError), required=True)


def read_kudos(ctx, kudos_id: str) -> dict:
    """One kudos as the caller may see it (a private one: 404 to anyone else; a screen token
    reads as the public: ``RequestContext.read_only``)."""
    return ctx.services.kudos.get(f"/kudos/{segment(kudos_id)}", ctx.actor_id)


def _prime(ctx, items) -> None:
    call_service(lambda: ctx.prime_people(
        pid for k in items for pid in [k["giver_id"], *k["recipient_ids"], *(a["actor_id"] for a in k["add_ons"])]))


class KudosQueries(graphene.ObjectType):
    kudos = graphene.Field(Kudos, id=graphene.ID(required=True))
    kudos_feed = graphene.Field(KudosConnection, required=True, person_id=graphene.ID(), direction=KudosDirection(),
                                first=graphene.Int(), after=graphene.String())
    company_values = graphene.List(graphene.NonNull(graphene.String), required=True,
                                   description="The company values a kudos may name (GiveKudosInput.values), in their order.")

    def resolve_company_values(root, info):
        ctx = info.context
        return call_service(lambda: ctx.services.kudos.get("/values", ctx.actor_id))["values"]

    def resolve_kudos(root, info, id):
        ctx = info.context
        return call_service_or_none(lambda: read_kudos(ctx, id))

    def resolve_kudos_feed(root, info, person_id=None, direction=None, first=None, after=None):
        ctx = info.context
        page = call_service(lambda: ctx.services.kudos.get(
            "/kudos", ctx.actor_id, person_id=person_id, direction=enum_value(direction), first=first, after=after))
        ctx.remember_people(page.get("people") or [])  # the kudos service's directory copy
        _prime(ctx, page["items"])  # anyone it lacked
        return connection_from_page(page)


class GiveKudos(graphene.Mutation):
    """Thank one or more colleagues (each recipient spends one of your monthly allowance)."""

    class Arguments:
        input = GiveKudosInput(required=True)

    Output = GiveKudosPayload

    def mutate(root, info, input):
        ctx = info.context
        body = {"to": input.to, "message": input.message, "values": input.values or [],
                "gesture": enum_value(input.gesture), "request_id": input.request_id, "private": bool(input.private),
                "idempotency_key": input.idempotency_key}
        return run_mutation("kudos", lambda: ctx.services.kudos.post("/kudos", ctx.actor_id, body))


class AddOnKudos(graphene.Mutation):
    """+1 a colleague's kudos (not your own, once)."""

    class Arguments:
        id = graphene.ID(required=True)
        message = graphene.String()
        idempotency_key = graphene.String(description="Safe retries: the same key from you within 24 hours returns the first result instead of acting twice.")

    Output = GiveKudosPayload

    def mutate(root, info, id, message=None, idempotency_key=None):
        ctx = info.context
        body = {"message": message, "idempotency_key": idempotency_key}
        return run_mutation("kudos", lambda: ctx.services.kudos.post(f"/kudos/{segment(id)}/add-ons", ctx.actor_id, body))


class KudosMutations(graphene.ObjectType):
    give_kudos = GiveKudos.Field(required=True)
    add_on_kudos = AddOnKudos.Field(required=True)
