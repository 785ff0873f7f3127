"""The demo company and its four weeks of activity, planned ahead: pure logic, seeded, no I/O.

``plan_activity`` turns a seed, a time span and the business calendar into a list of steps
(who does what, when). The loader (``ops.demo.loader``) plays them through the public
GraphQL API on the demo's simulated clock, so every timeliness rule is applied for real by
the services: the plan only chooses *when* people act (a quick acknowledgement, a late
delivery, an answer within the day), never what they earn.

Time is planned in business-hour *slots* (hh:15 local on working days), so "acknowledged two
slots after submission" means two business hours, whatever weekends lie between.
"""

from __future__ import annotations

import csv
import io
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.calendar import BusinessCalendar, period_key
from shared.vocabulary import Gesture

DEMO_SEED = 11
DEMO_DAYS = 28
DEMO_REP = "rita.okafor@example.com"
DEMO_SUPPORT = "pia.novak@example.com"

# email, name, role, department, title, manager email. Stars (more requests, quicker, more
# thanked) make the leaderboards and badges look like a real company after four weeks.
PEOPLE: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("mona.berg@example.com", "Mona Berg", "manager", "sales", "Sales Director", ""),
    ("andres.ibanez@example.com", "Andrés Ibáñez", "manager", "sales", "Regional Sales Manager", "mona.berg@example.com"),
    ("rita.okafor@example.com", "Rita Okafor", "rep", "sales", "Senior Account Executive", "mona.berg@example.com"),
    ("jonas.weiss@example.com", "Jonas Weiß", "rep", "sales", "Account Executive", "mona.berg@example.com"),
    ("chloe.dubois@example.com", "Chloé Dubois", "rep", "sales", "Account Executive", "mona.berg@example.com"),
    ("lukasz.wrobel@example.com", "Łukasz Wróbel", "rep", "sales", "Account Executive", "mona.berg@example.com"),
    ("siobhan.obriain@example.com", "Siobhán Ó Briain", "rep", "sales", "Key Account Manager", "mona.berg@example.com"),
    ("kenji.tanaka@example.com", "Kenji Tanaka", "rep", "sales", "Account Executive", "mona.berg@example.com"),
    ("amara.nwosu@example.com", "Amara Nwosu", "rep", "sales", "Account Executive", "andres.ibanez@example.com"),
    ("marco.bianchi@example.com", "Marco Bianchi", "rep", "sales", "Account Executive", "andres.ibanez@example.com"),
    ("ines.carvalho@example.com", "Inês Carvalho", "rep", "sales", "Key Account Manager", "andres.ibanez@example.com"),
    ("daniel.cohen@example.com", "Daniel Cohen", "rep", "sales", "Account Executive", "andres.ibanez@example.com"),
    ("freya.nilsen@example.com", "Freya Nilsen", "rep", "sales", "Inside Sales Rep", "andres.ibanez@example.com"),
    ("omar.farouk@example.com", "Omar Farouk", "rep", "sales", "Inside Sales Rep", "andres.ibanez@example.com"),
    ("henrik.sorensen@example.com", "Henrik Sørensen", "manager", "presales", "Head of Presales", ""),
    ("soren.holm@example.com", "Søren Holm", "support", "presales", "Senior Solutions Engineer", "henrik.sorensen@example.com"),
    ("aisha.rahman@example.com", "Aisha Rahman", "support", "presales", "Solutions Engineer", "henrik.sorensen@example.com"),
    ("emily.carter@example.com", "Emily Carter", "support", "presales", "Solutions Engineer", "henrik.sorensen@example.com"),
    ("mateo.fernandez@example.com", "Mateo Fernández", "support", "presales", "Solutions Architect", "henrik.sorensen@example.com"),
    ("grace.adeyemi@example.com", "Grace Adeyemi", "manager", "pricing", "Pricing Manager", ""),
    ("pia.novak@example.com", "Pía Novák", "support", "pricing", "Pricing Analyst", "grace.adeyemi@example.com"),
    ("li.wei@example.com", "Li Wei", "support", "pricing", "Senior Pricing Analyst", "grace.adeyemi@example.com"),
    ("dmitri.volkov@example.com", "Dmitri Volkov", "support", "pricing", "Deal Desk Analyst", "grace.adeyemi@example.com"),
    ("katarzyna.nowak@example.com", "Katarzyna Nowak", "manager", "legal", "Head of Legal", ""),
    ("ahmed.haddad@example.com", "Ahmed Haddad", "support", "legal", "Contract Counsel", "katarzyna.nowak@example.com"),
    ("zoe.martin@example.com", "Zoë Martin", "support", "legal", "Paralegal", "katarzyna.nowak@example.com"),
    ("bjorn.akesson@example.com", "Björn Åkesson", "support", "order_desk", "Order Desk Lead", ""),
    ("priya.nair@example.com", "Priya Nair", "support", "order_desk", "Order Management Specialist", "bjorn.akesson@example.com"),
    ("lucas.moreau@example.com", "Lucas Moreau", "support", "order_desk", "Order Management Specialist", "bjorn.akesson@example.com"),
    ("elodie.laurent@example.com", "Élodie Laurent", "manager", "marketing", "Field Marketing Manager", ""),
    ("hannah.schmidt@example.com", "Hannah Schmidt", "support", "marketing", "Campaign Manager", "elodie.laurent@example.com"),
    ("tariq.aziz@example.com", "Tariq Aziz", "support", "marketing", "Content Marketer", "elodie.laurent@example.com"),
    ("nora.lindberg@example.com", "Nora Lindberg", "support", "marketing", "Events Coordinator", "elodie.laurent@example.com"),
    ("yusuf.demir@example.com", "Yusuf Demir", "manager", "product", "Product Lead", ""),
    ("ingrid.hansen@example.com", "Ingrid Hansen", "support", "product", "Product Manager", "yusuf.demir@example.com"),
    ("raul.ortega@example.com", "Raúl Ortega", "support", "product", "Integration Engineer", "yusuf.demir@example.com"),
    ("mei.chen@example.com", "Mei Chen", "support", "product", "Product Specialist", "yusuf.demir@example.com"),
    ("fatima.elamrani@example.com", "Fatima El Amrani", "manager", "customer_service", "Customer Service Manager", ""),
    ("sean.murphy@example.com", "Seán Murphy", "support", "customer_service", "Customer Success Manager", "fatima.elamrani@example.com"),
    ("olga.petrova@example.com", "Olga Petrova", "support", "customer_service", "Support Engineer", "fatima.elamrani@example.com"),
    ("jurgen.bauer@example.com", "Jürgen Bauer", "support", "customer_service", "Support Engineer", "fatima.elamrani@example.com"),
)

