"""Leaderboards and badge definitions (points service)."""

from __future__ import annotations

import graphene

from services.gateway.calls import call_service
from services.gateway.people import Person
from services.gateway.types import Department, Period, Role, Scope, enum_value


class LeaderboardEntry(graphene.ObjectType):
    rank = graphene.Int(required=True, description="Competition ranking: ties share a rank (1, 2, 2, 4).")
    person = graphene.Field(Person)
    points = graphene.Int(required=True)
    movement = graphene.Int(description="Places gained since the previous period (negative: lost); null if new.")

    def resolve_person(root, info):
        return call_service(lambda: info.context.person(root["person_id"]))


class MyRank(graphene.ObjectType):
    rank = graphene.Int(description="Null without points in this period.")
    points = graphene.Int(required=True)


class Leaderboard(graphene.ObjectType):
    period = graphene.Field(Period, required=True)
    key = graphene.String(required=True, description="The period, e.g. 2026-W48, 2026-11, 2026-Q4, all.")
    scope = graphene.Field(Scope, required=True)
    department = graphene.Field(Department)
    role = graphene.Field(Role)
    entries = graphene.List(graphene.NonNull(LeaderboardEntry), required=True)
    me = graphene.Field(MyRank)
    total_count = graphene.Int(required=True)
    previous = graphene.Field(lambda: Leaderboard, description=(
        "The previous period's final board, same scope and size (null for ALL): what a screen shows, "
        "labelled, while this period has no points yet (a Monday morning, a new month)."))

    def resolve_previous(root, info):
        if root.get("period") == "all" or root.get("is_previous"):
            return None
        return _board(info, root["period"], root["scope"], root.get("department"), root.get("role"),
                      root.get("first", 10), previous=True)


def _board(info, period, scope, department, role, first, previous: bool = False) -> dict:
    ctx = info.context
    board = call_service(lambda: ctx.services.points.get(
        "/leaderboard", ctx.actor_id, period=period, scope=scope, department=department, role=role, first=first,
        me=ctx.actor_id, **({"previous": "true"} if previous else {})))
    ctx.remember_people(e.get("person") for e in board["entries"])  # the points service's directory copy
    call_service(lambda: ctx.prime_people(e["person_id"] for e in board["entries"]))  # anyone it lacked
    return {**board, "first": first, "is_previous": previous}


class BadgeTier(graphene.ObjectType):
    tier = graphene.String()
    threshold = graphene.Int(required=True)


class BadgeDefinition(graphene.ObjectType):
    id = graphene.ID(required=True)
    name = graphene.String(required=True)
    description = graphene.String(required=True)
    tiers = graphene.List(graphene.NonNull(BadgeTier), required=True)

    def resolve_id(root, info):
        return root["badge"]


class PointsQueries(graphene.ObjectType):
    leaderboard = graphene.Field(Leaderboard, required=True, period=Period(required=True), scope=Scope(default_value="company"),
                                 department=Department(), role=Role(), first=graphene.Int(default_value=10))
    badge_definitions = graphene.List(graphene.NonNull(BadgeDefinition), required=True)

    def resolve_leaderboard(root, info, period, scope="company", department=None, role=None, first=10):
        return _board(info, enum_value(period), enum_value(scope), enum_value(department), enum_value(role), first)

    def resolve_badge_definitions(root, info):
        ctx = info.context
        return call_service(lambda: ctx.services.points.get("/badges", ctx.actor_id))["badges"]
