"""People: the directory (requests service) with points, badges and allowance (recognition)."""

from __future__ import annotations

import graphene
from graphql import FieldNode

from services.gateway.calls import call_service, private, run_mutation
from services.gateway.clients import segment
from services.gateway.types import (
    DateTime, Department, Period, Role, UserError, connection_from_page, connection_types, enum_value,
)


class PersonBadge(graphene.ObjectType):
    """A badge and how far the person is with it."""

    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    description = graphene.String(required=True)
    earned = graphene.Boolean(required=True)
    tier = graphene.String(description="The highest tier earned (null for single-tier badges).")
    level = graphene.Int(required=True, description="Progress counted so far.")
    next_tier = graphene.String()
    next_threshold = graphene.Int()
    progress = graphene.Float(required=True, description="0..1 towards the next tier.")
    awarded_at = DateTime()
    evidence_event_ids = graphene.List(graphene.NonNull(graphene.ID), required=True)

    def resolve_id(root, info):
        return root["badge"]


class KudosAllowance(graphene.ObjectType):
    monthly_allowance = graphene.Int(required=True)
    used = graphene.Int(required=True)
    left = graphene.Int(required=True)
    resets_at = DateTime(required=True)


class RushShare(graphene.ObjectType):
    """Of a rep's requests in the last 30 days, the share that were rush with under 24 business hours' notice."""

    days = graphene.Int(required=True)
    requests = graphene.Int(required=True)
    rush_short_notice = graphene.Int(required=True)
    share = graphene.Float()


class Person(graphene.ObjectType):
    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    email = graphene.String(required=True)
    role = graphene.Field(Role, required=True)
    department = graphene.Field(Department, required=True)
    title = graphene.String()
    active = graphene.Boolean(required=True)
    manager = graphene.Field(lambda: Person)
    points = graphene.Int(period=Period(required=True, default_value="week"),
                          description="Points in the current period (null while the points service is unavailable).")
    rank = graphene.Int(period=Period(required=True, default_value="week"), description="Company rank in the current period (null without points).")
    badges = graphene.List(graphene.NonNull(PersonBadge), description="Null while the points service is unavailable.")
    kudos_allowance = graphene.Field(KudosAllowance, description="Kudos left to give this month. Only for the person, "
                                     "their managers (up the chain) and admins; null for anyone else.")
    rush_share = graphene.Field(RushShare, description="Reps only. Only for the person, their managers (up the chain) "
                                "and admins; null for anyone else.")
    leaderboard_visible = graphene.Boolean(required=True, description=(
        "False when the person keeps themselves off the leaderboards (`setLeaderboardVisibility`): still scored, "
        "left out of everyone else's leaderboards and screens; `rank` is then null for anyone but them. Public."))

    def resolve_manager(root, info):
        return info.context.person(root.get("manager_id"))

    def resolve_points(root, info, period="week"):
        return call_service(lambda: info.context.summary(root["id"]))["periods"][enum_value(period)]["points"]

    def resolve_rank(root, info, period="week"):
        return call_service(lambda: info.context.summary(root["id"]))["periods"][enum_value(period)]["rank"]

    def resolve_badges(root, info):
        return call_service(lambda: info.context.summary(root["id"]))["badges"]

    def resolve_rush_share(root, info):
        return call_service(lambda: info.context.summary(root["id"]))["rush_share"]

    def resolve_leaderboard_visible(root, info):
        return not root.get("hidden")

    def resolve_kudos_allowance(root, info):
        return private(lambda: info.context.allowance(root["id"]))


PersonConnection, PersonEdge = connection_types(Person, "Person")


class PersonInput(graphene.InputObjectType):
    email = graphene.String(required=True)
    name = graphene.String(required=True)
    role = Role(required=True)
    department = Department(required=True)
    title = graphene.String()
    manager_id = graphene.ID()
    active = graphene.Boolean(default_value=True)


class PersonPayload(graphene.ObjectType):
    person = graphene.Field(Person)
    errors = graphene.List(graphene.NonNull(UserError), required=True)


class LeaderboardVisibilityPayload(graphene.ObjectType):
    person = graphene.Field(Person, description="The person (the caller) as changed; null with errors.")
    leaderboard_visible = graphene.Boolean(description="The setting now; null with errors.")
    errors = graphene.List(graphene.NonNull(UserError), required=True)


