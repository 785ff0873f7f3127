"""Hostile input at the public door: every attempt is refused with a clear error and changes nothing.

One real system (the four processes, FerretDB, Kafka) serves the whole module, so each test
uses its own people and objects. See docs/reliability.md, "Abuse", for the table this proves.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import requests as http
from PIL import Image

from tests.conftest import wait_until
from tests.integration.conftest import isolated_settings
from tests.integration.gateway_system import GraphQL, running_system
from tests.integration.service_helpers import Client

pytestmark = pytest.mark.integration

# Twelve support people to receive kudos (each may get 3 a week from one giver), two more reps,
# and someone in another department's queue.
EXTRA_PEOPLE_CSV = "email,name,role,department\n" + "".join(
    f"helper{i:02d}@example.com,Helper {i:02d},support,pricing\n" for i in range(1, 13)
) + "vera@example.com,Vera Lind,rep,sales\nomar@example.com,Omar Haddad,rep,sales\nsam@example.com,Sam Roy,support,legal\n"

# Signs that an answer leaks internals: a traceback, a file path, an exception class name.
LEAK = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|/work/|/usr/lib|\b[A-Z][A-Za-z]*(Error|Exception)\b|pymongo|werkzeug|"
    r"graphql\.error|OperationFailure|KeyError|object at 0x"
)


@pytest.fixture(scope="module")
def abuse(stack_settings):
    # The rate limit is generous here: the fuzzer and the floods below are not about it
    # (tests/unit/test_gateway_limits.py proves the limiter).
    with isolated_settings(stack_settings) as settings, \
            running_system(settings, env={"INSIDETRACK_RATE_LIMIT_PER_MINUTE": "100000"}) as system:
        imported = system["as_admin"]('mutation($csv: String!) { importPeople(csv: $csv) { created rowErrors { line code } } }',
                                      {"csv": EXTRA_PEOPLE_CSV}).json()
        assert imported["data"]["importPeople"] == {"created": 15, "rowErrors": []}, imported
        system["refresh_people"]()
        system["internal_token"] = settings.internal_token
        last = system["as"]("sam")
        assert wait_until(lambda: last("{ me { kudosAllowance { left } } }").json()["data"]["me"]["kudosAllowance"] is not None, 30)
        yield system


def assert_clean(response: http.Response) -> None:
    """No 5xx, a JSON answer, and nothing internal in it."""
    assert response.status_code < 500, (response.status_code, response.text[:500])
    body = response.json()
    assert not LEAK.search(response.text), response.text[:1000]
    for error in body.get("errors") or []:
        assert error.get("message"), error
        assert (error.get("extensions") or {}).get("code") not in ("INTERNAL", "SERVICE_UNAVAILABLE"), error


def ids(abuse, *names):
    return [abuse["people"][n]["id"] for n in names]


SUBMIT = """mutation($input: SubmitRequestInput!) {
  submitRequest(input: $input) { request { id status } errors { field code message } } }"""
STATE = """query($id: ID!) { request(id: $id) { status outcome title customer details commitment
  assignees { id } timeline { type text } } }"""


def submit(client: GraphQL, **changes) -> str:
    body = {"kind": "PRICING", "title": "Price the Acme renewal", "customer": "Acme",
            "details": "Three-year renewal with volume tiers and a ramp in year one; the CFO wants two options.",
            "commitment": "Proposal by Friday", "neededBy": (datetime.now(timezone.utc) + timedelta(days=10)).isoformat()}
    body.update(changes)
    answer = client(SUBMIT, {"input": body}).json()
    assert answer["data"]["submitRequest"]["errors"] == [], answer
    return answer["data"]["submitRequest"]["request"]["id"]


def state(client: GraphQL, rid: str) -> dict:
    return client(STATE, {"id": rid}).json()["data"]["request"]


def mutate(client: GraphQL, mutation: str, **variables) -> dict:
    response = client(mutation, variables)
    assert_clean(response)
    return response.json()


ACT = {
    "acknowledge": "mutation($id: ID!) { acknowledgeRequest(id: $id) { request { status } errors { code } } }",
    "start": "mutation($id: ID!) { startRequest(id: $id) { request { status } errors { code } } }",
    "ask": 'mutation($id: ID!) { requestInfo(id: $id, question: "EUR or USD?") { request { status } errors { code } } }',
    "answer": 'mutation($id: ID!) { provideInfo(id: $id, answer: "EUR") { request { status } errors { code } } }',
    "update": 'mutation($id: ID!) { postDealUpdate(id: $id, text: "CFO joined") { request { status } errors { code } } }',
    "comment": 'mutation($id: ID!) { commentOnRequest(id: $id, text: "hello") { request { status } errors { code } } }',
    "deliver": 'mutation($id: ID!) { deliverRequest(id: $id, note: "v1") { request { status } errors { code } } }',
    "close": 'mutation($id: ID!) { closeRequest(id: $id, outcome: WON) { request { status } errors { code } } }',
    "cancel": 'mutation($id: ID!) { cancelRequest(id: $id, reason: "lost") { request { status } errors { code } } }',
}


def refused(client: GraphQL, step: str, rid: str, code: str = "FORBIDDEN") -> str:
    """Run ``step`` as ``client``: it must be refused with ``code``; returns the message."""
    body = mutate(client, ACT[step], id=rid)
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == code, (step, body)
    return body["errors"][0]["message"]


def works(client: GraphQL, step: str, rid: str) -> str:
    body = mutate(client, ACT[step], id=rid)
    payload = next(iter(body["data"].values()))
    assert payload["errors"] == [], (step, payload)
    return payload["request"]["status"]


# -- object-level authorization -----------------------------------------------------------------

def test_a_rep_cannot_work_a_request_and_support_cannot_close_it(abuse):
    rita, pia, sam = abuse["as"]("rita"), abuse["as"]("pia"), abuse["as"]("sam")
    rid = submit(rita)
    before = state(rita, rid)
    assert "support staff" in refused(rita, "acknowledge", rid)
    for step in ("acknowledge", "ask"):
        refused(sam, step, rid, "NOT_FOUND")  # support of another department's queue: not theirs to see
    assert state(rita, rid) == before

    assert works(pia, "acknowledge", rid) == "ACKNOWLEDGED"
    refused(rita, "start", rid)
    assert works(pia, "start", rid) == "IN_PROGRESS"
    before = state(rita, rid)
    assert "assignee" in refused(rita, "deliver", rid)
    refused(sam, "deliver", rid, "NOT_FOUND")
    assert state(rita, rid) == before

    assert works(pia, "deliver", rid) == "DELIVERED"
    before = state(rita, rid)
    assert "rep who filed" in refused(pia, "close", rid)
    refused(abuse["as"]("mona"), "close", rid)  # the rep's manager neither
    assert state(rita, rid) == before and before["status"] == "DELIVERED"


def test_nobody_acts_on_another_reps_request(abuse):
    rita, jonas, pia = abuse["as"]("rita"), abuse["as"]("jonas"), abuse["as"]("pia")
    rid = submit(rita)
    works(pia, "acknowledge", rid)
    works(pia, "ask", rid)
    before = state(rita, rid)
    assert before["status"] == "WAITING_ON_REP"
    for step in ("answer", "update", "cancel", "comment"):
        refused(jonas, step, rid, "NOT_FOUND")  # another rep's request does not exist for him
    refused(pia, "cancel", rid)  # support cannot cancel a rep's request either
    refused(pia, "answer", rid)
    assert state(rita, rid) == before

    assert works(rita, "answer", rid) == "IN_PROGRESS"
    assert works(pia, "deliver", rid) == "DELIVERED"
    before = state(rita, rid)
    refused(jonas, "close", rid, "NOT_FOUND")
    refused(jonas, "update", rid, "NOT_FOUND")
    assert state(rita, rid) == before


ALLOWANCE = "query($id: ID!) { person(id: $id) { kudosAllowance { used left } } }"
GIVEN = "query($id: ID!) { kudosFeed(personId: $id, direction: GIVEN, first: 100) { totalCount edges { node { giver { id } } } } }"
GIVE = """mutation($to: [ID!]!, $message: String!) {
  giveKudos(input: {to: $to, message: $message}) { kudos { id message giver { id } cardUrl thumbnailUrl } errors { field code message } } }"""


def allowance(client, person_id):
    return client(ALLOWANCE, {"id": person_id}).json()["data"]["person"]["kudosAllowance"]


def given(client, person_id):
    return client(GIVEN, {"id": person_id}).json()["data"]["kudosFeed"]["totalCount"]


def test_nobody_gives_kudos_as_someone_else(abuse):
    omar, vera = abuse["as"]("omar"), abuse["as"]("vera")
    omar_id, vera_id, helper = ids(abuse, "omar", "vera", "helper11")
    vera_before, omar_before = allowance(vera, vera_id), allowance(omar, omar_id)

    # The input has no giver: naming one is a validation error, and nothing runs.
    for field in ("from", "giverId", "giver"):
        answer = omar('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "hi", %s: "%s"}) { errors { code } } }'
                      % (field, vera_id), {"to": [helper]})
        assert_clean(answer)
        assert answer.status_code == 400 and f"'{field}' is not defined by type 'GiveKudosInput'" in answer.json()["errors"][0]["message"]

    # Headers the services trust from the gateway are not taken from the public.
    spoof = {"X-Actor-Id": vera_id, "X-Internal-Token": abuse["internal_token"]}
    answer = omar(GIVE, {"to": [helper], "message": "from Vera, honest"}, headers=spoof)
    assert_clean(answer)
    kudos = answer.json()["data"]["giveKudos"]["kudos"]
    assert kudos["giver"] == {"id": omar_id}
    assert allowance(vera, vera_id) == vera_before
    assert allowance(omar, omar_id)["used"] == omar_before["used"] + 1
    add_on = vera('mutation($id: ID!) { addOnKudos(id: $id) { kudos { addOns { actor { id } } } errors { code } } }',
                  {"id": kudos["id"]}, headers={"X-Actor-Id": omar_id}).json()
    assert add_on["data"]["addOnKudos"]["kudos"]["addOns"] == [{"actor": {"id": vera_id}}]

    # The services themselves refuse a caller without the internal token.
    kudos_service = f"http://127.0.0.1:{abuse['ports']['kudos']}"
    for headers in ({"X-Actor-Id": vera_id}, {"X-Actor-Id": vera_id, "X-Internal-Token": "guess"}):
        direct = http.post(kudos_service + "/kudos", json={"to": [helper], "message": "hi"}, headers=headers, timeout=10)
        assert direct.status_code == 401 and direct.json()["error"]["code"] == "bad_internal_token"
    assert allowance(vera, vera_id) == vera_before


def test_nobody_sends_kudos_to_themselves_or_adds_on_to_their_own(abuse):
    jonas, pia = abuse["as"]("jonas"), abuse["as"]("pia")
    jonas_id, pia_id = ids(abuse, "jonas", "pia")
    before, count = allowance(jonas, jonas_id), given(jonas, jonas_id)
    for to in ([jonas_id], [pia_id, jonas_id]):
        payload = mutate(jonas, GIVE, to=to, message="me!")["data"]["giveKudos"]
        assert payload["kudos"] is None
        assert payload["errors"] == [{"field": "to", "code": "KUDOS_TO_SELF",
                                      "message": "kudos are for others: you cannot send kudos to yourself"}]
    assert allowance(jonas, jonas_id) == before and given(jonas, jonas_id) == count

    kudos = mutate(jonas, GIVE, to=[pia_id], message="Thanks!")["data"]["giveKudos"]["kudos"]
    for who in (jonas, pia):  # the giver and the recipient
        own = mutate(who, 'mutation($id: ID!) { addOnKudos(id: $id) { kudos { id } errors { code } } }', id=kudos["id"])
        assert own["data"]["addOnKudos"]["errors"] == [{"code": "OWN_KUDOS"}]
    one = jonas("query($id: ID!) { kudos(id: $id) { addOnCount } }", {"id": kudos["id"]}).json()
    assert one["data"]["kudos"] == {"addOnCount": 0}


def test_parallel_give_kudos_cannot_exceed_the_monthly_allowance(abuse):
    vera = abuse["as"]("vera")
    vera_id = abuse["people"]["vera"]["id"]
    helpers = ids(abuse, *(f"helper{i:02d}" for i in range(1, 11)))
    assert allowance(vera, vera_id) == {"used": 0, "left": 20}
    # 30 at once, to ten people three times each: the weekly cap (3) never refuses, the
    # allowance (20) must refuse exactly 10.
    calls = [helpers[i % 10] for i in range(30)]
    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(lambda to: vera(GIVE, {"to": [to], "message": "Thanks a lot!"}), calls))
    for answer in answers:
        assert_clean(answer)
    payloads = [a.json()["data"]["giveKudos"] for a in answers]
    accepted = [p for p in payloads if p["kudos"]]
    refusals = [p["errors"] for p in payloads if not p["kudos"]]
    assert len(accepted) == 20, refusals
    assert all(e[0]["code"] == "ALLOWANCE_EXHAUSTED" and "0 left" in e[0]["message"] for e in refusals)
    assert len(refusals) == 10
    assert allowance(vera, vera_id) == {"used": 20, "left": 0}
    assert given(vera, vera_id) == 20


# -- Mongo operator injection -----------------------------------------------------------------------

OPERATORS = ['{"$gt": ""}', '{"$where": "sleep(1000) || true"}', "$where", "a.b", "$set", "{'$ne': null}"]


def test_operator_shaped_variables_are_refused_by_the_graphql_types(abuse):
    rita = abuse["as"]("rita")
    cases = [
        ("query($id: ID!) { request(id: $id) { id } }", {"id": {"$gt": ""}}),
        ("query($id: ID!) { person(id: $id) { id } }", {"id": {"$ne": None}}),
        ("query($s: String) { people(search: $s) { totalCount } }", {"s": {"$regex": ".*"}}),
        (GIVE, {"to": [{"$gt": ""}], "message": "hi"}),
        (GIVE, {"to": ["x"], "message": {"$where": "1"}}),
        (SUBMIT, {"input": {"kind": "PRICING", "title": {"$gt": ""}, "details": "d", "customer": "c",
                            "neededBy": "2030-01-01T10:00:00Z"}}),
        (SUBMIT, {"input": {"kind": {"$in": ["PRICING"]}, "title": "t", "details": "d", "customer": "c",
                            "neededBy": "2030-01-01T10:00:00Z"}}),
    ]
    before = given(rita, abuse["people"]["rita"]["id"])
    for query, variables in cases:
        answer = rita(query, variables)
        assert_clean(answer)
        assert answer.status_code == 400 and answer.json().get("data") is None, (variables, answer.text)
        assert answer.json()["errors"][0]["message"].startswith("Variable '$"), answer.text
    assert given(rita, abuse["people"]["rita"]["id"]) == before


def test_operator_shaped_text_is_stored_and_read_back_literally(abuse):
    rita, pia, admin = abuse["as"]("rita"), abuse["as"]("pia"), abuse["as_admin"]
    rid = submit(rita, title=OPERATORS[0], customer=OPERATORS[2], commitment=OPERATORS[3],
                 details=" ".join(OPERATORS) + " — enough words to make a complete brief for the pricing team, really.")
    stored = state(rita, rid)
    assert (stored["title"], stored["customer"], stored["commitment"]) == (OPERATORS[0], OPERATORS[2], OPERATORS[3])
    works(pia, "acknowledge", rid)
    answer = mutate(pia, 'mutation($id: ID!, $q: String!) { requestInfo(id: $id, question: $q) { errors { code } } }',
                    id=rid, q=OPERATORS[1])
    assert answer["data"]["requestInfo"]["errors"] == []
    assert state(rita, rid)["timeline"][-1] == {"type": "info_requested", "text": OPERATORS[1]}

    kudos = mutate(rita, GIVE, to=ids(abuse, "helper12"), message=OPERATORS[1])["data"]["giveKudos"]["kudos"]
    assert rita("query($id: ID!) { kudos(id: $id) { message } }", {"id": kudos["id"]}).json()["data"]["kudos"] == {"message": OPERATORS[1]}
    bad_value = rita('mutation($to: [ID!]!) { giveKudos(input: {to: $to, message: "x", values: ["$gt"]}) { errors { code } } }',
                     {"to": ids(abuse, "helper12")}).json()
    assert bad_value["data"]["giveKudos"]["errors"] == [{"code": "UNKNOWN_VALUE"}]

    upsert = 'mutation($i: PersonInput!) { upsertPerson(input: $i) { person { id name title } errors { code field } } }'
    person = mutate(admin, upsert, i={"email": "dollar@example.com", "name": "$set a.b", "title": OPERATORS[0],
                                      "role": "SUPPORT", "department": "LEGAL"})["data"]["upsertPerson"]
    assert person["errors"] == [] and (person["person"]["name"], person["person"]["title"]) == ("$set a.b", OPERATORS[0])
    manager = mutate(admin, upsert, i={"email": "dollar@example.com", "name": "x", "role": "SUPPORT", "department": "LEGAL",
                                       "managerId": '{"$gt": ""}'})["data"]["upsertPerson"]
    assert manager["errors"] == [{"code": "UNKNOWN_MANAGER", "field": "managerId"}]

    # Search is literal: a regex or an operator matches nobody but who literally has it.
    for search, expected in ((".*", 0), ("$where", 0), ("$set a.b", 1), ("{", 0)):
        found = rita("query($s: String) { people(search: $s) { totalCount } }", {"s": search}).json()
        assert found["data"]["people"]["totalCount"] == expected, search


def test_ids_are_ids_never_a_path_to_another_endpoint(abuse):
    admin, rita = abuse["as_admin"], abuse["as"]("rita")
    omar_id = abuse["people"]["omar"]["id"]
    traversals = [f"../people/{omar_id}/deactivate?", f"..%2Fpeople%2F{omar_id}%2Fdeactivate%3F", "..", ".", "a/b", "?x=1", "#",
                  "", " ", "x/", "/", "v\u0091/"]
    for rid in traversals:
        for step in ("cancel", "acknowledge"):
            body = mutate(admin, ACT[step], id=rid)
            assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "NOT_FOUND", (rid, body)
        assert rita("query($id: ID!) { request(id: $id) { id } }", {"id": rid}).json()["data"] == {"request": None}
        assert rita("query($id: ID!) { kudos(id: $id) { id } }", {"id": rid}).json()["data"] == {"kudos": None}
        assert mutate(rita, 'mutation($id: ID!) { addOnKudos(id: $id) { errors { code } } }', id=rid)["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    person = admin("query($id: ID!) { person(id: $id) { active } }", {"id": omar_id}).json()
    assert person["data"]["person"] == {"active": True}
    assert http.get(abuse["url"] + "/cards/..%2Fkudos", timeout=10).status_code == 404


def forged_cursor(values) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def test_forged_cursors_are_refused(abuse):
    rita = abuse["as"]("rita")
    for values in ([{"$ne": None}, {"$ne": None}], ["x", {"$gt": ""}], [{"$where": "sleep(1000)"}, "x"]):
        for query in ("query($a: String) { kudosFeed(after: $a) { totalCount } }",
                      "query($a: String) { people(after: $a) { totalCount } }",
                      "query($a: String) { requests(filter: {department: PRICING}, after: $a) { totalCount } }"):
            answer = rita(query, {"a": forged_cursor(values)})
            assert_clean(answer)
            error = answer.json()["errors"][0]
            assert error["extensions"]["code"] == "BAD_CURSOR" and "cursor" in error["message"], answer.text


def test_csv_import_takes_operator_shaped_cells_literally_and_refuses_strange_columns(abuse):
    admin = abuse["as_admin"]
    query = 'mutation($csv: String!) { importPeople(csv: $csv) { created rowErrors { line code } errors { code message } } }'
    for header in ("email,name,role,department,a.b", "email,name,role,department,$where"):
        answer = mutate(admin, query, csv=header + "\nx@example.com,X,rep,sales,1\n")["data"]["importPeople"]
        assert answer["errors"][0]["code"] == "BAD_CSV_HEADER" and "unknown column" in answer["errors"][0]["message"]
    csv = ('email,name,role,department,title\n"$gt@example.com","{""$gt"": """"}",rep,sales,$where\n'
           'bad,"{""$ne"": null}",rep,sales,\n')
    answer = mutate(admin, query, csv=csv)["data"]["importPeople"]
    assert answer["created"] == 1 and answer["rowErrors"] == [{"line": 3, "code": "invalid_email"}]
    found = admin('{ people(search: "$gt@") { edges { node { email name title } } } }').json()["data"]["people"]["edges"]
    assert found == [{"node": {"email": "$gt@example.com", "name": '{"$gt": ""}', "title": "$where"}}]


