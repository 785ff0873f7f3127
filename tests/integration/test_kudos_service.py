"""The kudos process over real HTTP, against FerretDB and Kafka."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
import requests as http
from PIL import Image
import io

from services.recognition.kudos.app import build_runtime
from services.recognition.kudos.config import KudosSettings
from shared.bus.kafka import EventProducer
from shared.bus.outbox import OutboxJournal, pending_events
from shared.clock import ManualClock
from shared.events import build_event, decode
from tests.conftest import wait_until
from tests.integration.helpers import read_topic
from shared.auth import internal_headers
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
    assert runtime.service.repo.kudos.count_documents({}) == 0
    assert api.as_("rita").get("/allowance/rita").json()["used"] == 0  # refusals spent nothing


def test_the_service_itself_refuses_unknown_and_deactivated_callers_and_keeps_allowances_private(api):
    for who, status, code in (("gone", 403, "inactive_actor"), ("stranger", 401, "unknown_actor"), (None, 401, "no_actor")):
        for response in (api.as_(who).get("/kudos"), api.as_(who).get(f"/allowance/{who}"),
                         give(api, who, ["pia"]) if who else api.as_(None).post("/kudos", json={})):
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), (who, response.text)
    # Jonas (no manager of Rita's, not an admin) does not see Rita's allowance; Rita does.
    private = api.as_("jonas").get("/allowance/rita")
    assert (private.status_code, private.json()["error"]["code"]) == (403, "private")
    assert api.as_("rita").get("/allowance/rita").json()["left"] == 5


def test_a_retry_after_a_timeout_with_the_same_idempotency_key_gives_once(api, runtime, settings, monkeypatch):
    service, release = runtime.service, threading.Event()
    real_add = service.repo.feeds.add

    def held(*args, **kwargs):  # the first give is held after its insert until the retry is answered
        release.wait(30)
        return real_add(*args, **kwargs)

    monkeypatch.setattr(service.repo.feeds, "add", held)
    body = {"to": ["pia"], "message": "Thanks for the quote!", "idempotency_key": "portal-7f3a"}
    with pytest.raises(http.exceptions.ReadTimeout):  # the portal gives up waiting...
        http.post(api.base_url + "/kudos", json=body, headers=internal_headers(settings.internal_token, "rita"), timeout=1)
    retry = api.as_("rita").post("/kudos", json=body)  # ...and retries
    release.set()
    monkeypatch.undo()
    assert retry.status_code == 201, retry.text
    assert wait_until(lambda: service.repo.kudos.count_documents({}) == 1, 15)
    assert retry.json()["id"] == service.repo.kudos.find_one({})["_id"]
    assert api.as_("rita").get("/allowance/rita").json()["used"] == 1  # one allowance spent, one kudos
    # Another key is another kudos; an add-on retried with its key is answered, not refused.
    assert api.as_("rita").post("/kudos", json={**body, "idempotency_key": "portal-8b1c"}).json()["id"] != retry.json()["id"]
    for _ in range(2):
        added = api.as_("jonas").post(f"/kudos/{retry.json()['id']}/add-ons", json={"idempotency_key": "plus-1"})
        assert added.status_code == 201 and added.json()["add_on_count"] == 1, added.text
    again = api.as_("jonas").post(f"/kudos/{retry.json()['id']}/add-ons", json={})
    assert again.json()["error"]["code"] == "already_added_on"  # without the key: a second add-on, refused


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
    assert service.repo.take_allowance("jonas", "2026-12", 6, 5) is False
    assert service.repo.allowances.find_one({"_id": "jonas:2026-12"}) is None
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
    assert runtime.service.repo.kudos.count_documents({"giver_id": "rita"}) == 5
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


# -- feeds: lists kept by the write path, read by _id -------------------------------------------

def walk(api, actor="li", first=2, **params):
    """Every page of a feed: (ids newest first, the total_count of each page)."""
    ids, totals, after = [], [], None
    while True:
        page = api.as_(actor).get("/kudos", params={"first": first, **params, **({"after": after} if after else {})}).json()
        ids += [k["id"] for k in page["items"]]
        totals.append(page["total_count"])
        assert len(page["cursors"]) == len(page["items"])
        if not page["page_info"]["has_next_page"]:
            return ids, set(totals)
        after = page["page_info"]["end_cursor"]


def test_feeds_across_days_and_months_with_cursors_counts_and_both_directions(api, clock):
    plan = [("rita", ["pia"]), ("jonas", ["pia", "li"]), ("pia", ["rita"]), ("rita", ["li"]),
            ("ahmed", ["rita", "pia"]), ("rita", ["ahmed"]), ("li", ["pia"])]
    given = []
    for giver, to in plan:
        response = give(api, giver, to)
        assert response.status_code == 201, response.text
        kid = response.json()["id"]
        given.append((kid, giver, to))
        # The giver sees it at once, first in their own list.
        assert api.as_(giver).get("/kudos", params={"person_id": giver, "direction": "given", "first": 1}).json()["items"][0]["id"] == kid
        clock.advance(days=9, minutes=7)  # across days, weeks and months (November 2026 .. January 2027)
    newest_first = [kid for kid, _, _ in reversed(given)]
    assert walk(api) == (newest_first, {7})
    assert walk(api, first=100) == (newest_first, {7})
    for person in ("rita", "pia", "li", "jonas", "ahmed"):
        received = [kid for kid, _, to in reversed(given) if person in to]
        sent = [kid for kid, giver, _ in reversed(given) if giver == person]
        assert walk(api, first=1, person_id=person, direction="received") == (received, {len(received)}), person
        assert walk(api, first=2, person_id=person, direction="given") == (sent, {len(sent)}), person
    assert walk(api, person_id="nobody", direction="received") == ([], {0})
    # An add-on changes no list.
    assert api.as_("jonas").post(f"/kudos/{given[0][0]}/add-ons").status_code == 201
    assert walk(api, first=3) == (newest_first, {7})
    bad = api.as_("li").get("/kudos", params={"after": "not-a-cursor"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_cursor"


def _old_style_kudos(kid, giver, to, at, pending_event=None):
    """A kudos document as the code before the feeds wrote it (no lists), optionally with its
    kudos.given still in the outbox (a process that died right after the insert)."""
    from shared.bus.outbox import with_outbox

    doc = {"_id": kid, "giver_id": giver, "giver_name": giver.title(), "recipient_ids": to,
           "recipient_names": [t.title() for t in to], "message": "From before", "values": [], "gesture": "thanks",
           "request_id": None, "created_at": at, "add_ons": []}
    if pending_event is None:
        return {**doc, "outbox": [], "outbox_pending": False}
    return with_outbox(doc, [pending_event])


def _given_event(kid, giver, to, at):
    return build_event("kudos.given", kid, {"kudos_id": kid, "giver_id": giver, "recipient_ids": to, "message": "From before",
                                            "values": [], "gesture": "thanks", "request_id": None, "at": at}, source="kudos")


def _kudos_db(settings):
    from shared.db import mongo_client

    client = mongo_client(settings)
    return client, client[settings.database("kudos")]


def _start(kudos_settings, clock):
    rt = build_runtime(kudos_settings, clock=clock)
    rt.start_background()
    assert wait_until(rt.directory_reader.caught_up.is_set, timeout=30)
    return rt


def _stop(rt):
    from shared.db import disconnect

    rt.stop()
    disconnect()


def test_an_old_database_is_upgraded_once_on_start_in_the_background(kudos_settings, producer, clock):
    publish_people(kudos_settings, producer)
    client, db = _kudos_db(kudos_settings)
    old = [_old_style_kudos(f"k_old{i:02d}", giver, to, START - timedelta(days=3 * i, hours=i))
           for i, (giver, to) in enumerate([("rita", ["pia"]), ("pia", ["rita", "li"]), ("rita", ["li"])] * 5)]
    db["kudos"].insert_many(old)
    db["kudos"].create_index([("giver_id", 1), ("created_at", 1), ("_id", 1)])  # the old feeds' (answers nothing now)
    rt = build_runtime(kudos_settings, clock=clock)
    assert sorted(i["key"][0][0] for i in db["kudos"].index_information().values()) == ["_id", "outbox_pending"]
    # Before its background build has run, the process answers the old way (right, if slow).
    kudos, page = rt.service.feed("li", "received", 4)
    assert page["total_count"] == 10 and [k.id for k in kudos] == [d["_id"] for d in old if "li" in d["recipient_ids"]][:4]
    rt.start_background()
    try:
        assert wait_until(rt.directory_reader.caught_up.is_set, timeout=30)
        assert wait_until(rt.service.repo.feeds.built.is_set, timeout=60) and rt.service.repo.feeds.version() == 1
        with serving(rt.app) as url:
            api = Client(url, kudos_settings.internal_token)
            assert walk(api, first=4) == ([d["_id"] for d in old], {15})  # inserted newest first
            assert walk(api, first=3, person_id="li", direction="received")[1] == {10}
            assert walk(api, first=3, person_id="rita", direction="given")[1] == {10}
            assert give(api, "jonas", ["pia"]).status_code == 201
            assert walk(api, first=50)[1] == {16}
            assert wait_until(lambda: rt.service.repo.kudos.count_documents({"outbox_pending": True}) == 0)
    finally:
        _stop(rt)
    # Later starts read the version and build nothing: a list taken away stays away.
    db["feeds"].delete_one({"_id": "all"})
    rt = _start(kudos_settings, clock)
    try:
        assert rt.service.repo.feeds.built.is_set()
        assert rt.service.repo.feeds.store.count("all") == 0 and rt.service.repo.feeds.store.count("to:pia") == 6
    finally:
        _stop(rt)
        client.close()


def test_feeds_survive_a_restart_and_a_kudos_left_pending_by_a_dead_process_is_put_on_them(kudos_settings, producer, clock, settings):
    publish_people(kudos_settings, producer)
    rt = _start(kudos_settings, clock)
    try:
        with serving(rt.app) as url:
            first = give(Client(url, kudos_settings.internal_token), "rita", ["pia"]).json()["id"]
    finally:
        _stop(rt)
    # A process stored this kudos with its event, then died before its feed writes and its
    # notice to the relay: the document is all there is.
    client, db = _kudos_db(kudos_settings)
    at = START + timedelta(minutes=3)
    OutboxJournal(db["kudos"]).mark("k_orphan")  # as every writer does before its write
    db["kudos"].insert_one(_old_style_kudos("k_orphan", "li", ["ahmed"], at, _given_event("k_orphan", "li", ["ahmed"], at)))
    client.close()
    rt = _start(kudos_settings, clock)
    try:
        with serving(rt.app) as url:
            api = Client(url, kudos_settings.internal_token)
            # The relay's first search (at start) puts it on its feeds before publishing it.
            assert wait_until(lambda: walk(api, first=5)[0] == ["k_orphan", first], timeout=30)
            assert walk(api, person_id="ahmed", direction="received") == (["k_orphan"], {1})
            assert walk(api, person_id="li", direction="given") == (["k_orphan"], {1})
            events = [decode(r.value) for r in read_topic(settings, settings.topic("kudos"), 2)]
            assert sorted(e.subject for e, _ in events) == sorted([first, "k_orphan"])
            assert wait_until(lambda: rt.service.repo.kudos.find_one({"_id": "k_orphan"})["outbox_pending"] is False)
    finally:
        _stop(rt)


# -- import of history ----------------------------------------------------------------------------

ADMIN = ("boss", "Bea Boss", "admin", "sales")

HISTORY = """created_at,giver_email,recipient_emails,message,gesture,values
2026-03-02T09:15:00+01:00,rita@example.com,pia@example.com,Thanks for the Acme quote,coffee,speed;customer_first
2026-03-02T10:00:00+01:00,rita@example.com,pia@example.com;li@example.com,"Two lines:
the second one",,
2026-03-03T11:00:00+01:00,rita@example.com,pia@example.com,Again,thanks,
not a date,rita@example.com,pia@example.com,Bad date,thanks,

