"""Load the demo company through the public GraphQL API, on the demo's simulated clock.

The loader signs people on the way the intranet would (tokens signed with the gateway's
key, as ``insidetrack token`` does), imports the people as the admin with the
``importPeople`` mutation, then plays the planned steps in time order: it moves the shared
:class:`~shared.clock.OffsetClock` to each step's time, and runs the steps due at that time
in parallel (one chain, one request's life or one kudos with its add-ons, stays in order).
It never touches a database. At the end the clock is back on real time, and the loader waits
until the points process has scored everything (its consumer groups have no lag), so the
leaderboards are complete when the addresses are printed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

import requests as http

from ops.demo.company import Plan, Step, people_csv
from shared.bus.kafka import consumer_lag
from shared.clock import OffsetClock
from shared.config import Settings

log = logging.getLogger(__name__)

MUTATIONS = {
    "submit": ("mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { request { id } errors { code message } } }",
               lambda s, ids: {"input": {k: v for k, v in s.args.items() if v is not None}}),
    "acknowledge": ("mutation($id: ID!) { acknowledgeRequest(id: $id) { request { id } errors { code message } } }", None),
    "assign": ("mutation($id: ID!, $to: [ID!]!) { assignRequest(id: $id, assigneeIds: $to) { request { id } errors { code message } } }",
               lambda s, ids: {"to": [ids[e] for e in s.args["assigneeIds"]]}),
    "start": ("mutation($id: ID!) { startRequest(id: $id) { request { id } errors { code message } } }", None),
    "request_info": ("mutation($id: ID!, $q: String!) { requestInfo(id: $id, question: $q) { request { id } errors { code message } } }",
                     lambda s, ids: {"q": s.args["question"]}),
    "provide_info": ("mutation($id: ID!, $a: String!) { provideInfo(id: $id, answer: $a) { request { id } errors { code message } } }",
                     lambda s, ids: {"a": s.args["answer"]}),
    "deal_update": ("mutation($id: ID!, $t: String!) { postDealUpdate(id: $id, text: $t) { request { id } errors { code message } } }",
                    lambda s, ids: {"t": s.args["text"]}),
    "deliver": ("mutation($id: ID!, $n: String) { deliverRequest(id: $id, note: $n) { request { id } errors { code message } } }",
                lambda s, ids: {"n": s.args.get("note")}),
    "close": ("mutation($id: ID!, $o: Outcome!, $n: String) { closeRequest(id: $id, outcome: $o, note: $n) { request { id } errors { code message } } }",
              lambda s, ids: {"o": s.args["outcome"], "n": s.args.get("note")}),
    "cancel": ("mutation($id: ID!, $r: String!) { cancelRequest(id: $id, reason: $r) { request { id } errors { code message } } }",
               lambda s, ids: {"r": s.args["reason"]}),
    "give_kudos": ("mutation($input: GiveKudosInput!) { giveKudos(input: $input) { kudos { id } errors { code message } } }",
                   lambda s, ids: {"input": {**s.args, "to": [ids[e] for e in s.args["to"]]}}),
    "add_on": ("mutation($id: ID!, $m: String) { addOnKudos(id: $id, message: $m) { kudos { id } errors { code message } } }",
               lambda s, ids: {"m": s.args.get("message")}),
}


class DemoError(Exception):
    """The demo could not be loaded (a service refused, or did not answer in time)."""


class GraphQLClient:
    """Posts GraphQL as one person; one HTTP session per thread."""

    def __init__(self, url: str, timeout: float = 30):
        self.url = url.rstrip("/") + "/graphql"
        self.timeout = timeout
        self._local = threading.local()

    def __call__(self, token: str, query: str, variables: dict | None = None) -> dict[str, Any]:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = http.Session()
        for attempt in range(5):
            answer = session.post(self.url, json={"query": query, "variables": variables or {}},
                                  headers={"Authorization": f"Bearer {token}"}, timeout=self.timeout)
            if answer.status_code == 429:  # a person's rate limit: wait as told, then again
                time.sleep(float(answer.headers.get("Retry-After", 1)))
                continue
            body = answer.json()
            if body.get("errors") and not body.get("data"):
                raise DemoError(f"GraphQL refused: {body['errors'][0].get('message')}")
            return body
        raise DemoError("rate limited five times in a row")


@dataclass
class Report:
    people: int = 0
    steps: int = 0
    refused: list[str] = field(default_factory=list)
    ops: Counter = field(default_factory=Counter)
    load_seconds: float = 0.0
    scoring_seconds: float = 0.0
    scored: bool = False


class DemoLoader:
    def __init__(self, settings: Settings, gateway_url: str, clock: OffsetClock, token_for: Callable[[dict], str],
                 admin_token: str, workers: int = 6, progress: Callable[[str], None] = lambda line: None,
                 between: Callable[[], None] = lambda: None, stop: Callable[[], bool] = lambda: False):
        self.settings = settings
        self.gql = GraphQLClient(gateway_url)
        self.clock = clock
        self.token_for = token_for  # person {id, email, role} -> a signed token
        self.admin_token = admin_token
        self.workers = workers
        self.progress = progress
        self.between = between  # called between time steps (the supervisor restarts crashed services)
        self.stop = stop  # true when Ctrl-C asked to stop
        self.ids: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.results: dict[str, str] = {}  # chain -> the request or kudos id it created
        self._lock = threading.Lock()

    # -- people -------------------------------------------------------------------------------

    def import_people(self, chunk: int = 6) -> int:
        """Import the people as the admin, a few rows per call (a call must answer within the
        gateway's service timeout); managers come before their teams. Retried: an import is
        an upsert by email, so a call that timed out but went through changes nothing again."""
        header, *rows = people_csv().splitlines(keepends=True)
        created = 0
        for i in range(0, len(rows), chunk):
            for attempt in range(3):
                try:
                    answer = self.gql(self.admin_token, "mutation($csv: String!) { importPeople(csv: $csv) "
                                      "{ created updated rowErrors { line message } errors { code message } } }",
                                      {"csv": header + "".join(rows[i:i + chunk])})
                    break
                except DemoError:
                    if attempt == 2:
                        raise
                    time.sleep(2)
            payload = answer["data"]["importPeople"]
            if payload["errors"] or payload["rowErrors"]:
                raise DemoError(f"importing the demo people was refused: {payload['errors'] or payload['rowErrors']}")
            created += payload["created"] + payload["updated"]
        self.load_people()
        return created

    def load_people(self) -> None:
        after = None
        while True:
            page = self.gql(self.admin_token, "query($after: String) { people(first: 100, after: $after) "
                            "{ edges { node { id email role } } pageInfo { hasNextPage endCursor } } }", {"after": after})
            people = page["data"]["people"]
            for edge in people["edges"]:
                node = edge["node"]
                self.ids[node["email"]] = node["id"]
                self.tokens[node["email"]] = self.token_for(node)
            if not people["pageInfo"]["hasNextPage"]:
                return
            after = people["pageInfo"]["endCursor"]

    def wait_for_directories(self, emails: list[str], timeout: float = 60) -> None:
        """The kudos and points processes learn people from the people topic: wait for them."""
        deadline = time.monotonic() + timeout
        for email in emails:
            while True:
                me = self.gql(self.tokens[email], "{ me { kudosAllowance { left } } }")
                if me["data"]["me"]["kudosAllowance"] is not None:
                    break
                if time.monotonic() > deadline:
                    raise DemoError(f"the kudos service did not learn about {email} within {timeout:.0f}s")
                time.sleep(0.3)

    # -- steps --------------------------------------------------------------------------------

    def run_step(self, step: Step, report: Report) -> None:
        query, variables_of = MUTATIONS[step.op]
        variables = variables_of(step, self.ids) if variables_of else {}
        if step.op == "give_kudos" and step.ref:
            variables["input"]["requestId"] = self.results.get(step.ref)
        if step.op not in ("submit", "give_kudos"):
            target = self.results.get(step.chain)
            if target is None:
                return  # what it acts on was refused earlier; already reported
            variables["id"] = target
        for attempt in range(2):
            try:
                answer = self.gql(self.tokens[step.actor], query, variables)
                break
            except (DemoError, http.RequestException) as exc:
                # A busy machine: a service slower than the gateway's timeout, a dropped
                # connection. Once more; a step that did go through is then refused as a
                # repeat (illegal transition), which changes nothing.
                if attempt == 0:
                    time.sleep(1)
                    continue
                with self._lock:
                    report.refused.append(f"{step.op} by {step.actor} ({step.chain}): {exc}")
                return
        payload = next(iter(answer["data"].values()))
        if payload is None:
            with self._lock:
                report.refused.append(f"{step.op} by {step.actor} ({step.chain}): {answer.get('errors')}")
            return
        with self._lock:
            report.ops[step.op] += 1
            if payload["errors"]:
                report.refused.append(f"{step.op} by {step.actor} ({step.chain}): {payload['errors'][0]['message']}")
            elif step.op in ("submit", "give_kudos"):
                self.results[step.chain] = (payload.get("request") or payload.get("kudos"))["id"]

    def play(self, plan: Plan, report: Report) -> None:
        """Run the steps in time order; steps due at the same time run in parallel, per chain."""
        by_time: dict[datetime, list[Step]] = defaultdict(list)
        for step in plan.steps:
            by_time[step.at].append(step)
        done = 0
        last_note = time.monotonic()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="demo") as pool:
            for when in sorted(by_time):
                if self.stop():
                    raise DemoError(f"stopped after {done} of {len(plan.steps)} steps")
                self.between()
                self.clock.set(when)
                chains: dict[str, list[Step]] = defaultdict(list)
                for step in by_time[when]:
                    chains[step.chain].append(step)

                def run_chain(steps: list[Step]) -> None:
                    for s in steps:
                        self.run_step(s, report)

                for future in [pool.submit(run_chain, steps) for steps in chains.values()]:
                    future.result()
                done += len(by_time[when])
                report.steps = done
                if time.monotonic() - last_note > 10:
                    last_note = time.monotonic()
                    self.progress(f"  ... {done}/{len(plan.steps)} steps played, the company's clock at "
                                  f"{when.astimezone().strftime('%a %d %b %H:%M')}")

    def load(self, plan: Plan, wait_for_scoring: float = 300, finish_at: datetime | None = None) -> Report:
        """Play ``plan``; at the end the clock is back on real time, or stays at ``finish_at``
        (a test that loads the demo at a chosen instant: a Sunday evening, a Monday 00:30)."""
        report = Report()
        began = time.monotonic()
        self.clock.set(plan.start)
        report.people = self.import_people()
        self.wait_for_directories(sorted(self.ids))
        self.play(plan, report)
        if finish_at is None:
            self.clock.reset()  # the company's clock is back on real time: the data ends now
        else:
            self.clock.set(finish_at)
        report.load_seconds = round(time.monotonic() - began, 1)
        scoring_began = time.monotonic()
        report.scored = wait_for_points(self.settings, timeout=wait_for_scoring)
        report.scoring_seconds = round(time.monotonic() - scoring_began, 1)
        return report


def wait_for_points(settings: Settings, timeout: float = 300, quiet_checks: int = 3) -> bool:
    """Wait until the points process has nothing left to score (several checks in a row: the
    applier's badge awards reach their topic through its outbox a moment after it commits)."""
    from services.recognition.points.app import POINTS_GROUPS  # the whole points process: only when waiting

    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        quiet = quiet + 1 if consumer_lag(settings, POINTS_GROUPS) == 0 else 0
        if quiet >= quiet_checks:
            return True
        time.sleep(1)
    return False
