"""Insights for managers (points service): a manager's team down the chain, or everyone for an
admin; decided by the points service on every call."""

from __future__ import annotations

import graphene

from services.gateway.calls import call_service
from services.gateway.people import Person
from services.gateway.types import Department, PageInfo, Period, enum_value


PAGE = 50  # reps, and people nobody thanked, per page unless the query says


class DepartmentInsights(graphene.ObjectType):
    """A department's queue in the period. Hours are business hours, to the histogram's bin
    (a quarter of an hour below 1 h, half an hour to 8 h, 2 h to 40 h, 10 h beyond)."""

    department = graphene.Field(Department, required=True)
    requests_received = graphene.Int(required=True)
    acknowledged = graphene.Int(required=True)
    delivered = graphene.Int(required=True)
    ack_median_hours = graphene.Float()
    ack_p90_hours = graphene.Float()
    deliver_median_hours = graphene.Float()
    deliver_p90_hours = graphene.Float()
    on_time_share = graphene.Float(description="Of the deliveries in the period.")
    rush_share = graphene.Float(description="Of the requests received.")
    rush_short_notice_share = graphene.Float(description="Rushes with under 24 business hours' notice, of the requests received.")
    info_loops_per_request = graphene.Float(description="Information requests per request received.")
    closed_loop_share = graphene.Float(description="Requests closed with an outcome after delivery, of the deliveries.")


class RepInsights(graphene.ObjectType):
    person = graphene.Field(Person)
    score = graphene.Int(required=True, description="Internal-selling points (the rep rules) in the period.")
    requests = graphene.Int(required=True)
    rush_share = graphene.Float(description="Rushes with under 24 business hours' notice, of their requests.")
    complete_brief_share = graphene.Float()
    deal_updates = graphene.Int(required=True)
    weeks_with_deal_update = graphene.Int(required=True, description="Regularity: weeks with at least one deal update.")

    def resolve_person(root, info):
        return call_service(lambda: info.context.person(root["person_id"]))


class ValueCount(graphene.ObjectType):
    value = graphene.String(required=True)
    count = graphene.Int(required=True)


class RecognitionInsights(graphene.ObjectType):
    people = graphene.Int(required=True)
    gave_share = graphene.Float(description="Share of the team who gave a kudos.")
    received_share = graphene.Float(description="Share of the team who received one.")
    kudos_per_person = graphene.Float(description="Kudos received per person.")
    top_values = graphene.List(graphene.NonNull(ValueCount), required=True, description="The values most thanked for.")
    unrecognized = graphene.List(graphene.NonNull(Person), required=True,
                                 description="People on the team with no kudos in the period, by name: a page "
                                             "(`insights(unrecognizedFirst:, unrecognizedAfter:)`).")
    unrecognized_count = graphene.Int(required=True, description="All of them, beyond the page.")
    unrecognized_page_info = graphene.Field(PageInfo, required=True)

    def resolve_unrecognized(root, info):
        ctx = info.context
        ctx.prime_people(root["unrecognized_ids"])
        return [p for p in (call_service(lambda i=i: ctx.person(i)) for i in root["unrecognized_ids"]) if p]


class Insights(graphene.ObjectType):
    period = graphene.Field(Period, required=True)
    key = graphene.String(required=True, description="The period, e.g. 2026-W48.")
    departments = graphene.List(graphene.NonNull(DepartmentInsights), required=True)
    reps = graphene.List(graphene.NonNull(RepInsights), required=True,
                         description="The team's reps, highest score first (then by name): a page "
                                     "(`insights(repsFirst:, repsAfter:)`).")
    reps_count = graphene.Int(required=True, description="All of the team's reps, beyond the page.")
    reps_page_info = graphene.Field(PageInfo, required=True)
    recognition = graphene.Field(RecognitionInsights, required=True)


class InsightsQueries(graphene.ObjectType):
    insights = graphene.Field(
        Insights, required=True, period=Period(required=True), department=Department(),
        reps_first=graphene.Int(default_value=PAGE, description=f"Reps per page (1-100, {PAGE} unless given)."),
        reps_after=graphene.String(description="The `repsPageInfo.endCursor` of the page before."),
        unrecognized_first=graphene.Int(default_value=PAGE, description=f"People per page (1-100, {PAGE} unless given)."),
        unrecognized_after=graphene.String(description="The `recognition.unrecognizedPageInfo.endCursor` of the page before."),
        description="The current period for your team (managers: the people below you; admins: everyone); "
                    "FORBIDDEN for anyone else. The reps and the people nobody thanked come a page at a time "
                    "(a company's admin sees thousands).")

    def resolve_insights(root, info, period, department=None, reps_first=PAGE, reps_after=None,
                         unrecognized_first=PAGE, unrecognized_after=None):
        ctx = info.context
        answer = call_service(lambda: ctx.services.points.get(
            "/insights", ctx.actor_id, period=enum_value(period), department=enum_value(department),
            reps_first=reps_first, reps_after=reps_after,
            unrecognized_first=unrecognized_first, unrecognized_after=unrecognized_after))
        ctx.remember_people(answer.get("people") or [])  # the points service's directory copy
        ctx.prime_people(r["person_id"] for r in answer["reps"])  # anyone it lacked
        return answer
