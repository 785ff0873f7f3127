"""The authorization matrix (issue 19, docs/security.md).

Every root field (Query, Subscription), every object type they reach and every field of
``Person`` is classified below; a new one fails :func:`test_everything_reachable_is_in_the_matrix`
until someone decides who may see it. Then every rule is run against the real processes for
each role -- the owner, a peer, their manager, support of the right and of another department,
an admin, a screen token (signed by an admin), a deactivated person -- on objects they own and
objects they don't.
"""

from __future__ import annotations

import json

import pytest
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType

from services.gateway.auth import issue_token
from services.gateway.schema import schema
from tests.integration.gateway_system import GraphQL, running_system
from tests.integration.test_gateway import SUBMIT, _init, _recv, _ws, brief

pytestmark = pytest.mark.integration

# Root fields -> the rule that guards them (docs/security.md).
ROOT_FIELDS = {
    "Query.me": "self", "Query.person": "public", "Query.people": "public", "Query.leaderboard": "public",
    "Query.badgeDefinitions": "public", "Query.companyValues": "public", "Query.request": "request", "Query.requests": "request",
    "Query.kudos": "kudos", "Query.kudosFeed": "kudos",
    "Subscription.kudosGiven": "kudos", "Subscription.leaderboardChanged": "public",
    "Subscription.badgeAwarded": "public", "Subscription.requestChanged": "request",
    "Query.webhooks": "admin", "Query.webhookDeliveries": "admin", "Query.insights": "team",
}
# Every object type reachable from them -> the rule its values fall under.
TYPES = {
    "Person": "public (but PRIVATE_PERSON_FIELDS)", "PersonConnection": "public", "PersonEdge": "public",
    "PageInfo": "public", "PersonBadge": "public", "KudosAllowance": "private", "RushShare": "private",
    "SupportRequest": "request", "SupportRequestConnection": "request", "SupportRequestEdge": "request",
    "TimelineEntry": "request", "Kudos": "kudos", "KudosConnection": "kudos", "KudosEdge": "kudos",
    "KudosAddOn": "kudos", "Leaderboard": "public", "LeaderboardEntry": "public", "MyRank": "public",
    "BadgeDefinition": "public", "BadgeTier": "public", "BadgeAward": "public",
    "Webhook": "admin", "WebhookDelivery": "admin", "WebhookDeliveryConnection": "admin", "WebhookDeliveryEdge": "admin",
    "Insights": "team", "DepartmentInsights": "team", "RepInsights": "team", "RecognitionInsights": "team",
    "ValueCount": "team",
}
PRIVATE_PERSON_FIELDS = {"kudosAllowance", "rushShare"}
PUBLIC_PERSON_FIELDS = {"id", "name", "email", "role", "department", "title", "active", "manager", "points", "rank", "badges",
                        "leaderboardVisible"}


def _named(type_):
    while isinstance(type_, (GraphQLNonNull, GraphQLList)):
        type_ = type_.of_type
    return type_


def test_everything_reachable_is_in_the_matrix():
    graphql_schema = schema.graphql_schema
    roots = {f"{root.name}.{name}" for root in (graphql_schema.query_type, graphql_schema.subscription_type)
             for name in root.fields}
    assert roots == set(ROOT_FIELDS), "classify every root field in ROOT_FIELDS (docs/security.md)"
    seen, todo = set(), [graphql_schema.query_type, graphql_schema.subscription_type]
    while todo:
        for field in todo.pop().fields.values():
            named = _named(field.type)
            if isinstance(named, GraphQLObjectType) and named.name not in seen:
                seen.add(named.name)
                todo.append(named)
    seen -= {"Query", "Subscription"}
    assert seen == set(TYPES), f"classify these types in TYPES: {sorted(seen ^ set(TYPES))}"
    person = set(graphql_schema.get_type("Person").fields)
    assert person == PRIVATE_PERSON_FIELDS | PUBLIC_PERSON_FIELDS, sorted(person ^ (PRIVATE_PERSON_FIELDS | PUBLIC_PERSON_FIELDS))


EXTRA_PEOPLE = """email,name,role,department,title,manager_email
lea@example.com,Léa Legal,support,legal,Counsel,
gone@example.com,Gone Rep,rep,sales,Account Executive,mona@example.com
"""
# Who may see Rita's request, Rita's private kudos to Pía, and Rita's allowance and rush share.
ROLES = ("rita", "jonas", "mona", "pia", "lea", "admin", "screen")
SEES = {
    "request": {"rita", "mona", "pia", "admin"},
    "kudos": {"rita", "pia", "mona", "admin"},
    "private": {"rita", "mona", "admin"},
    "public": set(ROLES),
}


