"""Support requests: queries and the lifecycle mutations (the requests service). The GraphQL
type keeps the contract's name, ``SupportRequest``."""

from __future__ import annotations

import graphene
from graphql import GraphQLError

from services.gateway.calls import call_service, call_service_or_none, run_mutation
from services.gateway.clients import segment
from services.gateway.people import Person
from services.gateway.types import (
    DateTime, Department, Outcome, Priority, RequestKind, RequestStatus, UserError, connection_from_page, connection_types,
    enum_value, selects_any,
)


class TimelineEntry(graphene.ObjectType):
    id = graphene.ID(required=True)
    at = DateTime(required=True)
    actor = graphene.Field(Person, description="Null for the system (timers).")
    type = graphene.String(required=True, description="submitted, acknowledged, info_requested, deal_updated, ...")
    text = graphene.String()

    def resolve_actor(root, info):
        return call_service(lambda: info.context.person(root["actor_id"])) if root["actor_id"] != "system" else None


class SupportRequest(graphene.ObjectType):
    id = graphene.ID(required=True)
    number = graphene.Int(required=True)
    requester = graphene.Field(Person)
    department = graphene.Field(Department, required=True)
    kind = graphene.Field(RequestKind, required=True)
    title = graphene.String(required=True)
    details = graphene.String(required=True)
    customer = graphene.String(required=True)
    deal_name = graphene.String()
    deal_value = graphene.Float()
    commitment = graphene.String(description="What was committed to the customer.")
    needed_by = DateTime(required=True)
    priority = graphene.Field(Priority, required=True)
    rush_reason = graphene.String()
    status = graphene.Field(RequestStatus, required=True)
    outcome = graphene.Field(Outcome)
    assignees = graphene.List(graphene.NonNull(Person), required=True)
    submitted_at = DateTime(required=True)
    acknowledged_at = DateTime()
    delivered_at = DateTime()
    closed_at = DateTime()
    brief_complete = graphene.Boolean(required=True)
    brief_gaps = graphene.List(graphene.NonNull(graphene.String), required=True)
    timeline = graphene.List(graphene.NonNull(TimelineEntry), required=True)

    def resolve_requester(root, info):
        return call_service(lambda: info.context.person(root["requester_id"]))

    def resolve_assignees(root, info):
        return call_service(lambda: info.context.people_list(root["assignee_ids"]))

    def resolve_timeline(root, info):
        ctx = info.context
        if "timeline" not in root:  # lists carry no timeline: fetch it
            root = call_service(lambda: ctx.services.requests.get(f"/requests/{segment(root['id'])}", ctx.actor_id,
                                                                  people=_people_asked(info)))
            ctx.remember_people(root.pop("people", None) or [])
        call_service(lambda: ctx.prime_people(e["actor_id"] for e in root["timeline"] if e["actor_id"] != "system"))
        return root["timeline"]


SupportRequestConnection, SupportRequestEdge = connection_types(SupportRequest, "SupportRequest")


class RequestFilter(graphene.InputObjectType):
    requester_id = graphene.ID(description="A rep's requests, newest first.")
    department = Department(description="A queue, by needed-by.")
    status = RequestStatus()
    open = graphene.Boolean(description="Only open requests (submitted .. waiting on rep).")
    priority = Priority()
    assignee_id = graphene.ID()


class SubmitRequestInput(graphene.InputObjectType):
    kind = RequestKind(required=True)
    title = graphene.String(required=True)
    details = graphene.String(required=True)
    customer = graphene.String(required=True)
    deal_name = graphene.String()
    deal_value = graphene.Float()
    commitment = graphene.String(description="What was committed to the customer.")
    needed_by = DateTime(required=True)
    priority = Priority(default_value="normal")
    rush_reason = graphene.String()
    idempotency_key = graphene.String(description="Safe retries: the same key from you within 24 hours returns the first result instead of acting twice.")


class SubmitRequestPayload(graphene.ObjectType):
    request = graphene.Field(SupportRequest)
    errors = graphene.List(graphene.NonNull(UserError), required=True)


class RequestPayload(graphene.ObjectType):
    request = graphene.Field(SupportRequest)
    errors = graphene.List(graphene.NonNull(UserError), required=True)


def _prime_page(ctx, items) -> None:
    call_service(lambda: ctx.prime_people(pid for r in items for pid in [r["requester_id"], *r["assignee_ids"]]))


PERSON_FIELDS = {"requester", "assignees", "actor"}  # SupportRequest's and TimelineEntry's people


def _people_asked(info) -> str | None:
    """``people=true`` when the query shows people of the requests: the requests service sends
    them with the answer (it owns the directory), so a queue of 20 requesters is one call."""
    return "true" if selects_any(info, PERSON_FIELDS) else None


