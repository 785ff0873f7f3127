"""Who may see a support request (issue 19), enforced by the requests service itself over real
HTTP, FerretDB and Kafka: a single request, its commands, and every list, with no read of the
requests collection but by ``_id``."""

from __future__ import annotations

import pytest

from tests.integration.service_helpers import Client
from tests.integration.test_requests_read_models import no_scans  # noqa: F401
from tests.integration.test_requests_service import clock, company, runtime, submit_body  # noqa: F401

pytestmark = pytest.mark.integration


# Vera runs sales; Mona (Rita, Sam) and Otto (Rob) report to her. Pricing: Pete manages Pía
# and Paul. Léa is legal's. Managers of a department work its queue (sales: exceptions).
ORG_CSV = """email,name,role,department,title,manager_email
vera@example.com,Vera VP,manager,sales,VP Sales,
mona@example.com,Mona Manager,manager,sales,Sales Director,vera@example.com
otto@example.com,Otto Other,manager,sales,Sales Director,vera@example.com
rita@example.com,Rita Rep,rep,sales,Account Executive,mona@example.com
sam@example.com,Sam Sales,rep,sales,Account Executive,mona@example.com
rob@example.com,Rob Rep,rep,sales,Account Executive,otto@example.com
pete@example.com,Pete Pricing,manager,pricing,Head of Pricing,
pia@example.com,Pía Pricing,support,pricing,Pricing Analyst,pete@example.com
paul@example.com,Paul Pricing,support,pricing,Pricing Analyst,pete@example.com
lea@example.com,Léa Legal,support,legal,Counsel,
"""


class Org:
    """The company above, and its people as clients of the requests service."""

    def __init__(self, admin: Client, people: dict[str, str]):
        self.admin, self.people = admin, people

    def as_(self, name: str) -> Client:
        return self.admin if name == "admin" else self.admin.as_(self.people[name])


@pytest.fixture
def org(runtime, settings):
    with company(runtime, settings, ORG_CSV) as client:
        assert client.report["errors"] == [], client.report
        yield Org(client, client.people)


def _ids(page):
    return {r["id"] for r in page["items"]}


def _all(client, **params):
    """Every item of a list, page by page (2 a page), and the total each page reported."""
    items, after, totals = [], None, set()
    while True:
        page = client.get("/requests", params={**params, "first": 2, **({"after": after} if after else {})}).json()
        items += page["items"]
        totals.add(page["total_count"])
        if not page["page_info"]["has_next_page"]:
            return [r["id"] for r in items], totals
        after = page["page_info"]["end_cursor"]


def test_a_request_exists_only_for_the_people_the_rules_name(org):
    rita, sam = org.as_("rita"), org.as_("sam")
    pricing = rita.post("/requests", json=submit_body(title="Rita's Acme pricing", deal_value=560000)).json()["id"]
    unknown = rita.get("/requests/r_does_not_exist")
    assert unknown.status_code == 404

    for name in ("rita", "pia", "pete", "mona", "vera", "admin"):  # requester, queue, managers up the chain, admin
        seen = org.as_(name).get(f"/requests/{pricing}")
        assert seen.status_code == 200 and seen.json()["deal_value"] == 560000, name
    for name in ("sam", "rob", "otto", "lea"):  # another rep, another team, another queue
        hidden = org.as_(name).get(f"/requests/{pricing}")
        assert (hidden.status_code, hidden.json()) == (404, {"error": {
            "code": "request_not_found", "message": f"no request {pricing!r}", "field": None}}), name

    # Commands on it: the same answer as an unknown id, and nothing changes.
    for response in (sam.post(f"/requests/{pricing}/comments", json={"text": "what's the price?"}),
                     org.as_("lea").post(f"/requests/{pricing}/acknowledge"),
                     org.as_("otto").post(f"/requests/{pricing}/cancel", json={"reason": "mine now"})):
        assert (response.status_code, response.json()["error"]["code"]) == (404, "request_not_found")
    assert rita.get(f"/requests/{pricing}").json()["status"] == "submitted"

    # An assignee sees it wherever they work: Pía takes it, then moves to legal.
    org.as_("pia").post(f"/requests/{pricing}/acknowledge")
    org.admin.post("/people", json={"email": "pia@example.com", "name": "Pía Pricing", "role": "support",
                                    "department": "legal"})
    assert org.as_("pia").get(f"/requests/{pricing}").status_code == 200
    assert org.as_("paul").get(f"/requests/{pricing}").status_code == 200  # still the pricing queue's


