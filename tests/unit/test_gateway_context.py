"""The gateway's per-request context: prefetched summary and allowance calls (no I/O)."""

from __future__ import annotations

import threading

import pytest

from services.gateway.clients import ServiceUnavailable, Services
from services.gateway.context import RequestContext


class _Client:
    """Answers like a service client; ``fail`` makes a path raise as an unreachable service."""

    def __init__(self, name: str, fail: bool = False):
        self.name, self.fail, self.paths, self.threads = name, fail, [], set()

    def get(self, path, actor_id, **params):
        self.paths.append(path)
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise ServiceUnavailable(self.name, "refused")
        return {"path": path}

    post = get


def _context(points_fail: bool = False) -> RequestContext:
    return RequestContext(actor_id="p_1", base_url="http://x",
                          services=Services(requests=_Client("requests"), kudos=_Client("kudos"),
                                            points=_Client("points", fail=points_fail)))


def test_a_prefetched_summary_and_allowance_are_called_once_in_the_background():
    ctx = _context()
    points, kudos = ctx.services.points._client, ctx.services.kudos._client
    ctx.prefetch("p_2", summary=True, allowance=True)
    assert ctx.summary("p_2") == {"path": "/people/p_2/summary"} and ctx.summary("p_2") is ctx.summary("p_2")
    assert ctx.allowance("p_2") == {"path": "/allowance/p_2"}
    ctx.prefetch("p_2", summary=True, allowance=True)  # already there: no second call
    assert points.paths == ["/people/p_2/summary"] and kudos.paths == ["/allowance/p_2"]
    assert all(name.startswith("gateway-prefetch") for name in points.threads | kudos.threads)
    assert ctx.calls == 2


def test_a_prefetch_that_failed_raises_where_the_field_asks_and_is_called_again_next_time():
    ctx = _context(points_fail=True)
    ctx.prefetch("p_2", summary=True)
    with pytest.raises(ServiceUnavailable):
        ctx.summary("p_2")
    with pytest.raises(ServiceUnavailable):
        ctx.summary("p_2")  # not cached as an answer
    assert ctx.services.points._client.paths == ["/people/p_2/summary"] * 2


def test_without_prefetch_the_calls_are_made_when_asked():
    ctx = _context()
    assert ctx.allowance("p_3") == {"path": "/allowance/p_3"}
    assert ctx.services.kudos._client.threads == {threading.current_thread().name}