# How many requests each rep files (relative) and how diligent they are (briefs, answers,
# updates, closing the loop, thanking): the spread the leaderboards show.
REPS: dict[str, tuple[int, float]] = {
    "rita.okafor@example.com": (14, 0.97), "jonas.weiss@example.com": (9, 0.8), "chloe.dubois@example.com": (9, 0.9),
    "lukasz.wrobel@example.com": (7, 0.6), "siobhan.obriain@example.com": (10, 0.92), "kenji.tanaka@example.com": (6, 0.5),
    "amara.nwosu@example.com": (8, 0.85), "marco.bianchi@example.com": (7, 0.45), "ines.carvalho@example.com": (8, 0.75),
    "daniel.cohen@example.com": (6, 0.65), "freya.nilsen@example.com": (5, 0.7), "omar.farouk@example.com": (5, 0.55),
}
# Kind -> (relative volume, the department's workers with their share of the queue).
KINDS: dict[str, tuple[int, dict[str, int]]] = {
    "PRESALES_TECHNICAL": (30, {"soren.holm@example.com": 6, "aisha.rahman@example.com": 2, "emily.carter@example.com": 2,
                                "mateo.fernandez@example.com": 1}),
    "PRICING": (24, {"pia.novak@example.com": 4, "li.wei@example.com": 2, "dmitri.volkov@example.com": 2}),
    "LEGAL_REVIEW": (10, {"ahmed.haddad@example.com": 3, "zoe.martin@example.com": 1}),
    "ORDER_ENTRY": (10, {"bjorn.akesson@example.com": 1, "priya.nair@example.com": 2, "lucas.moreau@example.com": 2}),
    "MARKETING": (7, {"hannah.schmidt@example.com": 2, "tariq.aziz@example.com": 1, "nora.lindberg@example.com": 1}),
    "CUSTOMIZATION": (7, {"ingrid.hansen@example.com": 1, "raul.ortega@example.com": 2, "mei.chen@example.com": 1}),
    "POST_SALE_SERVICE": (7, {"sean.murphy@example.com": 2, "olga.petrova@example.com": 1, "jurgen.bauer@example.com": 1}),
    "EXCEPTION": (5, {"mona.berg@example.com": 1, "andres.ibanez@example.com": 2}),  # sales management decides
}
DEPARTMENT_MANAGER = {"PRESALES_TECHNICAL": "henrik.sorensen@example.com", "PRICING": "grace.adeyemi@example.com",
                      "LEGAL_REVIEW": "katarzyna.nowak@example.com", "MARKETING": "elodie.laurent@example.com",
                      "CUSTOMIZATION": "yusuf.demir@example.com", "POST_SALE_SERVICE": "fatima.elamrani@example.com"}