def test_the_internal_apis_refuse_operators_in_bodies_and_take_query_parameters_literally(abuse):
    token, rita_id, pia_id = abuse["internal_token"], *ids(abuse, "rita", "pia")
    requests_api = Client(f"http://127.0.0.1:{abuse['ports']['requests']}", token, rita_id)
    kudos_api = Client(f"http://127.0.0.1:{abuse['ports']['kudos']}", token, rita_id)
    rid = submit(abuse["as"]("rita"))
    before = requests_api.get(f"/requests/{rid}").json()
    op = {"$gt": ""}
    refusals = [
        (requests_api.post("/people/lookup", {"ids": [op]}), "invalid_ids"),
        (requests_api.post("/people/lookup", {"ids": op}), "invalid_ids"),
        (requests_api.post("/requests", {"kind": "pricing", "title": op, "details": "d", "customer": "c",
                                         "needed_by": "2030-01-01T10:00:00Z"}), "invalid_title"),
        (requests_api.post("/requests", {"kind": {"$in": ["pricing"]}}), "invalid_kind"),
        (requests_api.post(f"/requests/{rid}/assign", {"assignee_ids": [op]}), "invalid_assignee_ids"),
        (requests_api.post(f"/requests/{rid}/cancel", {"reason": op}), "invalid_reason"),
        (requests_api.as_(abuse["admin_id"]).post("/people", {"email": "q@example.com", "name": "Q", "role": "rep",
                                                              "department": "sales", "manager_id": op}), "invalid_manager_id"),
        (requests_api.as_(abuse["admin_id"]).post("/people", {"email": op, "name": "Q", "role": "rep", "department": "sales"}),
         "invalid_email"),
        (kudos_api.post("/kudos", {"to": [op], "message": "hi"}), "invalid_recipients"),
        (kudos_api.post("/kudos", {"to": [pia_id], "message": "hi", "request_id": op}), "invalid_request_id"),
        (kudos_api.post("/kudos", {"to": [pia_id], "message": "hi", "values": [op]}), "invalid_values"),
        (kudos_api.get("/kudos", params={"after": forged_cursor([{"$ne": None}, "x"])}), "bad_cursor"),
    ]
    for response, code in refusals:
        assert response.status_code == 400 and response.json()["error"]["code"] == code, (code, response.text)
    assert requests_api.get(f"/requests/{rid}").json() == before

    # Query parameters are strings: an operator written into one matches nothing.
    for params in ({"requester_id": '{"$ne": null}'}, {"requester_id[$ne]": "x", "department": "legal"},
                   {"assignee_id": '{"$gt": ""}'}):
        listed = requests_api.get("/requests", params=params)
        assert listed.status_code == 200 and listed.json()["total_count"] == 0, params
    assert kudos_api.get("/kudos", params={"person_id": '{"$ne": null}'}).json()["total_count"] == 0
    points_api = Client(f"http://127.0.0.1:{abuse['ports']['points']}", token, rita_id)
    for params in ({"period": "week", "after": forged_cursor([{"$ne": None}, "x"])},
                   {"period": "week", "after": forged_cursor(["x", {"$gt": ""}])},
                   {"period": {"$ne": None}.__repr__()}, {"period": "week", "scope": "$where"}):
        answer = points_api.get("/leaderboard", params=params)
        assert answer.status_code == 400 and answer.json()["error"]["code"] in ("bad_cursor", "invalid_period", "invalid_scope"), (
            params, answer.text)
    board = points_api.get("/leaderboard", params={"period": "week", "scope": "department", "department": '{"$ne": null}'})
    assert board.status_code == 200 and board.json()["entries"] == []
    # An actor id is a string too.
    assert requests_api.as_('{"$gt": ""}').get("/people").status_code == 401
    assert kudos_api.as_('{"$gt": ""}').get("/kudos").status_code == 401