def test_lists_hold_only_what_the_caller_may_see(org, clock, no_scans):
    rita, sam, rob = org.as_("rita"), org.as_("sam"), org.as_("rob")
    r_pricing = rita.post("/requests", json=submit_body(title="rita pricing")).json()["id"]
    clock.advance(minutes=1)
    r_legal = rita.post("/requests", json=submit_body(kind="legal_review", title="rita legal")).json()["id"]
    s_pricing = sam.post("/requests", json=submit_body(title="sam pricing")).json()["id"]
    s_legal = sam.post("/requests", json=submit_body(kind="legal_review", title="sam legal")).json()["id"]
    b_pricing = rob.post("/requests", json=submit_body(title="rob pricing")).json()["id"]
    b_exception = rob.post("/requests", json=submit_body(kind="exception", title="rob exception")).json()["id"]
    org.as_("pia").post(f"/requests/{b_pricing}/acknowledge")  # Pía takes Rob's
    everything = {r_pricing, r_legal, s_pricing, s_legal, b_pricing, b_exception}

    # Rita, a rep: her own, whatever the filter; another rep's list is empty to her.
    mine = rita.get("/requests", params={"first": 100}).json()
    assert (_ids(mine), mine["total_count"]) == ({r_pricing, r_legal}, 2)
    assert rita.get("/requests", params={"requester_id": org.people["sam"]}).json()["total_count"] == 0
    assert _ids(rita.get("/requests", params={"department": "pricing"}).json()) == {r_pricing}
    assert rita.get("/requests", params={"assignee_id": org.people["pia"]}).json()["total_count"] == 0

    # Mona manages Rita and Sam, and works the sales queue (exceptions): Rob's exception too.
    ids, totals = _all(org.as_("mona"))
    assert sorted(ids) == sorted({r_pricing, r_legal, s_pricing, s_legal, b_exception}) and totals == {5}
    assert _ids(org.as_("mona").get("/requests", params={"department": "legal"}).json()) == {r_legal, s_legal}
    assert _ids(org.as_("mona").get("/requests", params={"requester_id": org.people["rob"]}).json()) == {b_exception}
    # Vera, up the chain, sees both her managers' teams; Otto (Rob's manager) Rob's and the sales queue.
    assert set(_all(org.as_("vera"))[0]) == everything
    assert set(_all(org.as_("otto"))[0]) == {b_pricing, b_exception}

    # The pricing analysts see the pricing queue (and nobody's legal requests).
    ids, totals = _all(org.as_("paul"))
    assert sorted(ids) == sorted({r_pricing, s_pricing, b_pricing}) and totals == {3}
    assert _ids(org.as_("paul").get("/requests", params={"requester_id": org.people["sam"]}).json()) == {s_pricing}
    assert org.as_("paul").get("/requests", params={"department": "legal"}).json()["total_count"] == 0
    # Pía's assignments: all hers; to Mona only what her team asked for (none), to Otto Rob's.
    assert _ids(org.as_("pia").get("/requests", params={"assignee_id": org.people["pia"]}).json()) == {b_pricing}
    assert org.as_("mona").get("/requests", params={"assignee_id": org.people["pia"]}).json()["total_count"] == 0
    assert _ids(org.as_("otto").get("/requests", params={"assignee_id": org.people["pia"]}).json()) == {b_pricing}

    # Filters narrow a merged view: status, open, priority.
    assert _ids(org.as_("mona").get("/requests", params={"status": "submitted", "first": 100}).json()) == \
        {r_pricing, r_legal, s_pricing, s_legal, b_exception}
    assert org.as_("otto").get("/requests", params={"status": "acknowledged"}).json()["total_count"] == 1
    # The admin sees everything.
    assert set(_all(org.admin)[0]) == everything
    # Every list above was read by _id: no scan of any collection.
    assert no_scans == []