2026-03-04T11:00:00+01:00,rita@example.com,rita@example.com,Myself,thanks,
2026-03-04T12:00:00+01:00,nobody@example.com,pia@example.com,Who?,thanks,
2026-03-04T13:00:00,rita@example.com,pia@example.com,No offset,thanks,
2026-03-04T14:00:00Z,rita@example.com,pia@example.com,Bad gesture,champagne,
2026-03-04T15:00:00Z,rita@example.com,pia@example.com,Bad value,thanks,synergy
2026-03-04T16:00:00Z,rita@example.com,pia@example.com,,thanks,
2027-03-04T16:00:00Z,rita@example.com,pia@example.com,From the future,thanks,
2026-03-05T08:00:00-05:00,gone@example.com,jonas@example.com,Before she left,high_five,teamwork
2026-03-05T09:00:00Z,rita@example.com,pia@example.com,Fourth to Pia this week (no cap on history),lunch,
2026-03-02T09:15:00+01:00,rita@example.com,pia@example.com,Thanks for the Acme quote,coffee,speed;customer_first
"""


@pytest.fixture
def admin_api(api, producer, kudos_settings):
    publish_people(kudos_settings, producer, people=[ADMIN])
    assert wait_until(lambda: api.runtime.service.directory.get("boss") is not None, timeout=30)
    return api


def test_import_reports_bad_rows_by_line_and_imports_the_good_ones_once(admin_api, settings, clock):
    api = admin_api
    refused = api.as_("rita").post("/kudos/import", data=HISTORY, headers={"Content-Type": "text/csv"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_only"
    live = give(api, "jonas", ["pia"]).json()["id"]  # today (25 November 2026)

    report = api.as_("boss").post("/kudos/import", data=HISTORY, headers={"Content-Type": "text/csv"}).json()
    assert [(e["line"], e["code"]) for e in report["errors"]] == [
        (6, "invalid_created_at"), (8, "kudos_to_self"), (9, "unknown_giver"), (10, "invalid_created_at"),
        (11, "unknown_gesture"), (12, "unknown_value"), (13, "empty_message"), (14, "created_at_in_future")]
    # Six good rows, the last one a repeat of the first: five kudos.
    assert (report["imported"], report["already_imported"], report["rejected"]) == (5, 1, 8)
    again = api.as_("boss").post("/kudos/import", json={"csv": HISTORY}).json()
    assert (again["imported"], again["already_imported"], again["rejected"]) == (0, 6, 8)
    assert api.runtime.service.repo.kudos.count_documents({}) == 6

    # On the feeds at their own dates, after today's kudos, oldest last.
    company = api.as_("li").get("/kudos", params={"first": 10}).json()
    items = company["items"]
    assert items[0]["id"] == live and company["total_count"] == 6
    assert [k["created_at"] for k in items[1:]] == [
        "2026-03-05T13:00:00+00:00", "2026-03-05T09:00:00+00:00", "2026-03-03T10:00:00+00:00",
        "2026-03-02T09:00:00+00:00", "2026-03-02T08:15:00+00:00"]
    two_lines = items[4]
    assert two_lines["message"] == "Two lines:\nthe second one" and two_lines["gesture"] == "thanks"
    assert two_lines["recipient_ids"] == ["pia", "li"] and two_lines["values"] == []
    assert items[1]["giver_id"] == "gone" and items[1]["values"] == ["teamwork"]  # people who left since
    assert walk(api, first=2, person_id="pia", direction="received")[1] == {5}
    assert walk(api, first=2, person_id="rita", direction="given")[1] == {4}
    # History spends no allowance and meets no weekly cap.
    assert api.as_("rita").get("/allowance/rita").json()["used"] == 0
    assert give(api, "rita", ["pia"]).status_code == 201

    # Published, with the kudos' own time as the time it happened (the points service scores by it).
    events = [decode(r.value) for r in read_topic(settings, settings.topic("kudos"), 7)]
    at = {d.kudos_id: d.at for e, d in events if e.type == "kudos.given"}
    assert len(at) == 7
    for k in items[1:]:
        assert at[k["id"]] == datetime.fromisoformat(k["created_at"])


def test_the_command_sends_a_big_file_in_parts_with_the_file_s_line_numbers(admin_api):
    from shared.csvimport import file_parts, send_file
    from shared.auth import internal_headers

    api = admin_api
    text = HISTORY.strip() + "\n"
    parts = file_parts(text, rows_per_part=3)  # 15 records (a blank line is one)
    assert len(parts) == 5 and all(p.startswith("created_at,") for p, _ in parts)
    said = []
    report = send_file(api.base_url, "/kudos/import", internal_headers(api.token, None), text, "boss@example.com", rows_per_part=3, say=said.append)
    assert [e["line"] for e in report["errors"]] == [6, 8, 9, 10, 11, 12, 13, 14]
    assert (report["imported"], report["already_imported"]) == (5, 1) and len(said) == 5
    with pytest.raises(RuntimeError, match="admin"):
        send_file(api.base_url, "/kudos/import", internal_headers(api.token, None), text, "rita@example.com")


def test_an_add_on_racing_its_twin_is_refused_by_the_write_itself(api, runtime, monkeypatch):
    kid = give(api, "rita", ["pia"]).json()["id"]
    stale = runtime.service.get(kid)  # read before the twin's write: no add-ons yet
    assert api.as_("jonas").post(f"/kudos/{kid}/add-ons").status_code == 201
    monkeypatch.setattr(runtime.service, "get", lambda _id, *_viewer, **_public: stale)
    twin = api.as_("jonas").post(f"/kudos/{kid}/add-ons")
    assert twin.status_code == 409 and twin.json()["error"]["code"] == "already_added_on"
    monkeypatch.undo()
    assert api.as_("li").get(f"/kudos/{kid}").json()["add_on_count"] == 1


def test_the_import_kudos_command_goes_through_the_running_service(api, producer, kudos_settings, tmp_path, capsys, settings):
    from ops.cli import main

    publish_people(kudos_settings, producer, people=[("admin", "Admin", "admin", "sales")])  # admin@example.com
    assert wait_until(lambda: api.runtime.service.directory.get("admin") is not None, timeout=30)
    path = tmp_path / "kudos.csv"
    path.write_text(HISTORY, encoding="utf-8")
    assert main(["import-kudos", str(path), "--url", api.base_url]) == 1  # some rows refused
    out = capsys.readouterr().out
    assert "5 imported, 1 already imported, 8 rejected" in out and "  line 8: " in out and "[kudos_to_self]" in out
    assert main(["import-kudos", str(path), "--url", api.base_url]) == 1
    assert "0 imported, 6 already imported, 8 rejected" in capsys.readouterr().out
    # The service's relay publishes them; the command wrote nothing itself.
    assert len([r for r in read_topic(settings, settings.topic("kudos"), 5)]) == 5


def test_an_import_that_stopped_after_recording_its_events_is_finished_by_the_relay(kudos_settings, producer, clock, settings):
    """The events of imported kudos are recorded first, 50 to a document of ``kudos_imports``;
    a process that died before storing the kudos (or their feed entries) left only those: the
    relay's search at the next start stores the kudos, puts them on the feeds, then publishes."""
    from services.recognition.kudos import importer
    from services.recognition.kudos.handlers import imported_event_id

    publish_people(kudos_settings, producer, people=PEOPLE + [ADMIN])
    rt = _start(kudos_settings, clock)
    service = rt.service
    try:
        assert wait_until(lambda: service.directory.get("boss") is not None, timeout=30)
        real_insert = service.repo.kudos.insert_many

        def die(*args, **kwargs):
            raise RuntimeError("the process died here")

        service.repo.kudos.insert_many = die
        with pytest.raises(RuntimeError):
            service.import_history("boss", HISTORY)
        service.repo.kudos.insert_many = real_insert
        assert service.repo.kudos.count_documents({}) == 0
    finally:
        _stop(rt)
    client, db = _kudos_db(kudos_settings)
    [batch] = list(db["kudos_imports"].find({}))
    assert batch["outbox_pending"] is True and len(pending_events(batch)) == 5
    client.close()
    rt = _start(kudos_settings, clock)
    try:
        with serving(rt.app) as url:
            api = Client(url, kudos_settings.internal_token)
            assert wait_until(lambda: walk(api, first=10)[1] == {5}, timeout=30)
            assert walk(api, first=2, person_id="pia", direction="received")[1] == {4}
            two_lines = api.as_("li").get(f"/kudos/{walk(api, first=10)[0][3]}").json()
            assert two_lines["recipients"] == [{"id": "pia", "name": "Pía Novák"}, {"id": "li", "name": "李伟 (Li Wei)"}]
            events = [decode(r.value) for r in read_topic(settings, settings.topic("kudos"), 5)]
            assert sorted(e.id for e, _ in events) == sorted(imported_event_id(k) for k in walk(api, first=10)[0])
            assert wait_until(lambda: rt.service.repo.imports.find_one({})["outbox_pending"] is False)
            # Importing the file again stores nothing new and records no second event.
            again = api.as_("boss").post("/kudos/import", data=HISTORY, headers={"Content-Type": "text/csv"}).json()
            assert (again["imported"], again["already_imported"]) == (0, 6)
            assert rt.service.repo.imports.count_documents({}) == 1
    finally:
        _stop(rt)