CUSTOMERS = ("Acme Logistics", "Borealis Energy", "Café Müller GmbH", "Nordwind Shipping", "Helios Solar",
             "Granite Bank", "Tessera Health", "Bluefin Foods", "Kestrel Airlines", "Orbital Telecom",
             "Vega Retail", "Lumen Pharma", "Atlas Insurance", "Quantum Motors", "Riverside Council")
DEALS = ("renewal", "expansion", "new logo", "platform upgrade", "multi-year deal", "pilot", "EMEA rollout")
WORK = {
    "PRESALES_TECHNICAL": ("Solution demo for {c}", "Security questionnaire for {c}", "Architecture workshop with {c}"),
    "PRICING": ("Price the {c} {d}", "Volume discount for {c}", "Ramp pricing for the {c} {d}"),
    "LEGAL_REVIEW": ("Review {c}'s redlines", "DPA for {c}", "Liability cap for {c}"),
    "ORDER_ENTRY": ("Book the {c} order", "Split billing for {c}", "Order amendment for {c}"),
    "MARKETING": ("Case study with {c}", "Event invite list for {c}", "Co-marketing plan with {c}"),
    "CUSTOMIZATION": ("Custom SSO for {c}", "Report template for {c}", "API limits for {c}"),
    "POST_SALE_SERVICE": ("Onboarding plan for {c}", "Escalation at {c}", "Health check for {c}"),
    "EXCEPTION": ("Exec call with {c} today", "Payment terms exception for {c}", "Early termination clause for {c}"),
}
DETAILS = ("{c} is comparing us with two competitors; the buying committee meets next week and wants "
           "the options side by side, with the assumptions spelled out.")
SHORT_DETAILS = "Need this for {c} asap."
COMMITMENTS = ("Promised a first draft before their board meeting.", "Told the CFO we would confirm the numbers this week.",
               "Committed to a reply before their procurement deadline.", "Promised a working demo on their data.")
RUSH_REASONS = ("The customer moved their decision forward by a week.", "Competitor offer expires on Friday.",
                "Their CEO asked for it before the quarterly review.")
QUESTIONS = ("Which currency and payment terms did they ask for?", "Who signs on their side, and is legal involved?",
             "Is the three-year term agreed, or still open?", "Which of their systems must it integrate with?")
ANSWERS = ("EUR, net 30; procurement signs.", "Their general counsel; they accept our template.",
           "Three years agreed, with a price review in year two.", "SAP and their own data warehouse.")
UPDATES = ("The customer shortlisted us with one other vendor.", "The CFO joined the call; budget is confirmed.",
           "They asked for references in their industry.", "Procurement pushed the signature to next month.",
           "The champion left; I am rebuilding the relationship.", "Verbal yes from the business owner.")
THANKS = {
    "THANKS": ("Thank you {n}, the customer loved it!", "Thanks {n} for the fast turnaround."),
    "COFFEE": ("Coffee is on me, {n}: you saved this deal.", "{n}, a coffee for the quick answer!"),
    "LUNCH": ("Lunch on me, {n}. We won it together!", "{n}: lunch next week, you earned it."),
    "FLOWERS": ("Flowers for {n}, for staying late on this one.", "{n}, thank you for the patience with my questions."),
    "HIGH_FIVE": ("High five, {n}! Signed today.", "{n} made the demo shine. High five!"),
}
PEER = ("Thanks {n} for covering my queue this week.", "{n} explained the new price book brilliantly.",
        "Great onboarding session, {n}!", "{n} helped me untangle a tricky order.")
ADD_ONS = ("+1, great work!", "Well deserved.", "Agreed, thank you!", None, "So true!")
VALUES = ("customer_first", "teamwork", "ownership", "speed", "integrity")
GESTURES = tuple(g.name for g in Gesture)  # as the GraphQL enum names them
MONTHLY_KUDOS = 18  # below the default allowance of 20, so the plan never runs into it
WEEKLY_CAP = 3


