""""Keep me off the leaderboards" (issue 19, docs/security.md), through GraphQL with the real
processes: a hidden person is still scored and sees their own points and rank, and is left out
of everyone else's leaderboards and the screen without leaving a gap in the ranks; coming back
puts them back at their rank. Every process runs on a simulated clock set to a fixed time, so
the test does not depend on today's date (waits are for the people topic to reach the points
process, polled, never a guessed pause)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests as http

from services.gateway.auth import issue_token
from shared.auth import internal_headers
from tests.conftest import wait_until
from tests.integration.gateway_system import PEOPLE_CSV, GraphQL, running_system_at
from tests.integration.test_live_leaderboard import _next

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=timezone.utc)  # a Wednesday (week 2026-W47)
GIVE = 'mutation($to: [ID!]!, $m: String!) { giveKudos(input: {to: $to, message: $m}) { errors { code } } }'
SET = "mutation($v: Boolean!) { setLeaderboardVisibility(visible: $v) { leaderboardVisible person { id leaderboardVisible } errors { code } } }"
BOARD = """query($scope: Scope, $d: Department) { leaderboard(period: WEEK, scope: $scope, department: $d) {
  key totalCount me { points rank } entries { rank points person { name } } } }"""
ME = "{ me { leaderboardVisible points rank } }"
# With a variable, as the portal asks (a variable's "WEEK" is coerced like the literal WEEK).
LIVE = "subscription($p: Period!) { leaderboardChanged(period: $p) { entries { rank points person { name } } } }"
PERSON = "query($id: ID!) { person(id: $id) { leaderboardVisible points rank } }"


@pytest.fixture
def fixed_system(settings, tmp_path):
    with running_system_at(settings, tmp_path / "clock.json", NOW) as running:
        running["internal_token"] = settings.internal_token
        yield running


def _board(client, **variables) -> dict:
    answer = client(BOARD, variables).json()
    assert "errors" not in answer, answer
    return answer["data"]["leaderboard"]


def _rows(board: dict) -> list[tuple[int, str, int]]:
    return [(e["rank"], e["person"]["name"], e["points"]) for e in board["entries"]]


def _subscribe(system, name: str):
    from simple_websocket import Client as WsClient

    ws = WsClient(system["url"].replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"])
    ws.send(json.dumps({"type": "connection_init", "payload": {"token": system["as"](name).token}}))
    assert json.loads(ws.receive(10)) == {"type": "connection_ack"}
    ws.send(json.dumps({"id": "lb", "type": "subscribe", "payload": {"query": LIVE, "variables": {"p": "WEEK"}}}))
    ws.send(json.dumps({"type": "ping"}))  # answered after the subscribe was handled: it is live
    assert json.loads(ws.receive(10)) == {"type": "pong"}
    return ws


def _pushed_until(ws, wanted) -> None:
    """Read ``leaderboardChanged`` messages until one shows ``wanted`` (a notice for an earlier
    award may come first); the points service's notice of the change is what brings it."""
    seen = []
    for _ in range(5):
        seen.append(sorted(_rows(_next(ws))))
        if seen[-1] == sorted(wanted):
            return
    raise AssertionError(f"never pushed {wanted}: {seen}")


