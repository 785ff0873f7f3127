"""One WebSocket connection's events: a leaderboard refresh is queued at once (the points
service says when the awards are on the boards), one per burst, without holding up the
connection's other subscriptions (an office screen shows kudos and the board)."""

from __future__ import annotations

from services.gateway.ws import Connection, Operation


def _connection() -> Connection:
    return Connection(ws=None, settings=None, services=None, hub=None, base_url="http://gateway")


def test_a_burst_of_applied_notices_queues_one_refresh_at_once_and_kudos_beside_it():
    conn = _connection()
    board = Operation("1", None, {}, None, root_field="leaderboardChanged")
    feed = Operation("2", None, {}, None, root_field="kudosGiven")

    conn._enqueue((board, "points.applied #1"))
    conn._enqueue((board, "points.applied #2"))  # the same burst: the queued refresh reads after it too
    conn._enqueue((feed, "kudos.given"))

    assert conn.outbox.get_nowait() == (board, "points.applied #1")  # no pause: queued when told
    assert conn.outbox.get_nowait() == (feed, "kudos.given")
    assert conn.outbox.empty() and board.refresh_pending  # until the worker reads the board


def test_a_notice_during_a_board_read_queues_one_more_refresh():
    conn = _connection()
    board = Operation("1", None, {}, None, root_field="leaderboardChanged")
    conn._enqueue((board, "points.applied #1"))
    conn.outbox.get_nowait()
    board.refresh_pending = False  # what the worker does before it reads the board
    conn._enqueue((board, "points.applied #2"))  # applied after the read began: read again
    conn._enqueue((board, "points.applied #3"))
    assert conn.outbox.get_nowait() == (board, "points.applied #2") and conn.outbox.empty()


def test_a_closed_connection_takes_no_more_events():
    conn = _connection()
    conn.closed.set()
    conn._enqueue((Operation("2", None, {}, None, root_field="kudosGiven"), "kudos.given"))
    assert conn.outbox.empty()