def people_csv() -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "name", "role", "department", "title", "manager_email", "active"])
    for email, name, role, department, title, manager in PEOPLE:
        writer.writerow([email, name, role, department, title, manager, "true"])
    return out.getvalue()


def first_name(email: str) -> str:
    return next(name for e, name, *_ in PEOPLE if e == email).split()[0]


@dataclass
class Step:
    """One thing a person does through the API: ``op`` with ``args`` at time ``at``.

    Steps of one ``chain`` (a request's life, or a kudos and its add-ons) run in order;
    ``ref`` names another chain whose result this step needs (the request a kudos thanks for).
    """

    at: datetime
    chain: str
    actor: str
    op: str
    args: dict[str, Any] = field(default_factory=dict)
    ref: str | None = None


@dataclass
class Plan:
    start: datetime
    end: datetime
    steps: list[Step]

    def count(self, op: str) -> int:
        return sum(1 for s in self.steps if s.op == op)


class _Slots:
    """Business-hour slots (hh:15 local) from ``start`` to ``end``; slot n+k is k business hours later."""

    def __init__(self, calendar: BusinessCalendar, start: datetime, end: datetime):
        self.times: list[datetime] = []
        d = calendar.local(start).date()
        while d <= calendar.local(end).date():
            window = calendar.window(d)
            if window is not None:
                t = window[0] + timedelta(minutes=15)
                while t < window[1]:
                    if start <= t < end:
                        self.times.append(t)
                    t += timedelta(hours=1)
            d += timedelta(days=1)

    def __len__(self) -> int:
        return len(self.times)


