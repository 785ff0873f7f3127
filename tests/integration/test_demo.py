"""End to end, against the running system: the internal-selling story, and the demo company.

Both run the four real service processes (as `make up` does) on the demo's simulated clock,
and talk to them through GraphQL only.
"""

from __future__ import annotations

import io
import json
import re
import time
from datetime import date, datetime, timedelta, timezone

import pytest
import requests as http
from PIL import Image

from ops.demo.company import KINDS, PEOPLE, plan_activity
from ops.demo.loader import DemoLoader, GraphQLClient, wait_for_points
from services.gateway.auth import issue_token
from shared.calendar import BusinessCalendar
from shared.config import PROJECT_ROOT
from tests.conftest import wait_until

pytestmark = pytest.mark.integration

# -- the internal-selling story --------------------------------------------------------------

STORY_PEOPLE = """email,name,role,department,title,manager_email
mona@example.com,Mona Berg,manager,sales,Sales Director,
rita@example.com,Rita Okafor,rep,sales,Account Executive,mona@example.com
jonas@example.com,Jonas Weiß,rep,sales,Account Executive,mona@example.com
pia@example.com,Pía Novák,support,pricing,Pricing Analyst,
li@example.com,Li Wei,support,pricing,Senior Pricing Analyst,
"""
DETAILS = "Three-year renewal with volume tiers and a ramp in year one; the CFO wants two options side by side."
SUBMIT = """mutation($input: SubmitRequestInput!) { submitRequest(input: $input) {
  request { id briefComplete briefGaps } errors { code } } }"""
STEP = {
    "acknowledge": "mutation($id: ID!) { acknowledgeRequest(id: $id) { request { status } errors { code } } }",
    "start": "mutation($id: ID!) { startRequest(id: $id) { request { status } errors { code } } }",
    "ask": 'mutation($id: ID!) { requestInfo(id: $id, question: "EUR or USD, and which payment terms?") { request { status } errors { code } } }',
    "answer": 'mutation($id: ID!) { provideInfo(id: $id, answer: "EUR, net 30") { request { status } errors { code } } }',
    "deliver": 'mutation($id: ID!) { deliverRequest(id: $id, note: "Two options attached") { request { status } errors { code } } }',
    "close": 'mutation($id: ID!) { closeRequest(id: $id, outcome: WON, note: "Signed!") { request { status outcome } errors { code } } }',
    "cancel": 'mutation($id: ID!) { cancelRequest(id: $id, reason: "Refiled with the commitment") { request { status } errors { code } } }',
}
PROFILE = """query($id: ID!) { person(id: $id) { points(period: WEEK) rank(period: WEEK)
  badges { id level progress earned } } }"""


def _local(calendar: BusinessCalendar, day, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=calendar.tz).astimezone(timezone.utc)


