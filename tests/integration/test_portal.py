"""The portal (``/portal``) in Debian's headless Chromium: a rep and a pricing analyst play the
internal-selling story through its pages only, on the demo's simulated clock (a Tuesday and a
Wednesday in November 2026, whatever the real date).

Each page is checked with axe-core (0 serious or critical violations) and at phone width
(390 px: nothing wider than the screen), and screenshot to ``tests/artifacts/portal-*.png``
(Home, Queue and the request page are the README's pictures; the Insights test writes
``docs/images/portal-insights.png``). axe-core comes from npm, installed
into the cache folder by the test (skipped where there is no Node.js/npm); the portal itself
loads nothing from outside.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pytest
import requests as http

from ops.demo.company import DEMO_REP, DEMO_SUPPORT, plan_activity
from ops.demo.loader import DemoLoader, GraphQLClient
from ops.demo.start import greeting
from services.gateway.auth import issue_token
from services.gateway.portal import portal_link
from services.recognition.points.insights import INSIGHTS_GROUP, INSIGHTS_TOPICS
from shared.bus.kafka import consumer_lag
from shared.calendar import BusinessCalendar
from shared.config import PROJECT_ROOT
from tests.conftest import wait_until
from tests.integration.browser import chromium_path, open_page
from tests.integration.node_packages import node_modules, npm_available

pytestmark = pytest.mark.integration

AXE = "axe-core@4.10.3"
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
PEOPLE = """email,name,role,department,title,manager_email
mona@example.com,Mona Berg,manager,sales,Sales Director,
rita@example.com,Rita Okafor,rep,sales,Account Executive,mona@example.com
pia@example.com,Pía Novák,support,pricing,Pricing Analyst,
li@example.com,Li Wei,support,pricing,Senior Pricing Analyst,
"""
SUBMIT = "mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { request { id } errors { code } } }"
DETAILS = "Three-year renewal with volume tiers and a ramp in year one; the CFO wants two options side by side."


def _local(calendar: BusinessCalendar, day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=calendar.tz).astimezone(timezone.utc)


class Portal:
    """A person's browser tab on the portal, with the few gestures the story needs."""

    def __init__(self, page, axe_source: str | None):
        self.page, self.axe_source = page, axe_source

    def js(self, expression: str):
        return self.page.evaluate(expression)

    def wait(self, expression: str, timeout: float = 20.0):
        try:
            return self.page.wait_for(expression, timeout)
        except AssertionError as exc:  # say what the person saw
            raise AssertionError(f"{exc}\n--- the page showed ({self.js('location.hash')}):\n{self.text('main')}") from None

    def go(self, hash_: str, page_name: str) -> None:
        self.js(f"document.getElementById('main').dataset.page = ''; location.hash = {json.dumps(hash_)}")
        self.wait(f"document.getElementById('main').dataset.page === {json.dumps(page_name)} "
                  "&& document.getElementById('main').getAttribute('aria-busy') === 'false'")

    def text(self, selector: str) -> str:
        return self.js(f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''")

    def type(self, selector: str, text: str) -> None:
        """Type into a field as a person would (focus, then the keystrokes' text)."""
        self.js(f"(() => {{ const el = document.querySelector({json.dumps(selector)}); el.focus(); el.select && el.select(); }})()")
        self.page.call("Input.insertText", text=text)

    def choose(self, selector: str, value: str) -> None:
        self.js(f"(() => {{ const el = document.querySelector({json.dumps(selector)}); el.value = {json.dumps(value)};"
                " el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); })()")

    def click(self, selector: str) -> None:
        assert self.js(f"(() => {{ const el = document.querySelector({json.dumps(selector)}); if (!el) return false; el.click(); return true; }})()"), selector

    def click_text(self, selector: str, text: str) -> None:
        assert self.js(f"(() => {{ const el = [...document.querySelectorAll({json.dumps(selector)})]"
                       f".find(e => e.textContent.includes({json.dumps(text)})); if (!el) return false; el.click(); return true; }})()"), text

    def key(self, key: str) -> None:
        """Press a key (Tab, Enter) as a keyboard does."""
        codes = {"Tab": 9, "Enter": 13}
        text = {"Enter": "\r"}.get(key)
        self.page.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=key, windowsVirtualKeyCode=codes[key],
                       **({"text": text} if text else {}))
        self.page.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=key, windowsVirtualKeyCode=codes[key])

    def check(self, name: str) -> None:
        """axe-core finds no serious or critical problem; at 390 px nothing is wider than the screen.
        Then a screenshot (desktop) for tests/artifacts."""
        shown = self.text("main")
        assert not re.search(r"\b(null|undefined|NaN|\[object Object\])\b", shown), f"{name} shows a programming word: {shown}"
        if self.axe_source is not None:
            if not self.js("typeof window.axe === 'object'"):
                self.js(self.axe_source)
            found = self.page.evaluate_async("axe.run(document).then(r => r.violations.filter(v => ['serious', 'critical'].includes(v.impact))"
                                             ".map(v => ({id: v.id, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 3)})))")
            assert found == [], f"{name}: {json.dumps(found, indent=1)}"
        self.page.size(390, 844, mobile=True)
        try:
            widest = self.js("document.documentElement.scrollWidth")  # reading it lays the page out anew
            wide = self.js("[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 391 || e.scrollWidth > 391)"
                           ".slice(-5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right) + '/' + e.scrollWidth)")
            (ARTIFACTS / f"portal-{name}-390.png").write_bytes(self.page.screenshot())
            assert widest <= 390, f"{name} is {widest} px wide on a 390 px phone: {wide}"
            (ARTIFACTS / f"portal-{name}-390.png").write_bytes(self.page.screenshot())
        finally:
            self.page.size(1280, 900)
        self.js("document.getElementById('toast').classList.remove('show')")
        (ARTIFACTS / f"portal-{name}.png").write_bytes(self.page.screenshot(full_page=True))


