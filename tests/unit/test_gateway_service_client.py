"""The gateway's HTTP client to the services (services/gateway/clients.py), against a local server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.gateway.clients import ServiceClient, ServiceError, ServiceUnavailable


class _Service(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append({"method": self.command, "path": self.path, "body": body,
                                "token": self.headers.get("X-Internal-Token"), "actor": self.headers.get("X-Actor-Id"),
                                "content_type": self.headers.get("Content-Type")})
        status, payload = {"/refused": (403, {"error": {"code": "forbidden", "message": "no", "field": "id"}}),
                           "/broken": (500, {"error": {"code": "internal"}}),
                           "/moved": (302, {}), "/text": (200, None)}.get(self.path.split("?")[0], (200, {"ok": True}))
        data = b"not json" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def service():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Service)
    _Service.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_call_sends_the_token_the_actor_json_and_query_and_reads_the_answer(service):
    client = ServiceClient("kudos", service, "secret", timeout=5)
    assert client.get("/kudos", "p_1", person_id="p 2", first=20) == {"ok": True}
    assert client.post("/kudos", "p_1", {"to": ["p_2"], "message": "merci é"}) == {"ok": True}
    got, posted = _Service.seen
    assert (got["method"], got["path"], got["token"], got["actor"]) == ("GET", "/kudos?person_id=p+2&first=20", "secret", "p_1")
    assert posted["content_type"] == "application/json"
    assert json.loads(posted["body"]) == {"to": ["p_2"], "message": "merci é"}
    client.pool.close()


def test_refusals_failures_redirects_and_a_closed_port_each_get_their_error(service):
    client = ServiceClient("kudos", service, "secret", timeout=5)
    with pytest.raises(ServiceError) as refused:
        client.get("/refused", "p_1")
    assert (refused.value.status, refused.value.code, refused.value.field) == (403, "forbidden", "id")
    for path in ("/broken", "/text", "/moved"):  # a 5xx, an answer that is not JSON, a redirect (never followed)
        with pytest.raises(ServiceUnavailable):
            client.get(path, "p_1")
    assert [s["path"] for s in _Service.seen] == ["/refused", "/broken", "/text", "/moved"]
    client.pool.close()
    closed = ServiceClient("kudos", "http://127.0.0.1:9", "secret", timeout=2)
    with pytest.raises(ServiceUnavailable):
        closed.get("/kudos", "p_1")


@pytest.mark.parametrize("value", ["x/", "/", "a/b", "v\u0091/"])
def test_an_id_with_a_slash_names_nothing(value):
    from services.gateway.clients import segment

    with pytest.raises(ServiceError) as refused:
        segment(value)
    assert (refused.value.status, refused.value.code) == (404, "not_found")
    assert segment("r_1.x") == "r_1%2Ex"
