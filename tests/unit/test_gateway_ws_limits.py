"""What one WebSocket connection may do: a flood of messages closes it (1008), too many open
operations get an error for the next subscribe (the connection stays), and a person
deactivated, gone from the directory, or whose token expired is disconnected (4403) at the
next check; a directory that cannot be asked right now disconnects no one."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from services.gateway import ws as ws_module
from services.gateway.clients import ServiceError, ServiceUnavailable
from services.gateway.ws import Close, Connection, Operation


class FakeSocket:
    def __init__(self):
        self.sent = []

    def send(self, text):
        self.sent.append(json.loads(text))


class Directory:
    """The requests service's /people/<id> as the gateway's client sees it."""

    def __init__(self, answer):
        self.answer, self.asked = answer, 0

    def get(self, path, actor):
        self.asked += 1
        if isinstance(self.answer, Exception):
            raise self.answer


def connection(answer=None, **limits) -> tuple[Connection, Directory]:
    settings = SimpleNamespace(**{"ws_messages_per_s": 1.0, "ws_max_subscriptions": 2, "ws_recheck_s": 60.0, **limits})
    directory = Directory(answer)
    conn = Connection(ws=FakeSocket(), settings=settings, services=SimpleNamespace(requests=directory), hub=None,
                      base_url="http://gateway")
    conn.actor_id = "rita"
    conn.expires_at = datetime.now(timezone.utc) + timedelta(hours=1)
    return conn, directory


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(ws_module.time, "monotonic", lambda: now[0])
    return now


def test_a_burst_passes_a_flood_closes_the_connection(clock):
    conn, _ = connection()  # 1 message a second, bursts of 10
    for _ in range(10):
        conn._throttle()
    with pytest.raises(Close) as closed:
        conn._throttle()
    assert closed.value.code == 1008
    clock[0] += 3  # three seconds later, three more
    for _ in range(3):
        conn._throttle()
    with pytest.raises(Close):
        conn._throttle()


def test_too_many_operations_on_one_connection_refuse_the_next_subscribe():
    conn, _ = connection()
    conn.operations = {"a": Operation("a", None, {}, None), "b": Operation("b", None, {}, None)}
    conn._subscribe({"id": "c", "type": "subscribe", "payload": {"query": "subscription { kudosGiven { id } }"}})
    [error] = conn.ws.sent
    assert error["id"] == "c" and error["type"] == "error"
    assert error["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    assert set(conn.operations) == {"a", "b"}


@pytest.mark.parametrize("code", ["inactive_actor", "unknown_actor"])
def test_a_person_deactivated_or_gone_is_disconnected_at_the_next_check(clock, code):
    conn, directory = connection(None)
    conn._recheck()  # at init: active
    assert directory.asked == 1
    directory.answer = ServiceError("requests", 403, code, "no")
    clock[0] += 30
    conn._recheck()  # not yet time to look again
    assert directory.asked == 1
    clock[0] += 31
    with pytest.raises(Close) as closed:
        conn._recheck()
    assert closed.value.code == 4403


def test_an_expired_token_is_disconnected_and_an_unreachable_directory_disconnects_no_one(clock):
    conn, directory = connection(ServiceUnavailable("requests", "down"))
    conn._recheck()
    clock[0] += 61
    conn._recheck()
    assert directory.asked == 2  # asked, could not tell: the connection stays
    conn.expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    clock[0] += 61
    with pytest.raises(Close) as closed:
        conn._recheck()
    assert closed.value.code == 4403 and "expired" in closed.value.reason


@pytest.mark.parametrize("payload, code", [
    ({"query": "subscription { kudosGiven { id "}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "subscription { kudosGiven { noSuchField } }"}, "GRAPHQL_VALIDATION_FAILED"),
    ({"query": "subscription A { kudosGiven { id } } subscription B { kudosGiven { id } }"}, "BAD_REQUEST"),
    ({"query": "subscription($p: Period!) { leaderboardChanged(period: $p) { key } }", "variables": {"p": "DECADE"}},
     "BAD_USER_INPUT"),
])
def test_a_subscribe_that_cannot_run_gets_an_error_with_a_stable_code(payload, code):
    """As over HTTP (docs/graphql.md): every error a client gets names its code."""
    conn, _ = connection(introspection=True, max_query_depth=10, max_aliases=10, max_query_cost=1000)
    conn._subscribe({"id": "x", "type": "subscribe", "payload": payload})
    [error] = conn.ws.sent
    assert error["type"] == "error" and [e["extensions"]["code"] for e in error["payload"]] == [code] * len(error["payload"])
    assert not conn.operations


def test_a_screen_token_may_not_run_a_mutation_over_the_socket():
    conn, _ = connection(introspection=True, max_query_depth=10, max_aliases=10, max_query_cost=1000)
    conn.read_only = True
    conn._subscribe({"id": "m", "type": "subscribe", "payload": {"query": 'mutation { cancelRequest(id: "r", reason: "x") { errors { code } } }'}})
    [error] = conn.ws.sent
    assert error["payload"][0]["extensions"]["code"] == "FORBIDDEN" and not conn.operations


def test_who_is_active_comes_from_the_people_topic_without_a_call_and_the_newest_event_wins():
    """The gateway's copy of the people topic answers the per-request check (a year's portal:
    every read by another person asked the requests service before); a deactivation is refused
    at once, an event older than the one kept changes nothing, and someone the copy has not
    heard of is asked of the requests service as before."""
    from datetime import datetime, timedelta, timezone

    from services.gateway.http import active_refusal
    from services.gateway.live import PeopleStatus

    people, at = PeopleStatus(), datetime(2026, 11, 30, 9, tzinfo=timezone.utc)

    def event(person_id: str, active: bool, when: datetime):
        return SimpleNamespace(type="person.upserted", time=when), SimpleNamespace(person_id=person_id, active=active)

    people.apply(*event("p_rita", True, at))
    people.apply(*event("p_old", True, at))
    people.apply(*event("p_old", False, at + timedelta(minutes=5)))
    people.apply(*event("p_old", True, at + timedelta(minutes=1)))  # late, older: ignored
    directory = Directory(None)
    services = SimpleNamespace(requests=directory)
    assert active_refusal(services, {}, "p_rita", people=people) is None
    assert active_refusal(services, {}, "p_old", people=people) == (403, "FORBIDDEN", "this account is deactivated")
    assert directory.asked == 0
    assert active_refusal(services, {}, "p_new", people=people) is None  # not heard of yet: asked
    assert directory.asked == 1