# -- floods, huge bodies and variables --------------------------------------------------------------

def post_raw(abuse, data, token_of="rita", content_type="application/json"):
    return http.post(abuse["url"] + "/graphql", data=data, timeout=30,
                     headers={"Content-Type": content_type, "Authorization": f"Bearer {abuse['as'](token_of).token}"})


def test_batched_operations_are_refused_and_run_nothing(abuse):
    jonas_id, helper = ids(abuse, "jonas", "helper12")
    jonas = abuse["as"]("jonas")
    before = allowance(jonas, jonas_id)
    give = {"query": GIVE, "variables": {"to": [helper], "message": "batched"}}
    for batch in ([give] * 50, [{"query": "{ me { name } }"}] * 2, []):
        answer = post_raw(abuse, json.dumps(batch), token_of="jonas")
        assert_clean(answer)
        assert answer.status_code == 400 and "batched operations" in answer.json()["errors"][0]["message"], answer.text
    assert allowance(jonas, jonas_id) == before


def test_alias_field_and_fragment_floods_are_refused_before_they_run(abuse):
    rita = abuse["as"]("rita")
    floods = {
        "aliases": ("{ " + " ".join(f"a{i}: me {{ name }}" for i in range(1000)) + " }", "too many aliases"),
        "repeated fields": ("{ me { " + "name " * 5000 + "} }", "too many fields"),
        "repeated selections": ("{ " + "me { name } " * 2000 + "}", "too many fields"),
        "inline fragments": ("{ me { " + "... on Person { name } " * 2000 + "} }", "too many fields"),
        "fragment cycle": ("{ me { ...A } } fragment A on Person { manager { ...B } } fragment B on Person { manager { ...A } }",
                           "fragment"),
        "self spread": ("{ me { ...A } } fragment A on Person { name ...A }", "fragment"),
        "fragment fan-out": ("{ people(first: 100) { edges { node { ...F0 } } } } "
                             + " ".join(f"fragment F{i} on Person {{ manager {{ ...F{i + 1} ...F{i + 1} }} }}" for i in range(8))
                             + " fragment F8 on Person { name }", "exceeds"),
        "deep": ("{ me { " + "manager { " * 40 + "name" + " }" * 40 + " } }", "depth"),
        "deep lists": ("{ people { edges { node { manager { manager { manager { manager { manager { manager { manager { name } } } } } } } } } } }", "depth"),
        "many operations": (" ".join(f"query Q{i} {{ me {{ name }} }}" for i in range(500)), "operationName"),
    }
    for name, (query, expected) in floods.items():
        answer = rita(query)
        assert_clean(answer)
        assert answer.status_code == 400 and "data" not in answer.json(), (name, answer.text[:300])
        assert expected in json.dumps(answer.json()["errors"]), (name, answer.text[:300])
    # Nothing was executed: the answers carry no serviceCalls extension, and a fine query still works.
    assert rita("{ me { name } }").json()["data"] == {"me": {"name": "Rita Okafor"}}


