"""The GraphQL gateway in front of the real requests, kudos and points services."""

from __future__ import annotations

import io
import json
import signal
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests as http
from PIL import Image

from services.gateway.auth import issue_token
from shared.config import PROJECT_ROOT
from tests.conftest import wait_until
from tests.integration.gateway_system import GraphQL

pytestmark = pytest.mark.integration

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
    # The page brings the people it names (the requests service owns the directory): one call,
    # also when the names are asked for behind a fragment.
    assert queue["extensions"]["serviceCalls"] == 1
    by_fragment = pia('query { requests(filter: {department: PRICING, open: true}) { edges { node { ...Who } } } } '
                      'fragment Who on SupportRequest { requester { name } assignees { name } }').json()
    assert by_fragment["data"]["requests"]["edges"][0]["node"] == {"requester": {"name": "Rita Okafor"},
                                                                   "assignees": [{"name": "Pía Novák"}]}
    assert by_fragment["extensions"]["serviceCalls"] == 1
    mine = rita('{ requests(filter: {requesterId: "%s"}) { edges { node { title status } } } }' % system["people"]["rita"]["id"]).json()
    assert mine["data"]["requests"]["edges"][0]["node"]["status"] == "ACKNOWLEDGED" and mine["extensions"]["serviceCalls"] == 1


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
    assert board["extensions"]["serviceCalls"] == 1  # names come with the board (the points service's directory copy)
    assert len(rita("{ badgeDefinitions { id name } }").json()["data"]["badgeDefinitions"]) == 8


def test_a_feed_of_many_kudos_makes_one_directory_call(system):
    rita = system["as"]("rita")
    people = system["people"]
    for name in ("pia", "li", "jonas", "mona") * 3:
        rita('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "thanks"}) { errors { code } } }', {"to": [people[name]["id"]]})
    feed = rita("{ kudosFeed(first: 50) { totalCount edges { node { giver { name } recipients { name } } } } }").json()
    assert feed["data"]["kudosFeed"]["totalCount"] >= 10
    assert feed["extensions"]["serviceCalls"] == 1  # the feed brings the people it names (the kudos service's directory copy)


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


LIFECYCLE = {
    "acknowledge": 'mutation($id: ID!) { acknowledgeRequest(id: $id) { request { status } errors { code } } }',
    "assign": 'mutation($id: ID!, $to: [ID!]!) { assignRequest(id: $id, assigneeIds: $to) { request { assignees { name } } errors { code field } } }',
    "start": 'mutation($id: ID!) { startRequest(id: $id) { request { status } errors { code } } }',
    "ask": 'mutation($id: ID!) { requestInfo(id: $id, question: "EUR or USD?") { request { status } errors { code } } }',
    "answer": 'mutation($id: ID!) { provideInfo(id: $id, answer: "EUR") { request { status } errors { code } } }',
    "update": 'mutation($id: ID!) { postDealUpdate(id: $id, text: "CFO joined") { request { status } errors { code } } }',
    "deliver": 'mutation($id: ID!) { deliverRequest(id: $id, note: "v1") { request { status } errors { code } } }',
    "close": 'mutation($id: ID!) { closeRequest(id: $id, outcome: WON, note: "Signed") { request { status outcome } errors { code } } }',
    "cancel": 'mutation($id: ID!) { cancelRequest(id: $id, reason: "deal lost") { request { status } errors { code } } }',
}


