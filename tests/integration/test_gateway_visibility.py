"""Who may see what (issue 19), through the gateway and straight at each service, with the real
processes: requests, their lists and requestChanged; kudos allowance and rush share; unknown and
deactivated people refused by every service itself; empty ids."""

from __future__ import annotations

import json

import pytest
import requests as http

from services.gateway.auth import issue_token
from shared.auth import internal_headers
from tests.conftest import wait_until
from tests.integration.gateway_system import GraphQL, running_system
from tests.integration.test_gateway import SUBMIT, _init, _recv, _ws, brief
from tests.integration.test_gateway_abuse import ACT

pytestmark = pytest.mark.integration

LIST = "{ requests(first: 100) { totalCount edges { node { id dealValue customer commitment } } } }"
ONE = "query($id: ID!) { request(id: $id) { id dealValue timeline { type } } }"
PRIVATE = "query($id: ID!) { person(id: $id) { name points kudosAllowance { left } rushShare { requests } } }"


@pytest.fixture(scope="module")
def system(stack_settings):
    from tests.integration.conftest import isolated_settings

    with isolated_settings(stack_settings) as settings, running_system(settings) as running:
        running["internal_token"] = settings.internal_token
        yield running


def _submit(client, **changes) -> str:
    answer = client(SUBMIT, {"input": brief(**changes)}).json()
    assert answer["data"]["submitRequest"]["errors"] == [], answer
    return answer["data"]["submitRequest"]["request"]["id"]


def _listed(client) -> set[str]:
    page = client(LIST).json()
    assert "errors" not in page, page
    ids = {e["node"]["id"] for e in page["data"]["requests"]["edges"]}
    assert page["data"]["requests"]["totalCount"] == len(ids)
    return ids


def test_rita_sees_her_requests_her_manager_and_the_pricing_queue_see_theirs(system):
    rita, jonas, mona, pia = (system["as"](n) for n in ("rita", "jonas", "mona", "pia"))
    ritas = _submit(rita, title="Rita's deal", dealValue=560000.0)
    jonas_pricing = _submit(jonas, title="Jonas's deal")
    jonas_legal = _submit(jonas, kind="LEGAL_REVIEW", title="Jonas's contract")

    assert _listed(rita) == {ritas}  # not Jonas's deal values, customers or commitments
    assert rita(ONE, {"id": jonas_pricing}).json()["data"] == {"request": None}
    assert rita(ONE, {"id": ritas}).json()["data"]["request"]["dealValue"] == 560000.0
    assert _listed(mona) == {ritas, jonas_pricing, jonas_legal}  # her reps'
    assert _listed(pia) == {ritas, jonas_pricing}  # the pricing queue, not legal's
    assert _listed(system["as_admin"]) >= {ritas, jonas_pricing, jonas_legal}
    # A command on a request one may not see answers as for an unknown id.
    for rid in (jonas_pricing, "r_nope"):
        body = rita(ACT["cancel"], {"id": rid}).json()
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert body["errors"][0]["message"] == f"no request {rid!r}"


def test_request_changed_is_refused_like_an_unknown_id_and_pushed_to_who_may_see(system):
    rita, jonas, pia = (system["as"](n) for n in ("rita", "jonas", "pia"))
    rid = _submit(rita, title="Live deal")
    query = "subscription($id: ID!) { requestChanged(id: $id) { id status } }"
    ws = _ws(system)
    try:
        _init(ws, jonas.token)
        answers = {}
        for op, target in (("hers", rid), ("unknown", "r_nope")):
            ws.send(json.dumps({"id": op, "type": "subscribe", "payload": {"query": query, "variables": {"id": target}}}))
            answers[op] = _recv(ws)
        for op, target in (("hers", rid), ("unknown", "r_nope")):
            assert answers[op]["type"] == "error" and answers[op]["id"] == op
            [error] = answers[op]["payload"]
            assert error["extensions"]["code"] == "NOT_FOUND" and error["message"] == f"no request {target!r}"
    finally:
        ws.close()

    def pushed(status: str) -> dict:
        return {"id": "mine", "type": "next", "payload": {"data": {"requestChanged": {"id": rid, "status": status}}}}

    def next_message(timeout: float = 10.0) -> dict:
        # The request's own submission, filed a moment ago, may reach the gateway only now (its
        # event is still on its way): pushed to its owner then, a change like any other.
        message = _recv(ws, timeout=timeout)
        return _recv(ws, timeout=timeout) if message == pushed("SUBMITTED") else message

    ws = _ws(system)
    try:
        _init(ws, rita.token)
        ws.send(json.dumps({"id": "mine", "type": "subscribe", "payload": {"query": query, "variables": {"id": rid}}}))
        ws.send(json.dumps({"type": "ping"}))  # answered after the subscribe was handled
        assert next_message() == {"type": "pong"}
        pia(ACT["acknowledge"], {"id": rid})
        assert next_message(timeout=20) == pushed("ACKNOWLEDGED")
    finally:
        ws.close()