def test_the_internal_selling_story(demo_system, settings):
    calendar = BusinessCalendar.from_settings(settings)
    # A Tuesday, 09:00 company time: the story runs on the simulated clock, whatever the real date.
    tuesday = date(2026, 11, 17)
    wednesday = tuesday + timedelta(days=1)
    system = demo_system(_local(calendar, tuesday, 9, 0))
    clock, gql = system["clock"], GraphQLClient(system["url"])
    admin = system["admin_token"]
    assert gql(admin, "mutation($c: String!) { importPeople(csv: $c) { created } }", {"c": STORY_PEOPLE})["data"]["importPeople"]["created"] == 5
    people = {e["node"]["email"].split("@")[0]: e["node"] for e in
              gql(admin, "{ people(first: 20) { edges { node { id email role } } } }")["data"]["people"]["edges"]}
    token = {name: system["token_for"](p) for name, p in people.items()}
    rita, pia, jonas = (lambda q, v=None, n=n: gql(token[n], q, v) for n in ("rita", "pia", "jonas"))
    assert wait_until(lambda: pia("{ me { kudosAllowance { left } } }")["data"]["me"]["kudosAllowance"] is not None, 30)

    def at(day, hour, minute=0):
        clock.set(_local(calendar, day, hour, minute))

    def step(who, name, rid):
        payload = next(iter(who(STEP[name], {"id": rid})["data"].values()))
        assert payload["errors"] == [], (name, payload)
        return payload["request"]

    needed_by = _local(calendar, wednesday, 12, 0).isoformat()
    rush = {"kind": "PRICING", "title": "Price the Acme renewal", "customer": "Acme", "dealName": "Acme renewal",
            "dealValue": 240000.0, "details": DETAILS, "neededBy": needed_by, "priority": "RUSH",
            "rushReason": "Their board decides on Thursday"}

    # 10:00 a rush request with a weak brief (no commitment): no brief points; refiled complete.
    at(tuesday, 10, 0)
    weak = rita(SUBMIT, {"input": rush})["data"]["submitRequest"]["request"]
    assert weak["briefComplete"] is False and weak["briefGaps"] == ["commitment: say what was committed to the customer"]
    at(tuesday, 10, 5)
    step(rita, "cancel", weak["id"])
    complete = rita(SUBMIT, {"input": {**rush, "commitment": "Promised two price options by Wednesday noon"}})
    request = complete["data"]["submitRequest"]["request"]
    assert request["briefComplete"] is True and request["briefGaps"] == []
    rid = request["id"]

    # Pricing acknowledges within the SLA (1.5 business hours) and asks for information.
    at(tuesday, 11, 35)
    assert step(pia, "acknowledge", rid) == {"status": "ACKNOWLEDGED"}
    at(tuesday, 11, 40)
    step(pia, "start", rid)
    at(tuesday, 11, 45)
    assert step(pia, "ask", rid) == {"status": "WAITING_ON_REP"}
    # The rep answers within the day.
    at(tuesday, 15, 0)
    assert step(rita, "answer", rid) == {"status": "IN_PROGRESS"}
    # Pricing delivers on time (needed by Wednesday 12:00), the rep closes the loop as won.
    at(wednesday, 10, 0)
    assert step(pia, "deliver", rid) == {"status": "DELIVERED"}
    at(wednesday, 11, 0)
    assert step(rita, "close", rid) == {"status": "CLOSED", "outcome": "WON"}

    # The analyst watches her kudos live; the rep sends a coffee, a colleague adds on.
    from simple_websocket import Client as WsClient

    ws = WsClient(system["url"].replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"])
    try:
        ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token['pia']}"}}))
        assert json.loads(ws.receive(timeout=10)) == {"type": "connection_ack"}
        ws.send(json.dumps({"id": "k", "type": "subscribe", "payload": {
            "query": "subscription($p: ID) { kudosGiven(personId: $p) { id message gesture giver { name } "
                     "recipients { name } request { title } cardUrl } }", "variables": {"p": people["pia"]["id"]}}}))
        time.sleep(0.5)
        at(wednesday, 11, 5)
        given = rita("mutation($to: [ID!]!, $r: ID) { giveKudos(input: {to: $to, message: \"Coffee's on me, Pía: we won Acme!\", "
                     "gesture: COFFEE, values: [\"speed\"], requestId: $r}) { kudos { id cardUrl } errors { code } } }",
                     {"to": [people["pia"]["id"]], "r": rid})["data"]["giveKudos"]
        assert given["errors"] == []
        message = None
        deadline = time.monotonic() + 20
        while message is None and time.monotonic() < deadline:
            raw = ws.receive(timeout=5)
            if raw and json.loads(raw).get("type") == "next":
                message = json.loads(raw)
    finally:
        ws.close()
    assert message is not None and message["id"] == "k"
    pushed = message["payload"]["data"]["kudosGiven"]
    # The card URL is built from the Host header, which this WebSocket client sends without the port.
    assert pushed.pop("cardUrl").rsplit("/", 1)[1] == given["kudos"]["cardUrl"].rsplit("/", 1)[1]
    assert pushed == ({
        "id": given["kudos"]["id"], "message": "Coffee's on me, Pía: we won Acme!", "gesture": "COFFEE",
        "giver": {"name": "Rita Okafor"}, "recipients": [{"name": "Pía Novák"}], "request": {"title": "Price the Acme renewal"}})
    card = http.get(given["kudos"]["cardUrl"], timeout=15)
    assert card.status_code == 200 and card.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(card.content)).size == (1200, 630)

    at(wednesday, 11, 10)
    added = jonas('mutation($id: ID!) { addOnKudos(id: $id, message: "+1, great turnaround!") { kudos { addOnCount } errors { code } } }',
                  {"id": given["kudos"]["id"]})["data"]["addOnKudos"]
    assert added == {"kudos": {"addOnCount": 1}, "errors": []}

    # Points: Pía 5 (acknowledged within SLA) + 20 (on time) + 15 (rush on time) + 10 (kudos)
    # + 5 (add-on) = 55; Rita 10 (complete brief) + 10 (answered within a day) + 15 (closed the
    # loop) + 5 (thanked the helper) = 40; Jonas, who only added on, 0.
    assert wait_until(lambda: rita(PROFILE, {"id": people["rita"]["id"]})["data"]["person"]["points"] == 40
                      and pia(PROFILE, {"id": people["pia"]["id"]})["data"]["person"]["points"] == 55, timeout=90)
    assert wait_for_points(settings, timeout=60)
    profiles = {n: rita(PROFILE, {"id": people[n]["id"]})["data"]["person"] for n in ("rita", "pia", "jonas")}
    assert (profiles["pia"]["points"], profiles["pia"]["rank"]) == (55, 1)
    assert (profiles["rita"]["points"], profiles["rita"]["rank"]) == (40, 2)
    assert (profiles["jonas"]["points"], profiles["jonas"]["rank"]) == (0, None)

    def badges(name):
        return {b["id"]: (b["level"], round(b["progress"], 2), b["earned"]) for b in profiles[name]["badges"]}

    # Badge progress: one step towards each badge the story touched (none earned yet); the weak
    # brief broke Rita's Great Brief run, the complete one started it again.
    assert {k: v for k, v in badges("pia").items() if v[0]} == {
        "fast_responder": (1, 0.04, False), "clutch": (1, 0.2, False), "team_favorite": (1, 0.1, False)}
    assert {k: v for k, v in badges("rita").items() if v[0]} == {
        "great_brief": (1, 0.05, False), "closed_loop": (1, 0.1, False), "grateful": (1, 0.1, False)}
    assert not any(v[0] for v in badges("jonas").values())

    # Leaderboards: the company's week, and by role.
    board = rita("{ leaderboard(period: WEEK) { entries { rank points movement person { name } } me { rank points } } }")["data"]["leaderboard"]
    assert board["entries"] == [{"rank": 1, "points": 55, "movement": None, "person": {"name": "Pía Novák"}},
                                {"rank": 2, "points": 40, "movement": None, "person": {"name": "Rita Okafor"}}]
    assert board["me"] == {"rank": 2, "points": 40}
    reps = rita("{ leaderboard(period: WEEK, scope: ROLE, role: REP) { entries { rank person { name } } me { rank } } }")["data"]["leaderboard"]
    assert reps == {"entries": [{"rank": 1, "person": {"name": "Rita Okafor"}}], "me": {"rank": 1}}