def test_a_hidden_person_is_scored_sees_their_rank_and_leaves_no_gap(fixed_system):
    system, people = fixed_system, fixed_system["people"]
    rita, jonas, mona, li = (system["as"](n) for n in ("rita", "jonas", "mona", "li"))
    screen = GraphQL(system["url"], issue_token(system["settings"], system["admin_id"], "admin@example.com", "admin",
                                                 screen=True))
    # Pía 30, Li 20, Jonas 10 (kudos from different givers: no pair cap).
    for giver, to in ((rita, "pia"), (jonas, "pia"), (mona, "pia"), (rita, "li"), (jonas, "li"), (rita, "jonas")):
        answer = giver(GIVE, {"to": [people[to]["id"]], "m": f"Thanks, {to}!"}).json()
        assert answer["data"]["giveKudos"]["errors"] == [], answer
    everyone = [(1, "Pía Novák", 30), (2, "Li Wei", 20), (3, "Jonas Weiß", 10)]
    assert wait_until(lambda: _rows(_board(rita)) == everyone, 30)
    assert li(ME).json()["data"]["me"] == {"leaderboardVisible": True, "points": 20, "rank": 2}

    # Li, the middle one, keeps herself off the leaderboards; a live board drops her at once.
    live = _subscribe(system, "rita")
    hidden = li(SET, {"v": False}).json()["data"]["setLeaderboardVisibility"]
    assert hidden == {"leaderboardVisible": False, "person": {"id": people["li"]["id"], "leaderboardVisible": False},
                      "errors": []}
    without_li = [(1, "Pía Novák", 30), (2, "Jonas Weiß", 10)]  # Jonas moves up: no gap
    try:
        _pushed_until(live, without_li)
    finally:
        live.close()
    assert wait_until(lambda: _rows(_board(rita)) == without_li, 30)
    assert _board(rita)["totalCount"] == 2
    assert _rows(_board(screen)) == without_li  # the office screen
    assert _rows(_board(mona)) == without_li  # her manager's view too: it is her choice
    assert _rows(_board(rita, scope="DEPARTMENT", d="PRICING")) == [(1, "Pía Novák", 30)]

    # Li still sees her own points and rank (among the people on the boards), and is still scored.
    mine = _board(li)
    assert _rows(mine) == without_li and mine["me"] == {"points": 20, "rank": 2}
    assert li(ME).json()["data"]["me"] == {"leaderboardVisible": False, "points": 20, "rank": 2}
    assert _board(li, scope="DEPARTMENT", d="PRICING")["me"] == {"points": 20, "rank": 2}
    # Anyone else: her points (public recognition), no rank; whether she is visible is public.
    assert rita(PERSON, {"id": people["li"]["id"]}).json()["data"]["person"] == {
        "leaderboardVisible": False, "points": 20, "rank": None}
    assert screen(PERSON, {"id": people["li"]["id"]}).json()["data"]["person"]["rank"] is None
    answer = mona(GIVE, {"to": [people["li"]["id"]], "m": "Still scored while hidden"}).json()
    assert answer["data"]["giveKudos"]["errors"] == [], answer
    assert wait_until(lambda: _board(li)["me"] == {"points": 30, "rank": 1}, 30)  # ties with Pía at 30
    assert _rows(_board(rita)) == without_li

    # An admin's import or edit of the directory keeps the person's own setting.
    admin = system["as_admin"]
    imported = admin("mutation($csv: String!) { importPeople(csv: $csv) { updated errors { code } } }",
                     {"csv": PEOPLE_CSV.replace("Li Wei,support,pricing,Pricing Analyst", "Li Wei,support,pricing,Senior Pricing Analyst")}).json()
    assert imported["data"]["importPeople"]["errors"] == [], imported  # Li's new title, written in bulk
    edited = admin("mutation($i: PersonInput!) { upsertPerson(input: $i) { person { title leaderboardVisible } errors { code } } }",
                   {"i": {"email": "li@example.com", "name": "Li Wei", "role": "SUPPORT", "department": "PRICING",
                          "title": "Lead Pricing Analyst"}}).json()
    assert edited["data"]["upsertPerson"] == {"person": {"title": "Lead Pricing Analyst", "leaderboardVisible": False},
                                              "errors": []}
    assert li(ME).json()["data"]["me"]["leaderboardVisible"] is False

    # Only the person changes it: the requests service refuses anyone else, an admin included.
    for actor in ("rita", "mona"):
        refused = http.post(f"http://127.0.0.1:{system['ports']['requests']}/people/{people['li']['id']}/leaderboard-visibility",
                            json={"visible": True}, headers=internal_headers(system["internal_token"], people[actor]["id"]),
                            timeout=10)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "own_setting_only")
    refused = http.post(f"http://127.0.0.1:{system['ports']['requests']}/people/{system['admin_id']}/leaderboard-visibility",
                        json={"visible": "no"}, headers=internal_headers(system["internal_token"], system["admin_id"]), timeout=10)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, "invalid_visible")
    assert screen(SET, {"v": True}).json().get("data") is None  # a screen token changes nothing

    # Back on: she comes back at her rank.
    shown = li(SET, {"v": True}).json()["data"]["setLeaderboardVisibility"]
    assert shown["leaderboardVisible"] is True and shown["errors"] == []
    back = [(1, "Li Wei", 30), (1, "Pía Novák", 30), (3, "Jonas Weiß", 10)]
    assert wait_until(lambda: sorted(_rows(_board(rita))) == back, 30)  # a tie: listed by person id
    assert _board(rita)["totalCount"] == 3
    assert rita(PERSON, {"id": people["li"]["id"]}).json()["data"]["person"] == {
        "leaderboardVisible": True, "points": 30, "rank": 1}
    assert sorted(_rows(_board(screen))) == back