def test_allowance_and_rush_share_are_for_the_person_their_managers_and_admins(system):
    rita_id = system["people"]["rita"]["id"]
    for name, visible in (("rita", True), ("mona", True), ("jonas", False), ("pia", False)):
        answer = system["as"](name)(PRIVATE, {"id": rita_id}).json()
        assert "errors" not in answer, answer
        person = answer["data"]["person"]
        assert person["name"] == "Rita Okafor" and isinstance(person["points"], int)  # points stay public
        assert (person["kudosAllowance"] is not None, person["rushShare"] is not None) == (visible, visible), name
    admin = system["as_admin"](PRIVATE, {"id": rita_id}).json()["data"]["person"]
    assert admin["kudosAllowance"] is not None and admin["rushShare"] is not None


def test_empty_ids_answer_not_found_never_a_routing_error(system):
    rita = system["as"]("rita")
    for step, mutation in ACT.items():
        body = rita(mutation, {"id": ""}).json()
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "NOT_FOUND", (step, body)
    add_on = rita('mutation($id: ID!) { addOnKudos(id: $id) { errors { code } } }', {"id": ""}).json()
    assert add_on["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    for query in (ONE, "query($id: ID!) { kudos(id: $id) { id } }", "query($id: ID!) { person(id: $id) { id } }"):
        answer = rita(query, {"id": ""}).json()
        assert "errors" not in answer and list(answer["data"].values()) == [None], answer


GIVE = """mutation($to: [ID!]!, $private: Boolean) { giveKudos(input: {to: $to, message: "Thanks!", private: $private}) {
  kudos { id private cardUrl } errors { code } } }"""
FEED = "query($p: ID) { kudosFeed(personId: $p, first: 100) { totalCount edges { node { id } } } }"


def _feed(client, person_id=None) -> tuple[set[str], int]:
    page = client(FEED, {"p": person_id}).json()["data"]["kudosFeed"]
    return {e["node"]["id"] for e in page["edges"]}, page["totalCount"]


def test_a_private_kudos_is_seen_by_the_people_in_it_their_managers_and_admins_only(system):
    rita, jonas, pia, li, mona = (system["as"](n) for n in ("rita", "jonas", "pia", "li", "mona"))
    admin = system["as_admin"]
    pia_id, li_id = system["people"]["pia"]["id"], system["people"]["li"]["id"]
    before = pia("{ me { points(period: ALL) } }").json()["data"]["me"]["points"]
    screen = GraphQL(system["url"], issue_token(system["settings"], system["admin_id"], "admin@example.com", "admin", screen=True))

    ws = _ws(system)
    try:
        _init(ws, jonas.token)
        ws.send(json.dumps({"id": "all", "type": "subscribe", "payload": {"query": "subscription { kudosGiven { id private } }"}}))
        ws.send(json.dumps({"type": "ping"}))
        assert _recv(ws) == {"type": "pong"}
        secret = rita(GIVE, {"to": [pia_id], "private": True}).json()["data"]["giveKudos"]["kudos"]
        public = rita(GIVE, {"to": [li_id]}).json()["data"]["giveKudos"]["kudos"]
        # Jonas's live feed skips the private one: the first kudos pushed to him is the public one.
        assert _recv(ws, timeout=20) == {"id": "all", "type": "next", "payload": {"data": {"kudosGiven": {"id": public["id"], "private": False}}}}
    finally:
        ws.close()
    assert secret["private"] is True and public["private"] is False

    one = "query($id: ID!) { kudos(id: $id) { id } }"
    for client, visible in ((rita, True), (pia, True), (mona, True), (admin, True), (jonas, False), (li, False), (screen, False)):
        assert (client(one, {"id": secret["id"]}).json()["data"]["kudos"] is not None) == visible
    # Never in the company feed, for anyone; in Pía's own list for who may see it, counted so.
    for client in (rita, pia, admin, screen):
        ids, _ = _feed(client)
        assert public["id"] in ids and secret["id"] not in ids
    mine, mine_total = _feed(pia, pia_id)
    theirs, theirs_total = _feed(jonas, pia_id)
    assert secret["id"] in mine and secret["id"] not in theirs and mine_total == theirs_total + 1
    assert secret["id"] not in _feed(screen, pia_id)[0] and secret["id"] in _feed(mona, pia_id)[0]
    # Its card opens from the link it was given with, not from the public address.
    assert http.get(secret["cardUrl"], timeout=10).status_code == 200
    assert http.get(secret["cardUrl"].split("?")[0], timeout=10).status_code == 404
    # Still scored: Pía's points count it.
    assert wait_until(lambda: pia("{ me { points(period: ALL) } }").json()["data"]["me"]["points"] >= before + 10, 30)


def test_retried_mutations_with_an_idempotency_key_act_once(system):
    jonas, pia_id = system["as"]("jonas"), system["people"]["pia"]["id"]
    left = lambda: jonas("{ me { kudosAllowance { left } } }").json()["data"]["me"]["kudosAllowance"]["left"]  # noqa: E731
    before = left()
    give = 'mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "Thanks!", idempotencyKey: "k-1"}) { kudos { id } } }'
    first, retry = (jonas(give, {"to": [pia_id]}).json()["data"]["giveKudos"]["kudos"]["id"] for _ in range(2))
    assert first == retry and left() == before - 1
    submit = 'mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { request { id number } errors { code } } }'
    filed = [jonas(submit, {"input": brief(idempotencyKey="r-1")}).json()["data"]["submitRequest"]["request"] for _ in range(2)]
    assert filed[0] == filed[1]
    add_on = 'mutation($id: ID!) { addOnKudos(id: $id, idempotencyKey: "a-1") { kudos { addOnCount } errors { code } } }'
    mona = system["as"]("mona")
    for _ in range(2):
        assert mona(add_on, {"id": first}).json()["data"]["addOnKudos"] == {"kudos": {"addOnCount": 1}, "errors": []}


def test_every_service_refuses_an_unknown_or_deactivated_caller_itself(system):
    """Last in this module: it deactivates Jonas."""
    jonas = system["people"]["jonas"]
    ports, token = system["ports"], system["internal_token"]
    calls = {"requests": "/requests", "kudos": "/kudos", "points": "/leaderboard?period=week"}

    def answer(service: str, actor: str | None) -> tuple[int, str]:
        response = http.get(f"http://127.0.0.1:{ports[service]}{calls[service]}", headers=internal_headers(token, actor),
                            timeout=10)
        return response.status_code, response.json().get("error", {}).get("code")

    for service in calls:
        assert answer(service, jonas["id"])[0] == 200
        assert answer(service, "p_nobody") == (401, "unknown_actor")
        assert answer(service, None) == (401, "no_actor")
    deactivated = system["as_admin"](
        'mutation($i: PersonInput!) { upsertPerson(input: $i) { person { active } errors { code } } }',
        {"i": {"email": jonas["email"], "name": "Jonas Weiß", "role": "REP", "department": "SALES", "active": False}}).json()
    assert deactivated["data"]["upsertPerson"] == {"person": {"active": False}, "errors": []}
    for service in calls:  # kudos and points learn it from the people topic
        assert wait_until(lambda: answer(service, jonas["id"]) == (403, "inactive_actor"), 30), service