@pytest.fixture(scope="module")
def world(stack_settings):
    from tests.integration.conftest import isolated_settings
    from tests.conftest import wait_until

    with isolated_settings(stack_settings) as settings, running_system(settings) as system:
        admin = system["as_admin"]
        imported = admin('mutation($csv: String!) { importPeople(csv: $csv) { created } }', {"csv": EXTRA_PEOPLE}).json()
        assert imported["data"]["importPeople"]["created"] == 2, imported
        people = system["refresh_people"]()
        clients = {name: system["as"](name) for name in ("rita", "jonas", "mona", "pia", "lea", "gone")}
        clients["admin"] = admin
        clients["screen"] = GraphQL(system["url"], issue_token(system["settings"], system["admin_id"], "admin@example.com",
                                                                "admin", screen=True))
        rita = clients["rita"]
        rid = rita(SUBMIT, {"input": brief(title="Rita's deal")}).json()["data"]["submitRequest"]["request"]["id"]
        assert wait_until(lambda: rita("{ me { kudosAllowance { left } } }").json()["data"]["me"]["kudosAllowance"], 30)
        kudos = rita('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "Thanks", private: true}) '
                     '{ kudos { id } errors { code } } }', {"to": [people["pia"]["id"]]}).json()
        kid = kudos["data"]["giveKudos"]["kudos"]["id"]
        gone = admin('mutation($i: PersonInput!) { upsertPerson(input: $i) { errors { code } } }',
                     {"i": {"email": "gone@example.com", "name": "Gone Rep", "role": "REP", "department": "SALES",
                            "active": False}}).json()
        assert gone["data"]["upsertPerson"]["errors"] == []
        # The gateway learns of the deactivation from the people topic (docs/security.md): refused
        # once its event has arrived.
        assert wait_until(lambda: clients["gone"]("{ me { name } }").status_code == 403, 30)
        yield {"system": system, "clients": clients, "people": people, "request": rid, "kudos": kid}


def _data(client, query, variables=None):
    answer = client(query, variables or {}).json()
    assert "errors" not in answer, answer
    return answer["data"]


CHECKS = {
    "request": [
        ("query($id: ID!) { request(id: $id) { id timeline { type } } }", lambda d, w: d["request"] is not None),
        ("{ requests(first: 100) { edges { node { id } } } }",
         lambda d, w: w["request"] in {e["node"]["id"] for e in d["requests"]["edges"]}),
    ],
    "kudos": [
        ("query($id: ID!) { kudos(id: $id) { id } }", lambda d, w: d["kudos"] is not None),
        ("query($p: ID) { kudosFeed(personId: $p, first: 100) { edges { node { id } } } }",
         lambda d, w: w["kudos"] in {e["node"]["id"] for e in d["kudosFeed"]["edges"]}),
    ],
    "private": [
        ("query($r: ID!) { person(id: $r) { kudosAllowance { left } } }", lambda d, w: d["person"]["kudosAllowance"] is not None),
        ("query($r: ID!) { person(id: $r) { rushShare { requests } } }", lambda d, w: d["person"]["rushShare"] is not None),
    ],
    "public": [
        ("query($r: ID!) { person(id: $r) { name points rank badges { name } leaderboardVisible } }",
         lambda d, w: d["person"]["name"] == "Rita Okafor" and d["person"]["leaderboardVisible"] is True),
        ("{ people(first: 5) { totalCount } }", lambda d, w: d["people"]["totalCount"] > 0),
        ("{ leaderboard(period: WEEK) { key } badgeDefinitions { name } }", lambda d, w: bool(d["badgeDefinitions"])),
        ("{ companyValues }", lambda d, w: "teamwork" in d["companyValues"]),
    ],
}


@pytest.mark.parametrize("rule", sorted(CHECKS))
def test_each_role_sees_what_the_rules_give_it(world, rule):
    variables = {"id": None, "p": world["people"]["pia"]["id"], "r": world["people"]["rita"]["id"]}
    variables["id"] = world["request"] if rule == "request" else world["kudos"]
    for role in ROLES:
        for query, sees in CHECKS[rule]:
            used = {k: v for k, v in variables.items() if f"${k}" in query}
            assert sees(_data(world["clients"][role], query, used), world) == (role in SEES[rule]), (rule, role, query)
    # A deactivated person gets nothing at all, whatever the field.
    for query, _ in CHECKS[rule]:
        answer = world["clients"]["gone"](query, {k: v for k, v in variables.items() if f"${k}" in query})
        assert answer.status_code == 403 and "data" not in answer.json()


def test_subscriptions_start_for_who_may_see_what_they_follow(world):
    subscriptions = {
        "requestChanged": ("subscription($id: ID!) { requestChanged(id: $id) { id } }", {"id": world["request"]}, "request"),
        "kudosGiven": ("subscription { kudosGiven { id } }", {}, "public"),
        "leaderboardChanged": ("subscription { leaderboardChanged(period: WEEK) { key } }", {}, "public"),
        "badgeAwarded": ("subscription { badgeAwarded { name } }", {}, "public"),
    }
    assert {f"Subscription.{name}" for name in subscriptions} == {k for k in ROOT_FIELDS if k.startswith("Subscription.")}
    for role in ROLES:
        ws = _ws(world["system"])
        try:
            _init(ws, world["clients"][role].token)
            for name, (query, variables, _) in subscriptions.items():
                ws.send(json.dumps({"id": name, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            ws.send(json.dumps({"type": "ping"}))
            refused = set()
            while (message := _recv(ws)) != {"type": "pong"}:
                assert message["type"] == "error", message
                assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND"
                refused.add(message["id"])
            expected = {name for name, (_, _, rule) in subscriptions.items() if role not in SEES[rule]}
            assert refused == expected, role
        finally:
            ws.close()


def test_insights_are_for_managers_of_the_team_and_admins(world):
    """The "team" rule: a manager reads their team's insights, an admin everyone's; anyone else,
    and a screen token an admin signed, gets FORBIDDEN (not an empty answer)."""
    query = "{ insights(period: WEEK) { key reps { person { name } } } }"
    for role in ROLES:
        answer = world["clients"][role](query).json()
        if role in {"mona", "admin"}:
            reps = {r["person"]["name"] for r in answer["data"]["insights"]["reps"]}
            assert "Rita Okafor" in reps and (role == "admin" or reps <= {"Rita Okafor", "Jonas Weiß", "Gone Rep"}), (role, reps)
        else:
            assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN", (role, answer)