def test_the_whole_story_with_the_contract_operations(system):
    rita, pia, li, jonas, mona = (system["as"](n) for n in ("rita", "pia", "li", "jonas", "mona"))
    people = system["people"]
    rid = rita(SUBMIT, {"input": brief()}).json()["data"]["submitRequest"]["request"]["id"]

    def run(who, step, **variables):
        body = who(LIFECYCLE[step], {"id": rid, **variables}).json()
        return next(iter(body["data"].values())) if body.get("data") else body

    assert run(pia, "acknowledge")["request"]["status"] == "ACKNOWLEDGED"
    assert run(pia, "assign", to=[people["li"]["id"]])["request"]["assignees"] == [{"name": "Li Wei"}]
    wrong = run(pia, "assign", to=[people["rita"]["id"]])
    assert wrong["errors"] == [{"code": "ASSIGNEE_NOT_IN_DEPARTMENT", "field": "assigneeIds"}]
    assert run(li, "start")["request"]["status"] == "IN_PROGRESS"
    assert run(li, "ask")["request"]["status"] == "WAITING_ON_REP"
    assert run(rita, "answer")["request"]["status"] == "IN_PROGRESS"
    assert run(rita, "update")["request"]["status"] == "IN_PROGRESS"
    assert run(rita, "deliver")["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # only an assignee delivers
    assert run(li, "deliver")["request"]["status"] == "DELIVERED"
    assert run(rita, "cancel")["errors"] == [{"code": "ILLEGAL_TRANSITION"}]
    assert run(rita, "close")["request"] == {"status": "CLOSED", "outcome": "WON"}

    story = rita('query($id: ID!) { request(id: $id) { number requester { name } assignees { name } '
                 'timeline { type actor { name } } } }', {"id": rid}).json()
    assert [e["type"] for e in story["data"]["request"]["timeline"]] == [
        "submitted", "acknowledged", "assigned", "started", "info_requested", "info_provided", "deal_updated",
        "delivered", "closed"]
    assert [e["actor"]["name"] for e in story["data"]["request"]["timeline"]][:3] == ["Rita Okafor", "Pía Novák", "Pía Novák"]
    assert story["data"]["request"]["assignees"] == [{"name": "Li Wei"}]
    assert story["extensions"]["serviceCalls"] == 1  # the request brings everyone it names
    assert rita('{ request(id: "r_nope") { id } }').json()["data"] == {"request": None}

    thanks = rita('mutation($to: [ID!]!, $r: ID) { giveKudos(input: {to: $to, message: "Thank you Li!", gesture: COFFEE, '
                  'values: ["speed"], requestId: $r}) { kudos { id request { title } } errors { code } } }',
                  {"to": [people["li"]["id"]], "r": rid}).json()["data"]["giveKudos"]["kudos"]
    assert thanks["request"] == {"title": "Price the Acme renewal"}
    plus_one = jonas('mutation($id: ID!) { addOnKudos(id: $id, message: "+1") { kudos { addOnCount addOns { actor { name } } } errors { code } } }',
                     {"id": thanks["id"]}).json()["data"]["addOnKudos"]
    assert plus_one["kudos"] == {"addOnCount": 1, "addOns": [{"actor": {"name": "Jonas Weiß"}}]}
    again = jonas('mutation($id: ID!) { addOnKudos(id: $id) { kudos { id } errors { code } } }', {"id": thanks["id"]}).json()
    assert again["data"]["addOnKudos"]["errors"] == [{"code": "ALREADY_ADDED_ON"}]
    one = li('query($id: ID!) { kudos(id: $id) { message giver { name } values } }', {"id": thanks["id"]}).json()
    assert one["data"]["kudos"] == {"message": "Thank you Li!", "giver": {"name": "Rita Okafor"}, "values": ["speed"]}
    li_id = people["li"]["id"]
    received = li('query($p: ID!) { kudosFeed(personId: $p, direction: RECEIVED) { totalCount } }', {"p": li_id}).json()
    assert received["data"]["kudosFeed"]["totalCount"] == 1

    # Li earned: on-time delivery (+20) and a kudos (+10) and an add-on (+5).
    assert wait_until(lambda: li("{ me { points(period: WEEK) } }").json()["data"]["me"]["points"] == 35, 30)
    profile = li('query($id: ID!) { person(id: $id) { name rank badges { id level progress } kudosAllowance { left } } }',
                 {"id": li_id}).json()["data"]["person"]
    assert profile["name"] == "Li Wei" and profile["kudosAllowance"] == {"left": 20}
    assert {b["id"] for b in profile["badges"]} >= {"clutch", "fast_responder", "team_favorite"}

    # An admin changes the directory; a rep cannot.
    upsert = 'mutation($i: PersonInput!) { upsertPerson(input: $i) { person { name title } errors { code field } } }'
    change = {"email": "li@example.com", "name": "Li Wei", "role": "SUPPORT", "department": "PRICING", "title": "Lead"}
    refused = rita(upsert, {"i": change}).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    admin = system["as_admin"]
    assert admin(upsert, {"i": change}).json()["data"]["upsertPerson"]["person"] == {"name": "Li Wei", "title": "Lead"}
    bad = admin(upsert, {"i": {**change, "email": "not-an-email"}}).json()["data"]["upsertPerson"]
    assert bad["errors"] == [{"code": "INVALID_EMAIL", "field": "email"}]


def test_sign_on_refusals_over_http(system):
    import jwt as pyjwt

    settings = system["settings"]
    p = system["people"]["rita"]
    now = datetime.now(timezone.utc)

    def token(**changes):
        claims = {"sub": p["id"], "iss": settings.jwt_issuer, "aud": settings.jwt_audience,
                  "iat": int(now.timestamp()), "exp": int((now + timedelta(minutes=5)).timestamp()), **changes}
        return pyjwt.encode(claims, changes.pop("key", settings.jwt_secret), algorithm="HS256")

    header = '{"alg":"none","typ":"JWT"}'
    import base64

    def b64(text):
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    none_token = f"{b64(header)}.{b64(json.dumps({'sub': p['id'], 'aud': settings.jwt_audience, 'iss': settings.jwt_issuer, 'exp': 9999999999, 'iat': 1}))}."
    for bad in (token(exp=int((now - timedelta(minutes=5)).timestamp())), token(aud="someone-else"),
                pyjwt.encode({"sub": p["id"], "aud": settings.jwt_audience, "iss": settings.jwt_issuer, "iat": int(now.timestamp()),
                              "exp": int((now + timedelta(minutes=5)).timestamp())}, "x" * 40, algorithm="HS256"),
                none_token):
        answer = GraphQL(system["url"], bad)("{ me { name } }")
        assert answer.status_code == 401 and "data" not in answer.json(), bad
    assert GraphQL(system["url"], token())("{ me { name } }").json()["data"]["me"]["name"] == "Rita Okafor"

    # A deactivated person's (still valid) token gets no data: the gateway hears it on the people
    # topic, while it would have kept its answer of a moment before for 30 s (the fallback cache).
    jonas = system["as"]("jonas")
    assert jonas("{ me { name } }").json()["data"]["me"]["name"] == "Jonas Weiß"
    admin = system["as_admin"]
    gone = admin('mutation($i: PersonInput!) { upsertPerson(input: $i) { person { active } errors { code } } }',
                 {"i": {"email": "jonas@example.com", "name": "Jonas Weiß", "role": "REP", "department": "SALES", "active": False}}).json()
    assert gone["data"]["upsertPerson"]["person"] == {"active": False}
    assert wait_until(lambda: jonas("{ me { name } }").status_code == 403, timeout=25)


def test_a_standard_graphql_client_works_unchanged(system):
    from gql import Client, gql
    from gql.transport.requests import RequestsHTTPTransport

    token = system["as"]("pia").token
    transport = RequestsHTTPTransport(url=system["url"] + "/graphql", headers={"Authorization": f"Bearer {token}"}, timeout=15)
    with Client(transport=transport, fetch_schema_from_transport=True) as session:
        result = session.execute(gql("query Me { me { name department } badgeDefinitions { name } }"))
    assert result["me"] == {"name": "Pía Novák", "department": "PRICING"}
    assert len(result["badgeDefinitions"]) == 8


# -- subscriptions (graphql-transport-ws) ---------------------------------------------------------

def _ws(system):
    from simple_websocket import Client as WsClient

    return WsClient(system["url"].replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"])


def _recv(ws, timeout=10.0):
    raw = ws.receive(timeout=timeout)
    return json.loads(raw) if raw is not None else None


def _closed_with(ws, timeout=5.0) -> int:
    from simple_websocket import ConnectionClosed

    try:
        while True:
            if ws.receive(timeout=timeout) is None:
                return -1
    except ConnectionClosed as exc:
        return exc.reason


def _init(ws, token):
    ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
    assert _recv(ws) == {"type": "connection_ack"}


def test_subscriptions_deliver_kudos_and_leaderboard_changes(system):
    rita, pia = system["as"]("rita"), system["as"]("pia")
    pia_id = system["people"]["pia"]["id"]
    assert wait_until(lambda: http.get(system["url"] + "/readyz", timeout=2).status_code == 200, 30)
    ws = _ws(system)
    try:
        assert ws.subprotocol == "graphql-transport-ws"
        _init(ws, pia.token)
        ws.send(json.dumps({"type": "ping"}))
        assert _recv(ws) == {"type": "pong"}
        ws.send(json.dumps({"id": "k", "type": "subscribe", "payload": {
            "query": "subscription($p: ID) { kudosGiven(personId: $p) { message giver { name } cardUrl } }",
            "variables": {"p": pia_id}}}))
        ws.send(json.dumps({"id": "lb", "type": "subscribe", "payload": {
            "query": "subscription { leaderboardChanged(period: WEEK) { entries { rank points person { name } } } }"}}))
        time.sleep(0.5)
        rita('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "Live thanks!"}) { errors { code } } }', {"to": [pia_id]})
        got = {}
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            message = _recv(ws, timeout=5)
            if message and message["type"] == "next":
                got[message["id"]] = message["payload"]["data"]
        assert got["k"]["kudosGiven"]["message"] == "Live thanks!"
        assert got["k"]["kudosGiven"]["giver"] == {"name": "Rita Okafor"}
        assert got["k"]["kudosGiven"]["cardUrl"].endswith(".png")
        assert got["lb"]["leaderboardChanged"]["entries"][0] == {"rank": 1, "points": 10, "person": {"name": "Pía Novák"}}

        # Unsubscribe: no more kudos messages for "k".
        ws.send(json.dumps({"id": "k", "type": "complete"}))
        time.sleep(0.3)
        rita('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "Again"}) { errors { code } } }', {"to": [pia_id]})
        seen = []
        end = time.monotonic() + 3
        while time.monotonic() < end:
            message = _recv(ws, timeout=1)
            if message:
                seen.append(message.get("id"))
        assert "k" not in seen

        # A query over the socket: one result, then complete.
        ws.send(json.dumps({"id": "q", "type": "subscribe", "payload": {"query": "{ me { name } }"}}))
        first, second = _recv(ws), _recv(ws)
        while first and first.get("id") != "q":
            first, second = second, _recv(ws)
        assert first == {"id": "q", "type": "next", "payload": {"data": {"me": {"name": "Pía Novák"}}}}
        assert second == {"id": "q", "type": "complete"}
    finally:
        ws.close()

    # A new connection works just the same (a screen reconnecting after a restart).
    again = _ws(system)
    try:
        _init(again, pia.token)
    finally:
        again.close()


def test_protocol_close_codes(system):
    token = system["as"]("pia").token
    ws = _ws(system)
    ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { name } }"}}))
    assert _closed_with(ws) == 4401  # subscribe before connection_ack

    ws = _ws(system)
    ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer forged"}}))
    assert _closed_with(ws) == 4403

    ws = _ws(system)
    _init(ws, token)
    ws.send(json.dumps({"type": "connection_init"}))
    assert _closed_with(ws) == 4429

    ws = _ws(system)
    _init(ws, token)
    sub = {"id": "same", "type": "subscribe", "payload": {"query": "subscription { badgeAwarded { name } }"}}
    ws.send(json.dumps(sub))
    ws.send(json.dumps(sub))
    assert _closed_with(ws) == 4409

    ws = _ws(system)
    _init(ws, token)
    ws.send("this is not json")
    assert _closed_with(ws) == 4400

    ws = _ws(system)  # says nothing
    assert _closed_with(ws, timeout=6) == 4408

    ws = _ws(system)
    _init(ws, token)
    ws.send(json.dumps({"id": "bad", "type": "subscribe", "payload": {"query": "subscription { nothing }"}}))
    error = _recv(ws)
    assert error["type"] == "error" and error["id"] == "bad" and "nothing" in error["payload"][0]["message"]
    ws.close()


def test_screen_page_is_served_and_mutations_are_refused_to_a_screen_token(system):
    page = http.get(system["url"] + "/screens/leaderboard?period=week", timeout=10)
    assert page.status_code == 200 and "graphql-transport-ws" in page.text and page.headers["Cache-Control"] == "no-store"
    p = system["people"]["mona"]
    screen = GraphQL(system["url"], issue_token(system["settings"], p["id"], p["email"], "manager", screen=True))
    board = screen("{ leaderboard(period: WEEK) { key } }")
    assert (board.json().get("data") or {}).get("leaderboard", {}).get("key"), (board.status_code, board.text)
    refused = screen('mutation { cancelRequest(id: "r", reason: "x") { errors { code } } }')
    assert refused.status_code == 403 and refused.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_the_leaderboard_screen_updates_live_in_a_real_browser(system):
    from tests.integration.browser import open_page

    p = system["people"]["mona"]
    token = issue_token(system["settings"], p["id"], p["email"], "manager", screen=True)
    rita, pia_id = system["as"]("rita"), system["people"]["pia"]["id"]
    with open_page(f"{system['url']}/screens/leaderboard?period=week&token={token}") as page:
        page.wait_for("document.getElementById('status').className === 'live'")
        page.wait_for("document.getElementById('empty').hidden === false")  # nobody has points yet
        rita('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "Thanks for the quick pricing!", gesture: FLOWERS}) '
             '{ errors { code } } }', {"to": [pia_id]})
        first = page.wait_for("(document.querySelector('#board li .name') || {}).textContent", timeout=15)
        assert first == "Pía Novák"
        page.wait_for("document.getElementById('caption').textContent.includes('Rita Okafor')", timeout=15)
        page.wait_for("document.getElementById('card').complete && document.getElementById('card').naturalWidth === 1200")
        png = page.screenshot()
    artifacts = PROJECT_ROOT / "tests" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "leaderboard-screen-1920x1080.png").write_bytes(png)
    assert Image.open(io.BytesIO(png)).size == (1920, 1080)