def _axe_source(cache_dir) -> str | None:
    if not npm_available():
        return None
    return (node_modules(cache_dir, AXE) / "axe-core" / "axe.min.js").read_text(encoding="utf-8")


def test_graphiql_and_the_portal_load_nothing_from_outside(system):
    """Every script, style and module of GraphiQL and the portal comes from the gateway."""
    if not chromium_path():
        pytest.skip("Debian's chromium is not installed (make test installs it as root)")
    rita = system["people"]["rita"]
    token = system["as"]("rita").token
    with open_page(system["url"] + "/graphql", width=1280, height=900) as page:
        page.wait_for("document.querySelector('.graphiql-container') !== null", timeout=30)
        loaded = page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        # Subscriptions work in GraphiQL too: its fetcher follows a request over the WebSocket.
        rita_gql = system["as"]("rita")
        filed = rita_gql(SUBMIT, {"input": {"kind": "PRICING", "title": "Price the Acme renewal", "customer": "Acme", "details": DETAILS,
                                            "neededBy": "2099-01-05T12:00:00+00:00"}}).json()["data"]["submitRequest"]["request"]["id"]
        page.evaluate(f"document.getElementById('token').value = {json.dumps(token)}; window.__seen = [];"
                      "(async () => { for await (const r of window.insidetrackFetcher({query: 'subscription($id: ID!) { requestChanged(id: $id)"
                      f" {{ timeline {{ text }} }} }}', variables: {{id: {json.dumps(filed)}}}}})) window.__seen.push(r); }})()")
        # Comments until the subscription, once open, shows one (no guess at when it opened).
        # The submission's own change may reach it first (its event can arrive after the
        # subscription opened): what counts is a message that shows a comment.
        shows_note = ("window.__seen.some(r => r.data && r.data.requestChanged.timeline.length"
                      " && r.data.requestChanged.timeline.at(-1).text.startsWith('note '))")
        for n in range(10):
            rita_gql('mutation($id: ID!, $t: String!) { commentOnRequest(id: $id, text: $t) { errors { code } } }', {"id": filed, "t": f"note {n}"})
            if wait_until(lambda: page.evaluate(shows_note), 3):
                break
        assert page.evaluate(shows_note), page.evaluate("window.__seen")
        page.call("Page.navigate", url=portal_link(system["url"], token))
        page.wait_for("document.getElementById('who') && document.getElementById('who').textContent === 'Rita Okafor'", timeout=30)
        loaded += page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        assert page.evaluate("location.hash") == "#/"  # the token left the address bar
        # A link with a token the gateway refuses: the portal says to sign in again.
        page.call("Page.navigate", url=portal_link(system["url"], token[:-4] + "AAAA"))
        Portal(page, None).wait("document.querySelector('h1') && document.querySelector('h1').textContent === 'Sign in to Inside Track'")
        assert "expired or is not valid" in page.evaluate("document.querySelector('main').innerText")
    assert loaded and all(name.startswith(system["url"]) or name.startswith("ws://127.0.0.1") for name in loaded), loaded
    assert rita["email"] == "rita@example.com"


