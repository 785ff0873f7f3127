"""The public GraphQL schema: the per-domain parts combined (names fixed by the contract)."""

from __future__ import annotations

import graphene

from services.gateway.kudos import KudosMutations, KudosQueries
from services.gateway.people import PeopleMutations, PeopleQueries
from services.gateway.points import PointsQueries
from services.gateway.support import SupportMutations, SupportQueries


class Query(PeopleQueries, SupportQueries, KudosQueries, PointsQueries, graphene.ObjectType):
    """Everything the intranet portal can read. Every field needs a signed-in person."""


class Mutation(PeopleMutations, SupportMutations, KudosMutations, graphene.ObjectType):
    """Every change; business-rule refusals come back in each payload's `errors`."""


schema = graphene.Schema(query=Query, mutation=Mutation)