def plan_activity(calendar: BusinessCalendar, end: datetime, days: int = DEMO_DAYS, seed: int = DEMO_SEED,
                  volume: float = 0.6, closing_burst: bool = True) -> Plan:
    """Plan ``days`` of company life ending at ``end`` (at most a few minutes before it).

    ``closing_burst``: a few thank-yous in the last half hour (below); without them, a plan
    ending early on a Monday leaves this week empty, as a real company's Monday morning is."""
    rng = random.Random(seed)
    start = end - timedelta(days=days)
    slots = _Slots(calendar, start + timedelta(minutes=30), end - timedelta(minutes=40))
    n = len(slots)
    if n < 24:
        raise ValueError(f"{days} days hold only {n} business hours; the demo needs at least three business days")
    steps: list[tuple[int, Step]] = []  # (slot, step); slot >= n means "after the end": dropped
    kudos_budget: Counter = Counter()  # (giver, month) -> recipients given
    weekly: Counter = Counter()  # (giver, recipient, week) -> kudos
    reps = list(REPS)
    rep_weights = [REPS[r][0] for r in reps]
    kinds = list(KINDS)
    kind_weights = [KINDS[k][0] for k in kinds]
    n_requests = max(len(kinds), round(sum(rep_weights) * 1.15 * volume * days / DEMO_DAYS))

    def at(slot: int) -> datetime:
        return slots.times[slot]

    def add(slot: int, step: Step) -> None:
        steps.append((slot, step))

    def may_give(giver: str, recipients: list[str], slot: int) -> bool:
        if slot >= n:
            return False
        when = at(slot)
        month, week = period_key(calendar, "month", when), period_key(calendar, "week", when)
        if giver in recipients or kudos_budget[(giver, month)] + len(recipients) > MONTHLY_KUDOS:
            return False
        if any(weekly[(giver, r, week)] >= WEEKLY_CAP for r in recipients):
            return False
        kudos_budget[(giver, month)] += len(recipients)
        for r in recipients:
            weekly[(giver, r, week)] += 1
        return True

    kudos_count = 0

    def kudos(slot: int, giver: str, recipients: list[str], gesture: str, message: str, request_chain: str | None) -> None:
        nonlocal kudos_count
        if not may_give(giver, recipients, slot):
            return
        kudos_count += 1
        chain = f"k{kudos_count}"
        args = {"to": recipients, "message": message, "gesture": gesture,
                "values": rng.sample(VALUES, rng.choice((1, 1, 2)))}
        add(slot, Step(at(slot) if slot < n else end, chain, giver, "give_kudos", args, ref=request_chain))
        # Colleagues add on: the giver's and the recipients' teammates.
        department = {e: d for e, _, _, d, *_ in PEOPLE}
        near = [e for e, _, role, d, *_ in PEOPLE
                if e != giver and e not in recipients and d in {department[giver], *(department[r] for r in recipients)}]
        for i, actor in enumerate(rng.sample(near, min(len(near), rng.choice((0, 0, 1, 1, 2, 3))))):
            later = slot + rng.randint(1, 10)
            if later < n:
                add(later, Step(at(later), chain, actor, "add_on", {"message": rng.choice(ADD_ONS)}))

    kinds_cycle = kinds[:]
    rng.shuffle(kinds_cycle)
    for number in range(n_requests):
        rep = rng.choices(reps, rep_weights)[0]
        diligence = REPS[rep][1]
        # Every kind appears: the first requests go round all of them.
        kind = kinds_cycle[number] if number < len(kinds_cycle) else rng.choices(kinds, kind_weights)[0]
        workers = KINDS[kind][1]
        worker = rng.choices(list(workers), list(workers.values()))[0]
        chain = f"r{number}"
        customer = rng.choice(CUSTOMERS)
        deal = rng.choice(DEALS)
        s0 = rng.randrange(0, n - 4)
        rush = rng.random() < (0.7 if kind == "EXCEPTION" else 0.17)
        priority = "RUSH" if rush else rng.choice(("NORMAL", "NORMAL", "HIGH"))
        complete = rng.random() < diligence
        weak = None if complete else rng.choice(("commitment", "details", "notice"))
        if rush:
            notice = rng.randint(3, 9)
        elif weak == "notice":
            notice = rng.randint(5, 12)
        else:
            notice = rng.randint(18, 56)
        needed_by = calendar.add_business_hours(at(s0), notice) - timedelta(minutes=15)
        args = {
            "kind": kind, "title": rng.choice(WORK[kind]).format(c=customer, d=deal), "customer": customer,
            "dealName": f"{customer} {deal}", "dealValue": float(rng.randrange(20, 900) * 1000),
            "details": (SHORT_DETAILS if weak == "details" else DETAILS).format(c=customer),
            "commitment": None if weak == "commitment" else rng.choice(COMMITMENTS),
            "neededBy": needed_by.isoformat(), "priority": priority,
            "rushReason": rng.choice(RUSH_REASONS) if rush else None,
        }
        add(s0, Step(at(s0), chain, rep, "submit", args))
        slot = s0
        quick = rng.random() < (0.92 if workers[worker] > 1 else 0.8)
        manager = DEPARTMENT_MANAGER.get(kind)
        if kind == "EXCEPTION":
            slot += rng.randint(1, 2)
            add(slot, Step(at(slot) if slot < n else end, chain, worker, "acknowledge"))
            slot += 1
            add(slot, Step(at(slot) if slot < n else end, chain, worker, "assign", {"assigneeIds": [worker]}))
        else:
            if manager and rng.random() < 0.15:
                slot += 1
                add(slot, Step(at(slot) if slot < n else end, chain, manager, "assign", {"assigneeIds": [worker]}))
            slot += rng.randint(1, 3) if quick else rng.randint(6, 12)
            add(slot, Step(at(slot) if slot < n else end, chain, worker, "acknowledge"))
        slot += 1
        add(slot, Step(at(slot) if slot < n else end, chain, worker, "start"))
        update_slots = []
        if rng.random() < 0.3:
            slot += 1
            add(slot, Step(at(slot) if slot < n else end, chain, worker, "request_info", {"question": rng.choice(QUESTIONS)}))
            slot += rng.randint(1, 6) if rng.random() < diligence else rng.randint(10, 16)
            add(slot, Step(at(slot) if slot < n else end, chain, rep, "provide_info", {"answer": rng.choice(ANSWERS)}))
        if rng.random() < 0.08:
            slot += rng.randint(2, 8)
            add(slot, Step(at(slot) if slot < n else end, chain, rep, "cancel", {"reason": "The customer paused the project."}))
            continue
        due = s0 + notice
        on_time = rng.random() < (0.85 if quick else 0.55)
        deliver = rng.randint(slot + 1, max(slot + 1, due - 1)) if on_time else due + rng.randint(2, 12)
        deliver = max(deliver, slot + 1)
        # Deal updates while the request is open: diligent reps keep the team informed weekly.
        for u in range(s0 + 2, deliver, 8):
            if rng.random() < diligence * 0.8:
                update_slots.append(u + rng.randint(0, 3))
        for u in sorted(set(update_slots)):
            if slot < u < deliver:
                add(u, Step(at(u) if u < n else end, chain, rep, "deal_update", {"text": rng.choice(UPDATES)}))
        add(deliver, Step(at(deliver) if deliver < n else end, chain, worker, "deliver", {"note": "Attached, see the timeline."}))
        if rng.random() < 0.85:
            close = deliver + (rng.randint(1, 16) if rng.random() < diligence else rng.randint(26, 40))
            outcome = rng.choices(("WON", "LOST", "NO_DECISION"), (6, 3, 1))[0]
            if kind in ("ORDER_ENTRY", "POST_SALE_SERVICE"):
                outcome = "NOT_APPLICABLE" if rng.random() < 0.5 else outcome
            add(close, Step(at(close) if close < n else end, chain, rep, "close",
                            {"outcome": outcome, "note": {"WON": "Signed!", "LOST": "Lost on price.",
                                                          "NO_DECISION": "Project shelved.", "NOT_APPLICABLE": None}[outcome]}))
        if rng.random() < diligence * 0.8:
            thank = deliver + rng.randint(1, 6)
            gesture = rng.choice(GESTURES)
            kudos(thank, rep, [worker], gesture, rng.choice(THANKS[gesture]).format(n=first_name(worker)), chain)

    # Colleagues thanking each other, not tied to a request: a few people thank widely
    # (Grateful: kudos to 10 colleagues), two helpers are thanked by most reps (Team Favorite:
    # kudos from 10 reps), and some thanks at random.
    everyone = [p[0] for p in PEOPLE]

    def peer(giver: str, recipients: list[str]) -> None:
        gesture = rng.choice(GESTURES)
        message = rng.choice(PEER).format(n=" and ".join(first_name(r) for r in recipients))
        kudos(rng.randrange(0, n), giver, recipients, gesture, message, None)

    for giver in ("mona.berg@example.com", "rita.okafor@example.com", "siobhan.obriain@example.com"):
        for recipient in rng.sample([e for e in everyone if e != giver], 11):
            peer(giver, [recipient])
    for favorite in (DEMO_SUPPORT, "soren.holm@example.com"):
        for rep in rng.sample(reps, 11):
            peer(rep, [favorite])
    for _ in range(round(15 * volume * days / DEMO_DAYS)):
        giver = rng.choice(everyone)
        peer(giver, rng.sample([e for e in everyone if e != giver], rng.choice((1, 1, 2))))

    kept = sorted((s for s in steps if s[0] < n), key=lambda s: (s[1].at, s[1].chain))
    plan_steps = [s for _, s in kept]

    # The last half hour: a few thank-yous, so this week's board is never empty (even early on
    # a Monday) and the screen opens on fresh cards.
    burst_at = end - timedelta(minutes=30)
    for i in range(8 if closing_burst else 0):
        giver = rng.choice(everyone)
        recipient = rng.choice([e for e in everyone if e != giver])
        month, week = period_key(calendar, "month", burst_at), period_key(calendar, "week", burst_at)
        if kudos_budget[(giver, month)] + 1 > MONTHLY_KUDOS or weekly[(giver, recipient, week)] >= WEEKLY_CAP:
            continue
        kudos_budget[(giver, month)] += 1
        weekly[(giver, recipient, week)] += 1
        kudos_count += 1
        gesture = GESTURES[i % len(GESTURES)]
        when = burst_at + timedelta(minutes=3 * i)
        chain = f"k{kudos_count}"
        plan_steps.append(Step(when, chain, giver, "give_kudos", {
            "to": [recipient], "message": rng.choice(THANKS[gesture]).format(n=first_name(recipient)),
            "gesture": gesture, "values": [rng.choice(VALUES)]}))
        near = [e for e in everyone if e not in (giver, recipient)]
        plan_steps.append(Step(when + timedelta(minutes=1), chain, rng.choice(near), "add_on", {"message": "+1"}))
    plan_steps.sort(key=lambda s: (s.at, s.chain))
    return Plan(start=start, end=end, steps=plan_steps)


def summarize(plan: Plan) -> dict[str, Any]:
    kinds = Counter(s.args["kind"] for s in plan.steps if s.op == "submit")
    gestures = Counter(s.args["gesture"] for s in plan.steps if s.op == "give_kudos")
    by_op = Counter(s.op for s in plan.steps)
    per_actor = defaultdict(int)
    for s in plan.steps:
        per_actor[s.actor] += 1
    return {"steps": len(plan.steps), "ops": dict(by_op), "kinds": dict(kinds), "gestures": dict(gestures),
            "busiest": max(per_actor.values()) if per_actor else 0}
