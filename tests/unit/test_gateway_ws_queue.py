"""One WebSocket connection's events: a leaderboard refresh waits for the points applier without
holding up the connection's other subscriptions (an office screen shows kudos and the board)."""

from __future__ import annotations

from services.gateway import ws
from services.gateway.ws import Connection, Operation


def _connection() -> Connection:
    return Connection(ws=None, settings=None, services=None, hub=None, base_url="http://gateway")


def test_a_kudos_is_not_queued_behind_a_pending_leaderboard_refresh(monkeypatch):
    monkeypatch.setattr(ws, "LEADERBOARD_SETTLE_S", 0.2)
    conn = _connection()
    board = Operation("1", None, {}, None, root_field="leaderboardChanged")
    feed = Operation("2", None, {}, None, root_field="kudosGiven")

    conn._enqueue((board, "points.awarded #1"))
    conn._enqueue((board, "points.awarded #2"))  # the same burst: one refresh answers both
    conn._enqueue((feed, "kudos.given"))

    assert conn.outbox.get(timeout=5) == (feed, "kudos.given")  # first, though it came last
    assert conn.outbox.get(timeout=5) == (board, "points.awarded #1")  # after the settle pause
    assert conn.outbox.empty() and board.refresh_pending  # until the worker reads the board


def test_a_closed_connection_takes_no_more_events():
    conn = _connection()
    conn.closed.set()
    conn._enqueue((Operation("2", None, {}, None, root_field="kudosGiven"), "kudos.given"))
    assert conn.outbox.empty()