# -- the demo company ------------------------------------------------------------------------

# Instants in the company's timezone (Europe/Amsterdam) at which a fresh demo must look right,
# whatever the real date of the run: a Sunday evening (the week's board is full, and moved since
# last week), and a Monday before business hours. The demo ends with a few thank-yous in its
# last half hour, so this week is never empty after `make up`; at Monday 00:30 the test plays
# the company without them, as a real Monday morning is: this week is still empty, and the
# screen shows last week's final board, labelled.
SUNDAY_EVENING = datetime(2026, 11, 29, 19, 0)
MONDAY_0030 = datetime(2026, 11, 30, 0, 30)


@pytest.mark.parametrize("local_now", [SUNDAY_EVENING, MONDAY_0030], ids=["sunday-19h", "monday-00h30"])
def test_the_demo_company_looks_like_a_real_one(demo_system, settings, tmp_path, local_now):
    """The loader on a shorter span, so the test stays short: 10 days (this week and the end of
    the last two, for movement) and badge thresholds of 2, since four weeks' worth of badges
    cannot be earned in ten days (`make up` loads the real four weeks with the real rules)."""
    rules = (PROJECT_ROOT / "services/recognition/points/rules.yaml").read_text(encoding="utf-8")
    rules = re.sub(r"threshold: \d+", "threshold: 2", rules.replace("bronze: 10,", "bronze: 2,"))
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rules, encoding="utf-8")
    calendar = BusinessCalendar.from_settings(settings)
    now = local_now.replace(tzinfo=calendar.tz).astimezone(timezone.utc)
    days = 10
    system = demo_system(now - timedelta(days=days, hours=1), rules_file)
    plan = plan_activity(calendar, end=now, days=days, closing_burst=local_now != MONDAY_0030)
    loader = DemoLoader(settings, system["url"], system["clock"], system["token_for"], system["admin_token"])
    report = loader.load(plan, wait_for_scoring=120, finish_at=now)
    assert report.refused == []
    assert report.scored
    gql, admin = GraphQLClient(system["url"]), system["admin_token"]
    # The company's clock stays at the chosen instant: the data ends then.
    assert abs((system["clock"].now() - now).total_seconds()) < 60

    assert gql(admin, "{ people(first: 1) { totalCount } }")["data"]["people"]["totalCount"] == len(PEOPLE) + 1
    kinds, after = set(), None
    while True:
        page = gql(admin, "query($a: String) { requests(first: 100, after: $a) { edges { node { kind status priority } } "
                          "pageInfo { hasNextPage endCursor } } }", {"a": after})["data"]["requests"]
        kinds |= {e["node"]["kind"] for e in page["edges"]}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert kinds == set(KINDS)
    # Rita, a rep, sees her own requests and nobody else's (issue 19).
    found = gql(admin, '{ people(search: "okafor") { edges { node { id email role } } } }')["data"]["people"]["edges"]
    rita = found[0]["node"]
    listed = "{ requests(first: 100) { totalCount edges { node { requester { id } } } } }"
    mine = gql(system["token_for"](rita), listed)["data"]["requests"]
    hers = gql(admin, "query($r: ID) { requests(filter: {requesterId: $r}) { totalCount } }", {"r": rita["id"]})
    assert mine["totalCount"] == hers["data"]["requests"]["totalCount"] > 0
    assert {e["node"]["requester"]["id"] for e in mine["edges"]} == {rita["id"]}

    week = gql(admin, "{ leaderboard(period: WEEK, first: 50) { key totalCount entries { rank points movement } "
                      "previous { key entries { rank points movement } } } }")["data"]["leaderboard"]
    assert week["key"] == "2026-W48" if local_now == SUNDAY_EVENING else week["key"] == "2026-W49"
    if local_now == SUNDAY_EVENING:
        board = week
    else:  # nothing has happened yet this week; last week's final board is there to show
        assert week["entries"] == [] and week["totalCount"] == 0
        board = week["previous"]
        assert board["key"] == "2026-W48"
    assert len(board["entries"]) >= 10
    assert any(e["movement"] not in (None, 0) for e in board["entries"]), "somebody moved since the week before"
    everyone = gql(admin, "{ leaderboard(period: ALL, first: 50) { entries { person { badges { earned } } } } }")
    earned = sum(b["earned"] for e in everyone["data"]["leaderboard"]["entries"] for b in e["person"]["badges"])
    assert earned >= 1, "badges were awarded"
    feed = gql(admin, "{ kudosFeed(first: 50) { totalCount edges { node { gesture addOnCount } } } }")["data"]["kudosFeed"]
    assert feed["totalCount"] >= 10 and any(e["node"]["addOnCount"] for e in feed["edges"])

    if local_now == MONDAY_0030:
        _the_screen_shows_last_weeks_final_board(system, board)