def test_huge_bodies_and_variables_are_refused_or_ignored_safely(abuse):
    limit = abuse["settings"].max_body_bytes
    rita = abuse["as"]("rita")
    rita_id = abuse["people"]["rita"]["id"]
    before = given(rita, rita_id)
    cases = {
        "over the body limit": (json.dumps({"query": "{ me { name } }", "variables": {"x": "y" * limit}}), 413),
        "nested arrays": ('{"query": "{ me { name } }", "variables": {"v": ' + "[" * 20000 + "]" * 20000 + "}}", 400),
        "nested objects": ('{"query": "{ me { name } }", "variables": ' + '{"a":' * 9000 + "1" + "}" * 9000 + "}", 400),
        "variables not an object": (json.dumps({"query": "{ me { name } }", "variables": ["$gt"]}), 400),
        "query not a string": (json.dumps({"query": {"$gt": ""}}), 400),
        "not JSON": ("{'query': ", 400),
    }
    for name, (body, status) in cases.items():
        answer = post_raw(abuse, body)
        assert answer.status_code == status, (name, answer.status_code, answer.text[:300])
        assert not LEAK.search(answer.text), (name, answer.text[:300])
    # A body too big, sent without a length (chunked): still refused.
    chunked = http.post(abuse["url"] + "/graphql", data=iter([b'{"query": "{ me { name } }", "x": "', b"y" * limit, b'"}']),
                        headers={"Content-Type": "application/json", "Authorization": f"Bearer {rita.token}"}, timeout=30)
    assert chunked.status_code in (400, 413) and not LEAK.search(chunked.text), chunked.text
    assert "data" not in chunked.json(), chunked.text
    # Within the limit: thousands of unused variables are ignored; oversized values get the
    # business rule's answer.
    many = {f"v{i}": {"$gt": i} for i in range(2000)}
    assert rita("{ me { name } }", many).json()["data"] == {"me": {"name": "Rita Okafor"}}
    long_message = mutate(rita, GIVE, to=ids(abuse, "helper12"), message="x" * 50_000)["data"]["giveKudos"]
    assert long_message["errors"][0]["code"] == "MESSAGE_TOO_LONG"
    many_to = mutate(rita, GIVE, to=[f"p_{i}" for i in range(3000)], message="hi")["data"]["giveKudos"]
    assert many_to["errors"][0]["code"] == "TOO_MANY_RECIPIENTS"
    assert given(rita, rita_id) == before


