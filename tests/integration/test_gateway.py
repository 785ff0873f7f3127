"""The GraphQL gateway in front of the real requests, kudos and points services."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
import requests as http
from PIL import Image

from services.gateway.app import create_app as create_gateway
from services.gateway.auth import issue_token
from services.gateway.config import GatewaySettings
from shared.config import PROJECT_ROOT
from shared.db import mongo_client
from tests.conftest import wait_until
from tests.integration.service_helpers import free_port, serving

pytestmark = pytest.mark.integration

PEOPLE_CSV = """email,name,role,department,title,manager_email
mona@example.com,Mona Berg,manager,sales,Sales Director,
rita@example.com,Rita Okafor,rep,sales,Account Executive,mona@example.com
jonas@example.com,Jonas Weiß,rep,sales,Account Executive,mona@example.com
pia@example.com,Pía Novák,support,pricing,Pricing Analyst,
li@example.com,Li Wei,support,pricing,Pricing Analyst,
"""


class GraphQL:
    def __init__(self, url: str, token: str | None):
        self.url, self.token = url, token

    def __call__(self, query: str, variables: dict | None = None, method: str = "POST", headers: dict | None = None):
        h = {"Accept": "application/graphql-response+json", **({"Authorization": f"Bearer {self.token}"} if self.token else {}),
             **(headers or {})}
        if method == "GET":
            params = {"query": query, **({"variables": json.dumps(variables)} if variables else {})}
            return http.get(self.url + "/graphql", params=params, headers=h, timeout=15)
        return http.post(self.url + "/graphql", json={"query": query, "variables": variables or {}}, headers=h, timeout=15)


def _start(module: str, settings, ports: dict[str, int]):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIDETRACK_")}
    env.update({"INSIDETRACK_KAFKA_PORT": str(settings.kafka_port), "INSIDETRACK_MONGO_PORT": str(settings.mongo_port),
                "INSIDETRACK_NAME_PREFIX": settings.name_prefix, "INSIDETRACK_LOG_LEVEL": "WARNING",
                "INSIDETRACK_VAR_DIR": str(settings.var_dir), "PYTHONPATH": str(PROJECT_ROOT),
                **{f"INSIDETRACK_{name.upper()}_PORT": str(port) for name, port in ports.items()}})
    return subprocess.Popen([sys.executable, "-m", module], env=env, cwd=PROJECT_ROOT)


def _ready(port: int) -> bool:
    try:
        return http.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except http.RequestException:
        return False


@pytest.fixture
def system(settings):
    """The requests, kudos and points processes (real, as `make up` runs them) and the gateway."""
    ports = {"requests": free_port(), "kudos": free_port(), "points": free_port()}
    processes = {name: _start(module, settings, ports) for name, module in
                 (("requests", "services.requests"), ("kudos", "services.recognition.kudos"),
                  ("points", "services.recognition.points"))}
    try:
        for name, port in ports.items():
            assert wait_until(lambda: _ready(port), timeout=60), f"{name} did not become ready"
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        gateway_settings = GatewaySettings(**settings.model_dump(), requests_url=urls["requests"],
                                           kudos_url=urls["kudos"], points_url=urls["points"])
        with mongo_client(settings) as client:  # the admin the requests service created on its first start
            admin = client[settings.database("requests")]["people"].find_one({"email": "admin@example.com"})
        with serving(create_gateway(gateway_settings)) as gateway_url:
            as_admin = GraphQL(gateway_url, issue_token(gateway_settings, admin["_id"], admin["email"], "admin"))
            imported = as_admin('mutation($csv: String!) { importPeople(csv: $csv) { created rowErrors { line } errors { code } } }',
                                {"csv": PEOPLE_CSV}).json()
            assert imported["data"]["importPeople"]["created"] == 5, imported
            listed = as_admin("{ people(first: 50) { edges { node { id email role } } } }").json()
            people = {e["node"]["email"].split("@")[0]: e["node"] for e in listed["data"]["people"]["edges"]}

            def as_(name: str) -> GraphQL:
                p = people[name]
                return GraphQL(gateway_url, issue_token(gateway_settings, p["id"], p["email"], p["role"].lower()))

            # The recognition processes learn people from the people topic.
            assert wait_until(lambda: as_("pia")("{ me { kudosAllowance { left } } }").json()["data"]["me"]["kudosAllowance"] is not None, 30)
            yield {"url": gateway_url, "as": as_, "people": people, "settings": gateway_settings,
                   "processes": processes, "anonymous": GraphQL(gateway_url, None)}
    finally:
        for proc in processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in processes.values():
            proc.wait(30)


SUBMIT = """mutation Submit($input: SubmitRequestInput!) {
  submitRequest(input: $input) { request { id status briefComplete briefGaps department requester { name } }
                                 errors { field code message } } }"""


def brief(**changes):
    body = {"kind": "PRICING", "title": "Price the Acme renewal", "customer": "Acme",
            "details": "Three-year renewal with volume tiers and a ramp in year one; the CFO wants two options.",
            "commitment": "Proposal by Friday", "neededBy": (datetime.now(timezone.utc) + timedelta(days=10)).isoformat(),
            "priority": "NORMAL"}
    body.update(changes)
    return body


def test_no_token_no_data(system):
    anonymous = system["anonymous"]("{ me { name } }")
    assert anonymous.status_code == 401 and "data" not in anonymous.json()
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    forged = GraphQL(system["url"], "not.a.token")("{ me { name } }")
    assert forged.status_code == 401


def test_queries_mutations_and_typed_user_errors(system):
    rita, pia = system["as"]("rita"), system["as"]("pia")
    me = rita("{ me { name role department manager { name } } }").json()
    assert "errors" not in me
    assert me["data"] == {"me": {"name": "Rita Okafor", "role": "REP", "department": "SALES", "manager": {"name": "Mona Berg"}}}

    created = rita(SUBMIT, {"input": brief()}).json()["data"]["submitRequest"]
    assert created["errors"] == [] and created["request"]["status"] == "SUBMITTED" and created["request"]["briefComplete"]
    rid = created["request"]["id"]

    refused = rita(SUBMIT, {"input": brief(priority="RUSH")}).json()["data"]["submitRequest"]
    assert refused == {"request": None, "errors": [{"field": "rushReason", "code": "RUSH_NEEDS_REASON",
                                                      "message": "a rush request needs a reason: why can't it wait?"}]}

    # A permission failure stays a GraphQL error.
    forbidden = rita('mutation { acknowledgeRequest(id: "%s") { request { status } errors { code } } }' % rid).json()
    assert forbidden["data"] is None and forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    acked = pia('mutation { acknowledgeRequest(id: "%s") { request { status assignees { name } } errors { code } } }' % rid).json()
    assert acked["data"]["acknowledgeRequest"]["request"] == {"status": "ACKNOWLEDGED", "assignees": [{"name": "Pía Novák"}]}

    queue = pia('{ requests(filter: {department: PRICING, open: true}) { totalCount edges { cursor node { title requester { name } } } } }').json()
    assert queue["data"]["requests"]["totalCount"] == 1
    assert queue["data"]["requests"]["edges"][0]["node"]["requester"] == {"name": "Rita Okafor"}


def test_kudos_card_and_leaderboard_through_the_gateway(system):
    rita, pia = system["as"]("rita"), system["as"]("pia")
    pia_id = system["people"]["pia"]["id"]
    given = rita('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "Thanks for the pricing!", gesture: COFFEE}) '
                 '{ kudos { id cardUrl thumbnailUrl recipients { name } } errors { code field } } }', {"to": [pia_id]}).json()
    kudos = given["data"]["giveKudos"]["kudos"]
    assert kudos["recipients"] == [{"name": "Pía Novák"}]
    card = http.get(kudos["cardUrl"], timeout=10)  # public, through the gateway
    assert card.status_code == 200 and Image.open(io.BytesIO(card.content)).size == (1200, 630)
    assert http.get(kudos["cardUrl"], headers={"If-None-Match": card.headers["ETag"]}, timeout=10).status_code == 304

    to_self = rita('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "me!"}) { kudos { id } errors { code field } } }',
                   {"to": [system["people"]["rita"]["id"]]}).json()
    assert to_self["data"]["giveKudos"]["errors"] == [{"code": "KUDOS_TO_SELF", "field": "to"}]

    assert wait_until(lambda: pia("{ me { points(period: WEEK) } }").json()["data"]["me"]["points"] == 10, 30)
    board = pia("{ leaderboard(period: WEEK) { key entries { rank points movement person { name } } me { rank points } } }").json()
    assert board["data"]["leaderboard"]["entries"][0] == {"rank": 1, "points": 10, "movement": None, "person": {"name": "Pía Novák"}}
    assert board["data"]["leaderboard"]["me"] == {"rank": 1, "points": 10}
    assert len(rita("{ badgeDefinitions { id name } }").json()["data"]["badgeDefinitions"]) == 8


def test_a_feed_of_many_kudos_makes_one_directory_call(system):
    rita = system["as"]("rita")
    people = system["people"]
    for name in ("pia", "li", "jonas", "mona") * 3:
        rita('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "thanks"}) { errors { code } } }', {"to": [people[name]["id"]]})
    feed = rita("{ kudosFeed(first: 50) { totalCount edges { node { giver { name } recipients { name } } } } }").json()
    assert feed["data"]["kudosFeed"]["totalCount"] >= 10
    assert feed["extensions"]["serviceCalls"] <= 2  # the feed itself, and one batched people lookup


def test_http_rules_get_post_limits_and_sdl(system):
    rita = system["as"]("rita")
    got = rita("{ me { name } }", method="GET")
    assert got.status_code == 200 and got.headers["Content-Type"].startswith("application/graphql-response+json")
    over_get = rita('mutation { cancelRequest(id: "x", reason: "y") { errors { code } } }', method="GET")
    assert over_get.status_code == 405 and over_get.headers["Allow"] == "POST"
    plain = rita("{ me { name } }", headers={"Accept": "application/json"})
    assert plain.status_code == 200 and plain.headers["Content-Type"].startswith("application/json")
    assert rita("{ me { name ").status_code == 400  # a syntax error
    assert rita("{ me { nickname } }").status_code == 400  # not in the schema
    deep = "{ me { " + "manager { " * 12 + "name" + " }" * 12 + " } }"
    too_deep = rita(deep)
    assert too_deep.status_code == 400 and "depth" in too_deep.json()["errors"][0]["message"]
    huge = http.post(system["url"] + "/graphql", data="x" * (system["settings"].max_body_bytes + 1),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {rita.token}"}, timeout=10)
    assert huge.status_code == 413
    sdl = http.get(system["url"] + "/schema.graphql", timeout=10).text
    assert "submitRequest(input: SubmitRequestInput!): SubmitRequestPayload!" in sdl
    assert "leaderboard(period: Period!, scope: Scope = COMPANY" in sdl


def test_when_a_service_is_down_its_fields_are_null_and_the_rest_answers(system):
    pia = system["as"]("pia")
    points = system["processes"]["points"]
    points.send_signal(signal.SIGTERM)  # the points service goes away
    points.wait(30)
    answer = pia("{ me { name points } }")
    body = answer.json()
    assert answer.status_code == 200
    assert body["data"] == {"me": {"name": "Pía Novák", "points": None}}
    assert body["errors"][0]["path"] == ["me", "points"]
    assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "Traceback" not in answer.text and "127.0.0.1" not in answer.text