def _the_screen_shows_last_weeks_final_board(system, board):
    """What the office TV shows on a Monday at 00:30: last week's final board, labelled."""
    from tests.integration.browser import open_page

    admin = GraphQLClient(system["url"])(system["admin_token"], "{ me { id email } }")["data"]["me"]
    screen_token = issue_token(system["gateway_settings"], admin["id"], admin["email"], "admin", screen=True)
    with open_page(f"{system['url']}/screens/leaderboard?period=week&token={screen_token}") as page:
        page.wait_for("document.getElementById('status').className === 'live'")
        page.wait_for("document.body.dataset.showing === 'previous'", timeout=20)
        assert page.evaluate("document.getElementById('period').textContent") == "Leaderboard · Last week's final standings"
        assert page.evaluate("document.getElementById('fallback').hidden") is False
        shown = page.evaluate("Array.from(document.querySelectorAll('#board li .points')).map(e => e.textContent)")
        assert shown == [str(e["points"]) for e in board["entries"][:len(shown)]] and len(shown) == min(10, len(board["entries"]))
        page.wait_for("document.getElementById('card').complete && document.getElementById('card').naturalWidth === 1200")
        png = page.screenshot()
    artifacts = PROJECT_ROOT / "tests" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "leaderboard-screen-monday-0030.png").write_bytes(png)
