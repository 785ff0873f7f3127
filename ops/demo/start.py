"""What `insidetrack up` does about the demo company: load it on the first start, then greet.

State lives in ``var/demo/``: ``state.json`` (``loading``, ``loaded`` or ``skipped``, with
what was loaded) and ``clock.json`` (the simulated clock's offset while loading). The demo is
loaded once, on the first start of an empty local system; later starts keep the data and
run on plain real time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from ops.demo.company import DEMO_DAYS, DEMO_REP, DEMO_SUPPORT, plan_activity, summarize
from ops.demo.loader import DemoLoader, GraphQLClient
from services.gateway.portal import portal_link
from shared.calendar import BusinessCalendar
from shared.clock import OffsetClock
from shared.config import Settings


@dataclass
class DemoState:
    settings: Settings

    @property
    def dir(self) -> Path:
        return self.settings.var_dir / "demo"

    @property
    def clock_file(self) -> Path:
        return self.dir / "clock.json"

    def read(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def write(self, state: str, **info: Any) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "state.json").write_text(json.dumps({"state": state, **info}, indent=2), encoding="utf-8")


def prepare_first_start(settings: Settings) -> dict[str, str]:
    """Before the services start: on the first start of a local system, put the company's
    clock four weeks back and return the environment that makes the services read it."""
    state = DemoState(settings)
    if settings.env != "local" or state.read() is not None:
        return {}
    OffsetClock(state.clock_file).start_at(datetime.now(timezone.utc) - timedelta(days=DEMO_DAYS, hours=1))
    return {"INSIDETRACK_DEMO_CLOCK_FILE": str(state.clock_file)}


def load_demo_company(settings: Settings, gateway_url: str, admin_token: str, token_for: Callable[[dict], str],
                      say: Callable[[str], None], between: Callable[[], None], stop: Callable[[], bool],
                      days: int = DEMO_DAYS) -> dict[str, Any]:
    """Load the demo company through GraphQL on the simulated clock; returns what was loaded."""
    state = DemoState(settings)
    clock = OffsetClock(state.clock_file)
    gql = GraphQLClient(gateway_url)
    known = gql(admin_token, "{ people(first: 2) { totalCount } }")["data"]["people"]["totalCount"]
    if known > 1:  # someone imported their own people already: never mix the demo into them
        clock.reset()
        state.write("skipped", reason=f"the directory already had {known} people")
        say(f"Not loading the demo company: the directory already has {known} people.")
        return {}
    state.write("loading", started_at=datetime.now(timezone.utc).isoformat())
    plan = plan_activity(BusinessCalendar.from_settings(settings), end=datetime.now(timezone.utc), days=days)
    planned = summarize(plan)
    say(f"First start: loading the demo company through GraphQL: {len(plan.steps)} steps over {days} days "
        f"on a simulated clock (a few minutes) ...")
    loader = DemoLoader(settings, gateway_url, clock, token_for, admin_token, progress=say, between=between, stop=stop)
    report = loader.load(plan)
    info = {"people": report.people, "requests": planned["ops"].get("submit", 0), "kudos": planned["ops"].get("give_kudos", 0),
            "steps": report.steps, "refused": report.refused, "load_seconds": report.load_seconds,
            "scoring_seconds": report.scoring_seconds, "scored": report.scored}
    state.write("loaded", finished_at=datetime.now(timezone.utc).isoformat(), **info)
    say(f"Loaded {report.people} people, {info['requests']} requests and {info['kudos']} kudos in {report.load_seconds:.0f}s; "
        + (f"points scored {report.scoring_seconds:.0f}s later." if report.scored
           else "the points process is still scoring (the screen fills in live)."))
    if report.refused:
        say(f"  {len(report.refused)} steps were refused, e.g. {report.refused[0]}")
    return info


def greeting(gateway_url: str, admin_email: str, admin_token: str, token_for: Callable[[dict], str],
             screen_token: str) -> list[str]:
    """The lines `make up` prints: where to look, and tokens to look with."""
    gql = GraphQLClient(gateway_url)
    demo = []  # (label, person, token) of the demo rep and the demo support analyst
    for label, email in (("demo rep", DEMO_REP), ("demo support", DEMO_SUPPORT)):
        found = gql(admin_token, "query($s: String) { people(search: $s, first: 1) { edges { node { id email name role } } } }",
                    {"s": email})["data"]["people"]["edges"]
        if found and found[0]["node"]["email"] == email:
            demo.append((label, found[0]["node"], token_for(found[0]["node"])))
    lines = ["  portal (signed in; another: .venv/bin/insidetrack token EMAIL --portal):"]
    lines += [f"    {label:<13}{person['name']}: {portal_link(gateway_url, token)}" for label, person, token in demo]
    lines += [f"  GraphiQL        : {gateway_url}/graphql   (paste a token below into 'Bearer token')",
              f"  office screen   : {gateway_url}/screens/leaderboard?period=week&token={screen_token}"]
    feed = gql(admin_token, "{ kudosFeed(first: 1) { edges { node { cardUrl } } } }")["data"]["kudosFeed"]["edges"]
    if feed:
        lines.append(f"  a kudos card    : {feed[0]['node']['cardUrl']}")
    lines.append("  tokens (valid 12 h; another: .venv/bin/insidetrack token EMAIL):")
    lines += [f"    {label:<13}{person['name']} <{person['email']}>: {token}" for label, person, token in demo]
    lines.append(f"    {'admin':<13}{admin_email}: {admin_token}")
    return lines