def test_the_portal_plays_the_internal_selling_story(demo_system, settings, stack_settings):
    if not chromium_path():
        pytest.skip("Debian's chromium is not installed (make test installs it as root)")
    calendar = BusinessCalendar.from_settings(settings)
    tuesday = date(2026, 11, 17)
    wednesday = tuesday + timedelta(days=1)
    system = demo_system(_local(calendar, tuesday, 10, 0))
    clock, gql = system["clock"], GraphQLClient(system["url"])
    assert gql(system["admin_token"], "mutation($c: String!) { importPeople(csv: $c) { created } }", {"c": PEOPLE})["data"]["importPeople"]["created"] == 4
    people = {e["node"]["email"].split("@")[0]: e["node"] for e in
              gql(system["admin_token"], "{ people(first: 20) { edges { node { id email role name } } } }")["data"]["people"]["edges"]}
    token = {name: system["token_for"](p) for name, p in people.items()}
    assert wait_until(lambda: gql(token["pia"], "{ me { kudosAllowance { left } } }")["data"]["me"]["kudosAllowance"] is not None, 30)
    axe = _axe_source(stack_settings.cache_dir)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tz = settings.company_timezone

    def at(day, hour, minute=0):
        clock.set(_local(calendar, day, hour, minute))

    with open_page(portal_link(system["url"], token["rita"]), 1280, 900, timezone=tz) as rita_page, \
            open_page(portal_link(system["url"], token["pia"]), 1280, 900, timezone=tz) as pia_page:
        rita, pia = Portal(rita_page, axe), Portal(pia_page, axe)
        rita.wait("document.getElementById('main').dataset.page === 'Home'")
        assert "Hello, Rita" in rita.text("main") and "No open requests" in rita.text("main")

        # -- Rita files a rush pricing request; the brief's gaps show while she types ----------
        rita.go("#/new", "New request")
        rita.choose("#f-kind", "PRICING")
        assert "Pricing" in rita.text("#queue-note")
        rita.type("#f-title", "Price the Acme renewal")
        rita.type("#f-customer", "Acme")
        rita.type("#f-dealName", "Acme renewal")
        rita.type("#f-dealValue", "240000")
        rita.type("#f-details", DETAILS)
        rita.choose("#f-neededBy", "2026-11-18T12:00")  # Wednesday noon: under 2 business days (a date picker: no typing)
        gaps = rita.text("#brief-checks")
        assert "✗ What was committed to the customer" in gaps and "✗ Needed-by at least 2 business days" in gaps
        assert rita.text("#brief-status").startswith("Brief incomplete: 2 gaps")
        rita.type("#f-commitment", "Promised two price options by Wednesday noon")
        rita.choose("#f-priority", "RUSH")
        assert rita.js("document.querySelector('#f-rushReason').closest('.field').hidden === false")
        rita.click("form button[type=submit]")  # a rush without a reason: refused, said at the field
        rita.wait("document.querySelector('#f-rushReason[aria-invalid=true]') !== null")
        assert "rush request needs a reason" in rita.text(".field-error")
        rita.type("#f-rushReason", "Their board decides on Thursday")
        assert rita.text("#brief-status") == "Brief complete."
        rita.check("new-request")
        rita.click("form button[type=submit]")
        rita.wait("document.getElementById('main').dataset.page === 'Request'")
        request_hash = rita.js("location.hash")
        assert "Price the Acme renewal" in rita.text("h1") and "Submitted" in rita.text("main") and "Rush" in rita.text("main")
        assert "complete" in rita.text("dl.facts")

        # -- Pía's queue: the rush request, marked; she acknowledges and starts it -------------
        at(tuesday, 11, 35)
        pia.wait("document.getElementById('main').dataset.page === 'Home'")
        pia.go("#/queue", "Queue")
        assert "Queue · Pricing" in pia.text("h1") and "Show later ones" not in pia.text("main")  # one page holds it
        assert "Price the Acme renewal" in pia.text("#queue") and "Rush" in pia.text("#queue")
        pia.check("queue")
        pia.click("#queue button[aria-label^='Acknowledge']")
        pia.wait("document.querySelector('#queue').innerText.includes('Acknowledged')")
        assert "assigned to Pía Novák" in pia.text("#queue")
        rita.wait("document.getElementById('timeline').innerText.includes('Acknowledged')")  # live, no reload
        at(tuesday, 11, 40)
        pia.click("#queue button[aria-label^='Start work']")
        pia.wait("document.querySelector('#queue').innerText.includes('In progress')")

        # -- She asks; Rita's page shows the question live and she answers --------------------
        at(tuesday, 11, 45)
        pia.go(request_hash, "Request")
        pia.type("#f-ask", "EUR or USD, and which payment terms?")
        pia.click("form[data-action=ask] button[type=submit]")
        pia.wait("document.querySelector('main').innerText.includes('Waiting on rep')")
        rita.wait("document.querySelector('form[data-action=answer]') !== null")
        assert "Pía Novák asks: EUR or USD, and which payment terms?" in rita.text("form[data-action=answer]")
        assert rita.text("#toast").startswith("Info requested by Pía Novák")  # a status message: screen readers say it
        rita.check("request-waiting")
        rita.go("#/", "Home")  # what waits on her, on her Home
        assert "answer the team's question" in rita.text("#waiting") and "Price the Acme renewal" in rita.text("#waiting")
        rita.check("home-waiting")
        rita.go(request_hash, "Request")
        at(tuesday, 15, 0)
        rita.type("#f-answer", "EUR, net 30")
        rita.click("form[data-action=answer] button[type=submit]")
        pia.wait("document.getElementById('timeline').innerText.includes('EUR, net 30')")
        rita.type("#f-update", "Their CFO moved the board meeting to Thursday 9:00")
        rita.click("form[data-action=update] button[type=submit]")
        pia.wait("document.getElementById('timeline').innerText.includes('board meeting to Thursday')")

        # -- Pía delivers on time; Rita closes the loop as won --------------------------------
        at(wednesday, 10, 0)
        pia.type("#f-deliver", "Two options attached")
        pia.click("form[data-action=deliver] button[type=submit]")
        rita.wait("document.querySelector('form[data-action=close]') !== null")
        pia.check("request-delivered")
        rita.go("#/", "Home")  # a delivered request waits on her to close the loop
        assert "close the loop" in rita.text("#waiting") and "My open requests (0)" in rita.text("main")
        rita.go(request_hash, "Request")
        at(wednesday, 11, 0)
        rita.choose("#f-outcome", "WON")
        rita.type("#f-close-note", "Signed!")
        rita.click("form[data-action=close] button[type=submit]")
        rita.wait("(document.getElementById('outcome') || {}).textContent === 'Won'")
        assert "Closed" in rita.text("main")
        rita.check("request")

        # -- and thanks the helper with a coffee: the card shows after giving (and on Pía's Home, live)
        pia.go("#/", "Home")
        assert "No kudos yet." in pia.text("main")
        at(wednesday, 11, 5)
        rita.click("#thank-helpers")
        rita.wait("document.getElementById('main').dataset.page === 'Give kudos' && document.getElementById('recipients').innerText.includes('Pía Novák')")
        assert rita.js("document.querySelector('input[name=gesture]:checked').value") == "COFFEE"
        assert rita.text("#allowance") == "You have 20 of 20 kudos left this month."
        rita.click("input[name=values][value=speed]")
        rita.type("#f-message", "Coffee's on me, Pía: we won Acme!")
        rita.check("give-kudos")
        rita.click("form button[type=submit]")
        rita.wait("document.querySelector('#given img') && document.querySelector('#given img').complete "
                  "&& document.querySelector('#given img').naturalWidth === 1200", timeout=30)
        rita.wait("document.getElementById('allowance').textContent === 'You have 19 of 20 kudos left this month.'")

        # -- the people search works from the keyboard: type, Tab to the person, Enter ---------
        rita.type("#f-search", "Li W")
        rita.wait("document.querySelector('#people-results button') !== null")
        rita.key("Tab")
        assert rita.js("document.activeElement.textContent") == "Add Li Wei"
        rita.key("Enter")
        rita.wait("document.getElementById('recipients').innerText.includes('Li Wei')")
        assert rita.js("document.activeElement.id") == "f-search"  # back in the search, for the next name
        rita.click("#recipients button[aria-label='Remove Li Wei']")
        assert "Li Wei" not in rita.text("#recipients")

        # -- a refusal says why: the fourth kudos to Pía this week is over the weekly cap -----
        for n in (2, 3):
            rita.type("#f-message", f"Thanks again ({n})")
            rita.click("form button[type=submit]")
            rita.wait(f"document.getElementById('allowance').textContent === 'You have {20 - n} of 20 kudos left this month.'")
        rita.type("#f-message", "One more thanks")
        rita.click("form button[type=submit]")
        rita.wait("document.querySelector('.field-error') !== null")
        assert "week" in rita.text(".field-error").lower()

        # -- Pía's Home showed the kudos as they came; the feed, the boards, a profile --------
        pia.wait("document.querySelector('main').innerText.includes(\"Coffee's on me, Pía: we won Acme!\")")
        pia.wait("(document.querySelector('[data-test=week-points]') || {}).textContent !== '0 points'", timeout=30)
        pia.check("home-support")
        rita.go("#/", "Home")
        rita.wait("(document.querySelector('[data-test=week-points]') || {}).textContent !== '0 points'", timeout=30)
        rita.check("home")
        rita.go("#/requests?all=1", "My requests")
        assert "Price the Acme renewal" in rita.text("main") and "Closed" in rita.text("main")
        rita.check("my-requests")
        rita.go("#/feed", "Feed")
        rita.wait("document.querySelectorAll('#feed img').length >= 1")
        rita.check("feed")
        rita.go("#/leaderboards?period=WEEK&scope=COMPANY", "Leaderboards")
        assert "Pía Novák" in rita.text("#board")
        rita.check("leaderboards")
        rita.go("#/leaderboards?period=WEEK&scope=DEPARTMENT&department=PRICING", "Leaderboards")
        assert "Pía Novák" in rita.text("#board") and "Rita Okafor" not in rita.text("#board")
        rita.go("#/people/" + people["pia"]["id"], "Profile")
        assert "Pía Novák" in rita.text("h1")
        rita.check("profile")

        # -- Pía keeps herself off the leaderboards from her own profile, then comes back -----
        rita.go("#/leaderboards?period=WEEK&scope=COMPANY", "Leaderboards")
        pia.go("#/people/" + people["pia"]["id"], "Profile")
        assert pia.js("document.getElementById('f-hidden').checked") is False
        pia.click("#f-hidden")
        pia.wait("document.getElementById('hidden-state').textContent.includes('off the leaderboards')")
        pia.check("profile-hidden")
        rita.wait("!document.getElementById('board').innerText.includes('Pía Novák')", timeout=30)  # pushed live
        pia.click("#f-hidden")
        pia.wait("document.getElementById('hidden-state').textContent === ''")
        rita.wait("document.getElementById('board').innerText.includes('Pía Novák')", timeout=30)

    # The requests service has the story as the pages told it.
    final = gql(token["rita"], "query($id: ID!) { request(id: $id) { status outcome briefComplete } }",
                {"id": request_hash.rsplit("/", 1)[1]})["data"]["request"]
    assert final == {"status": "CLOSED", "outcome": "WON", "briefComplete": True}