class RequestsQueries(graphene.ObjectType):
    request = graphene.Field(SupportRequest, id=graphene.ID(required=True))
    requests = graphene.Field(SupportRequestConnection, required=True, filter=RequestFilter(),
                              first=graphene.Int(), after=graphene.String())

    def resolve_request(root, info, id):
        ctx = info.context
        found = call_service_or_none(lambda: ctx.services.requests.get(f"/requests/{segment(id)}", ctx.actor_id,
                                                                        people=_people_asked(info)))
        if found is not None:
            ctx.remember_people(found.pop("people", None) or [])
            # Everyone it names, looked up in one call when the first name is read (none if none is).
            ctx.prime_people([found["requester_id"], *found["assignee_ids"],
                              *(e["actor_id"] for e in found.get("timeline") or () if e["actor_id"] != "system")])
        return found

    def resolve_requests(root, info, filter=None, first=None, after=None):
        ctx = info.context
        f = filter or {}
        page = call_service(lambda: ctx.services.requests.get(
            "/requests", ctx.actor_id, requester_id=f.get("requester_id"), department=enum_value(f.get("department")),
            status=enum_value(f.get("status")), open="true" if f.get("open") else None,
            priority=enum_value(f.get("priority")), assignee_id=f.get("assignee_id"), first=first, after=after,
            people=_people_asked(info)))
        ctx.remember_people(page.get("people") or [])
        _prime_page(ctx, page["items"])
        return connection_from_page(page)


def _command(name: str, path: str, **fields):
    """A lifecycle mutation: POST /requests/<id>/<path> with the given arguments."""
    arguments = {"id": graphene.ID(required=True), **fields}

    def mutate(root, info, id, **kwargs):
        ctx = info.context
        body = {k: enum_value(v) for k, v in kwargs.items()}
        return run_mutation("request", lambda: ctx.services.requests.post(f"/requests/{segment(id)}/{path}", ctx.actor_id, body))

    return type(name, (graphene.Mutation,), {
        "Arguments": type("Arguments", (), arguments),
        "Output": RequestPayload,
        "mutate": mutate,
    })


class SubmitRequest(graphene.Mutation):
    """File a support request to the department that handles its kind."""

    class Arguments:
        input = SubmitRequestInput(required=True)

    Output = SubmitRequestPayload

    def mutate(root, info, input):
        ctx = info.context
        body = {
            "kind": enum_value(input.kind), "title": input.title, "details": input.details, "customer": input.customer,
            "deal_name": input.deal_name, "deal_value": input.deal_value, "commitment": input.commitment,
            "needed_by": input.needed_by.isoformat(), "priority": enum_value(input.priority), "rush_reason": input.rush_reason,
            "idempotency_key": input.idempotency_key,
        }
        return run_mutation("request", lambda: ctx.services.requests.post("/requests", ctx.actor_id, body))


class RequestsMutations(graphene.ObjectType):
    submit_request = SubmitRequest.Field(required=True)
    acknowledge_request = _command("AcknowledgeRequest", "acknowledge").Field(required=True)
    start_request = _command("StartRequest", "start").Field(required=True)
    assign_request = _command("AssignRequest", "assign",
                              assignee_ids=graphene.List(graphene.NonNull(graphene.ID), required=True)).Field(required=True)
    request_info = _command("RequestInfo", "request-info", question=graphene.String(required=True)).Field(required=True)
    provide_info = _command("ProvideInfo", "provide-info", answer=graphene.String(required=True)).Field(required=True)
    post_deal_update = _command("PostDealUpdate", "deal-updates", text=graphene.String(required=True)).Field(required=True)
    deliver_request = _command("DeliverRequest", "deliver", note=graphene.String()).Field(required=True)
    close_request = _command("CloseRequest", "close", outcome=Outcome(required=True), note=graphene.String()).Field(required=True)
    cancel_request = _command("CancelRequest", "cancel", reason=graphene.String(required=True)).Field(required=True)
    comment_on_request = _command("CommentOnRequest", "comments", text=graphene.String(required=True)).Field(required=True)


def request_changed_refusal(ctx, request_id) -> dict | None:
    """Why ``requestChanged(id)`` may not start (a GraphQL error, formatted), or None. The
    requests service decides: a request the caller may not see answers exactly as an unknown
    id does (``NOT_FOUND``). Every pushed change is read as the caller again, so a request
    they stop seeing (a reassignment) stops arriving."""
    try:
        call_service(lambda: ctx.services.requests.get(f"/requests/{segment(request_id)}", ctx.actor_id))
    except GraphQLError as exc:
        return exc.formatted
    return None
