"""Run a service's WSGI app on a real port in this process, and talk to it over HTTP."""

from __future__ import annotations

import socket
from contextlib import contextmanager

import requests as http

from shared.auth import internal_headers
from shared.serve import HttpServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(app):
    """Serve ``app`` the way a service process does, on a free port; yield its base URL."""
    server = HttpServer(app, free_port(), threads=4)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


class Client:
    """Calls an internal API as a given person, the way the gateway does."""

    def __init__(self, base_url: str, token: str, actor_id: str | None = None):
        self.base_url = base_url
        self.token = token
        self.actor_id = actor_id
        self.session = http.Session()

    def as_(self, actor_id: str | None) -> "Client":
        return Client(self.base_url, self.token, actor_id)

    def call(self, method: str, path: str, **kwargs) -> http.Response:
        headers = {**internal_headers(self.token, self.actor_id), **kwargs.pop("headers", {})}
        return self.session.request(method, self.base_url + path, headers=headers, timeout=15, **kwargs)

    def get(self, path: str, **kwargs) -> http.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, json=None, **kwargs) -> http.Response:
        return self.call("POST", path, json=json, **kwargs)