INSIGHTS = """query($p: Period!, $d: Department) { insights(period: $p, department: $d) { key
  departments { department requestsReceived ackMedianHours deliverMedianHours onTimeShare }
  reps { person { name } score requests } recognition { people gaveShare topValues { value count } unrecognized { name } } } }"""


def _words(value: str) -> str:
    """As the portal writes an enum value (ui.js words)."""
    text = value.replace("_", " ").lower()
    return text[:1].upper() + text[1:]


def _pct(share) -> str:
    return "–" if share is None else f"{int(share * 100 + 0.5)}%"


def test_a_manager_sees_the_teams_insights_as_charts(demo_system, settings, stack_settings):
    """The demo company's last week (ending on a Sunday evening, on the simulated clock): its
    sales director opens Insights and sees the figures GraphQL gives her, as charts; a rep has
    no link, and the address shows her the service's refusal. The screenshot is
    docs/images/portal-insights.png."""
    if not chromium_path():
        pytest.skip("Debian's chromium is not installed (make test installs it as root)")
    calendar = BusinessCalendar.from_settings(settings)
    now = datetime(2026, 11, 29, 19, 0, tzinfo=calendar.tz).astimezone(timezone.utc)
    days = 7
    system = demo_system(now - timedelta(days=days, hours=1))
    loader = DemoLoader(settings, system["url"], system["clock"], system["token_for"], system["admin_token"])
    report = loader.load(plan_activity(calendar, end=now, days=days), wait_for_scoring=180, finish_at=now)
    assert report.refused == [] and report.scored
    gql, admin = GraphQLClient(system["url"]), system["admin_token"]
    found = {e["node"]["email"]: e["node"] for e in
             gql(admin, "{ people(first: 100) { edges { node { id email role name } } } }")["data"]["people"]["edges"]}
    mona, rita = found["mona.berg@example.com"], found[DEMO_REP]
    token = {"mona": system["token_for"](mona), "rita": system["token_for"](rita)}
    # The insights read model has taken every event (several quiet checks: the applier's awards follow through an outbox).
    quiet = []
    assert wait_until(lambda: quiet.append(consumer_lag(settings, {INSIGHTS_GROUP: INSIGHTS_TOPICS}) == 0) or quiet[-3:] == [True] * 3, 120, interval=1)
    month = gql(token["mona"], INSIGHTS, {"p": "MONTH", "d": None})["data"]["insights"]
    assert month["key"] == "2026-11" and month["reps"] and month["recognition"]["people"] >= 12
    assert any(r["score"] > 0 for r in month["reps"]) and any(d["requestsReceived"] for d in month["departments"])
    axe = _axe_source(stack_settings.cache_dir)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tz = settings.company_timezone

    with open_page(portal_link(system["url"], token["mona"]), 1280, 900, timezone=tz) as mona_page:
        page = Portal(mona_page, axe)
        page.wait("document.getElementById('main').dataset.page === 'Home'")
        assert page.js("document.querySelector('a[href=\"#/insights\"]').closest('li').hidden") is False
        page.click("a[href='#/insights']")
        page.wait("document.getElementById('main').dataset.page === 'Insights' && document.getElementById('main').getAttribute('aria-busy') === 'false'")
        assert page.text("#insights-scope").startswith("This month (2026-11)")
        # Every figure shown is the service's: departments in the charts, each rep's score in the table.
        received = page.js("document.querySelector('#chart-received svg').getAttribute('aria-label')")
        for d in month["departments"]:
            assert f"{_words(d['department'])} {d['requestsReceived']}" in received, (d, received)
        on_time = page.text("#chart-on-time")
        assert all(_pct(d["onTimeShare"]) in on_time for d in month["departments"] if d["onTimeShare"] is not None)
        rows = page.js("[...document.querySelectorAll('#reps tbody tr')].map(tr => [...tr.cells].map(td => td.innerText.trim()))")
        assert {(r[0], r[1], r[2]) for r in rows} == {(r["person"]["name"], str(r["score"]), str(r["requests"])) for r in month["reps"]}
        assert rows[0][1] == str(max(r["score"] for r in month["reps"]))  # the best score first
        rec = month["recognition"]
        assert page.text("[data-test=gave-share]") == _pct(rec["gaveShare"])
        if rec["unrecognized"]:
            shown = page.text("#unrecognized")
            assert f"{len(rec['unrecognized'])} of {rec['people']} on the team had no recognition" in shown
            assert all(p["name"] in shown for p in rec["unrecognized"])
        values = page.text("#chart-values")
        assert all(_words(v["value"]) in values and str(v["count"]) in values for v in rec["topValues"])
        page.check("insights")
        shutil.copyfile(ARTIFACTS / "portal-insights.png", PROJECT_ROOT / "docs" / "images" / "portal-insights.png")

        # The filters, from the keyboard's select boxes: this week, pricing only.
        week = gql(token["mona"], INSIGHTS, {"p": "WEEK", "d": "PRICING"})["data"]["insights"]
        page.choose("#f-period", "WEEK")
        page.wait("document.getElementById('insights-scope').innerText.startsWith('This week (2026-W48)')")
        page.choose("#f-department", "PRICING")
        page.wait("document.getElementById('insights-scope').innerText.includes('Pricing')")
        if week["departments"]:  # the team's reps asked pricing this week
            received = page.js("document.querySelector('#chart-received svg').getAttribute('aria-label')")
            assert received == f"Requests received: Pricing {week['departments'][0]['requestsReceived']}"
        else:
            assert "No department to show" in page.text("main")
        assert page.js("location.hash") == "#/insights?period=WEEK&department=PRICING"

        # "Show more": the page asks for 50 of each list; the demo team is smaller, so this tab's
        # queries are made to ask for 5 reps and 2 people a page (the page's own queries, with a
        # smaller page size written into them on their way out).
        page.js("""(() => { const real = window.fetch;
          window.fetch = (url, init) => {
            if (init && typeof init.body === 'string' && init.body.includes('insights(')) {
              const body = JSON.parse(init.body);
              body.query = body.query.replace('insights(period: $p, department: $d)', 'insights(period: $p, department: $d, repsFirst: 5, unrecognizedFirst: 2)')
                                     .replace('repsAfter: $a', 'repsAfter: $a, repsFirst: 5')
                                     .replace('unrecognizedAfter: $a', 'unrecognizedAfter: $a, unrecognizedFirst: 2');
              init = {...init, body: JSON.stringify(body)};
            }
            return real(url, init);
          }; })()""")
        page.go("#/insights?period=MONTH", "Insights")
        reps_rows = "document.querySelectorAll('#reps tbody tr').length"
        assert page.js(reps_rows) == 5 and page.text("#reps-shown") == f"5 of {len(month['reps'])} reps, highest score first."
        shown = 5
        while shown < len(month["reps"]):
            page.click("#more-reps")
            shown = min(shown + 5, len(month["reps"]))
            page.wait(f"{reps_rows} === {shown}")
        assert page.js("document.getElementById('more-reps')") is None  # all shown: the button is gone
        rows = page.js("[...document.querySelectorAll('#reps tbody tr')].map(tr => tr.cells[0].innerText.trim())")
        assert rows == [r["person"]["name"] for r in month["reps"]]  # each rep once, in the service's order (best first)
        assert page.text("#reps-shown") == f"{shown} of {shown} reps, highest score first."
        unthanked = len(month["recognition"]["unrecognized"])
        if unthanked > 2:
            chips = "document.querySelectorAll('#unrecognized li').length"
            assert page.js(chips) == 2
            page.click("#more-unrecognized")
            page.wait(f"{chips} === {min(4, unthanked)}")
            names = page.js("[...document.querySelectorAll('#unrecognized li a:first-child')].map(a => a.innerText.trim())")
            assert names == [p["name"] for p in month["recognition"]["unrecognized"]][:len(names)]

    with open_page(portal_link(system["url"], token["rita"]), 1280, 900, timezone=tz) as rita_page:
        page = Portal(rita_page, axe)
        page.wait("document.getElementById('main').dataset.page === 'Home'")
        assert page.js("document.querySelector('a[href=\"#/insights\"]').closest('li').hidden") is True
        assert "Insights" not in page.js("document.getElementById('nav').innerText")
        page.go("#/insights", "Insights")
        refused = page.text("#insights-refused")
        assert "not available to you" in refused and "managers" in refused
        page.check("insights-refused")