def test_a_websocket_message_nested_too_deeply_closes_with_the_protocol_code(abuse):
    from simple_websocket import Client as WsClient, ConnectionClosed

    ws = WsClient(abuse["url"].replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"])
    ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {abuse['as']('rita').token}"}}))
    assert json.loads(ws.receive(timeout=10)) == {"type": "connection_ack"}
    ws.send('{"type": "subscribe", "id": "1", "payload": ' + "[" * 5_000 + "]" * 5_000 + "}")
    with pytest.raises(ConnectionClosed) as closed:
        while ws.receive(timeout=10) is not None:
            pass
    assert closed.value.reason == 4400


# -- sign-on over HTTP (the full list is proven on verify_token in tests/unit/test_gateway_auth.py) --

def test_tokens_that_are_not_valid_now_or_here_get_no_data(abuse):
    import jwt as pyjwt

    settings = abuse["settings"]
    person = abuse["people"]["rita"]
    now = int(datetime.now(timezone.utc).timestamp())

    def signed(key=settings.jwt_secret, algorithm="HS256", **changes):
        claims = {"sub": person["id"], "iss": settings.jwt_issuer, "aud": settings.jwt_audience,
                  "iat": now, "nbf": now, "exp": now + 300, **changes}
        return pyjwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm)

    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = {
        "not yet valid (nbf)": signed(nbf=now + 3600),
        "issued in the future": signed(iat=now + 3600, nbf=None),
        "wrong issuer": signed(iss="someone-else"),
        "no expiry": signed(exp=None),
        "RS256 on an HS256 gateway": signed(key=rsa_key, algorithm="RS256"),
        "unknown person": signed(sub="p_nobody"),
        "a path for a subject": signed(sub="../requests"),
    }
    for name, token in bad.items():
        answer = GraphQL(abuse["url"], token)("{ me { name } }")
        assert_clean(answer)
        assert answer.status_code == 401 and "data" not in answer.json(), (name, answer.text)
        assert answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        refused_mutation = GraphQL(abuse["url"], token)(GIVE, {"to": ids(abuse, "helper12"), "message": "hi"})
        assert refused_mutation.status_code == 401, name
    assert GraphQL(abuse["url"], signed())("{ me { name } }").json()["data"] == {"me": {"name": "Rita Okafor"}}


