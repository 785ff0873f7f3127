"""The kudos process over real HTTP, against FerretDB and Kafka."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image
import io

from services.recognition.kudos.app import build_runtime
from services.recognition.kudos.config import KudosSettings
from shared.bus.kafka import EventProducer
from shared.clock import ManualClock
from shared.events import build_event, decode
from tests.conftest import wait_until
from tests.integration.helpers import read_topic
from tests.integration.service_helpers import Client, serving

pytestmark = pytest.mark.integration

# Wednesday 25 November 2026, 10:00 in Amsterdam.
START = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)

PEOPLE = [
    ("rita", "Rita Okafor", "rep", "sales"),
    ("jonas", "Jonas Weiß", "rep", "sales"),
    ("pia", "Pía Novák", "support", "pricing"),
    ("li", "李伟 (Li Wei)", "support", "pricing"),
    ("ahmed", "Ahmed Haddad", "support", "legal"),
    ("gone", "Gone Person", "support", "legal"),
]


@pytest.fixture
def clock():
    return ManualClock(START)


def publish_people(settings, producer, people=PEOPLE, active_overrides=None):
    events = []
    for pid, name, role, dept in people:
        active = (active_overrides or {}).get(pid, pid != "gone")
        events.append(build_event("person.upserted", pid, {
            "person_id": pid, "email": f"{pid}@example.com", "name": name, "role": role,
            "department": dept, "active": active,
        }, source="requests"))
    producer.publish_all(events)


@pytest.fixture
def kudos_settings(settings):
    return KudosSettings(**{**settings.model_dump(), "monthly_allowance": 5})


@pytest.fixture
def runtime(kudos_settings, producer, clock):
    publish_people(kudos_settings, producer)
    rt = build_runtime(kudos_settings, clock=clock)
    rt.start_background()
    assert wait_until(rt.directory_reader.caught_up.is_set, timeout=30)
    yield rt
    rt.stop()
    from shared.db import disconnect

    disconnect()


@pytest.fixture
def api(runtime, settings):
    with serving(runtime.app) as url:
        client = Client(url, settings.internal_token)
        client.runtime = runtime
        yield client


def api_runtime_service(api):
    return api.runtime.service


def give(api, giver, to, message="Thanks for the help!", **extra):
    return api.as_(giver).post("/kudos", json={"to": to, "message": message, **extra})


def test_a_coffee_kudos_is_stored_published_and_has_a_card(api, settings):
    response = give(api, "rita", ["pia"], "Thanks for pricing Acme in a day!", values=["speed", "customer_first"], gesture="coffee", request_id="r_123")
    assert response.status_code == 201, response.text
    kudos = response.json()
    assert kudos["recipients"] == [{"id": "pia", "name": "Pía Novák"}]
    assert kudos["gesture"] == "coffee" and kudos["values"] == ["speed", "customer_first"]

    [(envelope, data)] = [decode(r.value) for r in read_topic(settings, settings.topic("kudos"), 1)]
    assert envelope.type == "kudos.given" and envelope.subject == kudos["id"]
    assert data.recipient_ids == ["pia"] and data.giver_id == "rita" and data.request_id == "r_123"

    card = api.as_(None).get(kudos["card_url"])  # public: no token, no actor
    assert card.status_code == 200 and card.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(card.content)).size == (1200, 630)
    thumb = api.as_(None).get(kudos["thumbnail_url"])
    assert Image.open(io.BytesIO(thumb.content)).size == (400, 210)
    etag = card.headers["ETag"]
    assert "max-age" in card.headers["Cache-Control"]
    again = api.as_(None).get(kudos["card_url"], headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert api.as_(None).get(kudos["card_url"]).content == card.content  # same kudos, same bytes
    assert api.as_(None).get("/cards/k_nope.png").status_code == 404


def test_every_rule_is_refused_with_a_stable_code(api, runtime):
    cases = [
        (give(api, "rita", ["rita"]), 422, "kudos_to_self"),
        (give(api, "rita", ["nobody"]), 400, "unknown_recipient"),
        (give(api, "rita", ["gone"]), 422, "inactive_recipient"),
        (give(api, "rita", ["pia"], message=""), 400, "empty_message"),
        (give(api, "rita", ["pia"], message="x" * 501), 400, "message_too_long"),
        (give(api, "rita", ["pia"], values=["synergy"]), 400, "unknown_value"),
        (give(api, "rita", ["pia"], gesture="champagne"), 400, "unknown_gesture"),
        (give(api, "stranger", ["pia"]), 401, "unknown_actor"),
        (api.as_("rita").post("/kudos", json={"to": "pia", "message": "hi"}), 400, "invalid_recipients"),
        (api.as_("rita").post("/kudos", json={"to": ["pia"], "message": {"$gt": ""}}), 400, "invalid_message"),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    assert runtime.service.kudos.count_documents({}) == 0
    assert api.as_("rita").get("/allowance/rita").json()["used"] == 0  # refusals spent nothing


def test_weekly_cap_and_monthly_allowance(api, clock):
    for _ in range(3):
        assert give(api, "rita", ["pia"]).status_code == 201
    fourth = give(api, "rita", ["pia"])
    assert fourth.status_code == 422 and fourth.json()["error"]["code"] == "weekly_cap_reached"
    assert api.as_("rita").get("/allowance/rita").json()["left"] == 2  # the refused one cost nothing

    # A two-recipient kudos spends two; the allowance (5 in this test) runs out.
    assert give(api, "rita", ["li", "ahmed"]).status_code == 201
    over = give(api, "rita", ["jonas"])
    assert over.status_code == 422 and over.json()["error"]["code"] == "allowance_exhausted"
    allowance = api.as_("rita").get("/allowance/rita").json()
    assert allowance["left"] == 0 and allowance["resets_at"].startswith("2026-11-30T23:00:00")  # 1 Dec, Amsterdam

    clock.set(datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc))  # a new month and a new week
    # A kudos to more people than the whole allowance never fits, even on a fresh month.
    service = api_runtime_service(api)
    assert service._take(service.allowances, "jonas:2026-12", "used", 6, 5) is False
    assert service.allowances.find_one({"_id": "jonas:2026-12"}) is None
    assert give(api, "rita", ["pia"]).status_code == 201
    assert api.as_("rita").get("/allowance/rita").json()["left"] == 4


def test_parallel_gives_cannot_both_spend_the_last_kudos(api, runtime):
    for person in ("pia", "li", "ahmed", "jonas"):
        assert give(api, "rita", [person]).status_code == 201
    # One kudos left; eight parallel attempts to different people.
    targets = ["pia", "li", "ahmed", "jonas"] * 2
    results = []
    barrier = threading.Barrier(len(targets))

    def attempt(person):
        barrier.wait()
        results.append(give(api, "rita", [person]).status_code)

    threads = [threading.Thread(target=attempt, args=(p,)) for p in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] + [422] * 7
    assert runtime.service.kudos.count_documents({"giver_id": "rita"}) == 5
    assert api.as_("rita").get("/allowance/rita").json() | {"resets_at": None} == {
        "monthly_allowance": 5, "used": 5, "left": 0, "resets_at": None}


def test_add_ons_once_each_and_never_by_the_giver_or_recipients(api, settings):
    kudos = give(api, "rita", ["pia"]).json()
    kid = kudos["id"]
    assert api.as_("rita").post(f"/kudos/{kid}/add-ons").json()["error"]["code"] == "own_kudos"
    assert api.as_("pia").post(f"/kudos/{kid}/add-ons").json()["error"]["code"] == "own_kudos"
    added = api.as_("jonas").post(f"/kudos/{kid}/add-ons", json={"message": "+1, she's great"})
    assert added.status_code == 201 and added.json()["add_on_count"] == 1
    assert added.json()["add_ons"][0]["name"] == "Jonas Weiß"
    twice = api.as_("jonas").post(f"/kudos/{kid}/add-ons")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_added_on"
    assert api.as_("li").post(f"/kudos/{kid}/add-ons").status_code == 201

    events = [decode(r.value) for r in read_topic(settings, settings.topic("kudos"), 3)]
    assert [e.type for e, _ in events] == ["kudos.given", "kudos.added_on", "kudos.added_on"]
    assert [d.actor_id for e, d in events[1:]] == ["jonas", "li"]


def test_feeds_page_through_company_received_and_given(api, clock):
    for giver, to in (("rita", "pia"), ("jonas", "pia"), ("pia", "rita"), ("rita", "li")):
        give(api, giver, [to])
        clock.advance(minutes=5)
    company = api.as_("li").get("/kudos", params={"first": 3}).json()
    rest = api.as_("li").get("/kudos", params={"first": 3, "after": company["page_info"]["end_cursor"]}).json()
    order = [(k["giver_id"], k["recipient_ids"][0]) for k in company["items"] + rest["items"]]
    assert order == [("rita", "li"), ("pia", "rita"), ("jonas", "pia"), ("rita", "pia")]  # newest first
    assert company["total_count"] == 4 and not rest["page_info"]["has_next_page"]
    received = api.as_("li").get("/kudos", params={"person_id": "pia", "direction": "received"}).json()
    assert [k["giver_id"] for k in received["items"]] == ["jonas", "rita"]
    given = api.as_("li").get("/kudos", params={"person_id": "rita", "direction": "given"}).json()
    assert given["total_count"] == 2


def test_directory_copy_survives_a_restart_and_follows_deactivation(kudos_settings, producer, clock):
    publish_people(kudos_settings, producer)
    first = build_runtime(kudos_settings, clock=clock)
    first.start_background()
    assert wait_until(first.directory_reader.caught_up.is_set, timeout=30)
    assert first.service.directory.count() == len(PEOPLE)
    first.stop()

    # While the service is down, Pía is deactivated; the new process reads the topic again.
    publish_people(kudos_settings, producer, people=[p for p in PEOPLE if p[0] == "pia"], active_overrides={"pia": False})
    second = build_runtime(kudos_settings, clock=clock)
    second.start_background()
    try:
        assert wait_until(second.directory_reader.caught_up.is_set, timeout=30)
        assert second.service.directory.get("pia").active is False
        with serving(second.app) as url:
            client = Client(url, kudos_settings.internal_token)
            refused = give(client, "rita", ["pia"])
            assert refused.json()["error"]["code"] == "inactive_recipient"
            ready = client.as_(None).get("/readyz").json()
            assert ready["checks"]["directory"]["ok"] is True
    finally:
        second.stop()
        from shared.db import disconnect

        disconnect()
