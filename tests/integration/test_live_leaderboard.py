"""Live leaderboards end to end: a kudos through GraphQL, the points service applying it, its
``points.applied`` notice, and the gateway pushing ``leaderboardChanged`` to a subscriber.

The first message after an award already shows it (the board is read after the applier's
write, told by the points service, not after a guessed pause). Every process runs on a
simulated clock set to a fixed time, so the test does not depend on today's date.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from tests.integration.gateway_system import running_system_at

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=timezone.utc)  # a Wednesday (week 2026-W47)
BOARD = "subscription { leaderboardChanged(period: WEEK) { key me { points rank } entries { points person { name } } } }"
GIVE = 'mutation($to: [ID!]!, $m: String!) { giveKudos(input: {to: $to, message: $m}) { errors { code } } }'


@pytest.fixture
def live_system(settings, tmp_path):
    with running_system_at(settings, tmp_path / "clock.json", NOW) as running:
        yield running


def _subscribe(system, name: str, query: str):
    from simple_websocket import Client as WsClient

    ws = WsClient(system["url"].replace("http://", "ws://") + "/graphql", subprotocols=["graphql-transport-ws"])
    ws.send(json.dumps({"type": "connection_init", "payload": {"token": system["as"](name).token}}))
    assert json.loads(ws.receive(10)) == {"type": "connection_ack"}
    ws.send(json.dumps({"id": "lb", "type": "subscribe", "payload": {"query": query}}))
    ws.send(json.dumps({"type": "ping"}))  # answered after the subscribe was handled: it is live
    assert json.loads(ws.receive(10)) == {"type": "pong"}
    return ws


def _next(ws, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if raw is None:
            continue
        message = json.loads(raw)
        if message.get("type") == "next":
            assert "errors" not in message["payload"], message
            return message["payload"]["data"]["leaderboardChanged"]
    raise AssertionError("no leaderboardChanged message")


def test_the_first_board_after_a_kudos_shows_the_recipients_new_points(live_system):
    people = live_system["people"]
    pia = _subscribe(live_system, "pia", BOARD)
    try:
        live_system["as"]("rita")(GIVE, {"to": [people["pia"]["id"]], "m": "Thanks for the Acme price!"})
        first = _next(pia)
        assert first["key"] == "2026-W47"
        assert first["me"] == {"points": 10, "rank": 1}
        assert first["entries"] == [{"points": 10, "person": {"name": "Pía Novák"}}]

        # Another giver (the pair cap stays out of it): the next message shows the next +10.
        live_system["as"]("jonas")(GIVE, {"to": [people["pia"]["id"]], "m": "And for the legal one."})
        assert _next(pia)["me"] == {"points": 20, "rank": 1}

        # Someone else's points: the subscriber's board moves, its own points do not.
        live_system["as"]("rita")(GIVE, {"to": [people["li"]["id"]], "m": "Thanks, Li!"})
        third = _next(pia)
        assert third["me"] == {"points": 20, "rank": 1}
        assert third["entries"] == [{"points": 20, "person": {"name": "Pía Novák"}}, {"points": 10, "person": {"name": "Li Wei"}}]
    finally:
        pia.close()