# -- card text ------------------------------------------------------------------------------------

NASTY_MESSAGES = {
    "long word": "Thanks" + "!" * 400 + "W" * 90,
    "control characters": "Thanks\x00\x07\x1b[31m for\x08 the\x7f help\r\n\x0b\x0c\x1c done",
    "bidi and zero-width": "Thanks \u202egnicirp\u202c \u2066for\u2069 the \u200b\u200c\u200d\u2060\ufeffhelp \u061c\u200f\u200e",
    "emoji and joiners": "Thanks 🎉👍🏽 👨\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈 🇳🇱 ☕️" * 8,
    "mixed scripts": "شكرا جزيلا! תודה רבה! 谢谢! Спасибо! ありがとう! " * 5,
    "combining marks": "Th" + "\u0301\u0316\u0330" * 60 + "anks",
}


def test_nasty_card_text_is_cleaned_and_every_card_renders(abuse):
    omar = abuse["as"]("omar")
    helpers = ids(abuse, *(f"helper{i:02d}" for i in range(1, 13)))
    for i, (name, message) in enumerate(NASTY_MESSAGES.items()):
        to = helpers[2 * i:2 * i + 2]  # the weekly cap (3 per recipient) is not what this is about
        payload = mutate(omar, GIVE, to=to, message=message)["data"]["giveKudos"]
        assert payload["errors"] == [], (name, payload)
        kudos = payload["kudos"]
        stored = kudos["message"]
        for invisible in "\x00\x07\x1b\x08\x7f\r\x0b\u202e\u202c\u2066\u2069\u200b\u2060\ufeff\u061c\u200f\u200e":
            assert invisible not in stored, (name, repr(stored))
        # Joiners stay only where they join two visible characters (emoji ZWJ sequences).
        assert not re.search(r"(^|\s)[\u200c\u200d]|[\u200c\u200d]($|\s)|[\u200c\u200d]{2}", stored), (name, repr(stored))
        if name == "emoji and joiners":
            assert "👨\u200d👩\u200d👧\u200d👦" in stored and "🏳️\u200d🌈" in stored, repr(stored)
        for url, size in ((kudos["cardUrl"], (1200, 630)), (kudos["thumbnailUrl"], (400, 210))):
            image = http.get(url, timeout=30)
            assert image.status_code == 200 and image.headers["Content-Type"] == "image/png", (name, image.status_code)
            with Image.open(io.BytesIO(image.content)) as png:
                png.verify()
            with Image.open(io.BytesIO(image.content)) as png:
                assert png.size == size and png.mode == "RGB", name
    for message in ("x" * 501, "\u200b" * 20, " \n\t "):
        payload = mutate(omar, GIVE, to=helpers[:1], message=message)["data"]["giveKudos"]
        assert payload["kudos"] is None and payload["errors"][0]["code"] in ("MESSAGE_TOO_LONG", "EMPTY_MESSAGE"), payload
        assert payload["errors"][0]["field"] == "message" and payload["errors"][0]["message"]