def test_insidetrack_token_portal_prints_a_link_that_signs_in(system, settings):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIDETRACK_")}
    env.update({"INSIDETRACK_KAFKA_PORT": str(settings.kafka_port), "INSIDETRACK_MONGO_PORT": str(settings.mongo_port),
                "INSIDETRACK_NAME_PREFIX": settings.name_prefix, "INSIDETRACK_VAR_DIR": str(settings.var_dir),
                "INSIDETRACK_GATEWAY_PORT": str(system["ports"]["gateway"]), "INSIDETRACK_LOG_LEVEL": "WARNING"})
    # Asked of the running requests service, and (its port unknown to the command: not running)
    # found by the command itself: the same person either way.
    for requests_port in (system["ports"]["requests"], None):
        run_env = {**env, **({"INSIDETRACK_REQUESTS_PORT": str(requests_port)} if requests_port else {})}
        run = subprocess.run([sys.executable, "-m", "ops.cli", "token", "Pia@example.com", "--portal"], env=run_env,
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        link = run.stdout.strip()
        assert link.startswith(system["url"] + "/portal#token=")
        me = http.post(system["url"] + "/graphql", json={"query": "{ me { name } }"}, timeout=10,
                       headers={"Authorization": "Bearer " + link.split("#token=", 1)[1]}).json()
        assert me["data"]["me"]["name"] == "Pía Novák"
    unknown = subprocess.run([sys.executable, "-m", "ops.cli", "token", "ia@example.com"], cwd=PROJECT_ROOT, timeout=120,
                             env={**env, "INSIDETRACK_REQUESTS_PORT": str(system["ports"]["requests"])},
                             capture_output=True, text=True)
    assert unknown.returncode == 1 and "nobody with the email ia@example.com" in unknown.stderr
    refused = subprocess.run([sys.executable, "-m", "ops.cli", "token", "pia@example.com", "--portal", "--screen"], env=env,
                             cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "do not go together" in refused.stderr


def test_make_up_prints_a_portal_link_for_the_demo_rep_and_analyst(system):
    csv = (f"email,name,role,department\n{DEMO_REP},Rita Okafor,rep,sales\n{DEMO_SUPPORT},Pía Novák,support,pricing\n")
    assert system["as_admin"]("mutation($c: String!) { importPeople(csv: $c) { created } }", {"c": csv}).json()["data"]["importPeople"]["created"] == 2
    token_for = lambda p: issue_token(system["settings"], p["id"], p["email"], p["role"].lower())  # noqa: E731
    lines = greeting(system["url"], "admin@example.com", system["as_admin"].token, token_for, "screen-token")
    links = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1] for line in lines if "/portal#token=" in line}
    assert set(links) == {"demo rep     Rita Okafor", "demo support Pía Novák"}, lines
    for who, link in links.items():
        me = http.post(system["url"] + "/graphql", json={"query": "{ me { name } }"}, timeout=10,
                       headers={"Authorization": "Bearer " + link.split("#token=", 1)[1]}).json()["data"]["me"]
        assert who.endswith(me["name"])


def test_the_portal_page_and_its_sign_in_link(system):
    page = http.get(system["url"] + "/portal", timeout=10)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert '<script type="module" src="/static/portal/app.js">' in page.text and "window.PORTAL_CONFIG" in page.text
    assert http.get(system["url"] + "/static/portal/app.js", timeout=10).status_code == 200
    link = portal_link(system["url"], "abc.def.ghi")
    assert link == system["url"] + "/portal#token=abc.def.ghi"
    values = system["as"]("rita")("{ companyValues }").json()["data"]["companyValues"]
    assert values == ["customer_first", "teamwork", "ownership", "speed", "integrity"]