class ImportError_(graphene.ObjectType):
    class Meta:
        name = "ImportRowError"

    line = graphene.Int(required=True)
    field = graphene.String()
    code = graphene.String(required=True)
    message = graphene.String(required=True)


class ImportPeoplePayload(graphene.ObjectType):
    created = graphene.Int()
    updated = graphene.Int()
    row_errors = graphene.List(graphene.NonNull(ImportError_), required=True, description="Bad rows, by line; the good rows were imported.")
    errors = graphene.List(graphene.NonNull(UserError), required=True)


_SUMMARY_FIELDS = {"points", "rank", "badges", "rushShare"}


def _prefetch(info, person_id: str) -> None:
    """Start the person's summary and allowance calls beside the directory lookup, if the
    query asks for them (fields written directly under ``me``/``person``; behind a fragment,
    they are called when resolved, as before)."""
    names = {sel.name.value for node in info.field_nodes for sel in (node.selection_set.selections if node.selection_set else [])
             if isinstance(sel, FieldNode)}
    info.context.prefetch(person_id, summary=bool(names & _SUMMARY_FIELDS), allowance="kudosAllowance" in names)


class PeopleQueries(graphene.ObjectType):
    me = graphene.Field(Person, description="The signed-in person.")
    person = graphene.Field(Person, id=graphene.ID(required=True))
    people = graphene.Field(PersonConnection, required=True, search=graphene.String(), department=Department(),
                            role=Role(), first=graphene.Int(), after=graphene.String())

    def resolve_me(root, info):
        _prefetch(info, info.context.actor_id)
        return call_service(lambda: info.context.person(info.context.actor_id))

    def resolve_person(root, info, id):
        _prefetch(info, id)
        return call_service(lambda: info.context.person(id))

    def resolve_people(root, info, search=None, department=None, role=None, first=None, after=None):
        ctx = info.context
        page = call_service(lambda: ctx.services.requests.get(
            "/people", ctx.actor_id, search=search, department=enum_value(department), role=enum_value(role),
            first=first, after=after))
        for person in page["items"]:
            ctx.people[person["id"]] = person
        return connection_from_page(page)


class UpsertPerson(graphene.Mutation):
    """Create or update a person by email (admins only)."""

    class Arguments:
        input = PersonInput(required=True)

    Output = PersonPayload

    def mutate(root, info, input):
        ctx = info.context
        body = {"email": input.email, "name": input.name, "role": enum_value(input.role),
                "department": enum_value(input.department), "title": input.title,
                "manager_id": input.manager_id, "active": input.active}
        return run_mutation("person", lambda: ctx.services.requests.post("/people", ctx.actor_id, body))


class ImportPeople(graphene.Mutation):
    """Import people from CSV (header: email,name,role,department[,title,manager_email,active]); admins only."""

    class Arguments:
        csv = graphene.String(required=True)

    Output = ImportPeoplePayload

    def mutate(root, info, csv):
        ctx = info.context
        result = run_mutation("report", lambda: ctx.services.requests.post("/people/import", ctx.actor_id, {"csv": csv}))
        report = result["report"] or {}
        return {"created": report.get("created"), "updated": report.get("updated"),
                "row_errors": report.get("errors", []), "errors": result["errors"]}


class SetLeaderboardVisibility(graphene.Mutation):
    """Keep yourself off everyone else's leaderboards and the office screens (`visible: false`), or
    come back (`true`). For the signed-in person only; still scored, and your own `me`, `rank` and
    `leaderboard { me }` still show your points and rank (among the people on the boards)."""

    class Arguments:
        visible = graphene.Boolean(required=True)

    Output = LeaderboardVisibilityPayload

    def mutate(root, info, visible):
        ctx = info.context
        result = run_mutation("person", lambda: ctx.services.requests.post(
            f"/people/{segment(ctx.actor_id)}/leaderboard-visibility", ctx.actor_id, {"visible": visible}))
        person = result["person"]
        if person is not None:
            ctx.people[person["id"]] = person  # the answer is the stored person: no second lookup
        return {**result, "leaderboard_visible": None if person is None else not person.get("hidden")}


class PeopleMutations(graphene.ObjectType):
    upsert_person = UpsertPerson.Field(required=True)
    set_leaderboard_visibility = SetLeaderboardVisibility.Field(required=True)
    import_people = ImportPeople.Field(required=True)