def test_names_lose_direction_overrides_and_invisible_characters(abuse):
    upsert = 'mutation($i: PersonInput!) { upsertPerson(input: $i) { person { name title } errors { code field } } }'
    person = {"email": "reversed@example.com", "role": "SUPPORT", "department": "LEGAL"}
    stored = mutate(abuse["as_admin"], upsert, i={**person, "name": "\u202eAdmin\u202c \u200bIT\x00", "title": "\u2066Boss\x07"})
    assert stored["data"]["upsertPerson"] == {"person": {"name": "Admin IT", "title": "Boss"}, "errors": []}
    empty = mutate(abuse["as_admin"], upsert, i={**person, "name": "\u202e\u200b"})
    assert empty["data"]["upsertPerson"] == {"person": None, "errors": [{"code": "MISSING_NAME", "field": "name"}]}


# -- GraphQL fuzzing with schemathesis --------------------------------------------------------------

FUZZ_EXAMPLES = int(os.environ.get("INSIDETRACK_FUZZ_EXAMPLES", "3"))


@pytest.mark.parametrize("derandomize", [True, False], ids=["fixed", "random"])
def test_fuzzing_every_operation_finds_no_500_and_no_internals(abuse, derandomize):
    """schemathesis generates valid and invalid queries and mutations for every root field of
    the schema (as an admin and as a rep), a fixed set and a random one (new examples each
    run); every answer must be a clean GraphQL answer whose every error names a stable code.

    INSIDETRACK_FUZZ_EXAMPLES sets the examples per operation and mode (default 3; try 50)."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings, strategies as st
    from schemathesis import GenerationMode

    schemathesis.graphql.scalar("DateTime", st.datetimes(timezones=st.timezones()).map(
        lambda d: schemathesis.graphql.nodes.String(d.isoformat())))
    admin, rita = abuse["as_admin"], abuse["as"]("rita")
    schema = schemathesis.graphql.from_url(abuse["url"] + "/graphql", headers={"Authorization": f"Bearer {admin.token}"})
    session = http.Session()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [o.label for o in operations]

    for operation in operations:
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

        @given(case=strategy, who=st.sampled_from([admin, rita]))
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, derandomize=derandomize, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case, who):
            response = case.call(session=session, headers={"Authorization": f"Bearer {who.token}"}, timeout=30)
            try:
                assert_clean(response)
                for error in response.json().get("errors") or []:
                    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", (error.get("extensions") or {}).get("code") or ""), error
            except AssertionError as exc:
                failures.append(f"{operation.label}: {case.body!r} -> {exc}")

        run()
    assert not failures, "\n".join(failures[:10])
